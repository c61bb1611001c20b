//! NumPy's `.npz` (a zip of `.npy` arrays, deflated by `np.savez_compressed`)
//! read as streams: the zip archive through the `zip` crate, each array's
//! `.npy` header parsed here (NumPy's format 1.0–3.0: magic, version, a
//! Python dict literal with `descr`, `fortran_order` and `shape`), then its
//! rows read one at a time from the decompressing reader, so an array far
//! larger than memory (MPI3D's 12.7 GB of pixels) is never held whole.
//! Object arrays (dSprites' pickled `metadata`) are never read: pickles are
//! not loaded.
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Why an `.npz` cannot be read: one line naming the file and the key.
pub type NpzError = super::error::InputError;

/// An array's header: element type (`|u1`, `<i8`, `<f8`, ...) and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
}

impl Header {
    /// Bytes of one element.
    pub fn item_bytes(&self) -> Option<usize> {
        let digits: String = self
            .descr
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    }

    /// Elements of one row (all dimensions but the first).
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Rows (the first dimension).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Bytes of the whole array with `item`-byte elements; `None` past
    /// `usize`.
    pub fn data_bytes(&self, item: usize) -> Option<usize> {
        self.shape.iter().try_fold(item, |n, &d| n.checked_mul(d))
    }
}

/// Deflate's largest expansion: 258 bytes from every 2 bits, 1032 to 1
/// (the bound on what a compressed input can declare; HDF5's too).
pub const DEFLATE_RATIO: u64 = 1032;

/// Whether `data` bytes after the header fit in a zip entry of `size`
/// bytes (`packed` compressed) — the sizes an archive declares, bounded by
/// what its compressed bytes could expand to.
fn fits(data: usize, size: u64, packed: u64) -> bool {
    let possible = size.min(packed.saturating_mul(DEFLATE_RATIO).saturating_add(1024));
    (data as u64) <= possible
}

/// Parses a `.npy` header from the start of `r`, leaving `r` at the data.
pub fn read_header(r: &mut impl Read) -> Result<Header, String> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|e| format!("not a .npy array ({e})"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (no NUMPY magic)".into());
    }
    let len = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(format!(".npy format version {v} is not known")),
    };
    if len > 1 << 20 {
        return Err(format!("a .npy header of {len} bytes"));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text).map_err(|e| e.to_string())?;
    parse_dict(&String::from_utf8_lossy(&text))
}

/// The value after `'key':` in a header dict, up to the next top-level comma.
fn field<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let at = dict.find(&format!("'{key}'"))?;
    let rest = dict[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

fn parse_dict(dict: &str) -> Result<Header, String> {
    let bad = |what: &str| format!("a .npy header without a readable `{what}`: {}", dict.trim());
    let descr = field(dict, "descr")
        .and_then(|d| d.strip_prefix('\'')?.strip_suffix('\''))
        .ok_or_else(|| bad("descr"))?
        .to_string();
    let fortran_order = match field(dict, "fortran_order") {
        Some("True") => true,
        Some("False") => false,
        _ => return Err(bad("fortran_order")),
    };
    let shape = field(dict, "shape")
        .and_then(|s| s.strip_prefix('(')?.strip_suffix(')'))
        .ok_or_else(|| bad("shape"))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("shape"))?;
    Ok(Header {
        descr,
        fortran_order,
        shape,
    })
}

/// An `.npz` archive on local disk.
pub struct Npz {
    path: PathBuf,
}

/// One array of an archive, positioned at its first row.
pub struct Array<'a> {
    pub header: Header,
    reader: Box<dyn Read + 'a>,
    row_bytes: usize,
    left: usize,
}

