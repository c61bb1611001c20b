//! The run's dataset, opened once for all ranks. WebDataset tars streamed
//! as they are must be scanned before the first step (each tar's train
//! samples counted and its SHA-256 taken, its test samples decoded): each
//! rank scans a share of them (tar `i` on rank `i mod world`), rank 0
//! gathers the parts and sends the whole scan to every rank — so each tar
//! is fetched once at the start, not once per rank. A rank whose share
//! fails sends its error instead (it names the tar): rank 0 sends every
//! rank the first one.
use vae_proto::config::DataSection;

use crate::collective::Comm;
use crate::data::format::Dataset;
use crate::data::store::StorageOptions;
use crate::data::streamed::{self, Scan};
use crate::train::error::TrainError;

/// The dataset `data` names, the tars' scan shared (see the module).
pub fn open_data(
    data: &DataSection,
    storage: &StorageOptions,
    comm: &dyn Comm,
) -> Result<Dataset, TrainError> {
    if !vae_proto::config::names_tars(&data.url) {
        return Ok(streamed::open_data(data, storage)?);
    }
    let (rank, world) = (comm.rank(), comm.world_size().max(1));
    let part = streamed::scan(data, storage, &|i| i % world == rank);
    // A tag byte: 0 and the scan, or 1 and the error.
    let mine = match &part {
        Ok(scan) => [vec![0u8], scan.to_bytes()].concat(),
        Err(e) => [vec![1u8], e.to_string().into_bytes()].concat(),
    };
    let mut whole = Vec::new();
    if let Some(parts) = comm.gather_bytes(&mine, 0)? {
        whole = merged(parts, data);
    }
    comm.broadcast_bytes(&mut whole, 0)?;
    match whole.split_first() {
        Some((0, scan)) => Ok(streamed::open_scanned(
            data,
            storage,
            Scan::from_bytes(scan)?,
        )?),
        Some((_, e)) => Err(TrainError::Invalid(String::from_utf8_lossy(e).into_owned())),
        None => Err(TrainError::Invalid(
            "the scan of the tars reached no rank".into(),
        )),
    }
}

/// On rank 0: the ranks' parts as one scan, or the first rank's error.
fn merged(parts: Vec<Vec<u8>>, data: &DataSection) -> Vec<u8> {
    let per = streamed::sample_bytes(&data.decode);
    let mut scans = Vec::new();
    for p in &parts {
        match p.split_first() {
            Some((0, b)) => match Scan::from_bytes(b) {
                Ok(s) => scans.push(s),
                Err(e) => return [vec![1u8], e.to_string().into_bytes()].concat(),
            },
            Some((_, e)) => return [vec![1u8], e.to_vec()].concat(),
            None => return [vec![1u8], b"a rank sent no scan".to_vec()].concat(),
        }
    }
    [vec![0u8], Scan::merge(scans, per).to_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vae_proto::dataset::ShardEntry;

    fn entry(i: usize) -> ShardEntry {
        ShardEntry {
            object: format!("shard-{i}.tar"),
            samples: 10 + i as u64,
            bytes: 100,
            sha256: format!("{i:064}"),
        }
    }

    #[test]
    fn the_ranks_parts_make_the_whole_scan_in_the_tars_order() {
        let data = DataSection {
            decode: vae_proto::config::DecodeSection {
                size: 1,
                channels: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        // Tar i has i test samples, each byte i: rank r of 2 scanned i ≡ r.
        let part = |r: usize| {
            let mut s = Scan::default();
            for i in (r..5).step_by(2) {
                s.tars.push((i, entry(i), i));
                s.test.extend(vec![i as u8; i]);
            }
            [vec![0u8], s.to_bytes()].concat()
        };
        let whole = merged(vec![part(0), part(1)], &data);
        let scan = Scan::from_bytes(&whole[1..]).unwrap();
        let order: Vec<usize> = scan.tars.iter().map(|t| t.0).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        assert_eq!(scan.tars[3].1, entry(3));
        assert_eq!(scan.test, [1, 2, 2, 3, 3, 3, 4, 4, 4, 4]);
        // A rank's error is every rank's.
        let failed = [vec![1u8], b"shard-1.tar: no such tar".to_vec()].concat();
        let whole = merged(vec![part(0), failed], &data);
        assert_eq!(&whole[1..], b"shard-1.tar: no such tar");
        assert!(Scan::from_bytes(&[9, 0, 0]).is_err());
    }
}
