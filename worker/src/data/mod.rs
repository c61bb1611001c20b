//! Datasets: the on-storage format ([`format`]), object-store access
//! ([`store`]), fetching shards ahead with a cache ([`fetch`]), MNIST
//! conversion ([`mnist`]), dSprites generation ([`dsprites`]), writing
//! factor datasets ([`factors`]), samples by position ([`lookup`]),
//! importers of published layouts ([`import`]), staging an import and
//! publishing it whole ([`publish`]), the order
//! in which samples are visited ([`sampler`]), and the writes in progress
//! that a stop at once cleans up ([`inflight`]), dSprites' variants made
//! at load time ([`variant`]), WebDataset tars read without conversion
//! ([`streamed`]); digests ([`digest`]), the
//! I/O runtime ([`runtime`]) and the layer's error ([`error`]).
pub mod digest;
pub mod dsprites;
pub mod error;
pub mod factors;
pub mod fetch;
pub mod format;
pub mod import;
pub mod inflight;
pub mod lookup;
pub mod mnist;
pub mod publish;
pub mod runtime;
pub mod sampler;
pub mod store;
pub mod streamed;
pub mod variant;

pub use error::DataError;
pub use mnist::prepare_mnist;
