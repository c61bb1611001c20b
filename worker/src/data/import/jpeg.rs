//! JPEG decoding for the image importer through libjpeg-turbo's TurboJPEG
//! API (the decoder PIL and torchvision use), scaled in the DCT domain: an
//! image that is to shrink at least k-fold (k = 2, 4 or 8) is decoded
//! straight at 1/k of its size, as PIL's `draft` does — the inverse DCT,
//! the upsampling and the colour conversion then touch k² times fewer
//! pixels, and the resize that follows starts from a smaller image. The
//! scaled decode is a good low-pass filter of its own, so the result is the
//! full decode's to within a level or two (tested against PIL).
use std::ffi::CStr;

use turbojpeg_sys as tj;

/// A TurboJPEG decompressor, one per thread; destroyed when dropped.
pub struct Decoder(tj::tjhandle);

/// Whether `bytes` start like a JPEG file (SOI, then a marker).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// The most pixels a JPEG's header may declare (16384 × 16384), and the
/// most bytes its decode may take (per decoding thread): a photo is far
/// below both, a file that declares more is skipped as a corrupt image is,
/// before anything is allocated for it.
pub const MAX_PIXELS: u64 = 1 << 28;
pub const MAX_DECODED_BYTES: u64 = 256 << 20;

/// Whether a `w`×`h` JPEG decoded at 1/`k` into `channels` fits the budget;
/// the error names the size declared.
pub fn within_budget((w, h): (u32, u32), k: u32, channels: u8) -> Result<(), String> {
    let pixels = u64::from(w) * u64::from(h);
    let k = u64::from(k.max(1));
    let decoded = u64::from(w).div_ceil(k) * u64::from(h).div_ceil(k) * u64::from(channels);
    if pixels > MAX_PIXELS || decoded > MAX_DECODED_BYTES {
        return Err(format!(
            "the JPEG header declares {w} × {h} pixels, over the budget of {MAX_PIXELS} pixels and {} MiB decoded",
            MAX_DECODED_BYTES >> 20
        ));
    }
    Ok(())
}

/// The largest DCT scaling 1/k (k of 1, 2, 4, 8) that keeps a `w`×`h`
/// region at least `size` pixels in both directions.
pub fn reduction(w: u32, h: u32, size: u32) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|k| w / k >= size && h / k >= size)
        .unwrap_or(1)
}

impl Decoder {
    pub fn new() -> Result<Decoder, String> {
        // SAFETY: tjInitDecompress has no preconditions; null means failure.
        let h = unsafe { tj::tjInitDecompress() };
        if h.is_null() {
            return Err("libjpeg-turbo: cannot make a decompressor".into());
        }
        Ok(Decoder(h))
    }

    /// The width and height the JPEG `bytes` declare.
    pub fn size(&mut self, bytes: &[u8]) -> Result<(u32, u32), String> {
        let (mut w, mut h, mut sub, mut space) = (0, 0, 0, 0);
        // SAFETY: the pointers are valid for the call; the handle is live.
        let r = unsafe {
            tj::tjDecompressHeader3(
                self.0,
                bytes.as_ptr(),
                bytes.len() as libc::c_ulong,
                &mut w,
                &mut h,
                &mut sub,
                &mut space,
            )
        };
        if r != 0 || w <= 0 || h <= 0 {
            return Err(self.error());
        }
        Ok((w as u32, h as u32))
    }

    /// `bytes` (a JPEG of `w`×`h`) decoded into `out` at 1/`k` of its
    /// size, as RGB (`channels` 3) or grey (1), row by row; the size it has.
    /// A warning (a truncated file) is an error.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        (w, h): (u32, u32),
        k: u32,
        channels: u8,
        out: &mut Vec<u8>,
    ) -> Result<(u32, u32), String> {
        let (width, height) = (w.div_ceil(k), h.div_ceil(k));
        out.resize(width as usize * height as usize * usize::from(channels), 0);
        let format = if channels == 1 {
            tj::TJPF_TJPF_GRAY
        } else {
            tj::TJPF_TJPF_RGB
        };
        // SAFETY: `out` holds width·height·channels bytes, what TurboJPEG
        // writes for this size (it picks the scaling whose result fits,
        // here 1/k) and pixel format at pitch 0 (= width·channels).
        let r = unsafe {
            tj::tjDecompress2(
                self.0,
                bytes.as_ptr(),
                bytes.len() as libc::c_ulong,
                out.as_mut_ptr(),
                width as libc::c_int,
                0,
                height as libc::c_int,
                format as libc::c_int,
                tj::TJFLAG_STOPONWARNING as libc::c_int,
            )
        };
        if r != 0 {
            return Err(self.error());
        }
        Ok((width, height))
    }

    fn error(&self) -> String {
        // SAFETY: tjGetErrorStr2 returns a NUL-terminated string owned by
        // the handle (or a static one), valid until the next call on it.
        let s = unsafe { CStr::from_ptr(tj::tjGetErrorStr2(self.0)) };
        format!("libjpeg-turbo: {}", s.to_string_lossy())
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInitDecompress and is dropped once.
        unsafe {
            tj::tjDestroy(self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaling_keeps_the_region_at_least_the_size() {
        for (w, h, size, k) in [
            (148, 148, 64, 2),
            (178, 218, 64, 2),
            (148, 148, 74, 2),
            (148, 148, 75, 1),
            (512, 512, 64, 8),
            (300, 256, 64, 4),
            (64, 64, 64, 1),
            (32, 32, 64, 1),
        ] {
            assert_eq!(reduction(w, h, size), k, "{w}×{h} → {size}");
        }
    }

    #[test]
    fn a_declared_size_over_the_budget_is_refused_before_decoding() {
        assert!(within_budget((4000, 3000), 1, 3).is_ok());
        assert!(within_budget((16384, 16384), 8, 3).is_ok());
        let e = within_budget((65500, 65500), 2, 3).unwrap_err();
        assert!(e.contains("65500 × 65500"), "{e}");
        assert!(within_budget((10000, 10000), 1, 3).is_err());
    }

    #[test]
    fn what_is_not_a_jpeg_is_an_error_naming_the_decoder() {
        let mut d = Decoder::new().unwrap();
        let e = d.size(b"\xff\xd8\xff\xe0 this is not a jpeg").unwrap_err();
        assert!(e.starts_with("libjpeg-turbo: "), "{e}");
        assert!(!is_jpeg(b"\x89PNG"));
    }
}
