//! Bring your own data (issue 18): image folders and WebDataset shards in a
//! bucket (the S3 emulator), written by Python's PIL and `tarfile` in the
//! layouts users bring, imported and trained on by seed 002's RGB model on
//! two ranks; the export computes what seed 002's own classes compute. A
//! module of the `launch` test binary.
use std::path::Path;
use std::process::{Command, Output};

use super::emulators;
use super::{env, launch, max_diff, ok, params, python, repo, worker_args, worker_bin};

fn py(args: &[&str]) -> String {
    let out = Command::new(python()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "python {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn script(name: &str) -> String {
    repo().join("tests/python").join(name).display().to_string()
}

fn with_env(c: &mut Command, vars: &[(String, String)]) {
    for (k, v) in vars {
        c.env(k, v);
    }
}

/// Uploads every file of `dir` to `s3://bucket/prefix/`.
fn upload(e: &emulators::Emulator, bucket: &str, prefix: &str, dir: &Path) {
    let code = "import sys, os, boto3\nc = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x')\nfor f in sorted(os.listdir(sys.argv[4])):\n    c.upload_file(os.path.join(sys.argv[4], f), sys.argv[2], sys.argv[3] + f)";
    py(&[
        "-c",
        code,
        &e.endpoint(),
        bucket,
        prefix,
        dir.to_str().unwrap(),
    ]);
}

/// `vae-worker data prepare images`, under an address-space limit (an
/// allocation sized from a file's header fails the import, not the
/// machine; libtorch's CUDA libraries take about 3 GB of it).
fn prepare_images(from: &str, out: &str, extra: &[&str], vars: &[(String, String)]) -> Output {
    let mut c = Command::new("bash");
    env(&mut c)
        .arg("-c")
        .arg("ulimit -v 5000000; exec \"$0\" \"$@\"")
        .arg(worker_bin())
        .args(["data", "prepare", "images", "--from", from, "--out", out])
        .args(extra);
    with_env(&mut c, vars);
    ok(c)
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn samples(m: &serde_json::Value) -> u64 {
    ["train", "test"]
        .iter()
        .map(|s| m["splits"][s]["samples"].as_u64().unwrap())
        .sum()
}

#[test]
fn images_and_webdataset_shards_from_a_bucket_train_seed_002_s_model_on_two_ranks() {
    let s3 = emulators::s3("imgs");
    let vars = emulators::s3_env(&s3);
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let ds = |n: &str| d(n).display().to_string();

    // A folder of PNGs in the bucket: every image arrives once, pixel for pixel.
    py(&[&script("make_images.py"), "png", &ds("png"), "40", "32"]);
    upload(&s3, "imgs", "png/", &d("png"));
    prepare_images(
        "s3://imgs/png/",
        &ds("png-ds"),
        &["--size", "32", "--test-fraction", "0.2"],
        &vars,
    );
    let m = manifest(&d("png-ds"));
    assert_eq!(m["sample_shape"], serde_json::json!([3, 32, 32]));
    assert_eq!(samples(&m), 40);
    assert!(m["splits"]["test"]["samples"].as_u64().unwrap() > 0);
    assert_eq!(
        py(&[&script("make_images.py"), "digest", &ds("png-ds")]),
        py(&[&script("make_images.py"), "pngdigest", &ds("png")])
    );

    // A folder of JPEGs with a corrupt one, in the bucket and on disk:
    // skipped, counted and named; the same dataset either way.
    py(&[
        &script("make_images.py"),
        "jpg",
        &ds("jpg"),
        "30",
        "96",
        "80",
    ]);
    upload(&s3, "imgs", "jpg/", &d("jpg"));
    let crop = ["--crop", "72", "--size", "64"];
    for (from, to, vars) in [
        ("s3://imgs/jpg/".to_string(), "jpg-s3", &vars[..]),
        (ds("jpg"), "jpg-ds", &[][..]),
    ] {
        let out = prepare_images(&from, &ds(to), &crop, vars);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("skipped 1 image") && err.contains("broken"),
            "{err}"
        );
        assert_eq!(samples(&manifest(&d(to))), 30);
    }
    for f in std::fs::read_dir(d("jpg-ds")).unwrap() {
        let name = f.unwrap().file_name();
        assert!(
            std::fs::read(d("jpg-ds").join(&name)).unwrap()
                == std::fs::read(d("jpg-s3").join(&name)).unwrap(),
            "{name:?}"
        );
    }

    // WebDataset shards in the bucket, named with a brace range; labels kept.
    py(&[
        &script("make_images.py"),
        "wds",
        &ds("wds"),
        "2",
        "40",
        "96",
        "80",
    ]);
    upload(&s3, "imgs", "wds/", &d("wds"));
    let shards = "s3://imgs/wds/shard-{000000..000001}.tar";
    let args = ["--crop", "72", "--size", "64", "--test-fraction", "0.2"];
    prepare_images(shards, "s3://imgs/faces", &args, &vars);
    prepare_images(shards, &ds("faces"), &args, &vars);
    let m = manifest(&d("faces"));
    assert_eq!(samples(&m), 80);
    assert_eq!(
        m["targets"],
        serde_json::json!([{"name": "label", "values": 7}])
    );
    let jsonl = std::fs::read_to_string(d("faces").join("train-labels.jsonl")).unwrap()
        + &std::fs::read_to_string(d("faces").join("test-labels.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 80);

    // Seed 002's model, two ranks, from the bucket.
    let run = d("run");
    let mut c = launch(
        &run,
        &[
            "data.url=s3://imgs/faces",
            "data.order=global",
            "train.max_steps=6",
            "train.batch_size=16",
            "train.eval_batch_size=16",
            "log.images=4",
        ],
        &[],
    );
    c.arg("--config")
        .arg(repo().join("configs/celeba_conv_vae.toml"));
    with_env(&mut c, &vars);
    ok(c);
    assert!(run.join("images/recon-step-0000000006.png").is_file());
    let export = d("model.safetensors");
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(["export", "--checkpoint"])
        .arg(&run)
        .arg("--out")
        .arg(&export);
    with_env(&mut c, &vars);
    ok(c);
    let check = py(&[
        &script("seed002.py"),
        "check",
        export.to_str().unwrap(),
        run.join("config.toml").to_str().unwrap(),
        &ds("faces"),
    ]);
    let v: serde_json::Value = serde_json::from_str(check.trim()).unwrap();
    assert!(v["images"].as_u64().unwrap() > 0, "{v}");
    for k in ["mu", "logvar", "recon"] {
        assert!(v[k].as_f64().unwrap() < 1e-9, "{k}: {v}");
    }
}

/// CelebA-sized JPEGs (178×218, crop 148, size 64) come out as PIL makes
/// them when it decodes at half size in the DCT domain (`draft`), which is
/// what libjpeg-turbo does here: within a level or two of every pixel, and
/// about one level on average from PIL's full-size decode.
#[test]
fn jpegs_import_as_pil_decodes_them_at_half_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    py(&[
        &script("make_images.py"),
        "jpg",
        &d("jpg"),
        "40",
        "178",
        "218",
    ]);
    let args = ["--crop", "148", "--size", "64", "--test-fraction", "0"];
    prepare_images(&d("jpg"), &d("ds"), &args, &[]);
    let v: serde_json::Value = serde_json::from_str(
        py(&[
            &script("make_images.py"),
            "pilcompare",
            &d("ds"),
            &d("jpg"),
            "148",
            "64",
        ])
        .trim(),
    )
    .unwrap();
    eprintln!("vs PIL: {v}");
    assert!(v["draft"]["mean"].as_f64().unwrap() < 0.3, "{v}");
    assert!(v["draft"]["max"].as_u64().unwrap() <= 3, "{v}");
    assert!(v["full"]["mean"].as_f64().unwrap() < 1.5, "{v}");
}

#[test]
fn an_npz_far_larger_than_the_memory_allowed_imports_streaming() {
    const LIMIT: u64 = 300 << 20;
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("mpi3d_big.npz");
    // 64,800 images of 64×64×3: 796 MB of pixels, stored uncompressed.
    let sizes = "6,6,2,3,3,10,10";
    py(&[
        &script("make_factor_files.py"),
        "mpi3d",
        npz.to_str().unwrap(),
        sizes,
        "stored",
    ]);
    let size = std::fs::metadata(&npz).unwrap().len();
    assert!(size > 2 * LIMIT, "{size} bytes");
    let Some(limit) = super::storage::MemoryLimit::new(LIMIT) else {
        panic!("cannot create a memory cgroup under /sys/fs/cgroup/memory (needed to limit the worker's memory)");
    };
    let out = dir.path().join("mpi3d");
    let script_sh = format!(
        "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
        limit.0.display()
    );
    let mut c = Command::new("sh");
    env(&mut c)
        .arg("-c")
        .arg(script_sh)
        .arg(worker_bin())
        .args(["data", "prepare", "mpi3d", "--from"])
        .arg(&npz)
        .arg("--out")
        .arg(&out)
        .args(["--factor-sizes", sizes, "--shard-size", "5000"]);
    ok(c);
    let peak = limit.peak();
    eprintln!("npz {size} bytes imported under a {LIMIT}-byte memory limit (peak use, page cache included: {peak} bytes)");
    assert!(peak > 0 && peak <= LIMIT, "peak {peak}");
    let check: serde_json::Value = serde_json::from_str(
        py(&[
            &script("make_factor_files.py"),
            "check",
            npz.to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(check["samples"], 64_800);
    assert_eq!(check["pixels_equal"], true, "{check}");
    assert_eq!(check["targets_equal"], true, "{check}");
}

/// A dSprites subset of 768 training samples in shards of `shard_size`.
fn dsprites_in_shards(dir: &Path, shard_size: &str) -> std::path::PathBuf {
    let out = dir.join(format!("dsprites-{shard_size}"));
    let mut c = super::importer();
    c.args(["data", "prepare", "dsprites", "--out"])
        .arg(&out)
        .args(["--scales", "2", "--orientations", "2", "--positions", "8"])
        .args(["--test-samples", "100", "--shard-size", shard_size]);
    ok(c);
    out
}

#[test]
fn shard_order_trains_any_number_of_workers_on_any_number_of_shards_as_one_worker() {
    // One shard on 2 ranks (before: "deals 1 shards to 2 workers"), five
    // shards on 8 ranks: each equals one worker reading the same streams
    // (data.streams), in float64.
    let dir = tempfile::tempdir().unwrap();
    for (shard_size, ranks) in [("1000", 2), ("160", 8)] {
        let data = dsprites_in_shards(dir.path(), shard_size);
        let url = format!("data.url={}", data.display());
        let streams = format!("data.streams={ranks}");
        let sets = [
            url.as_str(),
            &streams,
            "data.order=shard",
            "data.shuffle_buffer=64",
            "train.batch_size=32",
            "train.max_steps=30",
            "train.dtype=float64",
            "model.latent_dim=6",
            "log.images=0",
        ];
        let one = dir.path().join(format!("one-{shard_size}"));
        let many = dir.path().join(format!("many-{shard_size}"));
        let mut c = Command::new(worker_bin());
        env(&mut c).args(worker_args(&one, &sets));
        ok(c);
        let mut c = Command::new("mpirun");
        env(&mut c)
            .args(["-np", &ranks.to_string(), "--oversubscribe"])
            .arg(worker_bin())
            .args(worker_args(&many, &sets));
        let out = ok(c);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(&format!("{ranks} workers")), "{said}");
        params(&one);
        params(&many);
        let d = max_diff(
            &one.join("exported.safetensors"),
            &many.join("exported.safetensors"),
        );
        assert!(
            d <= 1e-10,
            "{shard_size}: 1 and {ranks} workers differ by {d}"
        );
    }
}
