//! `vae-worker encode` where users run it: one process into a folder and
//! 4 ranks under `mpirun` into an S3 bucket (moto), compared with each
//! other and with PyTorch's encoding of the export. A module of the
//! `launch` test binary (its helpers are there).
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::emulators::{self, S3_SECRET};
use super::{env, ok, text, worker_args, worker_bin};

fn with_env(c: &mut Command, vars: &[(String, String)]) {
    for (k, v) in vars {
        c.env(k, v);
    }
}

/// Every file of a folder by name.
fn tree(d: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// `tests/python/check_encode.py`'s verdict on the codes in `codes`.
fn pytorch_check(codes: &Path, data: &Path, run: &Path) -> serde_json::Value {
    let mut c = Command::new(super::python());
    c.arg(super::repo().join("tests/python/check_encode.py"))
        .arg(codes)
        .arg(data)
        .arg(run.join("exported.safetensors"))
        .arg(run.join("config.toml"));
    let out = ok(c);
    let last = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(last.lines().last().unwrap_or("")).unwrap()
}

/// A dSprites subset of 4 train and 3 test shards, and a small β-VAE
/// trained on it (exported into the run as `exported.safetensors`).
fn data_and_model(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("dsprites");
    let mut c = super::importer();
    c.args(["data", "prepare", "dsprites", "--out"])
        .arg(&data)
        .args(["--scales", "2", "--orientations", "2", "--positions", "8"])
        .args(["--test-samples", "500", "--shard-size", "200"]);
    ok(c);
    let run = dir.join("run");
    let mut c = Command::new(worker_bin());
    let url = format!("data.url={}", data.display());
    let sets = [
        url.as_str(),
        "train.max_steps=10",
        "model.latent_dim=6",
        "model.beta=4",
    ];
    env(&mut c).args(worker_args(&run, &sets));
    ok(c);
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(["export", "--checkpoint"])
        .arg(&run)
        .arg("--out")
        .arg(run.join("exported.safetensors"));
    ok(c);
    (data, run)
}

/// `vae-worker encode` of `run` into `out` (a path or URL).
fn encode(run: &Path, out: &str) -> Command {
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(["encode", "--checkpoint"])
        .arg(run)
        .args(["--out", out]);
    c
}

/// Every object under `prefix` in an S3 bucket, downloaded into `dir`.
fn s3_download(e: &emulators::Emulator, bucket: &str, prefix: &str, dir: &Path) {
    let code = "import sys, os, boto3\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x')\nfor o in s3.list_objects_v2(Bucket=sys.argv[2], Prefix=sys.argv[3])['Contents']:\n    s3.download_file(sys.argv[2], o['Key'], os.path.join(sys.argv[4], os.path.basename(o['Key'])))";
    std::fs::create_dir_all(dir).unwrap();
    let mut c = Command::new(super::python());
    c.args(["-c", code, &e.endpoint(), bucket, prefix]).arg(dir);
    ok(c);
}

#[test]
fn encode_writes_every_samples_posterior_under_mpirun_to_a_bucket_as_pytorch_encodes_it() {
    // The codes written by one process to a folder and by 4 ranks under
    // mpirun to an S3 bucket (more ranks than test shards) are the same
    // bytes, and equal PyTorch's encoding of the export.
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = data_and_model(dir.path());
    let alone = dir.path().join("alone");
    let said = text(&ok(encode(&run, &alone.display().to_string())));
    let want = "encoded 500 test + 768 train samples (μ and log σ² of 6 dimensions each)";
    assert!(said.contains(want), "{said}");
    let s3 = emulators::s3("codes");
    let vars = emulators::s3_env(&s3);
    let mut c = Command::new("mpirun");
    env(&mut c)
        .args(["-np", "4", "--oversubscribe"])
        .arg(worker_bin())
        .args(["encode", "--checkpoint"])
        .arg(&run)
        .args(["--out", "s3://codes/enc"]);
    with_env(&mut c, &vars);
    let said = text(&ok(c));
    assert!(!said.contains(S3_SECRET));
    assert_eq!(said.matches("encoded ").count(), 1, "{said}");
    let bucket = dir.path().join("bucket");
    s3_download(&s3, "codes", "enc/", &bucket);
    let (a, b) = (tree(&alone), tree(&bucket));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert_eq!(a.len(), 8, "{:?}", a.keys());
    for (k, v) in &a {
        assert!(*v == b[k], "{k} differs between 1 process and 4 ranks");
    }
    let r = pytorch_check(&alone, &data, &run);
    assert!(r["max_diff"].as_f64().unwrap() < 1e-5, "{r}");
    assert_eq!(r["samples"], serde_json::json!({"train": 768, "test": 500}));
    // A second encode into the same place, and training on codes: one line each.
    let out = encode(&run, &alone.display().to_string()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already holds a dataset"),
        "{err}"
    );
    let mut c = Command::new(worker_bin());
    let on_codes = format!("data.url={}", alone.display());
    env(&mut c).args(worker_args(&dir.path().join("on-codes"), &[&on_codes]));
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let want = "holds codes written by `vae-worker encode`";
    assert!(!out.status.success() && err.contains(want), "{err}");
}
