//! The study's other datasets and factor data that stays honest, where
//! users run them: SmallNORB from an S3 bucket and Cars3D from a folder,
//! each equal to disentanglement_lib's own loader (and to Pillow's
//! resize) image for image, then trained with metrics; a held-out test
//! split; 3dshapes rows in another order; hostile files. Fixtures are
//! written by `tests/python/make_factor_files.py` (NumPy, scipy.io,
//! h5py). A module of the `launch` test binary (its helpers are there).
use std::path::{Path, PathBuf};
use std::process::Command;

use super::emulators::{self, S3_SECRET};
use super::{env, importer, ok, text, worker_bin};

/// `vae-worker`, under `mpirun -np RANKS` when more than one rank.
fn worker_on(ranks: usize) -> Command {
    let mut c = Command::new(if ranks > 1 {
        "mpirun".into()
    } else {
        worker_bin()
    });
    env(&mut c);
    if ranks > 1 {
        c.args(["-np", &ranks.to_string(), "--oversubscribe"])
            .arg(worker_bin());
    }
    c
}

fn python(args: &[&str]) -> String {
    let mut c = Command::new(super::python());
    c.args(args);
    String::from_utf8_lossy(&ok(c).stdout).into_owned()
}

fn script(name: &str) -> String {
    super::repo()
        .join("tests/python")
        .join(name)
        .display()
        .to_string()
}

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// `vae-worker data prepare NAME --from FROM --out OUT ARGS`.
fn prepare(name: &str, from: &str, out: &Path, args: &[&str]) -> Command {
    let mut c = importer();
    c.args(["data", "prepare", name, "--from", from, "--out"])
        .arg(out)
        .args(args);
    c
}

/// A short FactorVAE run on `data` with the metrics, its draws recorded
/// under `draws`; the summary's metrics.
fn train(data: &Path, run: &Path, draws: &Path) -> serde_json::Value {
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .env("VAE_FAULT_RECORD_DRAWS", draws)
        .args(["train", "--config"])
        .arg(super::repo().join("configs/dsprites_factorvae.toml"))
        .arg("--run-dir")
        .arg(run);
    for s in [
        format!("data.url={}", data.display()),
        "train.max_steps=6".into(),
        "train.batch_size=16".into(),
        "train.threads=1".into(),
        "eval.scale=0.01".into(),
        "eval.metrics=[\"mig\", \"factorvae\"]".into(),
        "discriminator.hidden=32".into(),
    ] {
        c.args(["--set", &s]);
    }
    let said = text(&ok(c));
    // The traversal's rows are labelled with the factor each dimension
    // captures (scored factors only), beside its PNG and on the console.
    let labels = run.join("images/traversal-step-0000000006.json");
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(labels).unwrap()).unwrap();
    let m = manifest(data);
    let scored: Vec<&str> = (m["factors"].as_array().unwrap().iter())
        .filter(|f| f["nuisance"] != true)
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for row in labels["rows"].as_array().unwrap() {
        let f = row["factor"].as_str().unwrap_or("none");
        assert!(f == "none" || scored.contains(&f), "{labels}");
    }
    assert!(said.contains("latent: "), "{said}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    s["metrics"].clone()
}

/// The width of each factor combination the metric `name` represented.
fn drawn_widths(draws: &Path, name: &str) -> Vec<usize> {
    let file = PathBuf::from(format!("{}-{name}.json", draws.display()));
    let events: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let mut widths: Vec<usize> = (events.as_array().unwrap().iter())
        .filter_map(|e| e["batch"].as_array())
        .flat_map(|b| b.iter().map(|f| f.as_array().unwrap().len()))
        .collect();
    widths.dedup();
    widths
}

