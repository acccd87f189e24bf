//! Which commit produced an experiment. It is recorded when the first run starts and
//! checked whenever the experiment continues, so that a report never mixes runs of
//! different code, even when it is resumed after commits that only touch documents.

use std::path::{Path, PathBuf};
use std::process::Command;

use opdlm_model::atomic::write_text_atomically;

use super::ExperimentError;

/// Paths whose content decides what an experiment computes.
const CODE_PATHS: [&str; 8] =
    ["Cargo.toml", "Cargo.lock", "model", "inference", "training", "harness", "xtask", "vendor"];

/// The commit whose code runs the experiment in `out`: `HEAD` on a first start (written
/// to `out/commit.txt`), the recorded commit when continuing. Refuses uncommitted code
/// changes (unless `allow_uncommitted`: then the commit is marked as such), and a `HEAD`
/// whose code differs from the recorded commit's.
pub fn experiment_commit(out: &Path, allow_uncommitted: bool) -> Result<String, ExperimentError> {
    let Some(head) = git(&["rev-parse", "HEAD"]) else {
        eprintln!("warning: not a git checkout; the report cannot name its commit");
        return Ok("unknown (not a git checkout)".into());
    };
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(CODE_PATHS);
    let dirty = git(&status).unwrap_or_default();
    let record = out.join("commit.txt");
    let io = |e: std::io::Error| ExperimentError::Io {
        path: record.display().to_string(),
        message: e.to_string(),
    };
    let write = |commit: &str| {
        std::fs::create_dir_all(out).map_err(io)?;
        write_text_atomically(&record, &format!("{commit}\n")).map_err(io)
    };
    if !dirty.is_empty() {
        if !allow_uncommitted {
            return Err(ExperimentError::Settings(format!(
                "uncommitted changes to the code:\n{dirty}\ncommit them first: the report names the commit that produced it"
            )));
        }
        // Recorded as such, so that a later run from a clean checkout cannot continue it.
        let commit = format!("{head} with uncommitted changes");
        write(&commit)?;
        return Ok(commit);
    }
    let Ok(recorded) = std::fs::read_to_string(&record) else {
        write(&head)?;
        return Ok(head);
    };
    let recorded = recorded.trim().to_string();
    let mut diff = vec!["diff", "--stat", recorded.as_str(), head.as_str(), "--"];
    diff.extend(CODE_PATHS);
    match git(&diff) {
        Some(changes) if changes.is_empty() => Ok(recorded),
        Some(changes) => Err(ExperimentError::Settings(format!(
            "the runs in {} come from commit {recorded}, and the code has changed since:\n{changes}\nuse a fresh --out, or check out {recorded}",
            out.display()
        ))),
        None => Err(ExperimentError::Settings(format!(
            "{} names commit {recorded}, which this checkout does not have",
            record.display()
        ))),
    }
}

/// The repository holding this crate.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `git <args>` in the repository: its trimmed stdout, or `None` when it fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(repository()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
