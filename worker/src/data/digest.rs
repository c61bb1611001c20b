//! SHA-256 digests of shards and checkpoint files, and the check of a
//! shard's bytes against its manifest entry (size, then digest).
use sha2::{Digest, Sha256};
use vae_proto::dataset::ShardEntry;

use super::error::DataError;

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks a shard's bytes against its manifest entry.
pub fn verify(url: &str, e: &ShardEntry, bytes: &[u8]) -> Result<(), DataError> {
    if bytes.len() as u64 != e.bytes {
        return Err(DataError::Corrupt {
            url: url.to_string(),
            message: format!(
                "{} bytes, the manifest says {} (truncated?)",
                bytes.len(),
                e.bytes
            ),
        });
    }
    let sum = sha256_hex(bytes);
    if sum != e.sha256 {
        return Err(DataError::Corrupt {
            url: url.to_string(),
            message: format!("SHA-256 {sum}, the manifest says {}", e.sha256),
        });
    }
    Ok(())
}
