//! Crash-safe writes: a file or a directory appears complete or not at all, so a run killed
//! mid-write (or a full disk) never leaves a truncated checkpoint, export or report that
//! looks finished. Every writer of the workspace goes through these two functions.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `path` through `<path>.tmp`: `write` fills it, then it is synced, `before_rename`
/// (a test hook) sees it, it is renamed over `path`, and the directory is synced. On error
/// the temporary file is removed and `path` is untouched.
pub fn write_file_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    before_rename: Option<&dyn Fn(&Path)>,
) -> std::io::Result<()> {
    let tmp = sibling_file(path, "tmp");
    let written = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(hook) = before_rename {
        hook(&tmp);
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// [`write_file_atomically`] for text.
pub fn write_text_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    write_file_atomically(path, |w| w.write_all(text.as_bytes()), None)
}

/// Builds the directory `dir` in a hidden sibling staging directory with `fill`, syncs
/// every file in it, then swaps it in place of `dir` (the previous `dir` is removed only
/// afterwards). On error the staging directory is removed and `dir` is untouched.
/// `io_error` names the path of a failed file-system step in the caller's error type.
pub fn replace_dir_atomically<E>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
    io_error: impl Fn(&Path, std::io::Error) -> E,
) -> Result<(), E> {
    let staging = sibling_dir(dir, "staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io_error(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| io_error(&staging, e))?;
    let filled =
        fill(&staging).and_then(|()| sync_files(&staging).map_err(|e| io_error(&staging, e)));
    if let Err(e) = filled {
        // A full disk: leave nothing half-written behind (the previous `dir` is untouched).
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let previous = sibling_dir(dir, "previous");
    if dir.exists() {
        std::fs::rename(dir, &previous).map_err(|e| io_error(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| io_error(dir, e))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| io_error(&previous, e))?;
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    sync_dir(parent).map_err(|e| io_error(parent, e))
}

/// `<path>.<tag>` next to `path`.
fn sibling_file(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{name}.{tag}"))
}

/// `.<name>.<tag>` next to `dir` (hidden, so it is never mistaken for the real thing).
fn sibling_dir(dir: &Path, tag: &str) -> PathBuf {
    let name =
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dir".into());
    dir.with_file_name(format!(".{name}.{tag}"))
}

fn sync_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            File::open(&path)?.sync_all()?;
        }
    }
    Ok(())
}

/// Makes a rename durable: syncs the directory entry (a no-op where directories cannot be
/// opened, as on Windows).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all().or_else(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                Ok(())
            } else {
                Err(e)
            }
        }),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("opdlm-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_file_write_leaves_the_old_file_and_no_temporary() {
        let dir = scratch("file");
        let path = dir.join("report.md");
        write_text_atomically(&path, "old").unwrap();
        let failed = write_file_atomically(
            &path,
            |w| {
                w.write_all(b"half")?;
                Err(std::io::Error::other("disk full"))
            },
            None,
        );
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "temporary file left behind");
    }

    #[test]
    fn a_failed_directory_build_leaves_the_old_directory() {
        let dir = scratch("dir").join("model");
        let io = |_: &Path, e: std::io::Error| e;
        replace_dir_atomically(&dir, |d| std::fs::write(d.join("a"), "1"), io).unwrap();
        let failed = replace_dir_atomically(
            &dir,
            |d| {
                std::fs::write(d.join("a"), "2")?;
                Err(std::io::Error::other("disk full"))
            },
            io,
        );
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let names: Vec<_> = std::fs::read_dir(dir.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "staging directory left behind");
    }
}