impl Npz {
    pub fn open(path: &Path) -> Result<Npz, NpzError> {
        let npz = Npz {
            path: path.to_path_buf(),
        };
        npz.archive()?;
        Ok(npz)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error about this archive.
    pub fn fail(&self, message: impl Into<String>) -> NpzError {
        NpzError {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn archive(&self) -> Result<zip::ZipArchive<BufReader<File>>, NpzError> {
        let f = File::open(&self.path).map_err(|e| self.fail(e.to_string()))?;
        zip::ZipArchive::new(BufReader::new(f))
            .map_err(|e| self.fail(format!("not an .npz (zip) archive: {e}")))
    }

    /// The names of its arrays (without `.npy`).
    pub fn keys(&self) -> Result<Vec<String>, NpzError> {
        let a = self.archive()?;
        Ok(a.file_names()
            .map(|n| n.trim_end_matches(".npy").to_string())
            .collect())
    }

    /// The header of array `key`, checked to be a C-order array of one of
    /// `descrs` (without reading its data).
    pub fn header(&self, key: &str, descrs: &[&str]) -> Result<Header, NpzError> {
        self.read(key, descrs, |a| Ok(a.header.clone()))
    }

    /// Runs `f` on array `key` (checked as [`Npz::header`] checks it),
    /// positioned at its first row.
    pub fn read<T>(
        &self,
        key: &str,
        descrs: &[&str],
        f: impl FnOnce(&mut Array) -> Result<T, NpzError>,
    ) -> Result<T, NpzError> {
        let mut archive = self.archive()?;
        let Some(index) = archive.index_for_name(&format!("{key}.npy")) else {
            let keys = self.keys().unwrap_or_default().join(", ");
            return Err(self.fail(format!("key `{key}`: missing (the archive holds {keys})")));
        };
        let entry = archive
            .by_index(index)
            .map_err(|e| self.fail(format!("key `{key}`: {e}")))?;
        let (size, packed) = (entry.size(), entry.compressed_size());
        let mut reader: Box<dyn Read> = Box::new(BufReader::with_capacity(1 << 20, entry));
        let header =
            read_header(&mut reader).map_err(|e| self.fail(format!("key `{key}`: {e}")))?;
        if !descrs.contains(&header.descr.as_str()) || header.fortran_order {
            return Err(self.fail(format!(
                "key `{key}`: dtype {}{}, expected {}",
                header.descr,
                if header.fortran_order {
                    " (Fortran order)"
                } else {
                    ""
                },
                descrs.join(" or ")
            )));
        }
        let item = header.item_bytes().unwrap_or(1);
        let data = header.data_bytes(item).filter(|&n| fits(n, size, packed));
        let Some(data) = data else {
            return Err(self.fail(format!(
                "key `{key}`: the header declares shape {:?} of {} ({}), more than the archive's entry can hold ({size} bytes, {packed} compressed)",
                header.shape,
                header.descr,
                header.data_bytes(item).map_or("more than 2^64 bytes".into(), |n| format!("{n} bytes")),
            )));
        };
        let rows = header.rows().max(1);
        let mut array = Array {
            row_bytes: data / rows,
            left: header.rows(),
            header,
            reader,
        };
        let out = f(&mut array)?;
        if array.left == 0 {
            // Every row read: the entry must end here, and reading to its
            // end has the zip check its CRC (a damaged archive is an error).
            let mut rest = [0u8; 512];
            let n = (array.reader.read(&mut rest))
                .map_err(|e| self.fail(format!("key `{key}`: {e}")))?;
            if n > 0 {
                return Err(self.fail(format!("key `{key}`: bytes after the last row")));
            }
        }
        Ok(out)
    }
}

impl Array<'_> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Reads the next row into `out` (`row_bytes` long); `false` after the last.
    pub fn next_row(&mut self, out: &mut [u8]) -> std::io::Result<bool> {
        if self.left == 0 {
            return Ok(false);
        }
        self.reader.read_exact(out)?;
        self.left -= 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_as_numpy_writes_them() {
        let h = parse_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (737280, 64, 64), }")
            .unwrap();
        assert_eq!(h.descr, "|u1");
        assert_eq!(h.shape, vec![737280, 64, 64]);
        assert_eq!(
            (h.rows(), h.row_len(), h.item_bytes()),
            (737280, 4096, Some(1))
        );
        let h = parse_dict("{'descr': '<i8', 'fortran_order': False, 'shape': (10,), }").unwrap();
        assert_eq!(
            (h.shape.clone(), h.row_len(), h.item_bytes()),
            (vec![10], 1, Some(8))
        );
        let h = parse_dict("{'descr': '|O', 'fortran_order': False, 'shape': (), }").unwrap();
        assert!(h.shape.is_empty());
        assert!(parse_dict("{'descr': '<f8', 'shape': (3,), }").is_err());
    }

    use proptest::prelude::*;
    use vae_proto::fuzz::mutated;

    /// An `.npz` as NumPy writes one: `imgs` uint8 (4, 8, 8), deflated.
    fn npz_bytes() -> Vec<u8> {
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 8, 8), }";
        let header = format!("{dict:<117}\n");
        npy.extend((header.len() as u16).to_le_bytes());
        npy.extend(header.as_bytes());
        npy.extend((0..256u32).map(|i| i as u8));
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let _ = zip.start_file("imgs.npy", deflated);
        let _ = std::io::Write::write_all(&mut zip, &npy);
        zip.finish().map(|c| c.into_inner()).unwrap_or_default()
    }

    #[test]
    fn the_seed_archive_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.npz");
        std::fs::write(&path, npz_bytes()).unwrap();
        let rows = Npz::open(&path)
            .and_then(|n| {
                n.read("imgs", &["|u1"], |a| {
                    let mut row = vec![0u8; a.row_bytes()];
                    let mut k = 0;
                    while a.next_row(&mut row).map_err(|e| n.fail(e.to_string()))? {
                        k += 1;
                    }
                    Ok(k)
                })
            })
            .unwrap();
        assert_eq!(rows, 4);
    }

    proptest! {
        /// An `.npz`, mutated: every row it declares read, or an error;
        /// never a panic, never an allocation past what the file can hold.
        #[test]
        fn prop_mutated_npz_files_read_or_fail(bytes in mutated(npz_bytes())) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.npz");
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(npz) = Npz::open(&path) {
                let _ = npz.read("imgs", &["|u1"], |a| {
                    assert!(a.row_bytes() as u64 <= 1032 * bytes.len() as u64 + 1024);
                    let mut row = vec![0u8; a.row_bytes()];
                    while a.next_row(&mut row).map_err(|e| npz.fail(e.to_string()))? {}
                    Ok(())
                });
            }
        }

        #[test]
        fn prop_mutated_npy_headers_parse_or_fail(
            bytes in mutated(b"\x93NUMPY\x01\x00\x46\x00{'descr': '<i8', 'fortran_order': False, 'shape': (737280, 6), }      \n".to_vec())
        ) {
            if let Ok(h) = read_header(&mut bytes.as_slice()) {
                let _ = h.data_bytes(h.item_bytes().unwrap_or(1));
            }
        }
    }
}