#[test]
fn smallnorb_from_a_bucket_and_cars3d_import_as_disentanglement_lib_loads_them_and_train() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    python(&[&script("make_factor_files.py"), "smallnorb", &d("norb")]);
    python(&[&script("make_factor_files.py"), "cars3d", &d("cars"), "3"]);

    // SmallNORB's six files in a bucket, imported from its prefix.
    let s3 = emulators::s3("data");
    for f in std::fs::read_dir(d("norb")).unwrap() {
        let f = f.unwrap().path();
        let key = format!("norb/{}", f.file_name().unwrap().to_string_lossy());
        emulators::s3_put(&s3, "data", &key, &std::fs::read(&f).unwrap());
    }
    let norb = dir.path().join("smallnorb");
    let mut c = prepare(
        "smallnorb",
        "s3://data/norb/",
        &norb,
        &["--test-samples", "40"],
    );
    for (k, v) in emulators::s3_env(&s3) {
        c.env(k, v);
    }
    let out = text(&ok(c));
    assert!(
        out.contains("wrote smallnorb (test 40, train 360)"),
        "{out}"
    );
    assert!(!out.contains(S3_SECRET));
    let m = manifest(&norb);
    let names: Vec<&str> = (m["factors"].as_array().unwrap().iter())
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["category", "instance", "elevation", "azimuth", "lighting"]
    );
    assert_eq!(m["factors"][1]["nuisance"], true);
    assert_eq!(m["factors"][1]["values"], serde_json::json!([0, 1, 4, 6]));
    assert_eq!(
        m["factors"][3]["units"],
        serde_json::json!([0.0, 120.0, 340.0])
    );
    // Every grid position's image is Pillow's 8-bit Lanczos resize of the
    // file's camera-0 image, and disentanglement_lib's loader (which resizes
    // in 32-bit mode) differs from it by at most one level.
    let c = json_of(&python(&[
        &script("dlib_loaders.py"),
        "smallnorb",
        &d("norb"),
        &d("smallnorb"),
    ]));
    assert_eq!(c["samples"], 360, "{c}");
    assert_eq!(c["grid_covered"], true, "{c}");
    assert_eq!(c["equal_to_pillow"], true, "{c}");
    assert!(c["max_diff_dlib"].as_f64().unwrap() <= 1.0, "{c}");
    // Trained with metrics: the instance is drawn, not scored (4 factors).
    let draws = dir.path().join("draws");
    let metrics = train(&norb, &dir.path().join("run-norb"), &draws);
    assert!(
        (0.0..=1.0).contains(&metrics["mig"].as_f64().unwrap()),
        "{metrics}"
    );
    assert_eq!(drawn_widths(&draws, "mig"), vec![4]);

    // Cars3D from a folder of MATLAB files (compressed and not).
    let cars = dir.path().join("cars3d");
    ok(prepare(
        "cars3d",
        &d("cars"),
        &cars,
        &["--test-samples", "30"],
    ));
    let c = json_of(&python(&[
        &script("dlib_loaders.py"),
        "cars3d",
        &d("cars"),
        &d("cars3d"),
    ]));
    assert_eq!(c["samples"], 288, "{c}");
    assert_eq!(c["equal_to_pillow"], true, "{c}");
    assert_eq!(c["max_diff_dlib"], 0.0, "{c}");
    let metrics = train(&cars, &dir.path().join("run-cars"), &draws);
    assert!((0.0..=1.0).contains(&metrics["factorvae_score"].as_f64().unwrap()));
    assert_eq!(drawn_widths(&draws, "mig"), vec![3]);
}

