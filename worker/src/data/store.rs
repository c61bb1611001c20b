//! Object storage through `object_store`: one URL prefix (a dataset, a
//! checkpoint directory) on `file://` or a plain path, `s3://`, `gs://`,
//! `az://`/`abfs://` or `https://`. Credentials and endpoints come from the
//! environment variables each cloud's tools read (`AWS_*`, `GOOGLE_*`,
//! `AZURE_*`, through the builders' `from_env`); the `[storage]` config adds
//! an endpoint, retries with backoff and timeouts. Requests run on one shared
//! multi-threaded runtime, so background fetches and writes proceed while
//! training runs; the blocking calls here are for the training thread and
//! the checkpoint writer. Every error names the object's URL, on one line,
//! with any credential taken out. TLS is rustls on `ring`, installed as the
//! process's provider before the first store is built.
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload, RetryConfig,
};
use url::Url;
use vae_proto::config::StorageSection;

use super::error::DataError;
use super::inflight;
use super::runtime::runtime;

/// Objects larger than this are uploaded in parts of `PART` bytes.
const MULTIPART_ABOVE: usize = 16 << 20;
const PART: usize = 8 << 20;

/// How requests are made (from `[storage]`).
#[derive(Clone, Debug)]
pub struct StorageOptions {
    pub endpoint: Option<String>,
    pub max_retries: usize,
    pub retry_timeout: Duration,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub concurrency: usize,
    pub prefetch_shards: usize,
    pub cache_dir: Option<PathBuf>,
}

impl StorageOptions {
    pub fn from_config(s: &StorageSection) -> StorageOptions {
        StorageOptions {
            endpoint: (!s.endpoint.trim().is_empty()).then(|| s.endpoint.trim().to_string()),
            max_retries: s.max_retries as usize,
            retry_timeout: Duration::from_secs_f64(s.retry_timeout_s),
            timeout: Duration::from_secs_f64(s.timeout_s),
            connect_timeout: Duration::from_secs_f64(s.connect_timeout_s),
            concurrency: s.concurrency.max(1) as usize,
            prefetch_shards: s.prefetch_shards as usize,
            cache_dir: (!s.cache_dir.trim().is_empty()).then(|| PathBuf::from(s.cache_dir.trim())),
        }
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    /// Client settings as config keys, so they add to what the builders
    /// read from the environment (`AWS_ALLOW_HTTP`, ...) instead of
    /// replacing it. Plain HTTP is allowed for an `http://` endpoint.
    fn client(&self, allow_http: bool) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let mut v = vec![
            ("timeout", ms(self.timeout)),
            ("connect_timeout", ms(self.connect_timeout)),
        ];
        if allow_http || self.http_endpoint() {
            v.push(("allow_http", "true".into()));
        }
        v
    }

    fn http_endpoint(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
    }
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions::from_config(&StorageSection::default())
    }
}

/// An object-store prefix, e.g. the directory of one dataset. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    base: Url,
    /// The directory behind a local store.
    local: Option<PathBuf>,
    /// How long a listing is retried (`storage.retry_timeout_s`): a list's
    /// paged body can break mid-stream, which `object_store` does not retry.
    retry_timeout: Duration,
}

/// Turns a URL or a plain path (relative to the working directory) into a URL.
pub fn to_url(spec: &str) -> Result<Url, DataError> {
    let invalid = |message: String| DataError::InvalidUrl {
        url: spec.to_string(),
        message,
    };
    if spec.contains("://") {
        return Url::parse(spec).map_err(|e| invalid(e.to_string()));
    }
    let path = std::path::Path::new(spec);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| invalid(format!("cannot read the working directory: {e}")))?
            .join(path)
    };
    Url::from_directory_path(normalize(&abs)).map_err(|_| invalid("not a usable path".into()))
}

