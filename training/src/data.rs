//! Training prompts and the step loader that feeds the Learner.
//!
//! A batch is a pure function of (seed, global step): which prompts it holds and the
//! seed of its rollouts. Resuming therefore needs no data-loader state beyond the step.
//!
//! Data-parallel runs split every batch by rows: burn-train's `split_dataloader` slices
//! the loader once per device, and device `d` of `D` keeps rows `⌊d·b/D⌋..⌊(d+1)·b/D⌋` of
//! each batch of `b` prompts, so shares differ by at most one row when `b` does not
//! divide. A row's randomness depends on its index in the global batch only, so which
//! device runs it does not matter.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::prelude::Backend;
use opdlm_inference::prompts::{read_prompt_lines, PromptRecord};
use opdlm_model::TextTokenizer;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::config::TrainConfig;
use crate::loss::ResponseSource;

/// A prompt and, for dataset-driven objectives, its reference response.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptItem {
    /// The prompt's token ids (chat template already applied when asked).
    pub prompt: Vec<u32>,
    /// The prompt file's `answer`, tokenized, followed by the first stop token.
    pub response: Option<Vec<u32>>,
}

/// One training step's input.
#[derive(Debug, Clone)]
pub struct PromptBatch {
    /// Global step (0-based): drives the curriculum and the rollout seed.
    pub step: usize,
    /// The step's prompts (this device's share of them in a data-parallel run).
    pub items: Vec<PromptItem>,
    /// Index of `items[0]` in the step's global batch: row `i` is global row
    /// `first_row + i`, and its random numbers are drawn from that index.
    pub first_row: usize,
    /// Seed of the step's sampling and state selection.
    pub seed: u64,
}

