//! `opdlm-harness`: everything around the method that shows whether it works. The
//! built-in tasks and their tiny teacher (pretrained here, from scratch), evaluation of any
//! model under AR / static / dynamic decoding, the built-in conversion's teacher-vs-student
//! report, and the data-efficiency experiment with its plot. The method itself lives in
//! `opdlm-training`; this crate only calls it.

#![warn(missing_docs)]

pub mod agreement;
pub mod builtin;
pub mod chat_prompts;
pub mod eval;
pub mod experiment;
pub mod plot;
pub mod pretrain;
pub mod tasks;
