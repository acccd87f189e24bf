//! The student's side of a batch: examples packed into the BD3LM layout
//! `[prompt | x0 | x_t]`, in one forward pass per distinct prompt length or in one pass
//! for the whole batch ([`StudentPasses`]). Both give every real row exactly what it sees
//! alone; they differ in cost only.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::{Bool, Int, TensorData};
use opdlm_model::{padded_token_ids, Layout, Transformer};
use serde::{Deserialize, Serialize};

use super::{rows_logits, Example};

/// How the student's pass over a batch is split. The layout of a row depends on its
/// prompt's length (the noisy copy starts at the block boundary before the prompt's end),
/// so rows of different prompt lengths only share a pass when padded to the longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum StudentPasses {
    /// One forward and backward per distinct prompt length: no padding is computed, the
    /// better choice where arithmetic dominates (the CPU: 0.6–0.8× one pass's time on
    /// SmolLM2 with 8 chat prompts and the teacher's responses).
    #[default]
    PerPromptLength,
    /// One forward and backward for the whole batch, rows right-padded to the longest:
    /// the fewest kernel launches, the better choice where a pass costs its launches
    /// (GPUs: on an H200 a SmolLM2 step of 32 chat prompts spent 5–13 s in per-length
    /// passes, `reports/smollm2-conversion/gpu-pilot/`).
    One,
}

/// A batch packed for the student: its [`PackedGroup`]s (one forward pass each), and per
/// loss slot (in group order) its teacher row, label and loss coefficient.
pub(super) struct PackedBatch {
    pub(super) groups: Vec<PackedGroup>,
    /// Row of each slot's target among the teacher targets (which come in example order).
    pub(super) teacher_order: Vec<i64>,
    pub(super) labels: Vec<i64>,
    /// Each loss slot's share of the step's loss (see `Normalisation`).
    pub(super) coefficients: Vec<f32>,
}

/// Examples in one pass. Row `g` is `[prompt | x0 | x_t]` with `x0` and `x_t` each
/// right-padded to the group's longest response, the noisy copy starting at the block
/// boundary at or before its prompt's end, then padding to the group's longest row. The
/// padding is hidden from every real query, so each real row sees exactly what it sees
/// alone.
pub(super) struct PackedGroup {
    /// Prompt length of each sequence.
    prompt_lens: Vec<usize>,
    /// The longest `x0` of the group.
    x0_len: usize,
    /// Positions per row (the longest row's).
    len: usize,
    /// Index (among the packed examples) of each sequence's example.
    pub(super) members: Vec<usize>,
    pub(super) sequences: Vec<Vec<u32>>,
    /// Per sequence and position: padding, hidden from every query.
    pub(super) void: Vec<bool>,
    /// Per sequence and position: the RoPE position, and whether it is in the noisy copy.
    positions: Vec<i64>,
    noisy: Vec<bool>,
    /// Flattened `[sequence, position]` rows whose logits are the loss slots.
    rows: Vec<i64>,
}

impl PackedBatch {
    /// Packs `used` (examples with loss slots) into the groups `passes` asks for;
    /// `coefficient(example, slot)` is the slot's share of the step's loss.
    pub(super) fn new(
        used: &[&Example],
        block_size: usize,
        mask_id: u32,
        passes: StudentPasses,
        coefficient: impl Fn(&Example, usize) -> f32,
    ) -> Self {
        // Teacher rows come in example order; `offsets[i]` is example i's first row.
        let offsets: Vec<usize> = used
            .iter()
            .scan(0, |acc, e| {
                let start = *acc;
                *acc += e.loss_slots().len();
                Some(start)
            })
            .collect();
        let mut by_pass: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, e) in used.iter().enumerate() {
            let key = match passes {
                StudentPasses::PerPromptLength => e.prompt.len(),
                StudentPasses::One => 0,
            };
            by_pass.entry(key).or_default().push(i);
        }
        let mut batch =
            Self { groups: vec![], teacher_order: vec![], labels: vec![], coefficients: vec![] };
        for members in by_pass.into_values() {
            let group = PackedGroup::new(used, members, block_size, mask_id);
            for &i in &group.members {
                let e = used[i];
                for (k, j) in e.loss_slots().into_iter().enumerate() {
                    batch.teacher_order.push((offsets[i] + k) as i64);
                    batch.coefficients.push(coefficient(e, j));
                    batch.labels.push(e.x0[j] as i64);
                }
            }
            batch.groups.push(group);
        }
        batch
    }
}

