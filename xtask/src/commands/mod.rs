pub mod bench;
pub mod infer;
pub mod train;
