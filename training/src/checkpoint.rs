//! Crash-safe checkpoints, and reading them back.
//!
//! burn's file checkpointer hands every record (`model`, `optim`, `scheduler`, one file
//! each per Learner epoch) to a recorder that writes it in place: a kill mid-write leaves a
//! truncated file that looks like a checkpoint, and the last buffered write's error is
//! dropped. [`AtomicRecorder`] is the recorder given to it instead:
//! 1. each record is written to `<name>.mpk.tmp`, synced, renamed over `<name>.mpk`, and
//!    the directory synced;
//! 2. once an epoch's three records are in place, `manifest-<epoch>.json` (epoch, step,
//!    each file's size and SHA-256) is written the same way, last;
//! 3. only then are epochs older than the newest `keep` complete ones deleted.
//!
//! A checkpoint counts only if its manifest exists and its files match it
//! ([`latest_checkpoint`], [`verified_checkpoint`]), so a kill at any point leaves the
//! previous complete checkpoint as the one a resumed run starts from. A write error (a
//! full disk) is kept ([`AtomicRecorder::error`]) so the run can end with it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::prelude::*;
use burn::record::{FileRecorder, FullPrecisionSettings, Recorder, RecorderError};
use opdlm_model::atomic::write_file_atomically;
use opdlm_model::Transformer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::faults::BeforeRename;
use crate::step::DistillerRecord;
use crate::student::initial_student;

/// The records the Learner saves per epoch, by file name prefix.
const RECORDS: [&str; 3] = ["model", "optim", "scheduler"];
const EXTENSION: &str = "mpk";

/// What `manifest-<epoch>.json` holds: proof that the epoch's files are complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The Learner epoch (checkpoint number, from 1).
    pub epoch: usize,
    /// Training steps done when the checkpoint was taken.
    pub step: usize,
    /// The epoch's record files.
    pub files: Vec<ManifestFile>,
}

/// One record file as written: a later read must find exactly these bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name in the checkpoint directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
}

/// A burn [`FileRecorder`] writing named MessagePack records (burn's default format, so
/// `DefaultRecorder` reads them too) atomically, and manifests when it knows the run.
#[derive(Debug, Clone, Default)]
pub struct AtomicRecorder {
    journal: Option<Arc<Journal>>,
}

#[derive(Debug)]
struct Journal {
    steps_per_epoch: usize,
    total_steps: usize,
    keep: usize,
    before_rename: Option<BeforeRename>,
    /// Records written so far, per epoch, until its manifest is written.
    written: Mutex<BTreeMap<usize, Vec<ManifestFile>>>,
    error: Mutex<Option<String>>,
}

impl AtomicRecorder {
    /// A recorder for the checkpoints of `config`'s run: manifests carry the step, and
    /// `config.keep_checkpoints` complete epochs are kept (0: all).
    pub fn for_run(config: &TrainConfig) -> Self {
        Self {
            journal: Some(Arc::new(Journal {
                steps_per_epoch: config.checkpoint_every,
                total_steps: config.steps,
                keep: config.keep_checkpoints,
                before_rename: config.faults.before_rename,
                written: Mutex::default(),
                error: Mutex::default(),
            })),
        }
    }

    /// The first write error, if a checkpoint could not be written.
    pub fn error(&self) -> Option<String> {
        self.journal.as_ref().and_then(|j| j.error.lock().expect("not poisoned").clone())
    }

    fn save(
        &self,
        path: &Path,
        write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), String> {
        let before_rename = self.journal.as_ref().and_then(|j| j.before_rename);
        let file = write_hashed(path, before_rename, write)
            .map_err(|e| format!("cannot write checkpoint {}: {e}", path.display()))?;
        let Some(journal) = &self.journal else { return Ok(()) };
        let Some((_, epoch)) = record_name(&file.name) else { return Ok(()) };
        let dir = path.parent().unwrap_or(Path::new("."));
        let files = {
            let mut written = journal.written.lock().expect("not poisoned");
            let files = written.entry(epoch).or_default();
            files.retain(|f| f.name != file.name);
            files.push(file);
            if files.len() < RECORDS.len() {
                return Ok(());
            }
            let mut files = written.remove(&epoch).expect("just filled");
            files.sort_by(|a, b| a.name.cmp(&b.name));
            files
        };
        let manifest = Manifest {
            epoch,
            step: (epoch * journal.steps_per_epoch).min(journal.total_steps),
            files,
        };
        let path = dir.join(format!("manifest-{epoch}.json"));
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        write_file_atomically(&path, |w| w.write_all(&json), None)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        remove_old_checkpoints(dir, journal.keep)
            .map_err(|e| format!("cannot remove old checkpoints in {}: {e}", dir.display()))
    }
}

