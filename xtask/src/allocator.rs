//! glibc malloc settings for tensor workloads.
//!
//! Every tensor op of the CPU backends allocates its output. By default glibc gives large
//! freed blocks back to the kernel, so the next op of the same size page-faults and zeroes
//! fresh pages: in an OPDLM training step on SmolLM2, page faults took 44 % of the time
//! (`perf`), most of it in the AdamW update. Keeping freed memory in the process for reuse
//! made that update 1.3–1.9× faster with the same peak RSS (README, "Backends").

/// Largest block served from the heap instead of its own mapping (glibc's maximum).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of the heap kept before it is returned to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 1 << 30;
/// Extra memory requested each time the heap grows.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: i32 = 256 << 20;

/// Applies the settings above (glibc only; elsewhere the allocator is left as it is).
/// A setting glibc refuses is skipped: it only costs speed.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (param, value) in [(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD), (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD), (libc::M_TOP_PAD, TOP_PAD)] {
        // SAFETY: mallopt only changes allocator parameters; called before any worker thread.
        unsafe {
            libc::mallopt(param, value);
        }
    }
}
