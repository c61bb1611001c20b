//! The training data of this rank, in the configured order, as the batches
//! of each step; the one place where data meets the training loop.
//! `global`: every rank holds the whole training split (read once, several
//! shards at a time); one permutation per epoch, each global batch split into
//! contiguous per-rank slices. `shard`: each rank streams only the shards
//! dealt to it this epoch through its shuffle buffer ([`stream`]), fetched
//! ahead while training runs, the next epoch's as soon as this epoch's are
//! all read. An [`Epoch`] yields [`StepBatch`]es from a position (a resume
//! starts mid-epoch). A dSprites variant (`data.variant`) is made of
//! each batch as it is drawn ([`variant`]).
pub mod arrivals;
pub mod epoch;
pub mod scan;
pub mod source;
pub mod split;
pub mod stream;
pub mod throughput;
pub mod variant;

pub use epoch::{Epoch, StepBatch};
pub use source::Feed;
pub use split::load_split;
pub use throughput::{read_throughput, Throughput};
