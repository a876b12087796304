//! lithe's inference engines as [`Traced`] engines over [`Sample`]s.

use lithe_check::{Stage, TraceError, Traced};

use crate::Graph;
use crate::error::{Error, Result};
use crate::int8::{Input, Int8Model, Workspace};
use crate::nn::{AttentionMask, Bert, Vit};
use crate::tensor::Tensor;

/// One batch of input, owned, as an engine's forward takes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    /// `[B, C, S, S]` pixels, row-major.
    Images {
        /// `batch * C * S * S` pixels.
        pixels: Vec<f32>,
        /// Number of images B.
        batch: usize,
    },
    /// `[B, T]` token ids.
    Tokens {
        /// `batch * seq` ids.
        ids: Vec<u32>,
        /// Number of sequences B.
        batch: usize,
        /// Padded length T.
        seq: usize,
        /// Real tokens per sequence (the rest is padding); None when nothing is padded.
        lengths: Option<Vec<usize>>,
    },
}

impl Sample {
    /// `batch` images, `pixels.len() / batch` pixels each.
    pub fn images(pixels: Vec<f32>, batch: usize) -> Self {
        Sample::Images { pixels, batch }
    }

    /// `batch` sequences of `seq` ids each, `lengths` real tokens each (None: all real).
    pub fn tokens(ids: Vec<u32>, batch: usize, seq: usize, lengths: Option<Vec<usize>>) -> Self {
        Sample::Tokens {
            ids,
            batch,
            seq,
            lengths,
        }
    }

    /// The int8 engine's view of the sample.
    pub fn input(&self) -> Input<'_> {
        match self {
            Sample::Images { pixels, batch } => Input::Images {
                pixels,
                batch: *batch,
            },
            Sample::Tokens {
                ids,
                batch,
                seq,
                lengths,
            } => Input::Tokens {
                ids,
                batch: *batch,
                seq: *seq,
                lengths: lengths.as_deref(),
            },
        }
    }
}

#[cfg(feature = "cuda")]
fn wrong_sample(engine: &str, want: &str) -> TraceError {
    Box::new(Error::invalid(
        "check::Traced::trace",
        format!("the {engine} engine runs {want}; this sample is not"),
    ))
}

/// An f32 model on lithe's autograd (in inference mode): the reference the fast engines are
/// held to.
#[derive(Clone, Copy, Debug)]
pub enum F32Engine<'m> {
    /// A text encoder with its classifier.
    Bert(&'m Bert),
    /// An image Transformer with its head.
    Vit(&'m Vit),
}

impl<'m> F32Engine<'m> {
    /// The reference engine for `bert`.
    pub fn bert(bert: &'m Bert) -> Self {
        F32Engine::Bert(bert)
    }

    /// The reference engine for `vit`.
    pub fn vit(vit: &'m Vit) -> Self {
        F32Engine::Vit(vit)
    }

    fn trace_stages(&self, sample: &Sample) -> Result<Vec<Stage>> {
        let g = Graph::inference();
        let (x, traces, logits) = match (*self, sample) {
            (F32Engine::Vit(vit), Sample::Images { pixels, batch }) => {
                let c = &vit.config;
                let shape = [*batch, c.num_channels, c.image_size, c.image_size];
                let images = g.constant(Tensor::from_vec(pixels.clone(), &shape)?);
                let (x, traces) = vit.forward_traced(&g, images, None)?;
                (x, traces, vit.forward_logits(&g, images)?)
            }
            (
                F32Engine::Bert(bert),
                Sample::Tokens {
                    ids,
                    batch,
                    seq,
                    lengths,
                },
            ) => {
                let ids: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
                let shape = [*batch, *seq];
                let mask = lengths
                    .as_deref()
                    .map(|l| AttentionMask::from_lengths(l, *seq))
                    .transpose()?;
                let (x, traces) =
                    bert.forward_traced(&g, &ids, shape, None, mask.as_ref(), None)?;
                let logits = bert.forward_logits(&g, &ids, shape, None, mask.as_ref())?;
                (x, traces, logits)
            }
            (F32Engine::Vit(_), _) => {
                return Err(Error::invalid(
                    "check::F32Engine",
                    "a Vit runs images; this sample is tokens",
                ));
            }
            (F32Engine::Bert(_), _) => {
                return Err(Error::invalid(
                    "check::F32Engine",
                    "a Bert runs tokens; this sample is images",
                ));
            }
        };
        let stage = |name: String, v| -> Result<Stage> {
            let t = g.value(v)?;
            Ok(Stage::new(name, t.data().to_vec()).shaped(t.shape().to_vec()))
        };
        let mut stages = vec![stage("embeddings".into(), x)?];
        for (i, t) in traces.iter().enumerate() {
            stages.push(stage(format!("layer.{i}"), t.output)?);
        }
        stages.push(stage("logits".into(), logits)?);
        Ok(stages)
    }
}

impl Traced<Sample> for F32Engine<'_> {
    fn label(&self) -> String {
        "f32".into()
    }

    fn trace(&mut self, sample: &Sample) -> std::result::Result<Vec<Stage>, TraceError> {
        Ok(self.trace_stages(sample)?)
    }
}

