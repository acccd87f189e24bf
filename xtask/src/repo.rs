//! Where the repository's scripts and cached models are: the repository root, and the
//! SmolLM2 GGUF that `scripts/fetch-smollm2.sh` fetches (sha256-pinned) on first use.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The SmolLM2 GGUF's place in the cache, relative to the repository root.
pub const SMOLLM2_GGUF: &str = ".cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The repository root (where `scripts/` lives): the working directory or one of its parents.
pub fn repo_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|dir| dir.join("scripts").is_dir() && dir.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

/// `path` when it exists; otherwise the SmolLM2 GGUF, fetched with
/// `scripts/fetch-smollm2.sh` when `path` is its default place.
pub fn smollm2_gguf(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let repo = repo_root();
    if path != Path::new(SMOLLM2_GGUF) && path != repo.join(SMOLLM2_GGUF) {
        bail!("{}: no such model file", path.display());
    }
    let script = repo.join("scripts/fetch-smollm2.sh");
    eprintln!("{} is missing; fetching it with {}", path.display(), script.display());
    let status =
        Command::new("bash").arg(&script).status().context("running scripts/fetch-smollm2.sh")?;
    let fetched = repo.join(SMOLLM2_GGUF);
    if !status.success() || !fetched.is_file() {
        bail!("{} is missing and {} could not fetch it", path.display(), script.display());
    }
    Ok(fetched)
}