#[test]
fn hostile_norb_and_matlab_files_are_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    python(&[&script("make_factor_files.py"), "smallnorb", &d("norb")]);
    python(&[&script("make_factor_files.py"), "cars3d", &d("cars"), "2"]);
    let refused = |mut c: Command, file: &str, want: &str| {
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(file) && err.contains(want), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    };
    // A dat header declaring 2^31 images of a file that holds 180.
    let dat = dir
        .path()
        .join("norb/smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat");
    let mut bytes = std::fs::read(&dat).unwrap();
    bytes[8..12].copy_from_slice(&i32::MAX.to_le_bytes());
    std::fs::write(&dat, &bytes).unwrap();
    let out = dir.path().join("out");
    refused(
        prepare("smallnorb", &d("norb"), &out, &[]),
        "training-dat.mat",
        "declare",
    );
    // One half only reads its own instances; a missing half is named.
    std::fs::remove_file(&dat).unwrap();
    refused(
        prepare("smallnorb", &d("norb"), &out, &[]),
        "training-dat.mat",
        "no such file",
    );
    let half = dir.path().join("half");
    let c = prepare("smallnorb", &d("norb"), &half, &["--chunks", "testing"]);
    assert!(text(&ok(c)).contains("wrote smallnorb (test 180, train 180)"));
    // A MATLAB file whose compressed array claims more than a car holds, and one with other dimensions.
    let code = "import sys, numpy as np, scipy.io\nscipy.io.savemat(sys.argv[1], {'im': np.zeros((128, 128, 3, 24, 5), np.uint8)}, do_compression=True)\nscipy.io.savemat(sys.argv[2], {'im': np.zeros((64, 64, 3), np.uint8)})";
    python(&[
        "-c",
        code,
        &d("cars/car_001_mesh.mat"),
        &d("cars/car_002_mesh.mat"),
    ]);
    refused(
        prepare("cars3d", &d("cars"), &out, &[]),
        "car_001_mesh.mat",
        "declares",
    );
    std::fs::remove_file(dir.path().join("cars/car_001_mesh.mat")).unwrap();
    refused(
        prepare("cars3d", &d("cars"), &out, &[]),
        "car_002_mesh.mat",
        "128×128×3×24×4",
    );
    assert!(!out.exists());
}

