//! `--backend`: which Burn backend runs a command. Backends are cargo features; asking
//! for one that this binary was built without rebuilds with it (once) and re-runs.

use clap::ValueEnum;

// burn's `distributed` feature (under `ddp`) lets Autodiff train only on backends that
// implement `DistributedBackend`; burn-flex does not (NdArray does through its patch).
#[cfg(all(feature = "flex", feature = "ddp"))]
compile_error!(
    "features `flex` and `ddp` do not build together: burn-flex has no DistributedBackend"
);
use opdlm_training::TrainBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// CPU (burn-ndarray); the default build.
    Ndarray,
    /// CPU (burn-flex: gemm-based matmul, zero-copy views; feature `flex`).
    Flex,
    /// Vulkan / Metal / DirectX 12 through wgpu (feature `wgpu`).
    Wgpu,
    /// NVIDIA CUDA (feature `cuda`; needs only the driver at run time).
    Cuda,
}

impl BackendKind {
    fn feature(self) -> &'static str {
        match self {
            Self::Ndarray => "ndarray",
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }
}

/// A command body that runs on any backend.
pub trait BackendTask {
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<()>;
}

/// A command body that runs on several devices of any backend (data parallelism).
pub trait DevicesTask {
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> anyhow::Result<()>;
}

/// A single-device task as a task on a list of one device.
struct OnDefaultDevice<T>(T);

impl<T: BackendTask> DevicesTask for OnDefaultDevice<T> {
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> anyhow::Result<()> {
        let device = devices.into_iter().next().unwrap_or_default();
        self.0.run::<B>(device)
    }
}

/// Runs `task` on `kind`'s default device, or rebuilds this binary with the needed
/// feature and re-runs it.
pub fn dispatch(kind: BackendKind, task: impl BackendTask) -> anyhow::Result<()> {
    dispatch_devices(kind, 1, OnDefaultDevice(task))
}

/// Runs `task` on `count` devices of `kind`: the default device when `count` is 1;
/// otherwise GPUs 0..count (wgpu: discrete GPUs) or, on the CPU backends, `count` workers
/// sharing the one CPU (equivalent results, no speed-up: for checking a setup).
pub fn dispatch_devices(
    kind: BackendKind,
    count: usize,
    task: impl DevicesTask,
) -> anyhow::Result<()> {
    if matches!(kind, BackendKind::Wgpu | BackendKind::Cuda) {
        crate::allocator::return_freed_memory_eagerly();
    }
    match kind {
        #[cfg(feature = "ndarray")]
        BackendKind::Ndarray => task.run::<burn::backend::NdArray<f32>>(numbered(count, |_| {
            burn::backend::ndarray::NdArrayDevice::Cpu
        })),
        #[cfg(feature = "flex")]
        BackendKind::Flex => {
            task.run::<burn::backend::Flex>(numbered(count, |_| Default::default()))
        }
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => task.run::<burn::backend::Wgpu>(numbered(
            count,
            burn::backend::wgpu::WgpuDevice::DiscreteGpu,
        )),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            task.run::<burn::backend::Cuda>(numbered(count, burn::backend::cuda::CudaDevice::new))
        }
        #[allow(unreachable_patterns)]
        missing => rebuild_with(missing),
    }
}

/// The default device alone, or devices `nth(0..count)`.
#[allow(dead_code)] // unused when no backend feature is compiled in
fn numbered<D: Default>(count: usize, nth: impl Fn(usize) -> D) -> Vec<D> {
    match count {
        0 | 1 => vec![D::default()],
        _ => (0..count).map(nth).collect(),
    }
}

pub(crate) fn rebuild_with(kind: BackendKind) -> anyhow::Result<()> {
    rebuild_with_feature(kind.feature())
}

/// Rebuilds this binary with cargo feature `feature` (once) and re-runs the command.
pub(crate) fn rebuild_with_feature(feature: &str) -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command =
        format!("cargo run --release -p xtask --features {feature} -- {}", args.join(" "));
    if std::env::var_os("OPDLM_REBUILT").is_some() {
        anyhow::bail!("backend `{feature}` is not compiled into this binary even after a rebuild; run: {command}");
    }
    eprintln!("backend `{feature}` is not compiled in; rebuilding: {command}");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["run", "--release", "-p", "xtask", "--features", feature, "--"])
            .args(&args)
            .env("OPDLM_REBUILT", "1")
            .status()
            .map_err(|e| anyhow::anyhow!("could not start cargo ({e}); run yourself: {command}"))?;
    std::process::exit(status.code().unwrap_or(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(feature = "cuda", allow(dead_code))]
    struct MustNotRun;

    impl BackendTask for MustNotRun {
        fn run<B: TrainBackend>(self, _device: B::Device) -> anyhow::Result<()> {
            panic!("ran on a backend that is not compiled in");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_that_is_not_compiled_is_named_with_the_command_that_builds_it() {
        // As a binary that already rebuilt itself once sees it (a first run would rebuild).
        std::env::set_var("OPDLM_REBUILT", "1");
        let err = dispatch(BackendKind::Cuda, MustNotRun).unwrap_err().to_string();
        for part in
            ["backend `cuda` is not compiled", "cargo run --release -p xtask --features cuda"]
        {
            assert!(err.contains(part), "error does not mention {part:?}: {err}");
        }
    }
}
