//! What a run reports, by concern: [`meter`] adds up and reduces (over
//! ranks) what the steps report, with the divergence check and the
//! stragglers; [`records`] are the typed records written and read back
//! (`history.json`, `summary.json`); this file is the output side — the
//! [`Reporter`] writes, on rank 0 only (a no-op elsewhere), to its sinks:
//! TensorBoard scalars, images and histograms, PNGs, the console (a progress
//! bar on a terminal, a line per logging window without one), `history.json`,
//! `metrics.json` and `summary.json`. The console shows a progress bar where
//! one is seen (stderr a terminal of the user's, not under MPI) and a line
//! per logging window elsewhere, each counting to the run's real end
//! (`train.max_steps` included). Pictures and histograms are written at most
//! once per logging window (and at the end), so a run of many short epochs
//! keeps its event file in proportion. The scalars of a logging window are
//! listed in [`train_scalars`], those of an evaluation in [`sums_scalars`]:
//! adding one means adding it there.
pub mod meter;
pub mod records;
pub mod reporter;
pub mod scalars;

pub use meter::{Meter, Window};
pub use records::{EvalRecord, Membership, Summary};
pub use reporter::{Drawn, Outcome, Reporter};
pub use scalars::{banner, has_tc, sums_scalars, train_scalars, STRAGGLER_WINDOWS};
