//! `[storage]`: object-store endpoint, retries, timeouts, concurrency, cache.
use serde::{Deserialize, Serialize};

use super::checks::{positive, seconds};
use super::error::ConfigError;

/// Object storage: how requests to `s3://`, `gs://`, `az://` and `https://`
/// datasets and checkpoints are made. Credentials never go here: they come
/// from each cloud's usual environment variables (`AWS_ACCESS_KEY_ID`, ...).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// An endpoint instead of the cloud's own (S3-compatible stores, an
    /// emulator); empty: `AWS_ENDPOINT_URL` and friends, or the default.
    pub endpoint: String,
    /// Retries of a failed request (5xx, timeouts, dropped connections).
    pub max_retries: u64,
    /// No retry starts later than this after a request's first attempt.
    pub retry_timeout_s: f64,
    /// One request's time limit.
    pub timeout_s: f64,
    pub connect_timeout_s: f64,
    /// Requests in flight at once when reading shards.
    pub concurrency: u64,
    /// Shards fetched ahead of the one being trained on (`shard` order).
    pub prefetch_shards: u64,
    /// A local directory caching shards by their SHA-256 (empty: no cache).
    pub cache_dir: String,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            endpoint: String::new(),
            max_retries: 10,
            retry_timeout_s: 180.0,
            timeout_s: 30.0,
            connect_timeout_s: 5.0,
            concurrency: 4,
            prefetch_shards: 4,
            cache_dir: String::new(),
        }
    }
}

impl StorageSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("storage.retry_timeout_s", self.retry_timeout_s),
            ("storage.timeout_s", self.timeout_s),
            ("storage.connect_timeout_s", self.connect_timeout_s),
        ] {
            seconds(key, v)?;
        }
        positive("storage.concurrency", self.concurrency)
    }
}
