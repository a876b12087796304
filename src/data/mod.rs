//! Datasets: readers for the formats lithe trains on, tokenization, batching.
//!
//! - [`idx`]: IDX images and labels (MNIST, Fashion-MNIST, the shipped 8x8 digits), plain or
//!   gzipped, and [`load_idx_dataset`] for a train/test folder;
//! - [`tsv`]: `label<TAB>text` files ([`read_tsv`]);
//! - [`tokenize`]: WordPiece through the `tokenizers` crate ([`Tokenizer`], [`Encoded`]);
//! - [`batch`]: seeded shuffled batches of indices ([`Batcher`]).

pub mod batch;
pub mod idx;
pub mod tokenize;
pub mod tsv;

pub use batch::Batcher;
pub use idx::{IdxDataset, IdxImages, IdxSplit, load_idx_dataset, load_idx_split};
pub use tokenize::{Encoded, Tokenizer};
pub use tsv::{parse_tsv, read_tsv};
