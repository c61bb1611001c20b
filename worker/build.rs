//! Link-time set-up: bake libtorch's directory into the binary's rpath so that
//! `vae-worker` runs without `LD_LIBRARY_PATH`, and keep `libtorch` (and with it
//! `libtorch_cuda`) linked even though no symbol of it is referenced directly,
//! otherwise `--as-needed` drops it and CUDA is invisible on GPU machines.
//! NCCL's directory from the torch wheel goes into the rpath as well.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // NCCL is opened at run time by cudarc as `libnccl.so`; the torch wheel
        // keeps it (as libnccl.so.2, linked to that name by scripts/setup.sh)
        // beside torch, in nvidia/nccl/lib.
        let nccl = std::path::Path::new(&lib).join("../../nvidia/nccl/lib");
        if let Ok(nccl) = nccl.canonicalize() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", nccl.display());
        }
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
