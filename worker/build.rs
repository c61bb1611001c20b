//! Link-time set-up: bake libtorch's directory into the binary's rpath so that
//! `vae-worker` runs without `LD_LIBRARY_PATH`, and keep `libtorch` (and with it
//! `libtorch_cuda`) linked even though no symbol of it is referenced directly,
//! otherwise `--as-needed` drops it and CUDA is invisible on GPU machines.
//! NCCL's directory from the torch wheel goes into the rpath as well. Also
//! records the commit the worker is built from (`VAE_BUILD_COMMIT`,
//! "unknown" outside a git checkout), part of the version every rank
//! compares before training (`agree.rs`). And compiles the ATen shim
//! (`csrc/aten_shim.cpp`, see `src/aten.rs`) against the headers that sit
//! beside that libtorch, with the flags torch-sys uses for its own C++.
use std::process::Command;

/// Compiles `csrc/aten_shim.cpp` against libtorch's headers in `lib/../include`.
fn shim(lib: &str) {
    let include = std::path::Path::new(lib).join("../include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/aten_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("vaedp_aten_shim");
    println!("cargo:rerun-if-changed=csrc/aten_shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
}

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        shim(&lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // NCCL is the `libnccl.so.2` that libtorch_cuda maps (the wheel's own,
        // in nvidia/nccl/lib); `nccl.rs` reaches that copy again with
        // RTLD_NOLOAD. The rpath lets the dynamic loader find it.
        let nccl = std::path::Path::new(&lib).join("../../nvidia/nccl/lib");
        if let Ok(nccl) = nccl.canonicalize() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", nccl.display());
        }
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=VAE_BUILD_COMMIT={commit}");
    for p in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
