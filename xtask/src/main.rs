//! `cargo xtask <command>`: the opdlm command line.

mod allocator;
mod backend;
mod commands;
mod repo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Convert autoregressive LMs into block-diffusion LMs (OPDLM) and decode them fast"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text with block-diffusion (or autoregressive) decoding, streaming blocks as they commit.
    Infer(commands::infer::InferArgs),
    /// Convert an autoregressive model into a block-diffusion model by on-policy distillation (or a baseline objective).
    #[command(after_help = commands::train::defaults_help())]
    Train(Box<commands::train::TrainArgs>),
    /// Benchmark decoding speed: AR vs static vs dynamic block diffusion, one model, one run.
    Bench(commands::bench::BenchArgs),
    /// Train the built-in tiny teacher from scratch on the built-in tasks (autoregressive).
    Pretrain(commands::pretrain::PretrainArgs),
    /// Task accuracy under AR, static and dynamic decoding, tokens/step, tok/s, generative perplexity.
    Eval(commands::eval::EvalArgs),
    /// Experiments that reproduce the paper's claims at small scale.
    #[command(subcommand)]
    Experiment(commands::experiment::Experiment),
}

/// Errors are printed as their chain of causes ("loading X: X: no such file"), without a
/// backtrace: they describe bad input, not bugs.
fn main() -> std::process::ExitCode {
    allocator::keep_freed_memory();
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Infer(args) => commands::infer::run(args),
        Command::Train(args) => commands::train::run(*args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Pretrain(args) => commands::pretrain::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Experiment(experiment) => commands::experiment::run(experiment),
    }
}
