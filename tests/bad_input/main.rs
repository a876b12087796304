//! Bad input of every class (wrong shapes, wrong dtypes, empty inputs, NaN and infinity,
//! oversize dimensions) handed to the public API and the CLI: a typed error (or the documented
//! NaN propagation), never a panic, an abort or an allocation the size of the bogus request.
//!
//! Each class probes many entry points through [`Probe`], which runs every call under
//! `catch_unwind` and reports all the calls that panicked or accepted the bad input at once.

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};

mod cli;
#[cfg(feature = "cuda")]
mod cuda;
mod dtypes;
mod empty;
mod nonfinite;
mod oversize;
mod shapes;

/// Collects the calls that did not reject their bad input; [`Probe::finish`] fails the test
/// with the whole list.
#[derive(Default)]
struct Probe {
    failures: Vec<String>,
    checked: usize,
}

impl Probe {
    /// `f` must return `Err` (any variant) without panicking.
    fn rejects<T: Debug>(&mut self, what: &str, f: impl FnOnce() -> lithe::Result<T>) {
        self.expect(what, f, |_| true);
    }

    /// `f` must return an `Err` that `want` accepts, without panicking.
    fn expect<T: Debug>(
        &mut self,
        what: &str,
        f: impl FnOnce() -> lithe::Result<T>,
        want: impl Fn(&lithe::Error) -> bool,
    ) {
        self.checked += 1;
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Err(e)) if want(&e) => {}
            Ok(Err(e)) => self.failures.push(format!("{what}: wrong error: {e:?}")),
            Ok(Ok(v)) => {
                let mut v = format!("{v:?}");
                v.truncate(80);
                self.failures
                    .push(format!("{what}: accepted, returned {v}"));
            }
            Err(p) => self
                .failures
                .push(format!("{what}: panicked: {}", panic_text(&p))),
        }
    }

    /// `f` must not panic; what it returns is checked by `ok`.
    fn no_panic<T>(&mut self, what: &str, f: impl FnOnce() -> T, ok: impl FnOnce(&T) -> bool) {
        self.checked += 1;
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) if ok(&v) => {}
            Ok(_) => self.failures.push(format!("{what}: unexpected result")),
            Err(p) => self
                .failures
                .push(format!("{what}: panicked: {}", panic_text(&p))),
        }
    }

    fn finish(self, class: &str) {
        assert!(self.checked > 0);
        assert!(
            self.failures.is_empty(),
            "{class}: {} of {} calls did not reject their input:\n  {}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n  ")
        );
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string payload)".into())
}

// ---------------------------------------------------------------------------------------------
// Tiny models shared by the classes.

use lithe::nn::{Bert, BertConfig, Vit, VitConfig};
use lithe::train::{ImageSet, TrainOptions};
use lithe::{Rng, Tensor};

fn bert_config() -> BertConfig {
    BertConfig {
        vocab_size: 40,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 32,
        max_position_embeddings: 12,
        num_labels: 3,
        ..BertConfig::default()
    }
}

fn vit_config() -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 32,
        num_labels: 3,
        ..VitConfig::default()
    }
}

/// Images of the tiny ViT's shape (1 x 8 x 8) with these pixels and labels.
fn images(pixels: Vec<f32>, labels: Vec<usize>) -> ImageSet {
    ImageSet {
        pixels,
        labels,
        channels: 1,
        side: 8,
    }
}

/// One training epoch in batches of 4.
fn one_epoch() -> TrainOptions {
    TrainOptions {
        epochs: 1,
        batch_size: 4,
        ..TrainOptions::default()
    }
}

fn tiny_bert() -> Bert {
    Bert::new(&bert_config(), &mut Rng::new(1)).unwrap()
}

fn tiny_vit() -> Vit {
    Vit::new(&vit_config(), &mut Rng::new(2)).unwrap()
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lithe-bad-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
