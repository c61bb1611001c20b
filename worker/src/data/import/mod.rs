//! Importers: datasets in their published layouts, from a local path or a
//! bucket URL, into the project's format (`vae-worker data prepare NAME
//! --from …`). One file per importer: the real dSprites `.npz`
//! ([`dsprites`]), 3dshapes' `.h5` ([`shapes3d`]), MPI3D's `.npz`
//! ([`mpi3d`]), image folders, bucket
//! prefixes and WebDataset tar shards ([`images`]); what they share: NumPy's
//! `.npz` ([`npz`]), libjpeg-turbo ([`jpeg`]), the input ([`input`]) and
//! the errors ([`error`]). A new importer is a file here, its variant in
//! `vae_proto::cli::PrepareDataset` and its arm in `prepare.rs`.
pub mod dsprites;
pub mod error;
pub mod images;
pub mod input;
pub mod jpeg;
pub mod mpi3d;
pub mod npz;
pub mod shapes3d;

pub use error::{ImportError, InputError};
pub use input::{local_input, progress, require_file, LocalInput};
