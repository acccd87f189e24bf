//! Results an experiment has already computed, kept on disk with the settings they were
//! computed under, so that re-running an experiment (after an interruption, or to redo
//! only its report) recomputes nothing whose settings did not change.

use std::path::Path;

use opdlm_model::atomic::write_text_atomically;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ExperimentError;

/// The value stored in `path` under `key`; when there is none (or it was computed under
/// another key), `compute`s it and stores it there atomically.
pub(crate) fn cached<T: Serialize + DeserializeOwned>(
    path: &Path,
    key: &str,
    compute: impl FnOnce() -> Result<T, ExperimentError>,
) -> Result<T, ExperimentError> {
    let stored: Option<(String, T)> =
        std::fs::read_to_string(path).ok().and_then(|text| serde_json::from_str(&text).ok());
    if let Some((_, value)) = stored.filter(|(stored_key, _)| stored_key == key) {
        return Ok(value);
    }
    let value = compute()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, e))?;
    }
    let text = serde_json::to_string(&(key, &value)).expect("results serialise");
    write_text_atomically(path, &text).map_err(|e| ExperimentError::io(path, e))?;
    Ok(value)
}
