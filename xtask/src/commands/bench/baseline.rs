//! The baselines, each a Python script run on the same [`super::plan::Plan`] in its own
//! process: PyTorch (`scripts/bench_baseline.py`, transformers on CPU) and llama.cpp
//! (`scripts/bench_llamacpp.py`, llama-cpp-python on the same GGUF). Optional: without
//! Python or the packages the bench says why and reports the rest.

use std::path::Path;
use std::process::Command;

use super::plan::Measured;

/// A baseline: its script and the Python imports it needs.
pub struct Baseline {
    pub name: &'static str,
    pub script: &'static str,
    /// A Python statement that imports what the script needs and prints the versions.
    probe: &'static str,
    /// How to install what is missing.
    install: &'static str,
}

pub const PYTORCH: Baseline = Baseline {
    name: "PyTorch",
    script: "scripts/bench_baseline.py",
    probe: "import torch, transformers, gguf, accelerate; print(f'torch {torch.__version__}, transformers {transformers.__version__}')",
    install: "pip install torch --index-url https://download.pytorch.org/whl/cpu transformers gguf accelerate",
};

pub const LLAMA_CPP: Baseline = Baseline {
    name: "llama.cpp",
    script: "scripts/bench_llamacpp.py",
    probe: "import llama_cpp, numpy; print(f'llama-cpp-python {llama_cpp.__version__}')",
    install: "pip install llama-cpp-python==0.3.36 (builds llama.cpp from source, about 5 minutes on 2 cores)",
};

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

impl Baseline {
    /// The versions found, or why the baseline cannot run here (script missing, imports
    /// failing).
    pub fn availability(&self, repo: &Path) -> Result<String, String> {
        let script = repo.join(self.script);
        if !script.is_file() {
            return Err(format!("{} is missing", script.display()));
        }
        let probe = Command::new(python()).args(["-c", self.probe]).output();
        match probe {
            Err(e) => Err(format!("cannot run {} ({e})", python())),
            Ok(out) if !out.status.success() => {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err.lines().last().unwrap_or("import failed").to_string();
                Err(format!(
                    "{} cannot import what {} needs ({last}); {}",
                    python(),
                    self.script,
                    self.install
                ))
            }
            Ok(out) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        }
    }

    /// Runs the baseline on `plan` and reads what it measured.
    pub fn run(&self, repo: &Path, plan: &Path, out: &Path) -> Result<Measured, String> {
        let status = Command::new(python())
            .arg(repo.join(self.script))
            .arg("--plan")
            .arg(plan)
            .arg("--out")
            .arg(out)
            .status()
            .map_err(|e| format!("cannot run {} ({e})", python()))?;
        if !status.success() {
            return Err(format!("{} failed ({status}); see its output above", self.script));
        }
        let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", out.display()))
    }
}
