//! TensorBoard event files: scalars, images and histograms, written into
//! `<run-dir>/tensorboard/` as TensorBoard's record format (length, masked
//! CRC-32C, event, masked CRC-32C, through `tensorboard-rs`'s record writer
//! and `tensorboard-proto`'s messages), synchronously, so a write that fails
//! (a full disk) is an error naming the file instead of a panic in a writer
//! thread, and a record that was cut short is taken back off the file's
//! end; and the HPARAMS plugin's records (experiment, session start and
//! end), which tensorboard-rs has no helper for: `tensorboard-proto`'s
//! hparams messages in a summary whose metadata names the `hparams` plugin,
//! as TensorBoard's own `plugins/hparams/summary.py` writes them.
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use protobuf::well_known_types::Value as PbValue;
use protobuf::Message;
use tensorboard_proto::api::{DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status};
use tensorboard_proto::event::Event;
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionEndInfo, SessionStartInfo};
use tensorboard_proto::summary::{
    Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Image, Summary_Value,
};
use tensorboard_rs::record_writer::RecordWriter;
use tensorboard_rs::summary::{histogram_raw, scalar};

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
    writer: RecordWriter<File>,
    /// The same file, to cut a partial record off its end.
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
        let writer = RecordWriter::new(file.try_clone().map_err(fail)?);
        let mut board = Board {
            path,
            writer,
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
        match self.writer.write(&data) {
            Ok(()) => self.len += data.len() as u64 + 16,
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
        self.add_summary(scalar(tag, value as f32), step);
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
        self.add_summary(summary, step);
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
        self.add_summary(h, step);
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
        let mut summary = Summary::new();
        summary.set_value(protobuf::RepeatedField::from(vec![value]));
        self.add_summary(summary, 0);
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

    /// The experiment (at a sweep's root): its hyperparameters and the
    /// metrics (scalar tags in each session's run) to compare.
    pub fn experiment(&mut self, hparams: &BTreeMap<String, HValue>, metrics: &[String]) {
        let mut exp = Experiment::new();
        for (k, v) in hparams {
            let mut h = HParamInfo::new();
            h.set_name(k.clone());
            h.set_field_type(v.data_type());
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

    fn data_type(&self) -> DataType {
        match self {
            HValue::Number(_) => DataType::DATA_TYPE_FLOAT64,
            HValue::Text(_) => DataType::DATA_TYPE_STRING,
            HValue::Flag(_) => DataType::DATA_TYPE_BOOL,
        }
    }
}
