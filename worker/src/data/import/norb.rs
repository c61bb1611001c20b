//! NORB's binary matrix format (the `.mat` files of SmallNORB, not
//! MATLAB's): a little-endian int32 magic naming the element type
//! (`0x1E3D4C55` bytes, `0x1E3D4C54` int32), int32 `ndim`, `max(3, ndim)`
//! int32 dimensions, then the elements in row-major order. A file is
//! opened distrustfully: its length must be exactly what the header
//! declares, checked before anything is allocated; rows are then read
//! where they lie, one at a time.
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::InputError;

/// Bytes (`0x1E3D4C55`).
pub const BYTES: i32 = 0x1E3D_4C55;
/// Little-endian int32 (`0x1E3D4C54`).
pub const INT32: i32 = 0x1E3D_4C54;

/// An opened matrix.
pub struct Matrix {
    path: PathBuf,
    file: File,
    pub dims: Vec<usize>,
    item: usize,
    offset: u64,
}

fn name(magic: i32) -> String {
    match magic {
        BYTES => "bytes".into(),
        INT32 => "int32".into(),
        0x1E3D_4C51 => "float32".into(),
        0x1E3D_4C53 => "float64".into(),
        0x1E3D_4C56 => "int16".into(),
        m => format!("magic {m:#x}"),
    }
}

impl Matrix {
    /// Opens the matrix at `path`, which must hold elements of type `magic`.
    pub fn open(path: &Path, magic: i32) -> Result<Matrix, InputError> {
        let fail = |m: String| InputError {
            path: path.to_path_buf(),
            message: m,
        };
        let mut file = File::open(path).map_err(|e| fail(e.to_string()))?;
        let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
        let mut head = [0u8; 8];
        file.read_exact(&mut head)
            .map_err(|_| fail("too short for a NORB matrix header".into()))?;
        let int = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let (found, ndim) = (int(&head[..4]), int(&head[4..]));
        if found != magic {
            return Err(fail(format!(
                "a NORB matrix of {}, {} expected",
                name(found),
                name(magic)
            )));
        }
        if !(1..=8).contains(&ndim) {
            return Err(fail(format!("{ndim} dimensions, 1 to 8 expected")));
        }
        let mut raw = vec![0u8; 4 * (ndim as usize).max(3)];
        file.read_exact(&mut raw)
            .map_err(|_| fail("ends inside its header".into()))?;
        let dims: Vec<i32> = raw.chunks_exact(4).take(ndim as usize).map(int).collect();
        let item = if magic == BYTES { 1 } else { 4 };
        let offset = 8 + raw.len() as u64;
        let declared = (dims.iter()).try_fold(item as u64, |n, &d| {
            u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        if declared.and_then(|n| n.checked_add(offset)) != Some(len) {
            return Err(fail(format!(
                "dimensions {dims:?} declare {} bytes of data, the file holds {}",
                declared.map_or("more than 2^64".into(), |n| n.to_string()),
                len.saturating_sub(offset)
            )));
        }
        Ok(Matrix {
            path: path.to_path_buf(),
            file,
            dims: dims.iter().map(|&d| d as usize).collect(),
            item,
            offset,
        })
    }

    /// The file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of one row (all dimensions but the first).
    pub fn row_bytes(&self) -> usize {
        self.item * self.dims.iter().skip(1).product::<usize>()
    }

    /// Reads `out.len()` bytes of row `row` from byte `at` of it.
    pub fn read_at(&self, row: usize, at: usize, out: &mut [u8]) -> Result<(), InputError> {
        let pos = self.offset + (row * self.row_bytes() + at) as u64;
        self.file.read_exact_at(out, pos).map_err(|e| InputError {
            path: self.path.clone(),
            message: format!("row {row}: {e}"),
        })
    }

    /// The whole matrix of int32 (its length checked when opened).
    pub fn ints(&self) -> Result<Vec<i32>, InputError> {
        let rows = self.dims.first().copied().unwrap_or(0);
        let mut bytes = vec![0u8; rows * self.row_bytes()];
        self.read_at(0, 0, &mut bytes)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, words: &[i32], data: &[u8]) {
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.extend_from_slice(data);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn headers_are_read_and_their_sizes_checked_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cat.mat");
        // ndim 1 still carries three dimension words.
        write(
            &p,
            &[INT32, 1, 3, 1, 1],
            &[7, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0],
        );
        let m = Matrix::open(&p, INT32).unwrap();
        assert_eq!(
            (m.dims.clone(), m.ints().unwrap()),
            (vec![3], vec![7, 8, 9])
        );
        let e = Matrix::open(&p, BYTES).err().unwrap().to_string();
        assert!(e.contains("int32, bytes expected"), "{e}");
        // A header declaring far more than the file holds.
        write(&p, &[BYTES, 4, 24300, 2, 96, i32::MAX], &[0; 16]);
        let e = Matrix::open(&p, BYTES).err().unwrap().to_string();
        assert!(e.contains("the file holds 16"), "{e}");
        write(&p, &[BYTES, 2, -1, 4], &[0; 4]);
        assert!(Matrix::open(&p, BYTES).is_err());
    }
}
