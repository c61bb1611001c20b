//! The host allocator's policy for training and evaluation. libtorch takes CPU
//! tensors from glibc's `malloc`, which by default maps every block of more
//! than 128 KiB–32 MiB fresh from the kernel and returns it on `free`: a
//! step's activations (16 MiB for one conv layer at batch 128) are then
//! page-faulted in and zeroed by the kernel every step — 26,000 faults a
//! step for seed 002's conv VAE. Freed blocks up to 32 MiB are kept for the
//! next step instead, as PyTorch's CUDA caching allocator keeps device
//! memory: the process holds its peak, and the faults fall tenfold
//! (docs/benchmarks.md). `data prepare` keeps glibc's default: a streaming
//! import must give memory back to stay within a memory limit (with freed
//! blocks kept, the MPI3D import outgrew a 300 MB cgroup).

/// Blocks below this come from the heap and are reused (glibc's maximum).
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the heap's top is given back only beyond this.
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Sets the policy; called once, as `train` and `eval` start.
pub fn keep_freed_memory() {
    // SAFETY: mallopt only changes glibc's parameters (under its own
    // locks). A refused value leaves glibc's default, which is only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
