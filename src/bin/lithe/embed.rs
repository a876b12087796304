//! `lithe embed --model DIR [--int8] [--pooling mean|cls]`: sentences on stdin, one per line; one
//! JSON array (the L2-normalised embedding) per line on stdout. With `--int8` the imported model
//! is lowered into the int8 engine with dynamic (per-row) activation scales.

use clap::Args;
use lithe::embed::{Pooling, SentenceEncoder};
use lithe::int8::{Input, QuantPlan, ToInt8};
use std::io::{BufRead, Write};

#[derive(Args)]
pub struct EmbedArgs {
    /// A Hugging Face BERT directory (config.json, model.safetensors, tokenizer.json/vocab.txt).
    #[arg(long)]
    model: std::path::PathBuf,
    /// mean (over real tokens, the sentence-transformers default) or cls.
    #[arg(long, default_value = "mean")]
    pooling: Pooling,
    /// Longest token sequence; longer sentences are truncated.
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Sentences embedded per forward pass.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// cpu (fp32) or cuda (fp16 encoder on GPU 0; needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run the int8 engine (weights per channel, activations per row at run time; cpu only).
    #[arg(long)]
    int8: bool,
}

pub fn run(args: EmbedArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut encoder = SentenceEncoder::from_hf_dir(&args.model)?;
    encoder.pooling = args.pooling;
    encoder.max_len = args.max_len;
    let lines: Vec<String> = std::io::stdin().lock().lines().collect::<Result<_, _>>()?;
    let mut out = std::io::stdout().lock();
    if args.int8 {
        if args.device != "cpu" {
            return Err("--int8 runs on the cpu only".into());
        }
        return embed_int8(&encoder, &lines, args.batch, &mut out);
    }
    if args.device == "cuda" {
        return embed_cuda(&encoder, &lines, args.batch, &mut out);
    }
    if args.device != "cpu" {
        return Err(format!("--device {:?}: expected cpu or cuda", args.device).into());
    }
    for chunk in lines.chunks(args.batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for v in encoder.embed(&texts)? {
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        }
    }
    Ok(())
}

/// `--int8`: the encoder lowered with [`QuantPlan::dynamic`], one workspace for the largest batch.
fn embed_int8(
    encoder: &SentenceEncoder,
    lines: &[String],
    batch: usize,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let model = encoder.bert.to_int8(&QuantPlan::dynamic())?;
    let batch = batch.max(1);
    // Texts are cut to the position table (as the fp32 forward would reject longer ones).
    let max_len = encoder.max_len.min(model.max_seq());
    let mut ws = model.workspace(batch, max_len)?;
    let h = model.hidden_size();
    for chunk in lines.chunks(batch) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let enc = encoder.tokenizer.encode_batch(&texts, max_len)?;
        let lengths = enc.lengths();
        let input = Input::Tokens {
            ids: &enc.ids,
            batch: enc.batch,
            seq: enc.seq,
            lengths: Some(&lengths),
        };
        for v in model
            .embed(&mut ws, input, encoder.pooling)?
            .chunks_exact(h)
        {
            writeln!(out, "{}", serde_json::to_string(v)?)?;
        }
    }
    Ok(())
}

#[cfg(feature = "cuda")]
fn embed_cuda(
    encoder: &SentenceEncoder,
    lines: &[String],
    batch: usize,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let dev = lithe::cuda::CudaDevice::new(0)?;
    let mut gpu = lithe::cuda::CudaEncoder::from_bert(&dev, &encoder.bert)?;
    for chunk in lines.chunks(batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for v in encoder.embed_cuda(&dev, &mut gpu, &texts)? {
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        }
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn embed_cuda(
    _: &SentenceEncoder,
    _: &[String],
    _: usize,
    _: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    Err("--device cuda: this lithe was built without the `cuda` feature (cargo build --features cuda)".into())
}
