//! The PyTorch baseline: `scripts/bench_baseline.py` (transformers on CPU) run on the
//! same [`super::plan::Plan`] in its own process. Optional: without Python, torch or
//! transformers the bench says why and reports our figures alone.

use std::path::Path;
use std::process::Command;

use super::plan::Measured;

pub const SCRIPT: &str = "scripts/bench_baseline.py";

/// The Python interpreter: `$PYTHON`, else `python3`, else `python`.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| {
        if which("python3") {
            "python3".into()
        } else {
            "python".into()
        }
    })
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Why the baseline cannot run here, or `None` when it can (script present; torch,
/// transformers, gguf and accelerate importable). Also returns the versions it found.
pub fn availability(repo: &Path) -> Result<String, String> {
    let script = repo.join(SCRIPT);
    if !script.is_file() {
        return Err(format!("{} is missing", script.display()));
    }
    let probe = Command::new(python())
        .args(["-c", "import torch, transformers, gguf, accelerate; print(f'torch {torch.__version__}, transformers {transformers.__version__}')"])
        .output();
    match probe {
        Err(e) => Err(format!("cannot run {} ({e})", python())),
        Ok(out) if !out.status.success() => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("import failed").to_string();
            Err(format!("{} cannot import torch, transformers, gguf and accelerate ({last}); pip install torch --index-url https://download.pytorch.org/whl/cpu transformers gguf accelerate", python()))
        }
        Ok(out) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
    }
}

/// Runs the baseline on `plan` and reads what it measured.
pub fn run(repo: &Path, plan: &Path, out: &Path) -> Result<Measured, String> {
    let status = Command::new(python())
        .arg(repo.join(SCRIPT))
        .arg("--plan")
        .arg(plan)
        .arg("--out")
        .arg(out)
        .status()
        .map_err(|e| format!("cannot run {} ({e})", python()))?;
    if !status.success() {
        return Err(format!("{SCRIPT} failed ({status}); see its output above"));
    }
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", out.display()))
}
