//! TensorBoard event files: scalars, images and histograms, written into
//! `<run-dir>/tensorboard/` as TensorBoard's record format (length, masked
//! CRC-32C, event, masked CRC-32C: TFRecord, written here with `crc-fast`'s
//! CRC-32C, in one write per record, of `tensorboard-proto`'s messages),
//! synchronously, so a write that fails
//! (a full disk) is an error naming the file instead of a panic in a writer
//! thread, and a record that was cut short is taken back off the file's
//! end; and the HPARAMS plugin's records (experiment, session start and
//! end): `tensorboard-proto`'s hparams messages in a summary whose metadata names the `hparams` plugin,
//! as TensorBoard's own `plugins/hparams/summary.py` writes them.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::well_known_types::Value as PbValue;
use protobuf::Message;
use tensorboard_proto::api::{DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status};
use tensorboard_proto::event::Event;
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionEndInfo, SessionStartInfo};
use tensorboard_proto::summary::{
    HistogramProto, Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Image,
    Summary_Value,
};

use crate::images::Grid;

/// A failed write of an event file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}", path = path.display())]
pub struct BoardError {
    pub path: PathBuf,
    pub message: String,
}

/// One event file. Writes go straight to the file; the first failure is
/// kept (later writes are skipped) and reported by [`Board::status`].
pub struct Board {
    path: PathBuf,
    /// The event file (appended to; a partial record is cut off its end).
    file: File,
    /// Bytes of complete records.
    len: u64,
    failed: Option<String>,
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Board {
    /// Creates a new event file in `dir` (which must exist), as TensorBoard
    /// names them: `events.out.tfevents.<secs>.<host>.<pid>.0`.
    pub fn new(dir: &Path) -> Result<Board, BoardError> {
        let name = format!(
            "events.out.tfevents.{:010}.{}.{}.0",
            unix_secs() as u64,
            crate::device::host_name(),
            std::process::id()
        );
        let path = dir.join(name);
        let fail = |e: std::io::Error| BoardError {
            path: path.clone(),
            message: e.to_string(),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(fail)?;
        let mut board = Board {
            path,
            file,
            len: 0,
            failed: None,
        };
        let mut first = Event::new();
        first.set_wall_time(unix_secs());
        first.set_file_version("brain.Event:2".to_string());
        board.event(first);
        board.status()?;
        Ok(board)
    }

    /// The first write error so far, naming the file.
    pub fn status(&self) -> Result<(), BoardError> {
        match &self.failed {
            None => Ok(()),
            Some(m) => Err(BoardError {
                path: self.path.clone(),
                message: m.clone(),
            }),
        }
    }

    fn event(&mut self, event: Event) {
        if self.failed.is_some() {
            return;
        }
        let data = match event.write_to_bytes() {
            Ok(d) => d,
            Err(e) => {
                self.failed = Some(e.to_string());
                return;
            }
        };
        let record = record(&data);
        match self.file.write_all(&record) {
            Ok(()) => self.len += record.len() as u64,
            Err(e) => {
                // Take the partial record back off the end: readers see
                // whole records only.
                let _ = self.file.set_len(self.len);
                self.failed = Some(e.to_string());
            }
        }
    }

    fn add_summary(&mut self, summary: Summary, step: u64) {
        let mut e = Event::new();
        e.set_wall_time(unix_secs());
        e.set_step(step as i64);
        e.set_summary(summary);
        self.event(e);
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) {
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_simple_value(value as f32);
        self.add_summary(summary_of(v), step);
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
        self.add_summary(summary_of(value), step);
        Ok(())
    }

    /// A histogram (see [`Histogram`]).
    pub fn histogram(&mut self, tag: &str, h: &Histogram, step: u64) {
        if h.num == 0.0 {
            return;
        }
        let mut p = HistogramProto::new();
        p.set_min(h.min);
        p.set_max(h.max);
        p.set_num(h.num);
        p.set_sum(h.sum);
        p.set_sum_squares(h.sum_squares);
        p.set_bucket_limit(h.limits());
        p.set_bucket(h.counts.clone());
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_histo(p);
        self.add_summary(summary_of(v), step);
    }

    /// Records are written as they come; this reports the first failure.
    pub fn flush(&mut self) -> Result<(), BoardError> {
        self.status()
    }

    /// One HPARAMS plugin record under `tag`.
    fn hparams(&mut self, tag: &str, data: HParamsPluginData) {
        let mut plugin = SummaryMetadata_PluginData::new();
        plugin.set_plugin_name("hparams".into());
        plugin.set_content(data.write_to_bytes().unwrap_or_default());
        let mut meta = SummaryMetadata::new();
        meta.set_plugin_data(plugin);
        let mut tensor = tensorboard_proto::tensor::TensorProto::new();
        tensor.set_dtype(tensorboard_proto::types::DataType::DT_FLOAT);
        tensor.set_float_val(vec![0.0]);
        tensor.set_tensor_shape(tensorboard_proto::tensor_shape::TensorShapeProto::new());
        let mut value = Summary_Value::new();
        value.set_tag(tag.into());
        value.set_metadata(meta);
        value.set_tensor(tensor);
        self.add_summary(summary_of(value), 0);
    }

    /// The start of a session (one point of a sweep): its hyperparameters.
    pub fn session_start(&mut self, hparams: &BTreeMap<String, HValue>, start_secs: f64) {
        let mut info = SessionStartInfo::new();
        for (k, v) in hparams {
            info.mut_hparams().insert(k.clone(), v.to_proto());
        }
        info.set_start_time_secs(start_secs);
        let mut data = HParamsPluginData::new();
        data.set_session_start_info(info);
        self.hparams("_hparams_/session_start_info", data);
    }

    /// The end of a session, with its status.
    pub fn session_end(&mut self, success: bool, end_secs: f64) {
        let mut info = SessionEndInfo::new();
        info.set_status(if success {
            Status::STATUS_SUCCESS
        } else {
            Status::STATUS_FAILURE
        });
        info.set_end_time_secs(end_secs);
        let mut data = HParamsPluginData::new();
        data.set_session_end_info(info);
        self.hparams("_hparams_/session_end_info", data);
    }

    /// The experiment (at a sweep's root): its hyperparameters, each with
    /// its domain (the values its points take) and marked as differing
    /// when it takes more than one, and the metrics (scalar tags in each
    /// session's run) to compare.
    pub fn experiment(&mut self, hparams: &BTreeMap<String, Vec<HValue>>, metrics: &[String]) {
        let mut exp = Experiment::new();
        for (k, values) in hparams {
            let Some(first) = values.first() else {
                continue;
            };
            let mut h = HParamInfo::new();
            h.set_name(k.clone());
            h.set_field_type(first.data_type());
            let domain = h.mut_domain_discrete().mut_values();
            domain.extend(values.iter().map(HValue::to_proto));
            if values.len() > 1 {
                // `differs` (field 7 of TensorBoard's api.proto, newer than
                // tensorboard-proto's copy): TensorBoard lists it first.
                h.mut_unknown_fields().add_varint(7, 1);
            }
            exp.mut_hparam_infos().push(h);
        }
        for m in metrics {
            let mut name = MetricName::new();
            name.set_tag(m.clone());
            let mut info = MetricInfo::new();
            info.set_name(name);
            info.set_display_name(m.clone());
            exp.mut_metric_infos().push(info);
        }
        let mut data = HParamsPluginData::new();
        data.set_experiment(exp);
        self.hparams("_hparams_/experiment", data);
    }
}

/// A summary of one value.
fn summary_of(value: Summary_Value) -> Summary {
    let mut summary = Summary::new();
    summary.set_value(protobuf::RepeatedField::from(vec![value]));
    summary
}

/// TensorBoard's masked CRC-32C (Castagnoli) of `data`.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32;
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length (u64), its masked CRC, the data, the data's masked CRC.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    r.extend_from_slice(data);
    r.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    r
}

/// A histogram in [`Histogram::BUCKETS`] equal-width buckets between `min`
/// and `max`, with the count, sum and sum of squares of its values. Built
/// from parts that each hold some of the values ([`Histogram::part`]) and
/// are added up over ranks ([`Histogram::counts`] with the same range).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub num: f64,
    pub sum: f64,
    pub sum_squares: f64,
    pub counts: Vec<f64>,
}