impl PackedGroup {
    /// Lays out `used[members]` (see the type's documentation).
    fn new(used: &[&Example], members: Vec<usize>, block_size: usize, mask_id: u32) -> Self {
        let x0_len = members.iter().map(|&i| used[i].x0.len()).max().expect("non-empty");
        let row_len = |p: usize| 2 * (p + x0_len) - p / block_size * block_size;
        let len = members.iter().map(|&i| row_len(used[i].prompt.len())).max().expect("non-empty");
        let mut group = Self {
            prompt_lens: vec![],
            x0_len,
            len,
            members,
            sequences: vec![],
            void: vec![],
            positions: vec![],
            noisy: vec![],
            rows: vec![],
        };
        for g in 0..group.members.len() {
            let e = used[group.members[g]];
            let (p, r) = (e.prompt.len(), e.x0.len());
            let noisy_start = p / block_size * block_size;
            let clean_len = p + x0_len;
            let noisy_offset = clean_len + (p - noisy_start);
            let pad = std::iter::repeat_n(mask_id, x0_len - r);
            let mut tokens: Vec<u32> =
                e.prompt.iter().chain(&e.x0).copied().chain(pad.clone()).collect();
            tokens.extend_from_slice(&e.prompt[noisy_start..]);
            tokens.extend(e.noisy_response(mask_id).into_iter().chain(pad));
            let real_len = tokens.len();
            tokens.resize(len, mask_id);
            group.sequences.push(tokens);
            group
                .void
                .extend((0..len).map(|k| (p + r..clean_len).contains(&k) || k >= noisy_offset + r));
            let clean = 0..clean_len;
            let noisy = noisy_start..clean_len;
            group.positions.extend(clean.chain(noisy).map(|k| k as i64));
            group.positions.resize((g + 1) * len, 0);
            group.noisy.extend((0..len).map(|k| k >= clean_len && k < real_len));
            group
                .rows
                .extend(e.loss_slots().into_iter().map(|j| (g * len + noisy_offset + j) as i64));
            group.prompt_lens.push(p);
        }
        group
    }

    /// Positions per row.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// First position of sequence `g`'s noisy copy (it begins with the prompt's partial
    /// block).
    pub(super) fn noisy_from(&self, g: usize) -> usize {
        self.prompt_lens[g] + self.x0_len
    }

    /// The student's vocabulary logits at this group's loss slots (one forward pass).
    pub(super) fn student_logits<B: Backend>(
        &self,
        student: &Transformer<B>,
        block_size: usize,
        mask_id: u32,
        device: &B::Device,
    ) -> Tensor<B, 2> {
        let (n, len) = (self.sequences.len(), self.len);
        let void =
            Tensor::<B, 2, Bool>::from_data(TensorData::new(self.void.clone(), [n, len]), device);
        let positions = TensorData::new(self.positions.clone(), [n, len]);
        let noisy = TensorData::new(self.noisy.clone(), [n, len]);
        let layout = Layout::training_rows(
            Tensor::<B, 2, Int>::from_data(positions, device),
            Tensor::<B, 2, Bool>::from_data(noisy, device),
            block_size,
        )
        .with_padding(Tensor::zeros([n], device), void);
        let ids = padded_token_ids::<B>(&self.sequences, len, mask_id, device);
        let hidden = student.hidden(ids, &layout, None);
        rows_logits(student, hidden, &self.rows)
    }
}
