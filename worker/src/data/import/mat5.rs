//! MATLAB's v5 `.mat` format (what MATLAB and `scipy.io.savemat` write),
//! enough of it to read one named uint8 array: a 128-byte header (text,
//! version `0x0100`, `IM` for little-endian), then data elements — a tag
//! (type, byte count; or a small element of up to 4 bytes packed into
//! the tag) and data padded to 8 bytes — where `miCOMPRESSED` holds a
//! zlib stream of one element and `miMATRIX` the array's flags, dimensions,
//! name and real part. Distrustful: every declared size is checked against
//! the bytes left (a compressed element's against `max_bytes`, the most
//! the caller will hold) before anything is allocated.
use std::io::Read;
use std::path::Path;

use super::error::InputError;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MX_UINT8_CLASS: u32 = 9;

/// An array read: its dimensions (MATLAB's order) and its elements in
/// column-major order, as MATLAB stores them.
pub struct Array {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// One data element: its type and its bytes.
struct Element<'a> {
    kind: u32,
    data: &'a [u8],
}

/// The element at the start of `b` and the bytes after it (padded to 8
/// unless `packed`, as a compressed element's stream is not).
fn element(b: &[u8], packed: bool) -> Result<(Element<'_>, &[u8]), String> {
    let word = |i: usize| -> Result<u32, String> {
        let w = b.get(i..i + 4).ok_or("ends inside an element's tag")?;
        Ok(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    };
    let first = word(0)?;
    if first >> 16 != 0 {
        // A small element: 2 bytes of count, 2 of type, 4 of data.
        let n = (first >> 16) as usize;
        let data = b
            .get(4..4 + n.min(4))
            .ok_or("ends inside a small element")?;
        let rest = b.get(8..).unwrap_or_default();
        return Ok((
            Element {
                kind: first & 0xFFFF,
                data,
            },
            rest,
        ));
    }
    let n = word(4)? as usize;
    let data = b.get(8..8 + n).ok_or_else(|| {
        format!(
            "an element declares {n} bytes, {} are left",
            b.len().saturating_sub(8)
        )
    })?;
    let next = if packed { 8 + n } else { 8 + n.div_ceil(8) * 8 };
    Ok((
        Element { kind: first, data },
        b.get(next..).unwrap_or_default(),
    ))
}

/// The array in `matrix` (an `miMATRIX` element's bytes) when its name is
/// `name`: `Ok(None)` for another name.
fn array(matrix: &[u8], name: &str) -> Result<Option<Array>, String> {
    let (flags, rest) = element(matrix, false)?;
    let (dims, rest) = element(rest, false)?;
    let (label, rest) = element(rest, false)?;
    if flags.kind != MI_UINT32 || dims.kind != MI_INT32 || label.kind != MI_INT8 {
        return Err("an array without flags, dimensions and name".into());
    }
    if label.data != name.as_bytes() {
        return Ok(None);
    }
    let class = flags.data.first().copied().map_or(0, u32::from);
    let dims: Vec<i32> = (dims.data.chunks_exact(4))
        .map(|w| i32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    if class != MX_UINT8_CLASS {
        return Err(format!(
            "`{name}` is of MATLAB class {class}, uint8 (9) expected"
        ));
    }
    let (real, _) = element(rest, false)?;
    let count = (dims.iter()).try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    });
    if real.kind != MI_UINT8 || count != Some(real.data.len()) {
        return Err(format!(
            "`{name}`: dimensions {dims:?} but {} bytes of type {}",
            real.data.len(),
            real.kind
        ));
    }
    Ok(Some(Array {
        dims: dims.iter().map(|&d| d as usize).collect(),
        data: real.data.to_vec(),
    }))
}

/// Reads the uint8 array `name` of the file at `path`, holding at most
/// `max_bytes` of decompressed data.
pub fn read_u8(path: &Path, name: &str, max_bytes: usize) -> Result<Array, InputError> {
    let fail = |m: String| InputError {
        path: path.to_path_buf(),
        message: m,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > (max_bytes as u64).saturating_mul(2).saturating_add(1 << 20) {
        return Err(fail(format!(
            "{len} bytes, more than a file holding the expected {max_bytes}-byte array can need"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if bytes.len() < 128 || &bytes[126..128] != b"IM" || bytes[124..126] != [0, 1] {
        return Err(fail(
            "not a little-endian MATLAB v5 file (a 128-byte header ending in version 0x0100 and `IM`)".into(),
        ));
    }
    let mut rest = &bytes[128..];
    while !rest.is_empty() {
        let (e, next) = element(rest, false).map_err(&fail)?;
        rest = next;
        let found = match e.kind {
            MI_MATRIX => array(e.data, name),
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                let z = flate2::read::ZlibDecoder::new(e.data);
                z.take(max_bytes as u64 + 4096)
                    .read_to_end(&mut inflated)
                    .map_err(|x| fail(format!("a compressed element: {x}")))?;
                let (inner, _) = element(&inflated, true).map_err(|m| {
                    fail(format!(
                        "a compressed element: {m} (at most {max_bytes} bytes of array expected)"
                    ))
                })?;
                match inner.kind {
                    MI_MATRIX => array(inner.data, name),
                    _ => Ok(None),
                }
            }
            _ => Ok(None),
        };
        if let Some(a) = found.map_err(&fail)? {
            return Ok(a);
        }
    }
    Err(fail(format!("no array `{name}`")))
}
