//! Link-time set-up: bake libtorch's directory into the binary's rpath so that
//! `vae-worker` runs without `LD_LIBRARY_PATH`, and keep `libtorch` (and with it
//! `libtorch_cuda`) linked even though no symbol of it is referenced directly,
//! otherwise `--as-needed` drops it and CUDA is invisible on GPU machines.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