impl Histogram {
    pub const BUCKETS: usize = 30;

    /// The smallest and largest of `values` (`+∞`, `−∞` for none).
    pub fn range(values: &[f32]) -> (f64, f64) {
        values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v as f64), hi.max(v as f64))
            })
    }

    /// The histogram of `values` over the range `[min, max]` (which must
    /// hold them: the range of every part's values).
    pub fn part(values: &[f32], min: f64, max: f64) -> Histogram {
        let width = Self::width(min, max);
        let mut h = Histogram {
            min,
            max,
            num: values.len() as f64,
            sum: 0.0,
            sum_squares: 0.0,
            counts: vec![0.0; Self::BUCKETS],
        };
        for &v in values {
            let v = v as f64;
            h.sum += v;
            h.sum_squares += v * v;
            let i = (((v - min) / width).max(0.0) as usize).min(Self::BUCKETS - 1);
            h.counts[i] += 1.0;
        }
        h
    }

    fn width(min: f64, max: f64) -> f64 {
        ((max - min) / Self::BUCKETS as f64).max(1e-12)
    }

    /// The upper edge of each bucket.
    pub fn limits(&self) -> Vec<f64> {
        let width = Self::width(self.min, self.max);
        (1..=Self::BUCKETS)
            .map(|i| self.min + width * i as f64)
            .collect()
    }

    /// `[num, sum, sum_squares, counts…]`, to be added up over ranks.
    pub fn to_sums(&self) -> Vec<f64> {
        let mut v = vec![self.num, self.sum, self.sum_squares];
        v.extend(&self.counts);
        v
    }

    /// Takes back what [`Histogram::to_sums`] gave, added up.
    pub fn set_sums(&mut self, v: &[f64]) {
        if let [num, sum, sq, counts @ ..] = v {
            (self.num, self.sum, self.sum_squares) = (*num, *sum, *sq);
            self.counts = counts.to_vec();
        }
    }
}