impl<B: Backend> Recorder<B> for AtomicRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, path: PathBuf) -> Result<(), RecorderError> {
        let path = path.with_extension(EXTENSION);
        self.save(&path, |w| {
            rmp_serde::encode::write_named(w, &item).map_err(std::io::Error::other)
        })
        .map_err(|message| {
            if let Some(journal) = &self.journal {
                journal.error.lock().expect("not poisoned").get_or_insert_with(|| message.clone());
            }
            RecorderError::Unknown(message)
        })
    }

    fn load_item<I: DeserializeOwned>(&self, path: &mut PathBuf) -> Result<I, RecorderError> {
        let path = path.with_extension(EXTENSION);
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                RecorderError::FileNotFound(format!("{}: {e}", path.display()))
            }
            _ => RecorderError::Unknown(format!("{}: {e}", path.display())),
        })?;
        rmp_serde::decode::from_read(BufReader::new(file))
            .map_err(|e| RecorderError::Unknown(format!("{}: {e}", path.display())))
    }
}

impl<B: Backend> FileRecorder<B> for AtomicRecorder {
    fn file_extension() -> &'static str {
        EXTENSION
    }
}

/// Writes a checkpoint file atomically ([`write_file_atomically`]) and returns its size
/// and SHA-256 for the manifest, hashed as it is written.
fn write_hashed(
    path: &Path,
    before_rename: Option<BeforeRename>,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<ManifestFile> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut digest = None;
    write_file_atomically(
        path,
        |inner| {
            let mut out = Hashing { inner, hasher: Sha256::new(), bytes: 0, failed: None };
            // An encoder reports a failed write as its own error: report the OS error instead.
            write(&mut out).map_err(|e| out.failed.take().unwrap_or(e))?;
            digest = Some((out.bytes, hex(&out.hasher.finalize())));
            Ok(())
        },
        before_rename.as_ref().map(|hook| hook as &dyn Fn(&Path)),
    )?;
    let (bytes, sha256) = digest.expect("written");
    Ok(ManifestFile { name, bytes, sha256 })
}

struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
    /// The first write error (e.g. "No space left on device").
    failed: Option<std::io::Error>,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|e| {
            self.failed.get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
        })?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `model-3.mpk` → `("model", 3)`; `None` for anything that is not a record file.
fn record_name(name: &str) -> Option<(&'static str, usize)> {
    let stem = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    let (kind, epoch) = stem.rsplit_once('-')?;
    Some((RECORDS.into_iter().find(|k| *k == kind)?, epoch.parse().ok()?))
}

/// The epoch a checkpoint-directory entry belongs to (records, manifests, temporaries).
fn entry_epoch(name: &str) -> Option<usize> {
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    record_name(name)
        .map(|(_, e)| e)
        .or_else(|| name.strip_prefix("manifest-")?.strip_suffix(".json")?.parse().ok())
}

fn manifest_epochs(dir: &Path) -> Vec<usize> {
    let mut epochs: Vec<usize> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name().to_str()?.strip_prefix("manifest-")?.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

/// Deletes every file of the epochs older than the newest `keep` manifests (manifests
/// first, so a kill midway leaves no manifest pointing at missing files).
fn remove_old_checkpoints(dir: &Path, keep: usize) -> std::io::Result<()> {
    let complete = manifest_epochs(dir);
    if keep == 0 || complete.len() <= keep {
        return Ok(());
    }
    let oldest_kept = complete[complete.len() - keep];
    remove_epochs(dir, |e| e < oldest_kept)
}

fn remove_epochs(dir: &Path, doomed: impl Fn(usize) -> bool) -> std::io::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| entry_epoch(n).is_some_and(&doomed))
        .collect();
    names.sort_by_key(|n| !n.starts_with("manifest-"));
    for name in names {
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(())
}

/// Before a run (re)starts at `epoch`: removes temporary files, and every file of later
/// epochs (written by a run that was killed or whose checkpoint failed verification).
pub fn discard_after(out: &Path, epoch: usize) -> std::io::Result<()> {
    let dir = out.join("checkpoint");
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            std::fs::remove_file(dir.join(&name))?;
        }
    }
    remove_epochs(&dir, |e| e > epoch)
}

