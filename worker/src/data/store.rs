//! Object storage access through `object_store`: a dataset lives under one URL
//! prefix (`file:///dir`, a plain path, and whatever schemes `object_store`
//! parses). Blocking wrappers over the async API, with errors naming the URL.
use bytes::Bytes;
use object_store::{path::Path as ObjPath, ObjectStore, PutPayload};
use std::sync::Arc;
use url::Url;

use super::DataError;

/// An object-store prefix, e.g. the directory of one dataset.
pub struct Store {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    base: Url,
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
fn normalize(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
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

impl Store {
    /// Opens the prefix `spec` (a URL or a path). Nothing is read yet.
    pub fn open(spec: &str) -> Result<Store, DataError> {
        let mut base = to_url(spec)?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let (store, prefix) =
            object_store::parse_url(&base).map_err(|e| DataError::InvalidUrl {
                url: base.to_string(),
                message: e.to_string(),
            })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DataError::Io {
                url: base.to_string(),
                message: format!("cannot start the I/O runtime: {e}"),
            })?;
        Ok(Store {
            rt,
            store: Arc::from(store),
            prefix,
            base,
        })
    }

    /// The full URL of object `name` under the prefix, for messages.
    pub fn url_of(&self, name: &str) -> String {
        self.base
            .join(name)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| format!("{}{name}", self.base))
    }

    fn path_of(&self, name: &str) -> ObjPath {
        let rel = ObjPath::from(name);
        let mut parts: Vec<_> = self.prefix.parts().collect();
        parts.extend(rel.parts());
        ObjPath::from_iter(parts)
    }

    /// Reads a whole object.
    pub fn get(&self, name: &str) -> Result<Bytes, DataError> {
        let path = self.path_of(name);
        let url = self.url_of(name);
        self.rt.block_on(async {
            let got = self.store.get(&path).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => DataError::NotFound { url: url.clone() },
                e => DataError::Io {
                    url: url.clone(),
                    message: e.to_string(),
                },
            })?;
            got.bytes().await.map_err(|e| DataError::Io {
                url: url.clone(),
                message: e.to_string(),
            })
        })
    }

    /// Writes a whole object (atomically on local file systems).
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), DataError> {
        let path = self.path_of(name);
        self.rt.block_on(async {
            self.store
                .put(&path, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| DataError::Io {
                    url: self.url_of(name),
                    message: e.to_string(),
                })
        })
    }
}
