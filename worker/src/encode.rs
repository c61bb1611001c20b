//! `vae-worker encode --checkpoint C [--data URL] --out URL`: every sample's
//! posterior `μ` and `log σ²` (and its targets) written as a dataset of
//! codes in the project's format — dtype `f4`, sample shape `[2, 1, L]`
//! (`μ` then `log σ²`, little-endian float32), each source shard's codes
//! in a shard of the same name and samples, the targets and factor grid
//! kept — to a path or a bucket. Streamed WebDataset tars give shards
//! named `train-00000.bin`… (one per tar) and `test-00000.bin` (their test
//! split, held in memory), of the samples that decode. Data-parallel: under `mpirun` (or `srun`)
//! rank `r` encodes the shards `i ≡ r (mod world)` of each split; rank 0
//! gathers their entries and writes the manifest last, so the result does
//! not depend on the number of ranks.
use std::collections::BTreeMap;

use tch::{Kind, Tensor};
use vae_proto::cli::{EncodeCmd, EvalCmd};
use vae_proto::dataset::{DatasetManifest, ShardEntry, SplitManifest, MANIFEST_NAME};

use crate::collective::Comm;
use crate::data::format::{put_manifest, put_shard, Dataset};
use crate::data::store::{StorageOptions, Store};
use crate::data::variant::Variants;
use crate::data::DataError;
use crate::evaluate;
use crate::train::step::Trainer;
use crate::train::{tensor_err, TrainError};

/// What was written: samples per split, and the dataset's URL.
pub struct Encoded {
    pub samples: BTreeMap<String, u64>,
    pub url: String,
    pub latent: usize,
}

/// Runs `vae-worker encode` on this rank of `comm`; `device` is this rank's.
pub fn run(cmd: &EncodeCmd, comm: &dyn Comm, device: tch::Device) -> Result<Encoded, TrainError> {
    let as_eval = EvalCmd {
        checkpoint: cmd.checkpoint.clone(),
        metrics: vec![],
        scale: None,
        iwae: None,
        data: cmd.data.clone(),
        set: cmd.set.clone(),
        out: None,
    };
    let o = evaluate::open(&as_eval)?;
    let storage = StorageOptions::from_config(&o.cfg.storage);
    let source = crate::data::streamed::open_data(&o.cfg.data, &storage)?;
    let out = Store::open(&cmd.out, &storage)?;
    match out.get(MANIFEST_NAME) {
        Ok(_) => {
            return Err(TrainError::Invalid(format!(
                "--out {}: already holds a dataset (its {MANIFEST_NAME}); name a new place",
                out.url_of("")
            )))
        }
        Err(DataError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let t = evaluate::model(&o, &source, comm, device)?;
    // A dSprites variant (`data.variant`) is made of each sample as for the test split.
    let variant = crate::train::feed::variant::open(&o.cfg, &source, &storage)?;
    let mut mine: Vec<(String, usize, ShardEntry)> = Vec::new();
    for (split, m) in &source.manifest.splits {
        for i in (comm.rank()..units(m)).step_by(comm.world_size()) {
            let first: u64 = m.shards[..i].iter().map(|s| s.samples).sum();
            let v = variant.as_deref().map(|v| (v, first));
            let entry = encode_shard(&t, &source, &out, (split, i), v)?;
            mine.push((split.clone(), i, entry));
            crate::heartbeat::beat();
        }
    }
    let bytes = serde_json::to_vec(&mine).unwrap_or_default();
    let gathered = comm.gather_bytes(&bytes, 0)?;
    let latent = t.latent;
    let mut manifest = codes_manifest(&source.manifest, latent);
    let url = out.url_of("");
    if let Some(parts) = gathered {
        for part in parts {
            let entries: Vec<(String, usize, ShardEntry)> = serde_json::from_slice(&part)
                .map_err(|e| TrainError::Invalid(format!("encode: a rank's shard list: {e}")))?;
            for (split, i, entry) in entries {
                if let Some(s) = manifest
                    .splits
                    .get_mut(&split)
                    .and_then(|s| s.shards.get_mut(i))
                {
                    *s = entry;
                }
            }
        }
        // Samples that do not decode (streamed tars) are not in the codes.
        for s in manifest.splits.values_mut() {
            s.samples = s.shards.iter().map(|e| e.samples).sum();
        }
        put_manifest(&out, &manifest)?;
    }
    let samples = manifest
        .splits
        .iter()
        .map(|(k, s)| (k.clone(), s.samples))
        .collect();
    comm.barrier()?;
    Ok(Encoded {
        samples,
        url,
        latent,
    })
}

/// The shards of codes a split makes: one per shard, or one for a split
/// held in memory (the test split of streamed tars).
fn units(m: &SplitManifest) -> usize {
    match m.shards.len() {
        0 if m.samples > 0 => 1,
        n => n,
    }
}

/// The codes' manifest for `source` (its shard entries filled in later).
fn codes_manifest(source: &DatasetManifest, latent: usize) -> DatasetManifest {
    let mut m = source.clone();
    m.name = format!("{}-codes", source.name);
    m.dtype = "f4".into();
    m.sample_shape = [2, 1, latent];
    for s in m.splits.values_mut() {
        let n = units(s);
        s.shards.resize_with(n, || ShardEntry {
            object: String::new(),
            samples: 0,
            bytes: 0,
            sha256: String::new(),
        });
    }
    m
}

/// Encodes shard `i` of `split` into a shard of the same name in `out`.
/// With a dSprites variant: the variant, and the shard's first sample.
fn encode_shard(
    t: &Trainer,
    source: &Dataset,
    out: &Store,
    (split, i): (&str, usize),
    variant: Option<(&Variants, u64)>,
) -> Result<ShardEntry, TrainError> {
    let data = source.read_split(split, Some(&[i]))?;
    let [c, h, w] = source.manifest.sample_shape.map(|d| d as i64);
    let n = data.n as i64;
    let images = Tensor::from_slice(&data.images)
        .f_view([n, c, h, w])
        .map_err(tensor_err("reading a shard to encode"))?;
    let images = match variant {
        Some((v, first)) => crate::train::feed::variant::made_bytes(Some(v), images, first)?,
        None => images,
    };
    let block = (t.cfg.train.eval_batch_size as i64).max(1);
    let mut codes: Vec<u8> = Vec::with_capacity(data.n * t.latent * 8 + data.targets.len());
    tch::no_grad(|| -> Result<(), TrainError> {
        for start in (0..n).step_by(block as usize) {
            let rows = (n - start).min(block);
            let x = t.pixels(&images.narrow(0, start, rows).to_device(t.device));
            let (mu, logvar) = t.model.encode(&x);
            // [rows, 2, L]: each sample's μ, then its log σ².
            let both = Tensor::stack(&[mu, logvar], 1)
                .to_kind(Kind::Float)
                .to_device(tch::Device::Cpu)
                .contiguous()
                .view([-1]);
            let values = Vec::<f32>::try_from(both).map_err(tensor_err("encoding"))?;
            codes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            crate::heartbeat::beat();
        }
        Ok(())
    })?;
    codes.extend_from_slice(&data.targets);
    // Shards in another form (tars) give their codes the format's names.
    let object = match &source.decoder {
        Some(_) => format!("{split}-{i:05}.bin"),
        None => source.shards(split, Some(&[i]))?[0].object.clone(),
    };
    Ok(put_shard(out, &object, codes, data.n)?)
}
