//! A trained model together with its data, for the jobs that compress it and compare the result
//! with the original (`lithe prune`, `lithe ofa`): accuracy, latency in f32 and in int8, and
//! saving, the same way for a ViT on images and a BERT on sentences.

use crate::bench::median_time;
use crate::train::{CliResult, images_arg, text_set};
use clap::Args;
use lithe::autograd::{Graph, Var};
use lithe::compress::qat;
use lithe::data::Tokenizer;
use lithe::int8::{Input, Int8Model, QuantPlan, ToInt8};
use lithe::nn::{Bert, Module, Vit};
use lithe::train::{self, ImageSet, TextSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Samples in the batch whose forward time is measured.
pub const LATENCY_BATCH: usize = 64;

/// Where a job's data comes from: images (`--data`) or sentences (`--train`, `--test`).
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Images: IDX folder or `digits` (ViT models; default Fashion-MNIST, else the digits).
    #[arg(long)]
    pub data: Option<String>,
    /// Text: training TSV `label<TAB>text` (BERT models).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Text: test TSV.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Text: longest token sequence.
    #[arg(long, default_value_t = 64)]
    pub max_len: usize,
}

/// A dataset in the form its model reads.
pub enum Data {
    Images {
        train: ImageSet,
        test: ImageSet,
    },
    Text {
        tok: Box<Tokenizer>,
        train: TextSet,
        test: TextSet,
    },
}

/// A model of either kind.
#[derive(Clone)]
pub enum Model {
    Vit(Box<Vit>),
    Bert(Box<Bert>),
}

/// Loads the model of a `lithe train` folder and the data it is evaluated on.
pub fn load(dir: &Path, args: &DataArgs) -> CliResult<(Model, Data)> {
    match crate::int8::load_run(dir)? {
        crate::int8::Run::Vit(vit) => {
            let (train, test, _) = images_arg(args.data.as_deref())?;
            Ok((Model::Vit(vit), Data::Images { train, test }))
        }
        crate::int8::Run::Bert(bert, tok) => {
            let train = args.train.as_deref();
            let train = train.ok_or("--train TSV is required for a BERT model")?;
            let test = args.test.as_deref();
            let test = test.ok_or("--test TSV is required for a BERT model")?;
            if args.max_len > bert.config.max_position_embeddings {
                return Err(format!(
                    "--max-len {} exceeds the model's {} positions",
                    args.max_len, bert.config.max_position_embeddings
                )
                .into());
            }
            let data = Data::Text {
                tok,
                train: text_set(train, args.max_len)?,
                test: text_set(test, args.max_len)?,
            };
            Ok((Model::Bert(bert), data))
        }
        _ => Err(format!(
            "{} is neither a ViT nor a BERT folder written by `lithe train`",
            dir.display()
        )
        .into()),
    }
}

impl Model {
    pub fn num_params(&self) -> usize {
        match self {
            Model::Vit(m) => m.num_params(),
            Model::Bert(m) => m.num_params(),
        }
    }

