//! The registry of objectives: the one `model.objective` names, with its
//! settings. A new objective is a file beside this one, its variant in
//! `vae_proto::config::ObjectiveKind` and its arm here; the compiler names
//! a missing one.
use vae_proto::config::{ModelSection, ObjectiveKind};

use super::penalty::Objective;
use super::{btcvae, capacity, dip, factor, vae};

/// The registry: the objective `model.objective` names, with its settings.
pub fn build(m: &ModelSection, dataset_size: usize) -> Box<dyn Objective> {
    match m.objective {
        ObjectiveKind::Vae => Box::new(vae::Vae { beta: m.beta }),
        ObjectiveKind::Capacity => Box::new(capacity::Capacity {
            max: m.capacity_max,
            steps: m.capacity_steps,
            weight: m.capacity_weight,
        }),
        ObjectiveKind::Factor => Box::new(factor::Factor { gamma: m.tc_weight }),
        ObjectiveKind::Btcvae => Box::new(btcvae::Btcvae {
            beta: m.tc_weight,
            dataset_size,
        }),
        ObjectiveKind::DipI | ObjectiveKind::DipIi => Box::new(dip::Dip {
            second: m.objective == ObjectiveKind::DipIi,
            lambda_od: m.dip_lambda_od,
            lambda_d: m.dip_lambda_d(),
        }),
    }
}
