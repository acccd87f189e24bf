//! `cargo xtask <command>`: the opdlm command line.

mod backend;
mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Convert autoregressive LMs into block-diffusion LMs (OPDLM) and decode them fast")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text with block-diffusion (or autoregressive) decoding, streaming blocks as they commit.
    Infer(commands::infer::InferArgs),
    /// Convert an autoregressive model into a block-diffusion model by on-policy distillation (or a baseline objective).
    Train(Box<commands::train::TrainArgs>),
    /// Benchmark decoding speed: AR vs static vs dynamic block diffusion, one model, one run.
    Bench(commands::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Infer(args) => commands::infer::run(args),
        Command::Train(args) => commands::train::run(*args),
        Command::Bench(args) => commands::bench::run(args),
    }
}
