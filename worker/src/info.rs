//! `vae-worker info`: what this worker would run on — CUDA devices, the NCCL
//! libtorch mapped (version, file) and how many NCCL copies the process holds
//! (one, always), the CUDA libraries loaded, and whether the CPU computes
//! bf16 natively. `scripts/gpu_check.sh` and the tests read its JSON.
use std::ffi::CStr;

use serde::Serialize;

#[derive(Serialize, Debug)]
pub struct Info {
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    /// NCCL's version and file, or why there is none.
    pub nccl: Result<Nccl, String>,
    /// Distinct files named `libnccl*` mapped into this process.
    pub nccl_copies: usize,
    /// The CUDA and NCCL shared objects mapped into this process.
    pub cuda_libraries: Vec<String>,
    /// The CPU has AVX-512 BF16 or AMX-BF16 instructions.
    pub cpu_bf16: bool,
}

#[derive(Serialize, Debug)]
pub struct Nccl {
    pub version: String,
    pub path: String,
}

/// Gathers the figures (loads nothing new).
pub fn gather() -> Info {
    let nccl = crate::nccl::library()
        .map(|l| Nccl {
            version: l.version(),
            path: l.path().display().to_string(),
        })
        .map_err(|e| e.to_string());
    let mapped = mapped_objects();
    let cuda_libraries: Vec<String> = mapped
        .iter()
        .filter(|p| is_cuda_library(p))
        .cloned()
        .collect();
    let nccl_copies = cuda_libraries
        .iter()
        .filter(|p| file_name(p).starts_with("libnccl"))
        .count();
    Info {
        cuda_available: tch::Cuda::is_available(),
        cuda_devices: tch::Cuda::device_count(),
        cudnn_available: tch::Cuda::cudnn_is_available(),
        nccl,
        nccl_copies,
        cuda_libraries,
        cpu_bf16: cpu_has_bf16(),
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_cuda_library(path: &str) -> bool {
    let name = file_name(path);
    [
        "libnccl",
        "libtorch_cuda",
        "libcudart",
        "libcuda.so",
        "libcudnn.",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The files of every shared object mapped into this process, canonical,
/// without repeats.
fn mapped_objects() -> Vec<String> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        out: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info; `out` is the Vec below.
        let (info, out) = unsafe { (&*info, &mut *(out as *mut Vec<String>)) };
        if !info.dlpi_name.is_null() {
            // SAFETY: a NUL-terminated name owned by the loader.
            let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy();
            if !name.is_empty() {
                out.push(name.into_owned());
            }
        }
        0
    }
    let mut names: Vec<String> = Vec::new();
    // SAFETY: the callback only reads the loader's data and pushes to `names`.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut names as *mut Vec<String> as *mut _) };
    let mut files: Vec<String> = names
        .iter()
        .map(|n| {
            std::fs::canonicalize(n)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| n.clone())
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Whether the CPU has bf16 instructions (AVX-512 BF16 or AMX-BF16).
pub fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines().filter(|l| l.starts_with("flags")).any(|l| {
            l.split_whitespace()
                .any(|f| f == "avx512_bf16" || f == "amx_bf16")
        })
    })
}

/// Human-readable lines.
pub fn lines(info: &Info) -> Vec<String> {
    let mut out = vec![format!(
        "CUDA: {} ({} device(s)), cuDNN: {}",
        if info.cuda_available {
            "available"
        } else {
            "not available"
        },
        info.cuda_devices,
        info.cudnn_available
    )];
    out.push(match &info.nccl {
        Ok(n) => format!(
            "NCCL {} from {} ({} copy mapped)",
            n.version, n.path, info.nccl_copies
        ),
        Err(e) => format!("NCCL: {e}"),
    });
    out.push(format!("CPU bf16 instructions: {}", info.cpu_bf16));
    out.extend(info.cuda_libraries.iter().map(|p| format!("  mapped: {p}")));
    out
}
