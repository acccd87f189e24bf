pub mod infer;
pub mod train;