/// An [`Int8Model`] with its workspace.
#[derive(Debug)]
pub struct Int8Engine<'m> {
    model: &'m Int8Model,
    ws: Workspace,
}

impl<'m> Int8Engine<'m> {
    /// The engine for `model`, with a workspace for `max_batch` samples of up to `max_seq`
    /// tokens (see [`Int8Model::workspace`]).
    pub fn new(model: &'m Int8Model, max_batch: usize, max_seq: usize) -> Result<Self> {
        let ws = model.workspace(max_batch, max_seq)?;
        Ok(Int8Engine { model, ws })
    }
}

impl Traced<Sample> for Int8Engine<'_> {
    fn label(&self) -> String {
        "int8".into()
    }

    fn trace(&mut self, sample: &Sample) -> std::result::Result<Vec<Stage>, TraceError> {
        let stages = self.model.trace(&mut self.ws, sample.input())?;
        Ok(stages
            .into_iter()
            .map(|(name, shape, values)| Stage::new(name, values).shaped(shape))
            .collect())
    }
}

/// A [`crate::cuda::CudaEncoder`] (fp16 BERT encoder on a GPU). It traces the last layer's
/// hidden states only, as `layer.{L-1}`: compare it with [`F32Engine::bert`] and the report
/// lists the other stages as not compared.
#[cfg(feature = "cuda")]
pub struct CudaEngine<'d> {
    device: &'d crate::cuda::CudaDevice,
    encoder: crate::cuda::CudaEncoder,
    last_layer: String,
}

#[cfg(feature = "cuda")]
impl<'d> CudaEngine<'d> {
    /// Uploads `bert`'s encoder to `device` (see [`crate::cuda::CudaEncoder::from_bert`]).
    pub fn new(
        device: &'d crate::cuda::CudaDevice,
        bert: &Bert,
    ) -> std::result::Result<Self, crate::cuda::CudaError> {
        let encoder = crate::cuda::CudaEncoder::from_bert(device, bert)?;
        let layers = bert.config.num_hidden_layers;
        Ok(CudaEngine {
            device,
            encoder,
            last_layer: format!("layer.{}", layers.saturating_sub(1)),
        })
    }
}

#[cfg(feature = "cuda")]
impl Traced<Sample> for CudaEngine<'_> {
    fn label(&self) -> String {
        "cuda-fp16".into()
    }

    fn trace(&mut self, sample: &Sample) -> std::result::Result<Vec<Stage>, TraceError> {
        let Sample::Tokens {
            ids,
            batch,
            seq,
            lengths,
        } = sample
        else {
            return Err(wrong_sample("cuda-fp16", "tokens"));
        };
        let hidden =
            self.encoder
                .forward_f32(self.device, ids, [*batch, *seq], None, lengths.as_deref())?;
        let shape = vec![*batch, *seq, hidden.len() / (batch * seq).max(1)];
        Ok(vec![
            Stage::new(self.last_layer.clone(), hidden).shaped(shape),
        ])
    }
}
