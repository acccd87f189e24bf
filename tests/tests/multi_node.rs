//! Multi-node training on burn-collective, as separate processes on loopback
//! (`opdlm-train-child train … --nodes 2`):
//! - two nodes reproduce the single-process run: the same losses and final weights up to
//!   summation order (stated bound), and resume from their common checkpoint to the same
//!   losses;
//! - a node killed mid-run ends the other within its collective timeout, with an error
//!   that names the dead rank and says how to resume; a node whose peer never joins does
//!   the same.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opdlm_model::load_model;
use opdlm_tests::{logged_losses, max_weight_diff, tiny_model_dir, TestBackend};

type B = TestBackend;

const CHILD: &str = env!("CARGO_BIN_EXE_opdlm-train-child");

/// A fresh directory for one process's run.
fn run_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opdlm-nodes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A port nothing listens on now (the OS's choice for an ephemeral bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The coordinator's port and each rank's data-service port.
struct Ports {
    coordinator: u16,
    nodes: [u16; 2],
}

impl Ports {
    fn new() -> Self {
        Self { coordinator: free_port(), nodes: [free_port(), free_port()] }
    }
}

/// Rank `rank` of a 2-node run of `steps` steps, its stderr in `<out>.log`.
fn node(
    teacher: &Path,
    out: &Path,
    steps: &str,
    rank: usize,
    ports: &Ports,
    extra: &[&str],
) -> Child {
    let coordinator = format!("127.0.0.1:{}", ports.coordinator);
    let address = format!("127.0.0.1:{}", ports.nodes[rank]);
    let rank = rank.to_string();
    let log = std::fs::File::create(out.with_extension("log")).unwrap();
    Command::new(CHILD)
        .args(["train", teacher.to_str().unwrap(), out.to_str().unwrap(), steps])
        .args(["--nodes", "2", "--node-rank", &rank, "--coordinator", &coordinator])
        .args(["--node-address", &address])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn stderr_of(out: &Path) -> String {
    std::fs::read_to_string(out.with_extension("log")).unwrap_or_default()
}

#[test]
fn two_nodes_on_loopback_train_as_one_process_and_resume() {
    let teacher = tiny_model_dir("tiny-llama", "nodes");
    let single = run_dir("single");
    let status = Command::new(CHILD)
        .args(["train", teacher.to_str().unwrap(), single.to_str().unwrap(), "8"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let (rank0, rank1) = (run_dir("rank0"), run_dir("rank1"));
    let ports = Ports::new();
    let mut nodes =
        [node(&teacher, &rank0, "8", 0, &ports, &[]), node(&teacher, &rank1, "8", 1, &ports, &[])];
    for (rank, child) in nodes.iter_mut().enumerate() {
        let out = [&rank0, &rank1][rank];
        assert!(child.wait().unwrap().success(), "rank {rank}: {}", stderr_of(out));
    }

    let (expected, got) = (logged_losses(&single), logged_losses(&rank0));
    assert_eq!((expected.len(), got.len()), (8, 8));
    let loss_diff = expected.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    // Rank 1 keeps its own log and checkpoints, with the same (global) figures.
    assert_eq!(logged_losses(&rank1.join("rank-1")), got, "the nodes logged different losses");
    let device = Default::default();
    let weight_diff = max_weight_diff(
        &load_model::<B>(&single.join("model"), &device).unwrap(),
        &load_model::<B>(&rank0.join("model"), &device).unwrap(),
    );
    println!(
        "1 process vs 2 nodes, 8 steps: max |Δloss| {loss_diff:e}, max |Δweight| {weight_diff:e}"
    );
    assert!(loss_diff < 1e-5, "losses differ by {loss_diff}: {expected:?} vs {got:?}");
    assert!(weight_diff < 1e-5, "weights differ by {weight_diff}");
    assert!(!rank1.join("rank-1/model").exists(), "only rank 0 exports");

    // Rank 1 lost its second checkpoint: both resume from the first, the newest they share.
    for kind in ["model", "optim", "scheduler"] {
        let _ = std::fs::remove_file(rank1.join(format!("rank-1/checkpoint/{kind}-2.mpk")));
    }
    let ports = Ports::new();
    let mut nodes = [
        node(&teacher, &rank0, "8", 0, &ports, &["--resume"]),
        node(&teacher, &rank1, "8", 1, &ports, &["--resume"]),
    ];
    for (rank, child) in nodes.iter_mut().enumerate() {
        let out = [&rank0, &rank1][rank];
        assert!(child.wait().unwrap().success(), "rank {rank}: {}", stderr_of(out));
    }
    assert_eq!(logged_losses(&rank0), got, "the resumed nodes diverged");
}

#[test]
fn a_killed_node_stops_the_other_within_its_timeout_naming_it() {
    let teacher = tiny_model_dir("tiny-llama", "nodes-kill");
    let (rank0, rank1) = (run_dir("kill0"), run_dir("kill1"));
    let ports = Ports::new();
    let timeout = ["--collective-timeout", "4"];
    let mut survivor = node(&teacher, &rank0, "400", 0, &ports, &timeout);
    let mut victim = node(&teacher, &rank1, "400", 1, &ports, &timeout);
    let started = Instant::now();
    while logged_losses(&rank0).len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress: {}", stderr_of(&rank0));
        std::thread::sleep(Duration::from_millis(50));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = Instant::now();
    let status = survivor.wait().unwrap();
    let waited = killed.elapsed();
    let error = stderr_of(&rank0);
    assert_eq!(status.code(), Some(opdlm_training::EXIT_PEER_LOST), "{error}");
    assert!(waited < Duration::from_secs(15), "rank 0 took {waited:?} to give up");
    for part in ["node rank 0 of 2", "rank 1 died or never joined", "--resume"] {
        assert!(error.contains(part), "error does not mention {part:?}: {error}");
    }
}

#[test]
fn a_node_whose_peer_never_joins_gives_up_naming_it() {
    let teacher = tiny_model_dir("tiny-llama", "nodes-alone");
    let alone = run_dir("alone");
    let ports = Ports::new();
    let started = Instant::now();
    let mut lonely = node(&teacher, &alone, "4", 0, &ports, &["--collective-timeout", "2"]);
    let status = lonely.wait().unwrap();
    let error = stderr_of(&alone);
    assert_eq!(status.code(), Some(opdlm_training::EXIT_PEER_LOST), "{error}");
    assert!(started.elapsed() < Duration::from_secs(15));
    for part in ["joining the run", "rank 1 died or never joined"] {
        assert!(error.contains(part), "error does not mention {part:?}: {error}");
    }
}
