//! The value checks the sections share (positive, finite, in range), each naming its key.
use super::error::{key_err, ConfigError};

/// A number of seconds for a duration key: finite, above zero, and no more
/// than `Duration` holds (a year, to leave room for arithmetic on it).
pub(super) fn seconds(key: &str, v: f64) -> Result<(), ConfigError> {
    const MAX: f64 = 365.0 * 24.0 * 3600.0;
    if !(v.is_finite() && v > 0.0 && v <= MAX) {
        return Err(key_err(
            key,
            format!("must be a number of seconds > 0 and at most {MAX} (a year), got {v}"),
        ));
    }
    Ok(())
}

pub(super) fn positive(key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(key_err(key, "must be at least 1, got 0"));
    }
    Ok(())
}

pub(super) fn finite_nonneg(key: &str, v: f64) -> Result<(), ConfigError> {
    if !v.is_finite() || v < 0.0 {
        return Err(key_err(
            key,
            format!("must be a finite number >= 0, got {v}"),
        ));
    }
    Ok(())
}

/// A float key that must be finite and above zero.
pub(super) fn above_zero(key: &str, v: f64) -> Result<(), ConfigError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(key_err(key, format!("must be > 0, got {v}")));
    }
    Ok(())
}

/// Adam's β keys, in [0, 1).
pub(super) fn betas(keys: [(&str, f64); 2]) -> Result<(), ConfigError> {
    for (key, b) in keys {
        if !(0.0..1.0).contains(&b) {
            return Err(key_err(key, format!("must be in [0, 1), got {b}")));
        }
    }
    Ok(())
}