/// A hyperparameter's value.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum HValue {
    Number(f64),
    Text(String),
    Flag(bool),
}

impl HValue {
    /// A config value as a hyperparameter (lists as their TOML text).
    pub fn from_toml(v: &toml::Value) -> HValue {
        match v {
            toml::Value::Integer(i) => HValue::Number(*i as f64),
            toml::Value::Float(f) => HValue::Number(*f),
            toml::Value::Boolean(b) => HValue::Flag(*b),
            toml::Value::String(s) => HValue::Text(s.clone()),
            other => HValue::Text(other.to_string()),
        }
    }

    fn to_proto(&self) -> PbValue {
        let mut v = PbValue::new();
        match self {
            HValue::Number(x) => v.set_number_value(*x),
            HValue::Text(s) => v.set_string_value(s.clone()),
            HValue::Flag(b) => v.set_bool_value(*b),
        }
        v
    }

    /// Numbers by value, then flags, then texts.
    pub fn order(a: &HValue, b: &HValue) -> std::cmp::Ordering {
        let rank = |v: &HValue| match v {
            HValue::Number(_) => 0,
            HValue::Flag(_) => 1,
            HValue::Text(_) => 2,
        };
        match (a, b) {
            (HValue::Number(x), HValue::Number(y)) => x.total_cmp(y),
            (HValue::Flag(x), HValue::Flag(y)) => x.cmp(y),
            (HValue::Text(x), HValue::Text(y)) => x.cmp(y),
            _ => rank(a).cmp(&rank(b)),
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            HValue::Number(_) => DataType::DATA_TYPE_FLOAT64,
            HValue::Text(_) => DataType::DATA_TYPE_STRING,
            HValue::Flag(_) => DataType::DATA_TYPE_BOOL,
        }
    }
}
