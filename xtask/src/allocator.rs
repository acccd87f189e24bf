//! glibc malloc settings for tensor workloads.
//!
//! Every tensor op of the CPU backends allocates its output. By default glibc gives large
//! freed blocks back to the kernel, so the next op of the same size page-faults and zeroes
//! fresh pages: in an OPDLM training step on SmolLM2, page faults took 44 % of the time
//! (`perf`), most of it in the AdamW update. Keeping freed memory in the process for reuse
//! made that step 1.2× faster with the same peak RSS (README, "Backends").

/// Applies the settings below (glibc only; elsewhere the allocator is left as it is).
/// A setting glibc refuses is skipped: it only costs speed.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let settings = [
            // Largest block served from the heap instead of its own mapping (glibc's maximum).
            (libc::M_MMAP_THRESHOLD, 32 << 20),
            // Free memory at the top of the heap kept before it goes back to the kernel.
            (libc::M_TRIM_THRESHOLD, 1 << 30),
            // Extra memory requested each time the heap grows.
            (libc::M_TOP_PAD, 256 << 20),
            // One arena for every thread. The thread arenas are heaps of at most 64 MiB
            // whose freed memory went back to the kernel: an OPDLM step on SmolLM2 runs
            // on a pool thread, and with them it took 2.4 M page faults against 1.6 M
            // (the `bench` worker, `perf stat`). Two pool threads rarely contend for it.
            (libc::M_ARENA_MAX, 1),
        ];
        set(&settings);
    }
}

/// Undoes [`keep_freed_memory`] (glibc's defaults again) for a GPU backend, whose tensors
/// live on the device: its large host allocations are loading buffers, such as the f32
/// weights on their way to the GPU, and kept for reuse they held 2.4 GB of host memory
/// for nothing through a Qwen3-0.6B bench on an H200 (`reports/gpu-check`).
pub fn return_freed_memory_eagerly() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    set(&[
        (libc::M_MMAP_THRESHOLD, 128 << 10),
        (libc::M_TRIM_THRESHOLD, 128 << 10),
        (libc::M_TOP_PAD, 0),
    ]);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(settings: &[(libc::c_int, libc::c_int)]) {
    for &(param, value) in settings {
        // SAFETY: mallopt only changes allocator parameters.
        unsafe {
            libc::mallopt(param, value);
        }
    }
}

/// Gives the heap's free memory back to the kernel once: after quantizing a model, whose
/// f32 weights [`keep_freed_memory`] would otherwise keep resident for reuse.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
