//! Fetching shards ahead of their use: in order, several requests at once
//! (large objects as parallel ranged reads), each verified against the
//! manifest's size and SHA-256, through an optional local cache keyed by the
//! SHA-256. A [`Prefetch`] runs on the storage runtime while training runs;
//! its bounded channel holds at most `ahead` fetched shards, so memory stays
//! bounded whatever the dataset's size.
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, oneshot};
use vae_proto::dataset::ShardEntry;

use super::digest::{sha256_hex, verify};
use super::error::DataError;
use super::runtime::runtime;
use super::store::{StorageOptions, Store};

/// Objects larger than this are read as parallel ranges of `RANGE` bytes.
const RANGED_ABOVE: u64 = 32 << 20;
const RANGE: u64 = 8 << 20;

/// A local directory of shards named by their SHA-256.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: &Path) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
        }
    }

    /// Where the shard with SHA-256 `sha` is kept.
    pub fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(&sha[..2.min(sha.len())]).join(sha)
    }

    /// The cached shard, if present and intact.
    fn get(&self, e: &ShardEntry) -> Option<Bytes> {
        let bytes = std::fs::read(self.path(&e.sha256)).ok()?;
        (bytes.len() as u64 == e.bytes && sha256_hex(&bytes) == e.sha256)
            .then(|| Bytes::from(bytes))
    }

    /// Keeps a verified shard (a failure to cache is not an error).
    pub fn put(&self, e: &ShardEntry, bytes: &[u8]) {
        let p = self.path(&e.sha256);
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = crate::atomic::write(&p, bytes);
    }
}

/// Fetches one shard: from the cache, or from the store (in ranges when
/// large), verified, then cached.
async fn fetch(store: Store, e: ShardEntry, cache: Option<Cache>) -> Result<Bytes, DataError> {
    if let Some(bytes) = cache.as_ref().and_then(|c| c.get(&e)) {
        return Ok(bytes);
    }
    let bytes = if e.bytes > RANGED_ABOVE {
        let ranges: Vec<_> = (0..e.bytes.div_ceil(RANGE))
            .map(|i| i * RANGE..((i + 1) * RANGE).min(e.bytes))
            .collect();
        let parts: Vec<Bytes> = futures::stream::iter(ranges)
            .map(|r| store.get_range_async(&e.object, r))
            .buffered(4)
            .try_collect()
            .await?;
        let mut all = Vec::with_capacity(e.bytes as usize);
        for p in parts {
            all.extend_from_slice(&p);
        }
        Bytes::from(all)
    } else {
        store.get_async(&e.object).await?
    };
    let url = store.url_of(&e.object);
    let checked = tokio::task::spawn_blocking(move || verify(&url, &e, &bytes).map(|_| (e, bytes)))
        .await
        .map_err(|j| DataError::Io {
            url: store.url_of("(verification)"),
            message: j.to_string(),
        })?;
    let (e, bytes) = checked?;
    if let Some(c) = cache {
        c.put(&e, &bytes);
    }
    Ok(bytes)
}

/// Shards fetched in the background, in order.
pub struct Prefetch {
    rx: mpsc::Receiver<Result<Bytes, DataError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Prefetch {
    /// Starts fetching `shards` of `store` (once `gate` fires, if given):
    /// `concurrency` at once, at most `ahead` held for the consumer.
    pub fn start(
        store: &Store,
        shards: Vec<ShardEntry>,
        opts: &StorageOptions,
        gate: Option<oneshot::Receiver<()>>,
    ) -> Result<Prefetch, DataError> {
        let (tx, rx) = mpsc::channel(opts.prefetch_shards.max(1));
        let cache = opts.cache_dir.as_deref().map(Cache::new);
        let (store, concurrency) = (store.clone(), opts.concurrency.max(1));
        let task = runtime()?.spawn(async move {
            if let Some(g) = gate {
                let _ = g.await; // fired, or the sender is gone: go either way
            }
            let mut fetched = futures::stream::iter(shards)
                .map(|e| fetch(store.clone(), e, cache.clone()))
                .buffered(concurrency);
            while let Some(r) = fetched.next().await {
                let failed = r.is_err();
                if tx.send(r).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Prefetch { rx, task })
    }
}

impl Iterator for Prefetch {
    type Item = Result<Bytes, DataError>;

    /// The next shard, waiting for it; `None` after the last.
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.blocking_recv()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads `shards` (verified) in order, `concurrency` at once, and returns them all.
pub fn fetch_all(
    store: &Store,
    shards: Vec<ShardEntry>,
    opts: &StorageOptions,
) -> Result<Vec<Bytes>, DataError> {
    Prefetch::start(store, shards, opts, None)?.collect()
}