/// Removes `.` and `..` components without touching the file system (the
/// path need not exist yet; object-store paths may not contain them).
fn normalize(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// A message on one line with every credential taken out (URL userinfo,
/// signing parameters, the environment's credential values: see
/// [`vae_proto::redact`]).
pub fn redact(message: &str) -> String {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    vae_proto::redact::redact(&line)
}

/// The error of a request for `url`.
pub fn request_error(url: &str, e: object_store::Error) -> DataError {
    let url = url.to_string();
    match e {
        object_store::Error::NotFound { .. } => DataError::NotFound {
            url,
            detail: redact(&e.to_string()),
        },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => DataError::Denied {
            url,
            message: redact(&e.to_string()),
        },
        e => DataError::Io {
            url,
            message: redact(&e.to_string()),
        },
    }
}

/// Makes rustls's `ring` provider the process's, once (the HTTP clients of
/// the cloud stores take it from there).
fn tls_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Err: a provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Store {
    /// Opens the prefix `spec` (a URL or a path). Nothing is read yet.
    pub fn open(spec: &str, opts: &StorageOptions) -> Result<Store, DataError> {
        let mut base = to_url(spec)?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let invalid = |message: String| DataError::InvalidUrl {
            url: base.to_string(),
            message: redact(&message),
        };
        let (scheme, prefix) =
            ObjectStoreScheme::parse(&base).map_err(|e| invalid(e.to_string()))?;
        tls_provider();
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match scheme {
            ObjectStoreScheme::Local => Ok(Arc::new(
                LocalFileSystem::new().with_automatic_cleanup(true),
            )),
            ObjectStoreScheme::AmazonS3 => {
                let mut b = AmazonS3Builder::from_env()
                    .with_url(base.as_str())
                    .with_retry(opts.retry());
                for (k, v) in opts.client(false) {
                    b = b.with_config(k.parse().map_err(|e| invalid(format!("{e}")))?, v);
                }
                if let Some(e) = &opts.endpoint {
                    b = b.with_endpoint(e);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let mut b = GoogleCloudStorageBuilder::from_env()
                    .with_url(base.as_str())
                    .with_retry(opts.retry());
                for (k, v) in opts.client(false) {
                    b = b.with_config(k.parse().map_err(|e| invalid(format!("{e}")))?, v);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                let emulator = std::env::var("AZURE_STORAGE_USE_EMULATOR")
                    .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
                let mut b = MicrosoftAzureBuilder::from_env()
                    .with_url(base.as_str())
                    .with_retry(opts.retry());
                for (k, v) in opts.client(emulator) {
                    b = b.with_config(k.parse().map_err(|e| invalid(format!("{e}")))?, v);
                }
                if let Some(e) = &opts.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            ObjectStoreScheme::Http => {
                let origin = base[..url::Position::BeforePath].to_string();
                let mut b = HttpBuilder::new().with_url(origin).with_retry(opts.retry());
                for (k, v) in opts.client(base.scheme() == "http") {
                    b = b.with_config(k.parse().map_err(|e| invalid(format!("{e}")))?, v);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            other => {
                return Err(invalid(format!(
                    "{other:?} is not a supported storage scheme"
                )))
            }
        };
        let store = built.map_err(|e| invalid(e.to_string()))?;
        let local = (scheme == ObjectStoreScheme::Local)
            .then(|| base.to_file_path().ok())
            .flatten();
        Ok(Store {
            store,
            prefix,
            base,
            local,
            retry_timeout: opts.retry_timeout,
        })
    }

    /// The full URL of object `name` under the prefix, for messages.
    pub fn url_of(&self, name: &str) -> String {
        self.base
            .join(name)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| format!("{}{name}", self.base))
    }

    /// The prefix's URL.
    pub fn url(&self) -> &Url {
        &self.base
    }

    /// The local directory of a `file://` store.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local.as_deref()
    }

    /// The store of the prefix `sub/` under this one.
    pub fn child(&self, sub: &str) -> Store {
        let sub = sub.trim_end_matches('/');
        Store {
            store: Arc::clone(&self.store),
            prefix: self.path_of(sub),
            base: self
                .base
                .join(&format!("{sub}/"))
                .unwrap_or_else(|_| self.base.clone()),
            local: self.local.as_ref().map(|d| d.join(sub)),
            retry_timeout: self.retry_timeout,
        }
    }

    fn path_of(&self, name: &str) -> ObjPath {
        let rel = ObjPath::from(name);
        let mut parts: Vec<_> = self.prefix.parts().collect();
        parts.extend(rel.parts());
        ObjPath::from_iter(parts)
    }

    /// Runs `attempt` again while it fails with a transient error (`Io`: a
    /// connection refused or reset, a body that breaks off — which
    /// `object_store` retries only until a response starts), with backoff,
    /// for up to `storage.retry_timeout_s`.
    async fn again<T, F: std::future::Future<Output = Result<T, DataError>>>(
        &self,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, DataError> {
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match attempt().await {
                Err(DataError::Io { .. }) if started.elapsed() + wait < self.retry_timeout => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                r => return r,
            }
        }
    }

    /// Reads a whole object.
    pub async fn get_async(&self, name: &str) -> Result<Bytes, DataError> {
        let url = self.url_of(name);
        let path = self.path_of(name);
        self.again(|| async {
            let got = self
                .store
                .get(&path)
                .await
                .map_err(|e| request_error(&url, e))?;
            got.bytes().await.map_err(|e| request_error(&url, e))
        })
        .await
    }

    /// Reads the bytes `range` of an object.
    pub async fn get_range_async(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, DataError> {
        let path = self.path_of(name);
        self.again(|| async {
            self.store
                .get_range(&path, range.clone())
                .await
                .map_err(|e| request_error(&self.url_of(name), e))
        })
        .await
    }

    /// Reads a whole object (blocking).
    pub fn get(&self, name: &str) -> Result<Bytes, DataError> {
        runtime()?.block_on(self.get_async(name))
    }

    /// Streams object `name` into the local file `to` (an object of any
    /// size, never whole in memory); returns its size. A download that
    /// breaks off starts again, as [`Store::get`] does.
    pub fn download(&self, name: &str, to: &std::path::Path) -> Result<u64, DataError> {
        runtime()?.block_on(self.again(|| self.download_once(name, to)))
    }

    async fn download_once(&self, name: &str, to: &std::path::Path) -> Result<u64, DataError> {
        use std::io::Write;
        let url = self.url_of(name);
        let local = |e: std::io::Error| DataError::Local {
            path: to.to_path_buf(),
            message: e.to_string(),
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(to).map_err(local)?);
        let mut written = 0u64;
        let got = self
            .store
            .get(&self.path_of(name))
            .await
            .map_err(|e| request_error(&url, e))?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| request_error(&url, e))?;
            file.write_all(&chunk).map_err(local)?;
            written += chunk.len() as u64;
        }
        file.flush().map_err(local)?;
        Ok(written)
    }

    /// Writes a whole object, in parts when it is large (atomically on
    /// local file systems; an object store shows it only when complete).
    /// While it runs the write is registered ([`inflight`]), so a stop at
    /// once removes its staged file or aborts its upload; a failed upload
    /// is aborted here.
    pub async fn put_async(&self, name: &str, bytes: Bytes) -> Result<(), DataError> {
        let path = self.path_of(name);
        let fail = |e| request_error(&self.url_of(name), e);
        if let Some(dir) = &self.local {
            let file = dir.join(name);
            let (to, local) = (file.clone(), file.clone());
            return tokio::task::spawn_blocking(move || put_local(&to, &bytes))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| DataError::Local {
                    path: local,
                    message: e.to_string(),
                });
        }
        if bytes.len() <= MULTIPART_ABOVE {
            self.store
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(fail)?;
            return Ok(());
        }
        let upload: inflight::SharedUpload = Arc::new(tokio::sync::Mutex::new(
            self.store.put_multipart(&path).await.map_err(fail)?,
        ));
        let Some(_registered) = inflight::global().register_upload(Arc::clone(&upload)) else {
            let _ = upload.lock().await.abort().await;
            return Err(DataError::Io {
                url: self.url_of(name),
                message: inflight::stopping().to_string(),
            });
        };
        let parts: Vec<_> = {
            let mut u = upload.lock().await;
            (0..bytes.len())
                .step_by(PART)
                .map(|at| {
                    let part = bytes.slice(at..(at + PART).min(bytes.len()));
                    let slow = crate::faults::slow_upload_part();
                    let put = u.put_part(PutPayload::from(part));
                    async move {
                        slow.await;
                        put.await
                    }
                })
                .collect()
        };
        let sent = futures::stream::iter(parts)
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await;
        let mut u = upload.lock().await;
        match sent {
            Ok(_) => u.complete().await.map(|_| ()),
            Err(e) => {
                let _ = u.abort().await;
                Err(e)
            }
        }
        .map_err(fail)
    }

    /// Writes a whole object (blocking).
    pub fn put(&self, name: &str, bytes: impl Into<Bytes>) -> Result<(), DataError> {
        runtime()?.block_on(self.put_async(name, bytes.into()))
    }

    /// Moves object `from` to `to` under the prefix (a rename on disk, a
    /// copy then a delete on an object store).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), DataError> {
        let (a, b) = (self.path_of(from), self.path_of(to));
        runtime()?.block_on(async {
            (self.store.rename(&a, &b).await).map_err(|e| request_error(&self.url_of(from), e))
        })
    }

    /// Deletes an object; a missing one is not an error.
    pub fn delete(&self, name: &str) -> Result<(), DataError> {
        let path = self.path_of(name);
        runtime()?.block_on(async {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(request_error(&self.url_of(name), e)),
            }
        })
    }

    /// The names (relative to the prefix) of every object under `sub/`; a
    /// listing that breaks off (a transient error) is started again, with
    /// backoff, for up to `storage.retry_timeout_s`.
    pub fn list(&self, sub: &str) -> Result<Vec<String>, DataError> {
        runtime()?.block_on(self.again(|| self.list_once(sub)))
    }

    async fn list_once(&self, sub: &str) -> Result<Vec<String>, DataError> {
        let path = self.path_of(sub);
        let skip = self.prefix.parts().count();
        let metas: Vec<_> = self
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| request_error(&self.url_of(sub), e))?;
        Ok(metas
            .into_iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(skip)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect())
    }

    /// On a local store, syncs the files `names` and their directories to
    /// disk (object stores make an object durable before they acknowledge it).
    pub fn sync(&self, names: &[&str]) -> Result<(), DataError> {
        let Some(dir) = &self.local else {
            return Ok(());
        };
        let sync = |p: PathBuf| {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| DataError::Io {
                    url: p.display().to_string(),
                    message: e.to_string(),
                })
        };
        let mut dirs = std::collections::BTreeSet::new();
        for n in names {
            let p = dir.join(n);
            if let Some(parent) = p.parent() {
                dirs.insert(parent.to_path_buf());
            }
            sync(p)?;
        }
        for d in dirs {
            sync(d)?;
        }
        Ok(())
    }
}

/// Writes `bytes` to the local file `file` through a registered staged copy
/// (`file#N`, renamed over `file` when whole), so that a stop at once
/// removes it ([`inflight`]). Creates the file's directory.
fn put_local(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let (_registered, staged, mut f) = inflight::global().stage(file)?;
    let written =
        std::io::Write::write_all(&mut f, bytes).and_then(|()| std::fs::rename(&staged, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written
}
