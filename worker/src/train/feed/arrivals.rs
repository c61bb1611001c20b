//! The pieces of one dealt worker's shards as they arrive ([`Arrivals`]):
//! fetched ahead by a [`Prefetch`] and, for shards stored in another form
//! (WebDataset tars, through the dataset's [`Decoder`]), decoded on a
//! thread of their own while training runs — each piece on every core, at
//! most `storage.prefetch_shards` decoded pieces waiting for the stream, so
//! memory stays bounded and the step does not wait for a decode that could
//! have run during the one before it.
use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use vae_proto::dataset::ShardEntry;

use crate::data::fetch::Prefetch;
use crate::data::format::{Dataset, Decoder};
use crate::data::store::{StorageOptions, Store};
use crate::data::DataError;

/// A range `[start, end)` of the samples of shard `shard`, whose first
/// sample has index `first` in the split.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub first: u64,
    pub shard: usize,
}

/// One piece, arrived.
pub struct Arrived {
    /// The whole shard as stored, or (decoded) only the piece's samples
    /// that decode.
    pub bytes: Bytes,
    /// Decoded: each sample's position in the piece (the missing ones did
    /// not decode and are skipped). `None`: stored, read in place.
    pub kept: Option<Vec<u32>>,
    pub span: Span,
}

/// What a dealt worker's pieces are fetched (again) from.
pub struct Source {
    store: Store,
    entries: Vec<ShardEntry>,
    options: StorageOptions,
    decoder: Option<Arc<dyn Decoder>>,
    pub spans: Vec<Span>,
}

impl Source {
    pub fn new(dataset: &Dataset, spans: Vec<Span>) -> Result<Source, DataError> {
        let which: Vec<usize> = spans.iter().map(|s| s.shard).collect();
        Ok(Source {
            store: dataset.store.clone(),
            entries: dataset.shards("train", Some(&which))?,
            options: dataset.options.clone(),
            decoder: dataset.decoder.clone(),
            spans,
        })
    }

    /// The samples of every piece, as the deal counts them.
    pub fn samples(&self) -> usize {
        self.spans.iter().map(|s| s.end - s.start).sum()
    }

    /// Starts fetching (once `gate` fires, at once without one) and, when
    /// the shards are decoded, decoding.
    pub fn start(&self, gate: Option<oneshot::Receiver<()>>) -> Result<Arrivals, DataError> {
        let fetch = Prefetch::start(&self.store, self.entries.clone(), &self.options, gate)?;
        let spans = self.spans.clone();
        let Some(d) = self.decoder.clone() else {
            return Ok(Arrivals::Stored {
                fetch,
                spans: spans.into(),
            });
        };
        let (tx, rx) = sync_channel(self.options.prefetch_shards.max(1));
        std::thread::Builder::new()
            .name("vae-decode".into())
            .spawn(move || {
                for (span, fetched) in spans.into_iter().zip(fetch) {
                    let r = fetched
                        .and_then(|b| d.decode(span.shard, &b, span.start, span.end))
                        .map(|d| Arrived {
                            bytes: Bytes::from(d.samples),
                            kept: Some(d.kept),
                            span,
                        });
                    let failed = r.is_err();
                    // The stream is gone (its epoch ended), or this failed.
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|e| DataError::Io {
                url: "(the decoding thread)".into(),
                message: e.to_string(),
            })?;
        Ok(Arrivals::Decoded(rx))
    }
}

/// The pieces of one pass over a dealt worker's shards, in order.
pub enum Arrivals {
    Stored {
        fetch: Prefetch,
        spans: VecDeque<Span>,
    },
    Decoded(Receiver<Result<Arrived, DataError>>),
}

impl Iterator for Arrivals {
    type Item = Result<Arrived, DataError>;

    /// The next piece, waiting for it; `None` when the fetch stopped.
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Arrivals::Stored { fetch, spans } => {
                let span = spans.pop_front()?;
                Some(fetch.next()?.map(|bytes| Arrived {
                    bytes,
                    kept: None,
                    span,
                }))
            }
            Arrivals::Decoded(rx) => rx.recv().ok(),
        }
    }
}
