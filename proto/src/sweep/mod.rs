//! Sweeps and studies: their axes ([`axes`]), their points ([`points`])
//! and the plan that checks them before any worker starts ([`plan`]).
mod axes;
mod plan;
mod points;

pub use axes::{parse_axis, Axis, MAX_POINTS};
pub use plan::Sweep;
pub use points::{point_config, values_map, Point};
