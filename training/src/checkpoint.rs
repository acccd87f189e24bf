//! Reading back what a run's checkpoints hold.

use std::path::Path;

use burn::prelude::*;
use burn::record::{DefaultRecorder, Recorder};
use opdlm_model::Transformer;

use crate::config::TrainConfig;
use crate::step::DistillerRecord;
use crate::trainer::{initial_student, TrainError};

/// The student of checkpoint `epoch` of the run in `out`: the teacher named in
/// `<out>/config.json`, converted as training converts it, with the weights the Learner
/// saved for that epoch (`<out>/checkpoint/model-<epoch>.mpk`, the [`Distiller`]'s record,
/// whose only saved field is the student).
///
/// [`Distiller`]: crate::step::Distiller
pub fn load_checkpoint_student<B: Backend>(out: &Path, epoch: usize, device: &B::Device) -> Result<Transformer<B>, TrainError> {
    let config_path = out.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| TrainError::Io { path: config_path.display().to_string(), message: e.to_string() })?;
    let config: TrainConfig = serde_json::from_str(&text).map_err(|e| TrainError::Io { path: config_path.display().to_string(), message: format!("not a run's config: {e}") })?;
    let (student, _tokenizer) = initial_student::<B>(&config, device)?;
    let path = out.join("checkpoint").join(format!("model-{epoch}"));
    let record: DistillerRecord<B> = Recorder::<B>::load(&DefaultRecorder::new(), path.clone(), device)
        .map_err(|e| TrainError::Io { path: path.with_extension("mpk").display().to_string(), message: format!("cannot read checkpoint {epoch}: {e}") })?;
    Ok(student.load_record(record.student))
}