/// A prompt file that cannot be trained on, with the file and line at fault.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file could not be read or is not JSONL prompts.
    #[error(transparent)]
    File(#[from] opdlm_inference::prompts::PromptFileError),
    /// One line cannot be used.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The prompt file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Reads and tokenizes `config.prompts`. With `config.chat`, prompts are rendered by the
/// chat template; `answer`s become reference responses (followed by the first stop
/// token). Every example must fit the teacher's `context`: prompt + `rollout_len_max`
/// generated tokens, or prompt + answer for the dataset objective (which needs answers).
/// Errors name the file and line.
pub fn load_prompts(
    config: &TrainConfig,
    tokenizer: &TextTokenizer,
    stop: Option<u32>,
    context: usize,
) -> Result<Vec<PromptItem>, PromptError> {
    let path = &config.prompts;
    let from_dataset = config.objective.response_source() == ResponseSource::Dataset;
    let records = read_prompt_lines(path)?;
    records
        .iter()
        .map(|(line, record)| {
            let at = |message: String| PromptError::Line {
                path: path.display().to_string(),
                line: *line,
                message,
            };
            let prompt = prompt_ids(config.chat, record, tokenizer).map_err(at)?;
            let response = match &record.answer {
                Some(answer) => {
                    let mut ids = tokenizer.encode(answer).map_err(|e| at(e.to_string()))?;
                    ids.extend(stop);
                    Some(ids)
                }
                None if from_dataset => {
                    return Err(at("no `answer`: this objective trains on the dataset's answers".into()))
                }
                None => None,
            };
            let (what, extra) = match &response {
                Some(r) if from_dataset => ("its answer", r.len()),
                _ => ("rollout_len_max", config.rollout_len_max),
            };
            if prompt.len() + extra > context {
                return Err(at(format!(
                    "the prompt has {} tokens; with {what} ({extra} tokens) that is more than the teacher's context of {context}",
                    prompt.len()
                )));
            }
            Ok(PromptItem { prompt, response })
        })
        .collect()
}

/// The prompt of one record as token ids (rendered by the chat template with `chat`).
fn prompt_ids(
    chat: bool,
    record: &PromptRecord,
    tokenizer: &TextTokenizer,
) -> Result<Vec<u32>, String> {
    let text = match (chat, &record.prompt) {
        (true, _) => tokenizer.render_chat(&record.messages(), true).map_err(|e| e.to_string())?,
        (false, Some(p)) => p.clone(),
        (false, None) => return Err("`messages` needs the chat template: train with --chat".into()),
    };
    let prompt = tokenizer.encode(&text).map_err(|e| e.to_string())?;
    if prompt.is_empty() {
        return Err("the prompt encodes to no tokens".into());
    }
    Ok(prompt)
}

/// Yields `steps_per_epoch` batches per Learner epoch; the epoch counter starts at the
/// resumed epoch so that the data order continues exactly.
#[derive(Clone)]
pub struct StepLoader {
    items: Arc<Vec<PromptItem>>,
    batch_size: usize,
    steps_per_epoch: usize,
    total_steps: usize,
    seed: u64,
    /// Devices the batches are split over (1: not split).
    devices: usize,
    /// The rows of every batch this loader yields: all of them, or one device's share.
    rows: Range<usize>,
    epochs_started: Arc<AtomicUsize>,
}

impl StepLoader {
    pub fn new(
        items: Vec<PromptItem>,
        batch_size: usize,
        steps_per_epoch: usize,
        total_steps: usize,
        seed: u64,
        resume_epoch: usize,
    ) -> Self {
        Self {
            items: Arc::new(items),
            batch_size,
            steps_per_epoch,
            total_steps,
            seed,
            devices: 1,
            rows: 0..batch_size,
            epochs_started: Arc::new(AtomicUsize::new(resume_epoch)),
        }
    }

    /// A loader whose batches will be split over `devices` (at most `batch_size`, which
    /// the configuration checks): see [`StepLoader::share`].
    pub fn split_over(self, devices: usize) -> Self {
        Self { devices: devices.clamp(1, self.batch_size.max(1)), ..self }
    }

    /// A loader of node `rank`'s share of every batch in a run of `nodes` processes (one
    /// device each), cut as devices' shares are.
    pub fn node_share(self, rank: usize, nodes: usize) -> Self {
        match nodes {
            0 | 1 => self,
            _ => Self { rows: share_rows(rank, nodes, self.batch_size), ..self },
        }
    }

    /// The share of the device that `split_dataloader` hands items `start..` of an epoch:
    /// it cuts the `N` items into `D` slices of `⌊N/D⌋` (the last takes the rest), so the
    /// device's index is `start / ⌊N/D⌋`. The share counts its own epochs, because every
    /// device's loader starts each epoch once.
    fn share(&self, start: usize) -> Self {
        let per_device = (self.steps_per_epoch * self.batch_size / self.devices).max(1);
        let device = (start / per_device).min(self.devices - 1);
        let epoch = self.epochs_started.load(Ordering::SeqCst);
        Self {
            rows: share_rows(device, self.devices, self.batch_size),
            epochs_started: Arc::new(AtomicUsize::new(epoch)),
            ..self.clone()
        }
    }

    /// The batch of global step `step`: prompts taken in a seeded shuffled order, one
    /// fresh permutation per pass over the data.
    pub fn batch(&self, step: usize) -> PromptBatch {
        let n = self.items.len();
        let items = self
            .rows
            .clone()
            .map(|i| {
                let index = step * self.batch_size + i;
                let (pass, offset) = (index / n, index % n);
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut StdRng::seed_from_u64(
                    self.seed ^ (pass as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ));
                self.items[order[offset]].clone()
            })
            .collect();
        PromptBatch {
            step,
            items,
            first_row: self.rows.start,
            seed: self.seed.wrapping_add((step as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)),
        }
    }
}

/// Rows `⌊i·b/n⌋..⌊(i+1)·b/n⌋`: share `i` of `n` of a batch of `b` rows. The shares cover
/// every row once, in order, and differ in size by at most one row.
fn share_rows(index: usize, count: usize, batch_size: usize) -> Range<usize> {
    let row = |i: usize| i * batch_size / count;
    row(index)..row(index + 1)
}

struct StepIter {
    loader: StepLoader,
    next: usize,
    end: usize,
    start: usize,
}

impl Iterator for StepIter {
    type Item = PromptBatch;
    fn next(&mut self) -> Option<PromptBatch> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.loader.batch(self.next - 1)
        })
    }
}

impl DataLoaderIterator<PromptBatch> for StepIter {
    fn progress(&self) -> Progress {
        Progress::new(self.next - self.start, self.end - self.start)
    }
}

