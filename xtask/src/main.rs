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
        Command::Infer(args) => on_pool(|| commands::infer::run(args)),
        // One device in one process: no thread waits on another's tensor work (see `on_pool`).
        Command::Train(args) if args.devices == 1 && args.nodes == 1 => {
            on_pool(|| commands::train::run(*args))
        }
        Command::Train(args) => commands::train::run(*args),
        Command::Bench(args) => on_pool(|| commands::bench::run(args)),
        Command::Pretrain(args) => commands::pretrain::run(args),
        Command::Eval(args) => on_pool(|| commands::eval::run(args)),
        Command::Experiment(experiment) => commands::experiment::run(experiment),
    }
}

/// Runs `work` on a thread of rayon's global pool, where burn-ndarray splits its products:
/// a product then wakes one other pool thread instead of handing itself to the pool and
/// waiting (measured on 2 threads: SmolLM2 Q8 AR decoding 36 → 40 tok/s, the SmolLM2 OPDLM
/// bench step 40.0 → 36.9 s). Only for work that never makes a pool thread wait on another
/// thread's tensor work: a multi-device or multi-node training run waits on its device
/// threads, whose products need the pool, so those run off it. With one pool thread there
/// is nothing to wake, and `work` runs where it is.
fn on_pool<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    // The pool's threads get the main thread's usual stack (rayon's default is 2 MiB);
    // an error means the pool already exists, which is as good.
    let _ = rayon::ThreadPoolBuilder::new().stack_size(8 << 20).build_global();
    if rayon::current_num_threads() < 2 {
        return work();
    }
    rayon::scope(|_| work())
}
