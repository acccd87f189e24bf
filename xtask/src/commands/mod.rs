pub mod bench;
pub mod eval;
pub mod experiment;
pub mod infer;
pub mod pretrain;
pub mod train;
