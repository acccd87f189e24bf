//! Crash safety of training, with the run in a child process (`opdlm-train-child`):
//! killed (SIGKILL) mid-run, killed inside a checkpoint write, and out of space while
//! writing a checkpoint, a run resumes from its last complete checkpoint and logs exactly
//! the losses of the uninterrupted run; a half-written checkpoint is never trusted, and a
//! failed write loses no earlier checkpoint. Exporting a model onto a full disk fails
//! cleanly and leaves the previous export in place.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use opdlm_tests::{logged_losses, tiny_model_dir};
use opdlm_training::{latest_checkpoint, verify_checkpoint};

const CHILD: &str = env!("CARGO_BIN_EXE_opdlm-train-child");
/// Checkpoints every 4 steps: epochs 1 (steps 0–3), 2 (4–7), 3 (8–9).
const STEPS: &str = "10";

fn child(args: &[&str], log: &Path) -> Command {
    let mut command = Command::new(CHILD);
    command.args(args).stdout(Stdio::piped()).stderr(std::fs::File::create(log).unwrap());
    command
}

fn finish(mut command: Command, log: &Path) -> (Output, String) {
    let output = command.output().unwrap();
    (output, std::fs::read_to_string(log).unwrap())
}

fn run_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opdlm-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn checkpoint_files(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn kill(mut running: Child) {
    running.kill().unwrap(); // SIGKILL on Unix
    running.wait().unwrap();
}

#[test]
fn killed_and_out_of_disk_runs_resume_to_the_uninterrupted_losses() {
    let started = Instant::now();
    let teacher = tiny_model_dir("tiny-llama", "crash");
    let teacher = teacher.to_str().unwrap();
    let reference = run_dir("reference");
    let log = reference.with_extension("log");
    let (output, stderr) =
        finish(child(&["train", teacher, reference.to_str().unwrap(), STEPS], &log), &log);
    assert!(output.status.success(), "reference run failed:\n{stderr}");
    let uninterrupted = logged_losses(&reference);
    assert_eq!(uninterrupted.len(), 10);

    let out = run_dir("run");
    let out_arg = out.to_str().unwrap();
    let log = out.with_extension("log");

    // 1. SIGKILL mid-run: during epoch 2, once checkpoint 1 is complete.
    let running = child(&["train", teacher, out_arg, STEPS], &log).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !(out.join("checkpoint").join("manifest-1.json").exists()
        && logged_losses(&out).len() >= 5)
    {
        assert!(
            Instant::now() < deadline,
            "the run never reached step 5:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(running);
    assert_eq!(latest_checkpoint(&out), 1, "killed in epoch 2: {:?}", checkpoint_files(&out));

    // 2. SIGKILL inside a checkpoint write: optim-2.mpk is written and synced under its
    //    temporary name but not renamed, and there is no manifest for epoch 2 yet.
    let mut running = child(
        &["train", teacher, out_arg, STEPS, "--resume", "--pause-before-rename", "optim-2.mpk"],
        &log,
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(running.stdout.take().unwrap()).lines();
    let paused = lines.find_map(|l| l.unwrap().strip_prefix("PAUSED ").map(PathBuf::from));
    let tmp = paused.unwrap_or_else(|| {
        panic!(
            "the resumed run never wrote optim-2.mpk:\n{}",
            std::fs::read_to_string(&log).unwrap()
        )
    });
    assert!(
        tmp.ends_with("checkpoint/optim-2.mpk.tmp") && std::fs::metadata(&tmp).unwrap().len() > 0
    );
    assert!(!out.join("checkpoint").join("manifest-2.json").exists());
    assert_eq!(latest_checkpoint(&out), 1, "epoch 2 is incomplete: {:?}", checkpoint_files(&out));
    kill(running);
    assert_eq!(latest_checkpoint(&out), 1);

    // 3. Out of space: every write past half a model checkpoint fails (EFBIG, as ENOSPC
    //    would). The run stops with an error naming the file; checkpoint 1 survives intact.
    let model_1 = std::fs::metadata(out.join("checkpoint").join("model-1.mpk")).unwrap().len();
    let limit = (model_1 / 2).to_string();
    let (output, stderr) = finish(
        child(&["train", teacher, out_arg, STEPS, "--resume", "--file-size-limit", &limit], &log),
        &log,
    );
    assert_eq!(output.status.code(), Some(2), "the out-of-space run must fail cleanly:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for part in [
        "cannot write checkpoint",
        "-2.mpk",
        "File too large",
        "Checkpoint 1",
        "intact",
        "--resume",
    ] {
        assert!(stderr.contains(part), "error does not mention {part:?}:\n{stderr}");
    }
    assert_eq!(latest_checkpoint(&out), 1);
    verify_checkpoint(&out, 1, true).unwrap();
    assert!(
        !checkpoint_files(&out).iter().any(|n| n.ends_with(".tmp")),
        "{:?}",
        checkpoint_files(&out)
    );
    assert!(!out.join("model").exists(), "a failed run exports nothing");

    // 4. Resume to the end: exactly the uninterrupted losses, no temporary files, only
    //    the newest `keep_checkpoints` = 2 complete checkpoints.
    let (output, stderr) =
        finish(child(&["train", teacher, out_arg, STEPS, "--resume"], &log), &log);
    assert!(output.status.success(), "final resume failed:\n{stderr}");
    assert_eq!(logged_losses(&out), uninterrupted, "the resumed run diverged");
    let files = checkpoint_files(&out);
    let expected = [
        "manifest-2.json",
        "manifest-3.json",
        "model-2.mpk",
        "model-3.mpk",
        "optim-2.mpk",
        "optim-3.mpk",
        "scheduler-2.mpk",
        "scheduler-3.mpk",
    ];
    assert_eq!(files, expected);
    for epoch in [2, 3] {
        verify_checkpoint(&out, epoch, true).unwrap();
    }
    assert!(out.join("model").join("model.safetensors").exists());
    eprintln!("kill/resume test: {:.1} s", started.elapsed().as_secs_f64());
}

#[cfg(unix)]
#[test]
fn exporting_onto_a_full_disk_fails_cleanly_and_keeps_the_previous_export() {
    let source = tiny_model_dir("tiny-llama", "export-full");
    let destination = run_dir("export");
    let log = destination.with_extension("log");
    let args = ["export", source.to_str().unwrap(), destination.to_str().unwrap()];
    let (output, stderr) = finish(child(&args, &log), &log);
    assert!(output.status.success(), "{stderr}");
    let weights = destination.join("model.safetensors");
    let before = std::fs::read(&weights).unwrap();

    let limit = (before.len() / 2).to_string();
    let (output, stderr) =
        finish(child(&[&args[..], &["--file-size-limit", &limit]].concat(), &log), &log);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for part in ["model.safetensors", "File too large"] {
        assert!(stderr.contains(part), "error does not mention {part:?}:\n{stderr}");
    }
    assert_eq!(std::fs::read(&weights).unwrap(), before, "the previous export was damaged");
    let leftovers: Vec<_> = std::fs::read_dir(destination.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.starts_with(&format!(".{}", destination.file_name().unwrap().to_str().unwrap()))
        })
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}
