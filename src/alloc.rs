//! Allocator tuning for the tensor workload.
//!
//! Every op allocates its output (`Vec<f32>`), and a forward or backward pass frees and
//! re-allocates buffers of the same few sizes thousands of times. With glibc's defaults, blocks
//! above the (dynamic) mmap threshold, and the top of the heap above the trim threshold, go back
//! to the kernel on free, so the next allocation of the same size page-faults its memory in
//! again (measured: 15-30% of a MiniLM forward was page faults, `clear_page` and `memset`).
//!
//! [`tune_allocator`] raises both thresholds and the heap's top pad once per process so freed
//! tensor memory stays in the heap and is reused. It costs resident memory: up to the
//! thresholds' worth of freed memory (and 64 MiB per arena) is kept instead of returned. [`crate::Graph`] calls it on construction; set the environment
//! variable `LITHE_MALLOC_TUNE=0` to leave the allocator alone. Call it yourself at program
//! start, before loading a model, for the full effect: applied after a large load, the top pad
//! costs more page faults than it saves (MiniLM bench: 252k faults when first called from the
//! first `Graph`, 70k when called at start, 260k with glibc's defaults); the `lithe` CLI does so. It does nothing on non-glibc
//! targets.

use std::sync::Once;

/// Blocks up to this size come from the heap (glibc caps the value at 32 MiB on 64-bit).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of the heap up to this size is kept rather than trimmed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 512 << 20;
/// Extra memory requested, and kept, whenever a heap grows or shrinks. This is what keeps freed
/// memory in the per-thread arenas (a graph built on any thread other than `main`): their heaps
/// give memory back past `top_pad` regardless of the trim threshold. Measured on the ViT training
/// probe (run on a test thread): 120k page faults with glibc's defaults, 221k with the two
/// thresholds alone, 35k with this as well.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: i32 = 64 << 20;

/// Applies the thresholds above (once per process; later calls do nothing).
pub fn tune_allocator() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("LITHE_MALLOC_TUNE").is_ok_and(|v| v == "0") {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's tuning parameters; it is called before or between
        // allocations (glibc takes its own lock) and has no memory-safety preconditions.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
        }
    });
}
