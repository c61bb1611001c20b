//! WebDataset tar shards, read distrustfully: a sample is the files that
//! share a key (`000123.jpg`, `000123.cls`, `000123.json`), in the shard's
//! order. A shard must end with tar's end-of-archive blocks (a shard cut at
//! an entry boundary is an error naming it, not half a dataset); a key met
//! twice in one shard is an error naming both; links, devices and the like
//! are skipped and named in the report, as a corrupt image is.
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};

use crate::data::error::DataError;
use crate::data::store::StorageOptions;

/// One sample before decoding: its key, its image file's bytes, its labels,
/// and, for an entry that is no sample, why it is skipped.
pub struct Raw {
    pub key: String,
    pub bytes: Vec<u8>,
    pub cls: Option<String>,
    pub json: Option<String>,
    pub problem: Option<String>,
}

impl Raw {
    fn new(key: String) -> Raw {
        Raw {
            key,
            bytes: Vec::new(),
            cls: None,
            json: None,
            problem: None,
        }
    }
}

/// The WebDataset key and extension of a file in a tar: the part of the
/// base name before its first dot, with the directory.
fn key_and_ext(name: &str) -> (String, String) {
    let (dir, base) = name.rsplit_once('/').map_or(("", name), |(d, b)| (d, b));
    let (stem, ext) = base.split_once('.').unwrap_or((base, ""));
    let key = if dir.is_empty() {
        stem.to_string()
    } else {
        format!("{dir}/{stem}")
    };
    (key, ext.to_ascii_lowercase())
}

/// Whether the `len`-byte file holds tar's end-of-archive (two zero blocks)
/// at `end`, where the last entry ended.
fn ends_properly(file: &mut (impl Read + Seek), end: u64, len: u64) -> std::io::Result<bool> {
    if len < end + 1024 {
        return Ok(false);
    }
    let mut blocks = [0u8; 1024];
    file.seek(SeekFrom::Start(end))?;
    file.read_exact(&mut blocks)?;
    Ok(blocks.iter().all(|&b| b == 0))
}

/// The samples of one tar shard, in order (files grouped by key), handed to
/// `each` in batches of about `batch` as they are read.
pub fn read_tar(
    spec: &str,
    opts: &StorageOptions,
    batch: usize,
    each: impl FnMut(Vec<Raw>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let input = super::local_input(spec, opts)?;
    let io = |e: std::io::Error| DataError::Io {
        url: spec.to_string(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(&input.path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    read_tar_from(file, len, spec, batch, each)
}

/// [`read_tar`] of a tar of `len` bytes read from `reader` (a file, or a
/// shard held in memory); `name` names it in errors.
pub fn read_tar_from<R: Read + Seek>(
    reader: R,
    len: u64,
    name: &str,
    batch: usize,
    mut each: impl FnMut(Vec<Raw>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let spec = name;
    let fail = |message: String| DataError::Io {
        url: spec.to_string(),
        message,
    };
    let io = |e: std::io::Error| fail(e.to_string());
    let mut archive = tar::Archive::new(std::io::BufReader::new(reader));
    let mut samples: Vec<Raw> = Vec::new();
    let (mut done, mut exts) = (HashSet::new(), HashSet::new());
    let mut end = 0;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
        let kind = entry.header().entry_type();
        let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            let what = if kind.is_symlink() || kind.is_hard_link() {
                "a link in the tar: skipped"
            } else {
                "not a regular file in the tar: skipped"
            };
            let mut r = Raw::new(name);
            r.problem = Some(what.into());
            samples.push(r);
            continue;
        }
        let (key, ext) = key_and_ext(&name);
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(io)?;
        if samples.last().is_none_or(|s| s.key != key) {
            if !done.insert(key.clone()) {
                return Err(fail(format!("key `{key}` met twice in the shard ({name})")));
            }
            exts.clear();
            // A new key: the samples before the last are complete.
            if samples.len() > batch {
                let last = samples.pop();
                each(std::mem::take(&mut samples))?;
                samples.extend(last);
            }
            samples.push(Raw::new(key.clone()));
        }
        if !exts.insert(ext.clone()) {
            return Err(fail(format!("key `{key}` has two .{ext} files ({name})")));
        }
        let Some(s) = samples.last_mut() else {
            continue;
        };
        match ext.as_str() {
            "png" | "jpg" | "jpeg" => s.bytes = bytes,
            "cls" => s.cls = Some(String::from_utf8_lossy(&bytes).trim().to_string()),
            "json" => s.json = Some(String::from_utf8_lossy(&bytes).into_owned()),
            _ => {}
        }
    }
    let mut file = archive.into_inner().into_inner();
    if !ends_properly(&mut file, end, len).map_err(io)? {
        return Err(fail(format!(
            "the tar ends without its end-of-archive blocks after {end} of {len} bytes: cut short"
        )));
    }
    each(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webdataset_keys_are_the_name_before_the_first_dot() {
        assert_eq!(
            key_and_ext("a/b/000123.jpg"),
            ("a/b/000123".into(), "jpg".into())
        );
        assert_eq!(
            key_and_ext("000123.seg.png"),
            ("000123".into(), "seg.png".into())
        );
    }

    use proptest::prelude::*;

    /// A WebDataset shard as `tarfile` or `tar` writes one: 3 samples of
    /// an image, a `.cls` and a `.json`, then the end-of-archive blocks.
    fn shard() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..3 {
            for (ext, data) in [
                ("jpg", vec![0xFF; 40]),
                ("cls", b"1".to_vec()),
                ("json", b"{}".to_vec()),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                let _ = b.append_data(&mut h, format!("{i:06}.{ext}"), data.as_slice());
            }
        }
        b.into_inner().unwrap_or_default()
    }

    fn read(bytes: &[u8]) -> Result<usize, DataError> {
        let dir = tempfile::tempdir().map_err(|e| DataError::Io {
            url: "tmp".into(),
            message: e.to_string(),
        })?;
        let path = dir.path().join("s.tar");
        std::fs::write(&path, bytes).map_err(|e| DataError::Io {
            url: "tmp".into(),
            message: e.to_string(),
        })?;
        let mut n = 0;
        read_tar(
            &path.display().to_string(),
            &StorageOptions::default(),
            2,
            |b| {
                n += b.len();
                Ok(())
            },
        )?;
        Ok(n)
    }

    #[test]
    fn the_seed_shard_reads_and_a_cut_one_does_not() {
        let s = shard();
        assert_eq!(read(&s).unwrap(), 3);
        let e = read(&s[..512 * 8]).unwrap_err().to_string();
        assert!(e.contains("cut short"), "{e}");
    }

    proptest! {
        /// A shard, mutated: its samples, or an error naming it; never a panic.
        #[test]
        fn prop_mutated_shards_read_or_fail(bytes in vae_proto::fuzz::mutated(shard())) {
            let _ = read(&bytes);
        }
    }
}
