//! A study's report (`vae-worker study report RUN [RUN…]`, also written by
//! a study's job at its end): the models of one or more studies read from
//! their `study.csv` ([`table`]), the statistics of Locatello et al.'s
//! figures ([`stats`]), the figures as PNG ([`figures`], plotters) and a
//! static page that shows them with the table ([`html`]); [`report`] makes
//! them.
pub mod figures;
pub mod html;
pub mod report;
pub mod stats;
pub mod table;

pub use report::{report, ReportError};