/// A checkpoint file that is missing, unreadable or does not match its manifest (or
/// could not be written), naming the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct CheckpointError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl CheckpointError {
    fn new(path: &Path, problem: impl std::fmt::Display) -> Self {
        Self { path: path.to_path_buf(), problem: problem.to_string() }
    }
}

/// Checks epoch `epoch`'s files against its manifest: sizes, and with `hashes` their
/// SHA-256 too. The error says what does not match.
pub fn verify_checkpoint(
    out: &Path,
    epoch: usize,
    hashes: bool,
) -> Result<Manifest, CheckpointError> {
    let dir = out.join("checkpoint");
    let path = dir.join(format!("manifest-{epoch}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CheckpointError::new(&path, format!("{e} (checkpoint {epoch} is incomplete)"))
    })?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| CheckpointError::new(&path, e))?;
    for kind in RECORDS {
        let name = format!("{kind}-{epoch}.{EXTENSION}");
        let listed = manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| CheckpointError::new(&path, format!("does not list {name}")))?;
        let file = dir.join(&name);
        let bytes = std::fs::metadata(&file).map_err(|e| CheckpointError::new(&file, e))?.len();
        if bytes != listed.bytes {
            let problem = format!("{bytes} bytes, the manifest says {}", listed.bytes);
            return Err(CheckpointError::new(&file, problem));
        }
        if hashes {
            let sha256 = sha256_file(&file).map_err(|e| CheckpointError::new(&file, e))?;
            if sha256 != listed.sha256 {
                let problem =
                    format!("SHA-256 {sha256} differs from the manifest's {}", listed.sha256);
                return Err(CheckpointError::new(&file, problem));
            }
        }
    }
    Ok(manifest)
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// The last epoch with a manifest whose files have the listed sizes (0 if none).
pub fn latest_checkpoint(out: &Path) -> usize {
    manifest_epochs(&out.join("checkpoint"))
        .into_iter()
        .rev()
        .find(|&e| verify_checkpoint(out, e, false).is_ok())
        .unwrap_or(0)
}

/// The last epoch whose files match their manifest, hashes included (0 if none); each
/// newer checkpoint that fails is reported on stderr and skipped.
pub fn verified_checkpoint(out: &Path) -> usize {
    for epoch in manifest_epochs(&out.join("checkpoint")).into_iter().rev() {
        match verify_checkpoint(out, epoch, true) {
            Ok(_) => return epoch,
            Err(e) => eprintln!("warning: skipping checkpoint {epoch}: {e}"),
        }
    }
    0
}

/// The student of checkpoint `epoch` of the run in `out`: the teacher named in
/// `<out>/config.json`, converted as training converts it, with the weights the Learner
/// saved for that epoch (`<out>/checkpoint/model-<epoch>.mpk`, the [`Distiller`]'s record,
/// whose only saved field is the student). The checkpoint must match its manifest.
///
/// [`Distiller`]: crate::step::Distiller
pub fn load_checkpoint_student<B: Backend>(
    out: &Path,
    epoch: usize,
    device: &B::Device,
) -> Result<Transformer<B>, TrainError> {
    let config_path = out.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
    let config: TrainConfig = serde_json::from_str(&text)
        .map_err(|e| TrainError::io(&config_path, format!("not a run's config: {e}")))?;
    verify_checkpoint(out, epoch, true)?;
    let student = initial_student::<B>(&config, device)?.model;
    let path = out.join("checkpoint").join(format!("model-{epoch}"));
    let record: DistillerRecord<B> =
        Recorder::<B>::load(&AtomicRecorder::default(), path.clone(), device).map_err(|e| {
            let problem = format!("cannot read checkpoint {epoch}: {e}");
            CheckpointError::new(&path.with_extension(EXTENSION), problem)
        })?;
    Ok(student.load_record(record.student))
}

/// A [`CheckpointingStrategy`](burn::train::checkpoint::CheckpointingStrategy) that saves
/// every epoch and never deletes: [`AtomicRecorder`] deletes old epochs, and only after a
/// newer one is complete (burn's `KeepLastNCheckpoints` deletes whether or not the new
/// save succeeds).
pub struct SaveEveryEpoch;

