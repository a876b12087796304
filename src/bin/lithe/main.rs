//! `lithe`: the command-line front end (benchmarks, demo, training, evaluation, int8
//! quantization, MiniViT compression, DynamicViT token dropping).
//!
//! Every job prints a human table at the end; with `--json` it prints the same rows as JSON lines
//! on stdout instead (progress and notes go to stderr).

mod bench;
mod bench_i8;
mod demo;
mod distill;
mod distill_text;
mod embed;
mod int8;
mod minivit;
mod ofa;
mod prune;
mod subject;
mod table;
mod tokendrop;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lithe",
    version,
    about = "Train, compress and run Transformers on hand-written kernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Kernel and model benchmarks.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Train and evaluate the pipeline's stages on a small real dataset; one row per stage.
    Demo(demo::DemoArgs),
    /// Distil a trained teacher into a smaller student (KD, TinyBERT, DeiT, sparse logits,
    /// BERT-of-Theseus).
    Distill(distill::DistillArgs),
    /// Sentence embeddings: sentences on stdin, one JSON array per line on stdout.
    Embed(embed::EmbedArgs),
    /// Train a model (ViT on images, BERT on text); saves weights, config and a training curve.
    Train {
        #[command(subcommand)]
        what: train::TrainCommand,
    },
    /// Test accuracy of a model saved by `lithe train` (or, with --int8, of an int8 model).
    Eval(train::EvalArgs),
    /// Lower a model saved by `lithe train` to int8 (calibrated or dynamic input scales).
    Quantize(int8::QuantizeArgs),
    /// Quantization-aware fine-tuning of a trained ViT, saved as an int8 model.
    Qat(int8::QatArgs),
    /// Compress a trained ViT into a MiniViT (shared weights, per-layer transforms, distilled).
    Minivit(minivit::MiniVitArgs),
    /// Structured pruning of heads and MLP neurons (or magnitude pruning), with the speedup.
    Prune(prune::PruneArgs),
    /// Train an elastic width/depth supernet (OFA, DynaBERT) and compare its sub-networks.
    Ofa(ofa::OfaArgs),
    /// DynamicViT: learn to drop tokens of a trained ViT; reports accuracy and throughput.
    Tokendrop(tokendrop::TokenDropArgs),
}

fn main() {
    // Before the model loads: set later, the top pad interacts badly with the heap already laid
    // out by loading (MiniLM bench: 252k page faults instead of 70k).
    lithe::alloc::tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench { what } => bench::run(what),
        Command::Demo(args) => demo::run(args),
        Command::Distill(args) => distill::run(args),
        Command::Prune(args) => prune::run(args),
        Command::Ofa(args) => ofa::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Train { what } => train::run(what),
        Command::Eval(args) => train::run_eval(args),
        Command::Quantize(args) => int8::run_quantize(args),
        Command::Qat(args) => int8::run_qat(args),
        Command::Minivit(args) => minivit::run(args),
        Command::Tokendrop(args) => tokendrop::run(args),
    };
    if let Err(e) = result {
        eprintln!("lithe: error: {e}");
        std::process::exit(1);
    }
}