impl<B: Backend> DataLoader<B, PromptBatch> for StepLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<PromptBatch> + 'a> {
        let epoch = self.epochs_started.fetch_add(1, Ordering::SeqCst);
        let start = (epoch * self.steps_per_epoch).min(self.total_steps);
        let end = ((epoch + 1) * self.steps_per_epoch).min(self.total_steps);
        Box::new(StepIter { loader: self.clone(), next: start, end, start })
    }

    fn num_items(&self) -> usize {
        self.steps_per_epoch * self.batch_size
    }

    fn to_device(&self, _device: &B::Device) -> Arc<dyn DataLoader<B, PromptBatch>> {
        Arc::new(self.clone())
    }

    fn slice(&self, start: usize, _end: usize) -> Arc<dyn DataLoader<B, PromptBatch>> {
        Arc::new(self.share(start))
    }
}

/// A loader with no batches: the Learner requires a validation loader.
#[derive(Clone)]
pub struct NoValidation;

impl<B: Backend> DataLoader<B, PromptBatch> for NoValidation {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<PromptBatch> + 'a> {
        Box::new(StepIter {
            loader: StepLoader::new(vec![], 1, 0, 0, 0, 0),
            next: 0,
            end: 0,
            start: 0,
        })
    }
    fn num_items(&self) -> usize {
        0
    }
    fn to_device(&self, _device: &B::Device) -> Arc<dyn DataLoader<B, PromptBatch>> {
        Arc::new(self.clone())
    }
    fn slice(&self, _start: usize, _end: usize) -> Arc<dyn DataLoader<B, PromptBatch>> {
        Arc::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<PromptItem> {
        (0..n).map(|i| PromptItem { prompt: vec![i as u32], response: None }).collect()
    }

    #[test]
    fn batches_depend_only_on_the_step_and_cover_each_pass() {
        let a = StepLoader::new(items(5), 2, 3, 10, 7, 0);
        let b = StepLoader::new(items(5), 2, 3, 10, 7, 2);
        assert_eq!(a.batch(4).items, b.batch(4).items);
        assert_eq!(a.batch(4).seed, b.batch(4).seed);
        // Steps 0..2 hold indices 0..4 and 4..5 of pass 0: every prompt once in the pass.
        let mut seen: Vec<u32> =
            (0..2).flat_map(|s| a.batch(s).items).map(|i| i.prompt[0]).collect();
        seen.push(a.batch(2).items[0].prompt[0]);
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }

    /// burn-train's own splitter, as a data-parallel run uses it: every row of every batch
    /// goes to exactly one device, in order, with its global index.
    #[test]
    fn split_loaders_share_each_batch_by_rows() {
        use burn::backend::NdArray;
        for (batch_size, devices) in (1..=5).map(|d| (5, d)).chain([(7, 4), (8, 3), (2, 2)]) {
            let loader = StepLoader::new(items(7), batch_size, 3, 6, 11, 1);
            let shares = burn::data::dataloader::split::split_dataloader::<NdArray, _>(
                Arc::new(loader.clone().split_over(devices)),
                &vec![Default::default(); devices],
            );
            let per_device: Vec<Vec<PromptBatch>> =
                shares.iter().map(|share| share.iter().collect()).collect();
            for (k, step) in (3..6).enumerate() {
                let whole = loader.batch(step);
                let mut rows = vec![];
                for batches in &per_device {
                    let part = &batches[k];
                    assert_eq!((part.step, part.seed), (step, whole.seed));
                    assert_eq!(part.first_row, rows.len(), "{devices} devices");
                    rows.extend(part.items.clone());
                }
                assert_eq!(rows, whole.items, "{devices} devices, step {step}");
            }
            let sizes: Vec<usize> = per_device.iter().map(|b| b[0].items.len()).collect();
            let spread = sizes.iter().max().unwrap() - sizes.iter().min().unwrap();
            assert!(spread <= 1, "{devices} devices: uneven shares {sizes:?}");
        }
    }

    #[test]
    fn resumed_loader_continues_at_its_epoch() {
        let loader = StepLoader::new(items(4), 1, 3, 8, 0, 2);
        let steps: Vec<usize> =
            DataLoader::<burn::backend::NdArray, _>::iter(&loader).map(|b| b.step).collect();
        assert_eq!(steps, vec![6, 7]);
    }
}
