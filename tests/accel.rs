//! The GPU path's parts that run without a GPU: the one NCCL (the torch
//! wheel's, reached through libtorch, its version as torch's own), bf16 mixed
//! precision against fp32 on real MNIST, and out of memory as one line.
use super::{default_run, fails, json, py, run_ok, train, worker};
use std::path::Path;

#[test]
fn the_worker_uses_the_nccl_torch_loaded_and_only_that_one() {
    let mut c = worker();
    c.args(["info", "--json"]);
    let out = run_ok(c);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info JSON");
    let torch = py(&[
        "-c",
        "import json, os, torch, nvidia.nccl as n\n\
         v = torch.cuda.nccl.version()\n\
         lib = os.path.realpath(os.path.join(list(n.__path__)[0], 'lib', 'libnccl.so.2'))\n\
         print(json.dumps({'version': '.'.join(map(str, v)), 'path': lib}))",
    ]);
    let nccl = &info["nccl"]["Ok"];
    assert_eq!(nccl["version"], torch["version"], "{info}");
    assert_eq!(nccl["path"], torch["path"], "{info}");
    assert_eq!(info["nccl_copies"], 1, "{info}");
    let libs = info["cuda_libraries"].as_array().expect("list");
    assert!(
        libs.iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("libtorch_cuda"))),
        "libtorch_cuda is not mapped: {info}"
    );
    // The plain form is lines, one of them naming the same NCCL.
    let mut c = worker();
    c.arg("info");
    let text = String::from_utf8_lossy(&run_ok(c).stdout).into_owned();
    let version = torch["version"].as_str().unwrap_or("?");
    assert!(text.contains(&format!("NCCL {version} from ")), "{text}");
}

#[test]
fn bf16_reaches_the_fp32_test_loss_within_one_nat_after_one_epoch() {
    let fp32 = json(&default_run().join("run/summary.json"))["test_loss"]
        .as_f64()
        .expect("fp32 test loss");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("bf16");
    run_ok(train(&run, &["train.epochs=1", "train.precision=bf16"]));
    let bf16 = json(&run.join("summary.json"))["test_loss"]
        .as_f64()
        .expect("bf16 test loss");
    assert!((bf16 - fp32).abs() < 1.0, "bf16 {bf16} vs fp32 {fp32}");
    // bf16 did compute in bf16: the runs are not the same arithmetic.
    assert!(bf16 != fp32, "bf16 and fp32 runs are identical ({bf16})");
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap_or_default();
    assert!(text.contains("precision = \"bf16\""), "{text}");
}

#[test]
fn bf16_trains_the_conv_vae_and_factorvae_on_dsprites() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dsprites");
    // 96 images, a few steps: emulated bf16 (no AVX-512 BF16 here) is slow,
    // and training at all in bf16 is what is checked.
    super::prepare_dsprites(
        &data,
        &["--scales", "1", "--orientations", "2", "--positions", "4"],
    );
    let run = dir.path().join("run");
    let data_url = format!("data.url={}", data.display());
    let mut c = train(
        &run,
        &[
            "model.kind=conv",
            "model.objective=factor",
            "model.gamma=10",
            "train.batch_size=32",
            "train.max_steps=10",
            "train.precision=bf16",
            "log.images=0",
        ],
    );
    c.args(["--set", &data_url]);
    run_ok(c);
    let s = json(&run.join("summary.json"));
    let loss = s["test_loss"].as_f64().expect("test loss");
    assert!(loss.is_finite() && loss > 0.0, "{s}");
}

#[test]
fn out_of_memory_is_one_line_naming_what_to_lower() {
    let dir = tempfile::tempdir().unwrap();
    // 784 × 10¹² floats: no allocator can give that.
    let err = fails(train(
        &dir.path().join("run"),
        &["train.epochs=1", "model.hidden_dim=1000000000000"],
    ));
    assert!(err.contains("out of memory"), "{err}");
    assert!(err.contains("model.hidden_dim"), "{err}");
    assert!(!Path::new(&dir.path().join("run/checkpoints/latest")).exists());
}

#[test]
fn gpu_check_runs_from_its_bundle_and_skips_the_gpu_rows_without_a_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vae-worker"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let script = super::repo().join("scripts/gpu_check.sh");
    let mut c = std::process::Command::new("bash");
    c.arg(&script)
        .arg("bundle")
        .env("GPU_BUNDLE", &bundle)
        .env("VAE_BIN_DIR", &bin_dir);
    run_ok(c);
    assert!(bundle.join("bin/vae-worker").is_file());
    assert!(bundle.join("mpi/bin/mpirun").is_file());
    assert!(bundle.join("mpi/lib/libmpi.so.40").is_file());
    let out_dir = dir.path().join("out");
    let mut c = std::process::Command::new("bash");
    c.arg(&script)
        .arg("--quick")
        .env("GPU_BUNDLE", &bundle)
        .env("OUT", &out_dir)
        .env("VAE_PYTHON", super::python())
        .env_remove("LD_LIBRARY_PATH");
    let out = run_ok(c);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let result = |check: &str| -> String {
        table
            .lines()
            .find(|l| l.starts_with(check))
            .and_then(|l| l[44..].split_whitespace().next())
            .unwrap_or("missing")
            .to_string()
    };
    assert_eq!(result("ldd: libtorch_cuda, one libnccl"), "PASS", "{table}");
    assert_eq!(
        result("info: NCCL = torch's NCCL, one copy"),
        "PASS",
        "{table}"
    );
    assert_eq!(
        result("nccl: world 1 = no communication"),
        "SKIP",
        "{table}"
    );
    assert_eq!(result("bench: MLP VAE vs PyTorch"), "SKIP", "{table}");
    assert!(!table.contains("FAIL"), "{table}");
    assert!(out_dir.join("dsprites/manifest.json").is_file(), "{table}");
}