impl burn::train::checkpoint::CheckpointingStrategy for SaveEveryEpoch {
    fn checkpointing(
        &mut self,
        _epoch: usize,
        _store: &burn::train::metric::store::EventStoreClient,
    ) -> Vec<burn::train::checkpoint::CheckpointingAction> {
        vec![burn::train::checkpoint::CheckpointingAction::Save]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("opdlm-ckpt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("checkpoint")).unwrap();
        dir
    }

    fn recorder(keep: usize) -> AtomicRecorder {
        AtomicRecorder::for_run(&TrainConfig {
            checkpoint_every: 5,
            steps: 12,
            keep_checkpoints: keep,
            ..TrainConfig::default()
        })
    }

    fn save_epoch(recorder: &AtomicRecorder, out: &Path, epoch: usize, kinds: &[&str]) {
        for kind in kinds {
            let item = vec![epoch as u32; 100];
            Recorder::<burn::backend::NdArray>::save_item(
                recorder,
                item,
                out.join("checkpoint").join(format!("{kind}-{epoch}")),
            )
            .unwrap();
        }
    }

    #[test]
    fn a_manifest_is_written_once_all_records_of_an_epoch_are_in_place() {
        let out = run_dir("manifest");
        let recorder = recorder(0);
        save_epoch(&recorder, &out, 1, &RECORDS);
        save_epoch(&recorder, &out, 2, &["model", "optim"]);
        assert_eq!(latest_checkpoint(&out), 1, "epoch 2 lacks its scheduler record");
        save_epoch(&recorder, &out, 2, &["scheduler"]);
        assert_eq!(latest_checkpoint(&out), 2);
        let manifest = verify_checkpoint(&out, 2, true).unwrap();
        assert_eq!((manifest.epoch, manifest.step, manifest.files.len()), (2, 10, 3));
        save_epoch(&recorder, &out, 3, &RECORDS);
        assert_eq!(
            verify_checkpoint(&out, 3, false).unwrap().step,
            12,
            "the last epoch is shorter"
        );
        let loaded: Vec<u32> = Recorder::<burn::backend::NdArray>::load_item(
            &recorder,
            &mut out.join("checkpoint").join("optim-2"),
        )
        .unwrap();
        assert_eq!(loaded, vec![2; 100]);
        let names: Vec<String> = std::fs::read_dir(out.join("checkpoint"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn corrupt_or_truncated_files_are_not_trusted() {
        let out = run_dir("corrupt");
        let recorder = recorder(0);
        save_epoch(&recorder, &out, 1, &RECORDS);
        save_epoch(&recorder, &out, 2, &RECORDS);
        let file = out.join("checkpoint").join("optim-2.mpk");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(latest_checkpoint(&out), 2, "sizes still match");
        assert_eq!(verified_checkpoint(&out), 1, "the hash does not");
        assert!(verify_checkpoint(&out, 2, true).unwrap_err().to_string().contains("optim-2.mpk"));
        std::fs::write(&file, &bytes[..10]).unwrap();
        assert_eq!(latest_checkpoint(&out), 1);
        discard_after(&out, 1).unwrap();
        assert!(!file.exists() && !out.join("checkpoint").join("manifest-2.json").exists());
    }

    #[test]
    fn old_epochs_are_deleted_only_after_a_newer_one_is_complete() {
        let out = run_dir("keep");
        let recorder = recorder(2);
        for epoch in 1..=3 {
            save_epoch(&recorder, &out, epoch, &RECORDS);
        }
        save_epoch(&recorder, &out, 4, &["model", "optim"]);
        let dir = out.join("checkpoint");
        assert!(!dir.join("model-1.mpk").exists() && !dir.join("manifest-1.json").exists());
        assert!(dir.join("manifest-2.json").exists(), "epoch 4 is not complete yet: 2 and 3 stay");
        save_epoch(&recorder, &out, 4, &["scheduler"]);
        assert!(!dir.join("manifest-2.json").exists() && !dir.join("optim-2.mpk").exists());
        assert_eq!(manifest_epochs(&dir), vec![3, 4]);
    }

    #[test]
    fn a_failed_write_leaves_no_file_and_is_remembered() {
        let out = run_dir("fail");
        let recorder = recorder(0);
        let missing = out.join("no-such-dir").join("model-1");
        assert!(Recorder::<burn::backend::NdArray>::save_item(&recorder, 1u32, missing).is_err());
        let error = recorder.error().unwrap();
        assert!(error.contains("model-1.mpk"), "{error}");
        assert!(!out.join("no-such-dir").exists());
    }
}