#[test]
fn a_held_out_test_split_is_not_trained_on_and_the_metrics_still_see_the_whole_grid() {
    let dir = tempfile::tempdir().unwrap();
    let sub = ["--scales", "2", "--orientations", "2", "--positions", "8"];
    let (whole, held) = (dir.path().join("whole"), dir.path().join("held"));
    let mut c = importer();
    c.args(["data", "prepare", "dsprites", "--out"])
        .arg(&whole)
        .args(sub);
    ok(c);
    let mut c = importer();
    c.args(["data", "prepare", "dsprites", "--out"])
        .arg(&held)
        .args(sub);
    c.args(["--test-fraction", "0.25"]);
    let out = text(&ok(c));
    assert!(out.contains("the test split's 192 samples are held out of the grid: the train split holds the other 576"), "{out}");
    assert_eq!(manifest(&held)["held_out"], true);
    // Train and test are disjoint and together the whole grid, each image
    // under its own factors.
    let code = "import sys, numpy as np\nsys.path.insert(0, sys.argv[3])\nimport vaedata\nwi, wt = vaedata.load_split(sys.argv[1], 'train')\nti, tt = vaedata.load_split(sys.argv[2], 'train')\nhi, ht = vaedata.load_split(sys.argv[2], 'test')\nkey = lambda t: [tuple(r) for r in t]\nwhole = dict(zip(key(wt), wi))\nprint(len(set(key(tt)) & set(key(ht))), len(tt) + len(ht), all(np.array_equal(whole[k], v) for k, v in zip(key(tt) + key(ht), list(ti) + list(hi))))";
    let py = super::repo().join("tests/python").display().to_string();
    let got = python(&[
        "-c",
        code,
        &whole.display().to_string(),
        &held.display().to_string(),
        &py,
    ]);
    assert_eq!(got.trim(), "0 768 True");
    let draws = dir.path().join("draws");
    let metrics = train(&held, &dir.path().join("run"), &draws);
    assert!(
        (0.0..=1.0).contains(&metrics["mig"].as_f64().unwrap()),
        "{metrics}"
    );
    // A share outside (0, 1) and both flags at once are refused.
    let mut c = importer();
    c.args(["data", "prepare", "dsprites", "--out"])
        .arg(dir.path().join("x"));
    let out = c.args(["--test-fraction", "1.5"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a share in (0, 1)"));
}

#[test]
fn shapes3d_rows_in_another_order_import_as_the_same_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let h5 = dir.path().join("3dshapes.h5").display().to_string();
    let shuffled = dir.path().join("shuffled.h5").display().to_string();
    python(&[&script("make_factor_files.py"), "shapes3d", &h5]);
    let code = "import sys, h5py, numpy as np\nsrc = h5py.File(sys.argv[1], 'r')\np = np.random.default_rng(5).permutation(len(src['labels']))\nwith h5py.File(sys.argv[2], 'w') as f:\n    f.create_dataset('images', data=src['images'][:][p], chunks=(32, 64, 64, 3), compression='gzip')\n    f['labels'] = src['labels'][:][p]";
    python(&["-c", code, &h5, &shuffled]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(prepare("shapes3d", &h5, &a, &["--test-samples", "20"]));
    ok(prepare(
        "shapes3d",
        &shuffled,
        &b,
        &["--test-samples", "20"],
    ));
    assert_eq!(manifest(&a), manifest(&b));
    let shard = "train-00000.bin";
    assert_eq!(
        std::fs::read(a.join(shard)).unwrap(),
        std::fs::read(b.join(shard)).unwrap()
    );
    // A repeated row (a gap elsewhere) is named.
    let code = "import sys, h5py\nsrc = h5py.File(sys.argv[1], 'r')\nl = src['labels'][:]\nl[7] = l[3]\nwith h5py.File(sys.argv[2], 'w') as f:\n    f['images'] = src['images'][:]\n    f['labels'] = l";
    let twice = dir.path().join("twice.h5").display().to_string();
    python(&["-c", code, &h5, &twice]);
    let out = prepare("shapes3d", &twice, &dir.path().join("c"), &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rows 3 and 7 have the same labels"), "{err}");
}

#[test]
fn dsprites_variants_are_disentanglement_libs_and_the_same_on_any_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dsprites");
    let mut c = importer();
    c.args(["data", "prepare", "dsprites", "--out"]).arg(&data);
    c.args(["--scales", "2", "--orientations", "2", "--positions", "8"]);
    c.args(["--test-samples", "100", "--shard-size", "200"]);
    ok(c);
    let scream = dir.path().join("scream.png");
    let code = "import sys, numpy as np, PIL.Image\nPIL.Image.fromarray((np.random.default_rng(0).random((548, 700, 3)) * 255).astype(np.uint8)).save(sys.argv[1])";
    python(&["-c", code, &scream.display().to_string()]);
    let url = format!("data.url={}", data.display());
    let picture = format!("data.scream_image={}", scream.display());
    let run = |name: &str, sets: &[&str], ranks: usize, record: Option<&Path>| {
        let dir = dir.path().join(name);
        let mut all = vec![url.as_str(), "train.batch_size=16", "train.dtype=float64"];
        all.extend(["model.latent_dim=6", "log.images=0", "eval.scale=0.01"]);
        all.extend(sets);
        let mut c = worker_on(ranks);
        if let Some(path) = record {
            c.env("VAE_FAULT_RECORD_VARIANT", path);
        }
        c.args(super::worker_args(&dir, &all));
        ok(c);
        super::params(&dir);
        dir.join("exported.safetensors")
    };
    // The first batch each variant makes is disentanglement_lib's own
    // ColorDSprites / NoisyDSprites / ScreamDSprites, served the same draws.
    for variant in ["color", "noisy", "scream"] {
        let batch = dir.path().join(format!("{variant}.json"));
        let v = format!("data.variant=\"{variant}\"");
        let mut sets = vec![v.as_str(), "train.max_steps=2"];
        match variant {
            "scream" => sets.push(&picture),
            // Shard order: the samples' indices come through the shuffle buffer.
            "noisy" => sets.push("data.order=shard"),
            _ => {}
        }
        run(variant, &sets, 1, Some(&batch));
        let (b, d) = (batch.display().to_string(), data.display().to_string());
        let mut args = vec![
            script("check_variants.py"),
            d,
            b,
            variant.into(),
            "1".into(),
        ];
        if variant == "scream" {
            args.push(scream.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let c = json_of(&python(&args));
        assert_eq!(c["samples"], 16, "{c}");
        assert!(c["max_diff"].as_f64().unwrap() < 1e-6, "{variant}: {c}");
    }
    // Shard order with a fixed deal: 1 and 2 workers (under mpirun) see the
    // same coloured samples, so they train the same model.
    let sets = [
        "data.variant=\"color\"",
        "data.order=shard",
        "data.streams=2",
        "data.shuffle_buffer=64",
        "train.max_steps=20",
    ];
    let (one, two) = (run("one", &sets, 1, None), run("two", &sets, 2, None));
    let d = super::max_diff(&one, &two);
    assert!(d <= 1e-10, "1 and 2 workers differ by {d}");
    // `eval` and `encode` make the same variant of the samples they read.
    for cmd in ["eval", "encode"] {
        let mut c = Command::new(worker_bin());
        env(&mut c)
            .args([cmd, "--checkpoint"])
            .arg(one.parent().unwrap());
        if cmd == "encode" {
            c.arg("--out").arg(dir.path().join("codes"));
        } else {
            c.args(["--metrics", "mig", "--scale", "0.01"]);
        }
        ok(c);
    }
    // A variant of images that are not binary single-channel is one line.
    let mut c = Command::new(worker_bin());
    let sets = ["data.variant=\"color\""];
    env(&mut c).args(super::worker_args(&dir.path().join("mnist"), &sets));
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("config key `data.variant`"),
        "{err}"
    );
}

#[test]
fn webdataset_tars_stream_as_the_dataset_they_convert_to_on_more_workers_than_tars() {
    let dir = tempfile::tempdir().unwrap();
    let tars = dir.path().join("tars");
    let t = tars.display().to_string();
    // Samples 5 and 97 (train) and 42 (test) are not JPEGs: skipped by the
    // importer and by the stream alike.
    let broken = "5,42,97";
    python(&[
        &script("make_images.py"),
        "wds",
        &t,
        "3",
        "40",
        "48",
        "40",
        broken,
    ]);
    let pattern = format!("{t}/shard-{{000000..000002}}.tar");
    let conv = dir.path().join("conv");
    let mut c = importer();
    c.args(["data", "prepare", "images", "--from", &pattern, "--out"])
        .arg(&conv);
    c.args(["--size", "32", "--test-fraction", "0.2"]);
    ok(c);
    let run = |name: &str, url: &str, extra: &[&str], ranks: usize, vars: &[(String, String)]| {
        let run = dir.path().join(name);
        let resume = extra.contains(&"--resume");
        let extra: Vec<&str> = extra.iter().copied().filter(|e| *e != "--resume").collect();
        let url = format!("data.url={url}");
        let mut sets = vec![
            url.as_str(),
            "data.decode.size=32",
            "data.decode.test_fraction=0.2",
        ];
        sets.extend(["train.dtype=float64", "train.batch_size=16"]);
        if !extra.iter().any(|e| e.starts_with("train.max_steps")) {
            sets.push("train.max_steps=12");
        }
        sets.extend(["model.latent_dim=4", "log.images=0", "log.every_steps=3"]);
        sets.extend(extra);
        let mut c = worker_on(ranks);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.args(super::worker_args(&run, &sets));
        if resume {
            c.arg("--resume");
        }
        let said = text(&ok(c));
        assert!(!said.contains(S3_SECRET));
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        super::params(&run);
        (
            run.join("exported.safetensors"),
            s["test_loss"].clone(),
            said,
        )
    };
    // The tars as they are and the dataset they convert to: the same
    // samples in the same order, the same test split, the same model.
    let (a, loss_a, said) = run("streamed", &pattern, &[], 1, &[]);
    let (b, loss_b, _) = run("converted", &conv.display().to_string(), &[], 1, &[]);
    assert_eq!(super::max_diff(&a, &b), 0.0);
    assert_eq!(loss_a, loss_b);
    for key in ["sample000005", "sample000042", "sample000097"] {
        assert!(said.contains(&format!("`{key}` does not decode")), "{said}");
    }
    // Their codes: the same bytes, split for split (the tars' in shards of
    // the format's names, their held test split in one).
    let codes = |name: &str| {
        let out = dir.path().join(format!("codes-{name}"));
        let mut c = Command::new(worker_bin());
        env(&mut c).args(["encode", "--checkpoint"]);
        c.arg(dir.path().join(name)).arg("--out").arg(&out);
        ok(c);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        let mut all = Vec::new();
        for split in ["train", "test"] {
            let s = &m["splits"][split];
            let mut bytes = Vec::new();
            for e in s["shards"].as_array().unwrap() {
                let shard = std::fs::read(out.join(e["object"].as_str().unwrap())).unwrap();
                let n = e["samples"].as_u64().unwrap() as usize;
                bytes.extend_from_slice(&shard[..n * 2 * 4 * 4]); // μ, log σ²: 4 f32 each
            }
            all.push((s["samples"].as_u64().unwrap(), bytes));
        }
        (all, m)
    };
    let (streamed, m) = codes("streamed");
    let (converted, _) = codes("converted");
    assert_eq!((streamed[0].0, streamed[1].0), (97, 20));
    assert!(
        streamed == converted,
        "the codes of the streamed and converted runs differ"
    );
    assert_eq!(m["splits"]["test"]["shards"][0]["object"], "test-00000.bin");
    // From a bucket in `shard` order: 4 ranks on 3 tars train as 1 worker
    // reading the same 4 streams.
    let s3 = emulators::s3("data");
    for i in 0..3 {
        let name = format!("shard-{i:06}.tar");
        let bytes = std::fs::read(tars.join(&name)).unwrap();
        emulators::s3_put(&s3, "data", &format!("wds/{name}"), &bytes);
    }
    let url = "s3://data/wds/shard-{000000..000002}.tar";
    let shard = [
        "data.order=shard",
        "data.streams=4",
        "data.shuffle_buffer=16",
    ];
    let vars = emulators::s3_env(&s3);
    let (one, _, _) = run("one", url, &shard, 1, &vars);
    let (four, _, said) = run("four", url, &shard, 4, &vars);
    let d = super::max_diff(&one, &four);
    assert!(d <= 1e-10, "1 and 4 workers differ by {d}: {said}");
    // The tars are scanned once for all ranks (a share each): the broken
    // test sample is met by one rank, not by each of the four.
    let met = said.matches("`sample000042` does not decode").count();
    assert_eq!(met, 1, "{said}");
    // A tar that is not there: the rank that scans it tells every rank.
    let mut c = worker_on(2);
    c.envs(vars.iter().map(|(k, v)| (k, v)));
    let missing = "data.url=s3://data/wds/shard-{000000..000003}.tar";
    c.args(super::worker_args(
        &dir.path().join("missing"),
        &[missing, "data.decode.size=32"],
    ));
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("rank 1:") && err.contains("shard-000003.tar"),
        "{err}"
    );
    assert!(
        !err.contains(S3_SECRET) && !err.contains("panicked"),
        "{err}"
    );
    // Cut at step 5 on 4 ranks, resumed on 2: the same model.
    let mut cut = shard.to_vec();
    cut.push("train.max_steps=5");
    run("cut", url, &cut, 4, &vars);
    let mut resumed = shard.to_vec();
    resumed.push("--resume");
    let (two, _, said) = run("cut", url, &resumed, 2, &vars);
    let d = super::max_diff(&one, &two);
    assert!(d <= 1e-10, "resumed on 2 ranks: differs by {d}: {said}");
    // TensorBoard counts the 2 skipped training samples once per epoch,
    // however many ranks read the streams that hold them.
    let skipped = |name: &str| {
        let e = super::console::events(&dir.path().join(name));
        e["scalars"]["data/skipped_in_epoch"].clone()
    };
    let counts = skipped("one");
    assert_eq!(
        counts.as_array().and_then(|c| c.last()),
        Some(&serde_json::json!(2.0)),
        "{counts}"
    );
    assert_eq!(skipped("four"), counts);
}
