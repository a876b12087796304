//! Sentence embeddings from a Hugging Face sentence-transformers BERT directory (e.g.
//! all-MiniLM-L6-v2): tokenizer, encoder, pooling and L2 normalisation in one place, so the CLI,
//! the tests and applications compute the same thing.

use crate::autograd::Graph;
use crate::data::tokenize::Tokenizer;
use crate::error::{Error, Result};
use crate::io::import_hf_bert_dir;
use crate::nn::{AttentionMask, Bert, l2_normalize, mean_pool};
use crate::tensor::Rng;
use std::path::Path;

/// How token states become one sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Mean over real (unpadded) tokens: sentence-transformers' default.
    #[default]
    Mean,
    /// The `[CLS]` token's state.
    Cls,
}

impl std::str::FromStr for Pooling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            other => Err(Error::invalid(
                "Pooling",
                format!("unknown pooling {other:?}: expected mean or cls"),
            )),
        }
    }
}

/// A BERT sentence encoder with its tokenizer.
pub struct SentenceEncoder {
    /// The model.
    pub bert: Bert,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Longest token sequence (longer texts are truncated), 128 by default as in the fixtures.
    pub max_len: usize,
    /// How token states are pooled.
    pub pooling: Pooling,
}

impl SentenceEncoder {
    /// Loads `config.json`, `model.safetensors` and the tokenizer of a Hugging Face BERT
    /// directory; every model tensor must be present and of the right shape.
    pub fn from_hf_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let import = import_hf_bert_dir(dir)?;
        // Initial values are overwritten by the checkpoint; the seed only fills the head, which
        // sentence embeddings do not use.
        let bert = Bert::new(&import.config, &mut Rng::new(0))?;
        let report = import.load_into(&bert, false)?;
        // A sentence-transformers checkpoint has no classification head (and may lack the
        // pooler); everything else must come from the file.
        if let Some(name) = report
            .missing
            .iter()
            .find(|n| !n.starts_with("classifier.") && !n.starts_with("pooler."))
        {
            return Err(Error::MissingTensor { name: name.clone() });
        }
        let tokenizer = if import.tokenizer.extension().is_some_and(|e| e == "json") {
            Tokenizer::from_file(&import.tokenizer)?
        } else {
            Tokenizer::from_vocab(&import.tokenizer, true)?
        };
        let max_len = 128.min(import.config.max_position_embeddings);
        Ok(SentenceEncoder {
            bert,
            tokenizer,
            max_len,
            pooling: Pooling::Mean,
        })
    }

    /// One L2-normalised embedding per text (`[texts.len()][hidden]`).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.tokenizer.encode_batch(texts, self.max_len)?;
        let g = Graph::inference();
        let mask = AttentionMask::from_lengths(&enc.lengths(), enc.seq)?;
        let types: Vec<usize> = enc.token_type_ids.iter().map(|&t| t as usize).collect();
        let hidden = self.bert.forward_hidden(
            &g,
            &enc.ids_usize(),
            [enc.batch, enc.seq],
            Some(&types),
            Some(&mask),
        )?;
        let pooled = match self.pooling {
            Pooling::Mean => mean_pool(&g, hidden, Some(&mask))?,
            Pooling::Cls => {
                let h = g.shape(hidden)?[2];
                g.reshape(g.slice(hidden, 1, 0, 1)?, &[enc.batch, h])?
            }
        };
        let v = g.value(l2_normalize(&g, pooled)?)?;
        let h = v.shape()[1];
        Ok(v.data().chunks_exact(h).map(<[f32]>::to_vec).collect())
    }

    /// [`SentenceEncoder::embed`] with the encoder on the GPU (fp16, [`crate::cuda::CudaEncoder`]
    /// built from [`SentenceEncoder::bert`]); pooling and normalisation on the host in f32.
    #[cfg(feature = "cuda")]
    pub fn embed_cuda(
        &self,
        dev: &crate::cuda::CudaDevice,
        gpu: &mut crate::cuda::CudaEncoder,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let cuda_err = |e: crate::cuda::CudaError| Error::invalid("embed_cuda", e.to_string());
        let enc = self.tokenizer.encode_batch(texts, self.max_len)?;
        let lens = enc.lengths();
        let shape = [enc.batch, enc.seq];
        match self.pooling {
            Pooling::Mean => gpu
                .embed_mean(dev, &enc.ids, shape, Some(&enc.token_type_ids), Some(&lens))
                .map_err(cuda_err),
            Pooling::Cls => {
                let h = gpu.hidden_size();
                let hid = gpu
                    .forward_f32(dev, &enc.ids, shape, Some(&enc.token_type_ids), Some(&lens))
                    .map_err(cuda_err)?;
                Ok((0..enc.batch)
                    .map(|b| {
                        let v = &hid[b * enc.seq * h..(b * enc.seq + 1) * h];
                        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                        v.iter().map(|a| a / n).collect()
                    })
                    .collect())
            }
        }
    }
}
