//! TensorBoard event files: scalars, images and histograms, written through
//! `tensorboard-rs` into `<run-dir>/tensorboard/`.
use std::path::Path;
use tensorboard_proto::summary::{Summary, Summary_Image, Summary_Value};
use tensorboard_rs::summary::{histogram_raw, scalar};
use tensorboard_rs::summary_writer::FileWriter;

use crate::images::Grid;

pub struct Board {
    writer: FileWriter,
}

impl Board {
    /// Opens an event file in `dir`, which must exist and be writable (the
    /// writer itself cannot report I/O errors).
    pub fn new(dir: &Path) -> Board {
        Board {
            writer: FileWriter::new(dir),
        }
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) {
        self.writer
            .add_summary(scalar(tag, value as f32), step as usize);
    }

    pub fn image(&mut self, tag: &str, grid: &Grid, step: u64) -> Result<(), png::EncodingError> {
        let mut img = Summary_Image::new();
        img.set_height(grid.height as i32);
        img.set_width(grid.width as i32);
        img.set_colorspace(grid.channels as i32);
        img.set_encoded_image_string(grid.to_png()?);
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        value.set_image(img);
        let mut summary = Summary::new();
        summary.set_value(protobuf::RepeatedField::from(vec![value]));
        self.writer.add_summary(summary, step as usize);
        Ok(())
    }

    /// A histogram of `values` in 30 equal-width buckets.
    pub fn histogram(&mut self, tag: &str, values: &[f32], step: u64) {
        if values.is_empty() {
            return;
        }
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut sum, mut sq) = (0.0, 0.0);
        for &v in values {
            let v = v as f64;
            lo = lo.min(v);
            hi = hi.max(v);
            sum += v;
            sq += v * v;
        }
        let buckets = 30;
        let width = ((hi - lo) / buckets as f64).max(1e-12);
        let mut counts = vec![0.0; buckets];
        for &v in values {
            let i = (((v as f64 - lo) / width) as usize).min(buckets - 1);
            counts[i] += 1.0;
        }
        let limits: Vec<f64> = (1..=buckets).map(|i| lo + width * i as f64).collect();
        let h = histogram_raw(tag, lo, hi, values.len() as f64, sum, sq, &limits, &counts);
        self.writer.add_summary(h, step as usize);
    }

    pub fn flush(&mut self) {
        self.writer.flush();
    }
}
