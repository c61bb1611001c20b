//! The one tokio runtime every storage request runs on.
use std::sync::OnceLock;

use super::error::DataError;

/// The runtime every storage request runs on (two I/O threads).
pub fn runtime() -> Result<&'static tokio::runtime::Runtime, DataError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vae-storage")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| DataError::Io {
        url: "(storage runtime)".into(),
        message: format!("cannot start the I/O runtime: {e}"),
    })
}