    /// `(layers, heads per layer, MLP width)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        let blocks = match self {
            Model::Vit(m) => m.blocks(),
            Model::Bert(m) => m.blocks(),
        };
        let first = &blocks[0];
        (
            blocks.len(),
            first.attention.heads,
            first.mlp.fc1.out_features(),
        )
    }

    /// Test accuracy in f32.
    pub fn accuracy(&self, data: &Data) -> CliResult<f64> {
        Ok(match (self, data) {
            (Model::Vit(m), Data::Images { test, .. }) => train::evaluate_vit(m, test)?,
            (Model::Bert(m), Data::Text { tok, test, .. }) => train::evaluate_bert(m, tok, test)?,
            _ => return Err(mismatch()),
        })
    }

    /// The int8 engine of the model: a ViT calibrated on 8 training batches (static scales), a
    /// BERT with dynamic activation scales.
    pub fn int8(&self, data: &Data) -> CliResult<Int8Model> {
        Ok(match (self, data) {
            (Model::Vit(m), Data::Images { train, .. }) => qat::ptq_vit(m, train, 64, Some(8))?,
            (Model::Bert(m), Data::Text { .. }) => m.to_int8(&QuantPlan::dynamic())?,
            _ => return Err(mismatch()),
        })
    }

    /// Test accuracy of the int8 engine.
    pub fn int8_accuracy(engine: &Int8Model, data: &Data) -> CliResult<f64> {
        match data {
            Data::Images { test, .. } => crate::int8::accuracy_images(engine, test),
            Data::Text { tok, test, .. } => crate::int8::accuracy_text(engine, tok, test),
        }
    }

    /// Median f32 forward time of a batch of [`LATENCY_BATCH`] test samples on one thread
    /// (sentences padded to the set's longest length, all tokens real).
    pub fn f32_latency(&self, data: &Data) -> CliResult<Duration> {
        match (self, data) {
            (Model::Vit(m), Data::Images { test, .. }) => {
                image_latency(test, |g, x| m.forward_logits(g, x))
            }
            (Model::Bert(m), Data::Text { test, .. }) => {
                let (ids, shape) = token_batch(m, test);
                lithe::kernels::threads::set_num_threads(1);
                let t = median_time(Duration::from_millis(500), || {
                    let g = Graph::inference();
                    m.forward_logits(&g, &ids, shape, None, None)
                        .expect("forward of a valid batch");
                });
                lithe::kernels::threads::set_num_threads(0);
                Ok(t)
            }
            _ => Err(mismatch()),
        }
    }

    /// [`Model::f32_latency`] of the int8 engine.
    pub fn int8_latency(&self, engine: &Int8Model, data: &Data) -> CliResult<Duration> {
        match (self, data) {
            (Model::Vit(_), Data::Images { test, .. }) => crate::int8::latency_images(engine, test),
            (Model::Bert(m), Data::Text { test, .. }) => {
                let (ids, [batch, seq]) = token_batch(m, test);
                let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
                let mut ws = engine.workspace(batch, seq)?;
                let input = Input::Tokens {
                    ids: &ids,
                    batch,
                    seq,
                    lengths: None,
                };
                engine.forward(&mut ws, input)?;
                lithe::kernels::threads::set_num_threads(1);
                let t = median_time(Duration::from_millis(500), || {
                    engine
                        .forward(&mut ws, input)
                        .expect("forward of a valid batch");
                });
                lithe::kernels::threads::set_num_threads(0);
                Ok(t)
            }
            _ => Err(mismatch()),
        }
    }

    /// Saves the model (and the tokenizer of a text model) into `dir`.
    pub fn save(&self, dir: &Path, data: &Data, history: Option<&train::History>) -> CliResult<()> {
        match (self, data) {
            (Model::Vit(m), _) => train::save_run(dir, m.as_ref(), &m.config, history)?,
            (Model::Bert(m), Data::Text { tok, .. }) => {
                train::save_run(dir, m.as_ref(), &m.config, history)?;
                tok.save(&dir.join("tokenizer.json"))?;
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }
}

/// Median time of `logits_of` on a batch of [`LATENCY_BATCH`] test images, on one thread.
pub fn image_latency(
    test: &ImageSet,
    logits_of: impl Fn(&Graph, Var) -> lithe::Result<Var>,
) -> CliResult<Duration> {
    let rows: Vec<usize> = (0..LATENCY_BATCH).map(|i| i % test.len()).collect();
    let (x, _) = test.batch(&rows)?;
    lithe::kernels::threads::set_num_threads(1);
    let t = median_time(Duration::from_millis(500), || {
        let g = Graph::inference();
        logits_of(&g, g.constant(x.clone())).expect("forward of a valid batch");
    });
    lithe::kernels::threads::set_num_threads(0);
    Ok(t)
}

/// Token ids `[LATENCY_BATCH, T]` for timing: [CLS] then ids past the special tokens, T the
/// set's longest length.
fn token_batch(bert: &Bert, data: &TextSet) -> (Vec<usize>, [usize; 2]) {
    let seq = data.max_len.min(bert.config.max_position_embeddings);
    let vocab = bert.config.vocab_size;
    let ids = (0..LATENCY_BATCH * seq)
        .map(|i| {
            if i % seq == 0 {
                101
            } else {
                1000 + i * 7919 % 20000
            }
        })
        .map(|id| id % vocab)
        .collect();
    (ids, [LATENCY_BATCH, seq])
}

fn mismatch() -> Box<dyn std::error::Error> {
    "the model and the data are of different kinds".into()
}

/// Milliseconds with 3 decimals.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
