//! A training run in its own process, for tests that kill it or starve it of disk:
//!
//! ```text
//! opdlm-train-child train <teacher> <out> <steps> [--resume] [--pause-before-rename NAME]
//!                         [--file-size-limit BYTES]
//!                         [--nodes N --node-rank R --coordinator HOST:PORT
//!                          --node-address HOST:PORT [--collective-timeout SECONDS]]
//! opdlm-train-child export <model dir> <destination> [--file-size-limit BYTES]
//! ```
//! `train` runs `opdlm_tests::tiny_train_config`. `--pause-before-rename NAME` prints
//! `PAUSED <temporary file>` and sleeps forever once the checkpoint file `NAME` (e.g.
//! `optim-2.mpk`) is written but not yet renamed into place, so the test can kill the
//! process inside a checkpoint write. `--file-size-limit` caps the size of every file the
//! process writes (`RLIMIT_FSIZE`, writes past it fail with EFBIG as on a full disk, even
//! for root). `--nodes` makes the run one node of a multi-node run
//! (`opdlm_training::train_multi_node`). Errors go to stderr with exit status 2.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use opdlm_tests::{tiny_train_config, TestBackend};

static PAUSE_AT: OnceLock<String> = OnceLock::new();

fn pause_before_rename(tmp: &Path) {
    let name = tmp.file_name().unwrap().to_string_lossy();
    if PAUSE_AT.get().is_some_and(|target| name.strip_suffix(".tmp") == Some(target)) {
        println!("PAUSED {}", tmp.display());
        std::io::stdout().flush().unwrap();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(unix)]
fn limit_file_size(bytes: u64) {
    // SAFETY: plain libc calls with valid arguments.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit =
            libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit failed");
    }
}

#[cfg(not(unix))]
fn limit_file_size(_bytes: u64) {
    panic!("--file-size-limit needs a Unix system");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    if let Some(bytes) = flag("--file-size-limit") {
        limit_file_size(bytes.parse().expect("--file-size-limit BYTES"));
    }
    let device = Default::default();
    let result = match args[0].as_str() {
        "train" => {
            let mut config = tiny_train_config(
                PathBuf::from(&args[1]),
                PathBuf::from(&args[2]),
                args[3].parse().expect("steps"),
            );
            if let Some(name) = flag("--pause-before-rename") {
                PAUSE_AT.set(name).unwrap();
                config.faults.before_rename = Some(pause_before_rename);
            }
            let resume = args.iter().any(|a| a == "--resume");
            type A = burn::backend::Autodiff<TestBackend>;
            match flag("--nodes") {
                Some(nodes) => {
                    let nodes = opdlm_training::NodeSettings {
                        nodes: nodes.parse().expect("--nodes N"),
                        rank: flag("--node-rank").expect("--node-rank").parse().expect("a rank"),
                        coordinator: flag("--coordinator").expect("--coordinator HOST:PORT"),
                        address: flag("--node-address").expect("--node-address HOST:PORT"),
                        timeout: std::time::Duration::from_secs_f64(
                            flag("--collective-timeout")
                                .map_or(60.0, |s| s.parse().expect("seconds")),
                        ),
                    };
                    opdlm_training::train_multi_node::<A>(&config, &device, nodes, resume)
                }
                None => opdlm_training::train::<A>(&config, &device, resume),
            }
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
        "export" => opdlm_model::load_pretrained::<TestBackend>(Path::new(&args[1]), &device)
            .and_then(|m| {
                opdlm_model::load::save::save_hf_dir(&m.model, &m.tokenizer, Path::new(&args[2]))
            })
            .map_err(|e| e.to_string()),
        other => panic!("unknown command {other}"),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
