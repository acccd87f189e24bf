//! Which backends this build can train on. burn's `distributed` feature (this crate's
//! `ddp` feature, for CUDA DDP) makes `Autodiff<B>` an `AutodiffBackend` only for
//! `B: DistributedBackend`; code generic over the backend that trains says `B:
//! TrainBackend`, which means exactly what `Autodiff<B>` needs in either build.

use burn::prelude::Backend;

/// A backend that `Autodiff` trains on in this build (any backend without `ddp`).
#[cfg(not(feature = "ddp"))]
pub trait TrainBackend: Backend {}

#[cfg(not(feature = "ddp"))]
impl<B: Backend> TrainBackend for B {}

/// A backend that `Autodiff` trains on in this build (a `DistributedBackend` under `ddp`).
#[cfg(feature = "ddp")]
pub trait TrainBackend: Backend + burn::tensor::backend::distributed::DistributedBackend {}

#[cfg(feature = "ddp")]
impl<B: Backend + burn::tensor::backend::distributed::DistributedBackend> TrainBackend for B {}
