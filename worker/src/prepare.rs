//! `vae-worker data prepare NAME …`: each dataset's command handed to its
//! importer (or generator), and the one line that says what was written.
//! A new importer is a file in `data/import/`, its variant in
//! `vae_proto::cli::PrepareDataset` and its arm in [`prepare`].
use anyhow::Context;
use vae_proto::cli::PrepareDataset;
use vae_proto::dataset::DatasetManifest;

use crate::data::factors::TestSplit;
use crate::data::import::{self, images};
use crate::data::publish::Staging;
use crate::data::store::StorageOptions;

/// Runs `vae-worker data prepare`: the import staged inside the output,
/// then published whole (or its staging removed when it fails); then says
/// what it wrote where.
pub fn prepare(mut dataset: PrepareDataset, overwrite: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let out = out_of(&mut dataset);
    let real = out.clone();
    let staging = Staging::begin(&real, overwrite, &StorageOptions::default())?;
    *out = staging.url();
    if let Err(e) = import(dataset) {
        staging.abandon();
        return Err(e);
    }
    let m = staging.publish()?;
    report(&m, &real, started);
    Ok(())
}

/// Where `dataset` is to be written.
fn out_of(dataset: &mut PrepareDataset) -> &mut String {
    match dataset {
        PrepareDataset::Dsprites { out, .. }
        | PrepareDataset::Shapes3d { out, .. }
        | PrepareDataset::Mpi3d { out, .. }
        | PrepareDataset::Smallnorb { out, .. }
        | PrepareDataset::Cars3d { out, .. }
        | PrepareDataset::Images { out, .. }
        | PrepareDataset::Mnist { out, .. } => out,
    }
}

/// Runs `dataset`'s importer (or generator) into its `out`.
fn import(dataset: PrepareDataset) -> anyhow::Result<(DatasetManifest, String)> {
    Ok(match dataset {
        PrepareDataset::Dsprites {
            out,
            from: Some(from),
            shard_size,
            split,
            ..
        } => {
            let input = import::local_input(&from, &Default::default())?;
            let m = import::dsprites::import(&input.path, &out, shard_size, test_split(&split))?;
            (m, out)
        }
        PrepareDataset::Dsprites {
            out,
            from: None,
            scales,
            orientations,
            positions,
            shard_size,
            split,
        } => {
            let sub = crate::data::dsprites::Subsample {
                keep: [None, scales, orientations, positions, positions],
            };
            let m = crate::data::dsprites::prepare(&out, &sub, shard_size, test_split(&split))?;
            (m, out)
        }
        PrepareDataset::Shapes3d {
            from,
            out,
            shard_size,
            split,
        } => {
            let input = import::local_input(&from, &Default::default())?;
            let m = import::shapes3d::import(&input.path, &out, shard_size, test_split(&split))?;
            (m, out)
        }
        PrepareDataset::Mpi3d {
            from,
            out,
            factor_sizes,
            shard_size,
            split,
        } => {
            let input = import::local_input(&from, &Default::default())?;
            let split = test_split(&split);
            let m = import::mpi3d::import(&input.path, &out, &factor_sizes, shard_size, split)?;
            (m, out)
        }
        norb_or_cars @ (PrepareDataset::Smallnorb { .. } | PrepareDataset::Cars3d { .. }) => {
            import_folder(norb_or_cars)?
        }
        images @ PrepareDataset::Images { .. } => prepare_images(images)?,
        PrepareDataset::Mnist {
            idx_dir,
            out,
            shard_size,
        } => {
            let m = crate::data::prepare_mnist(&idx_dir, &out, shard_size)
                .with_context(|| format!("preparing MNIST from {}", idx_dir.display()))?;
            (m, out)
        }
    })
}

/// The importers that read a folder: SmallNORB's files, Cars3D's.
fn import_folder(dataset: PrepareDataset) -> anyhow::Result<(DatasetManifest, String)> {
    Ok(match dataset {
        PrepareDataset::Smallnorb {
            from,
            out,
            chunks,
            camera,
            shard_size,
            split,
        } => {
            let split = test_split(&split);
            let camera = usize::from(camera);
            let m = import::smallnorb::import(&from, &out, &chunks, camera, shard_size, split)?;
            (m, out)
        }
        PrepareDataset::Cars3d {
            from,
            out,
            shard_size,
            split,
        } => {
            let m = import::cars3d::import(&from, &out, shard_size, test_split(&split))?;
            (m, out)
        }
        _ => anyhow::bail!("not a folder import"),
    })
}

/// A factor dataset's test split as the command gives it.
fn test_split(s: &vae_proto::cli::FactorSplit) -> TestSplit {
    TestSplit::of(s.test_samples, s.test_fraction)
}

/// `data prepare images`: a folder, a bucket prefix or WebDataset tars; the
/// images it had to skip are named on stderr.
fn prepare_images(cmd: PrepareDataset) -> anyhow::Result<(DatasetManifest, String)> {
    let PrepareDataset::Images {
        from,
        out,
        size,
        crop,
        channels,
        test_fraction,
        shard_size,
    } = cmd
    else {
        anyhow::bail!("not an image import");
    };
    if channels == 2 || !(0.0..1.0).contains(&test_fraction) || size == 0 {
        anyhow::bail!(
            "--channels takes 1 or 3, --test-fraction a share in [0, 1), --size a positive side"
        );
    }
    let o = images::Options {
        size,
        crop,
        channels,
        test_fraction,
        shard_samples: shard_size,
    };
    let r = images::import(&from, &out, &o, &Default::default())?;
    if !r.skipped.is_empty() {
        let names: Vec<String> = (r.skipped.iter().take(20))
            .map(|(k, why)| format!("{k} ({why})"))
            .collect();
        vae_proto::errln!(
            "skipped {} image{}: {}{}",
            r.skipped.len(),
            if r.skipped.len() == 1 { "" } else { "s" },
            names.join(", "),
            if r.skipped.len() > 20 { ", …" } else { "" }
        );
    }
    Ok((r.manifest, out))
}

/// `wrote NAME (test N, train N) to URL in S s`.
fn report(m: &DatasetManifest, out: &str, started: std::time::Instant) {
    let counts: Vec<String> = m
        .splits
        .iter()
        .map(|(k, s)| format!("{k} {}", s.samples))
        .collect();
    vae_proto::outln!(
        "wrote {} ({}) to {} in {:.1} s",
        m.name,
        counts.join(", "),
        out,
        started.elapsed().as_secs_f64()
    );
    if let Some(note) = m.test_split_note() {
        vae_proto::outln!("note: {note}");
    }
}
