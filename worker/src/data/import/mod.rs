//! Importers: datasets in their published layouts, from a local path or a
//! bucket URL, into the project's format (`vae-worker data prepare NAME
//! --from …`). One file per importer: the real dSprites `.npz`
//! ([`dsprites`]), 3dshapes' `.h5` ([`shapes3d`]), MPI3D's `.npz`
//! ([`mpi3d`]), SmallNORB's binary matrices ([`smallnorb`]), Cars3D's
//! MATLAB files ([`cars3d`]), image folders, bucket prefixes and
//! WebDataset tar shards ([`images`]); what they share: brace patterns
//! ([`braces`]), NumPy's `.npz` ([`npz`]), HDF5 opened distrustfully
//! ([`h5`]), NORB's matrix format ([`norb`]), MATLAB's v5 format
//! ([`mat5`]), rows placed on a grid by their labels ([`grid`]), Pillow's
//! Lanczos resize ([`resample`]), libjpeg-turbo ([`jpeg`]), WebDataset
//! shards ([`wds`]), the input ([`input`]) and the errors ([`error`]). A new importer is a file here, its variant in
//! `vae_proto::cli::PrepareDataset` and its arm in `prepare.rs`.
pub mod braces;
pub mod cars3d;
pub mod dsprites;
pub mod error;
pub mod grid;
pub mod h5;
pub mod images;
pub mod input;
pub mod jpeg;
pub mod mat5;
pub mod mpi3d;
pub mod norb;
pub mod npz;
pub mod resample;
pub mod shapes3d;
pub mod smallnorb;
pub mod wds;

pub use error::{ImportError, InputError};
pub use input::{local_input, progress, require_file, InputFolder, LocalInput};
