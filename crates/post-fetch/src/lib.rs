//! PoSt from any store by ranged reads.
//!
//! A window or winning PoSt of a sector reads `p_aux`, the tree-r-last cache
//! files, and, for each challenged leaf, one aligned segment of the sealed
//! file: the leaves under one node of the lowest tree-r-last row the cache
//! keeps, from which the proofs library rebuilds the rows it discarded
//! ([`segment_leaves`]: 512 leaves, 16KiB, from 8MiB to 64GiB; the whole file
//! at 2KiB). Nothing else of the sealed file is read.
//!
//! [`fetch_sector`] copies exactly that through [`Store::get`] with offsets
//! into a local dir: the cache files whole, and a sparse file of the sealed
//! file's size where only the challenged segments are written. The proofs
//! library then proves from local paths as usual; the holes are never read.
//! [`fetch_task`] does it for every sector of a PoSt, computing the
//! challenges with the library's own `generate_fallback_sector_challenges`.
//!
//! Used by the manager's provers and by workers' wdpost threads for sectors
//! in plugin stores (S3 and the like); a filesystem store needs none of it.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use damocles_objstore::{ObjectPath, Store};
use damocles_sector::{objects, tree_r_last_parts, CacheFile, SectorID};
use filecoin_proofs_api::{RegisteredPoStProof, SectorId};

/// Bytes per leaf (node) of the sealed file.
const NODE: u64 = 32;
/// tree-r-last's arity at every sector size.
const ARITY: u64 = 8;

/// Rows of a tree with `leaves` leaves of arity [`ARITY`], base and root included.
fn row_count(leaves: u64) -> u32 {
    let mut rows = 1;
    let mut n = leaves;
    while n > 1 {
        n /= ARITY;
        rows += 1;
    }
    rows
}

/// How many leaves of the sealed file one challenge reads: the segment the
/// library copies to rebuild the discarded rows of tree-r-last.
///
/// The vanilla proof asks for `default_rows_to_discard(all leaves)` rows
/// (storage-proofs-core, which honours `FIL_PROOFS_ROWS_TO_DISCARD`); the
/// tree of each tree-r-last part then caps it at its own default for its
/// base tree (merkletree: at most 2 at arity 8). The segment is the arity to
/// the power rows + 1, at most one base tree.
pub fn segment_leaves(sector_size: u64) -> u64 {
    let leaves = sector_size / NODE;
    let base_leaves = leaves / u64::from(tree_r_last_parts(sector_size));
    let asked =
        storage_proofs_core::util::default_rows_to_discard(leaves as usize, ARITY as usize) as u32;
    let base_default = match row_count(base_leaves) {
        r if r <= 2 => 0,
        3 => 1,
        r => (r - 2).min(2),
    };
    let rows = asked.min(base_default);
    if rows == 0 {
        // No cached proof: the library may read any leaf of the base tree.
        return base_leaves;
    }
    ARITY.pow(rows + 1).min(base_leaves)
}

/// The byte ranges `(offset, len)` of a sealed file of `sector_size` bytes
/// that a PoSt with these leaf challenges reads: one aligned segment per
/// challenge, sorted, adjacent and shared segments merged.
pub fn challenged_ranges(sector_size: u64, challenges: &[u64]) -> Vec<(u64, u64)> {
    let seg = segment_leaves(sector_size);
    let mut starts: Vec<u64> = challenges.iter().map(|c| c / seg * seg).collect();
    starts.sort_unstable();
    starts.dedup();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for s in starts {
        let (off, len) = (s * NODE, seg * NODE);
        match ranges.last_mut() {
            Some((o, l)) if *o + *l == off => *l += len,
            _ => ranges.push((off, len)),
        }
    }
    ranges
}

/// The leaf challenges of each sector (by number) in a PoSt of `sectors`,
/// as the proofs library draws them for `generate_window_post` /
/// `generate_winning_post` (which take the sectors sorted and once each).
pub fn sector_challenges(
    proof: RegisteredPoStProof,
    seed: &[u8; 32],
    sectors: &[u64],
    miner: u64,
) -> Result<BTreeMap<u64, Vec<u64>>> {
    let mut ids: Vec<u64> = sectors.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let ids: Vec<SectorId> = ids.into_iter().map(SectorId::from).collect();
    let all = std::panic::catch_unwind(|| {
        filecoin_proofs_api::post::generate_fallback_sector_challenges(
            proof,
            seed,
            &ids,
            damocles_sector::prover_id(miner),
        )
    })
    .map_err(|_| anyhow::anyhow!("the challenges of {proof:?} panicked"))?
    .with_context(|| format!("the challenges of {proof:?}"))?;
    Ok(all.into_iter().map(|(k, v)| (u64::from(k), v)).collect())
}

/// A sector's files as fetched into a local dir.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The sparse sealed file: the sector's size, holes but where challenged.
    pub sealed_file: PathBuf,
    /// The cache dir with `p_aux` and tree-r-last.
    pub cache_dir: PathBuf,
    /// The bytes read from the store.
    pub bytes: u64,
    /// The store requests made (stats and ranged gets).
    pub requests: u64,
}

/// The cache files fetched: every one a persisted sector keeps. The proof
/// reads `p_aux` and tree-r-last; `t_aux` (a few hundred bytes) comes too, so
/// that a prover checking for a complete cache dir finds one.
fn post_cache_files(sector_size: u64) -> Vec<CacheFile> {
    damocles_sector::persisted_cache_files(sector_size)
}

/// Copies `len` bytes of `object` from `offset` into `out` at the same
/// offset; exactly `len` or an error.
fn copy_range(
    store: &dyn Store,
    object: &ObjectPath,
    offset: u64,
    len: Option<u64>,
    out: &mut File,
) -> Result<u64> {
    let mut reader = store
        .get(object, offset, len)
        .with_context(|| format!("read {}", store.full_path(object)))?;
    out.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("read {}", store.full_path(object))),
        };
        out.write_all(&buf[..n])?;
        copied += n as u64;
    }
    if let Some(want) = len {
        ensure!(
            copied == want,
            "{}: {copied} bytes at {offset}, not {want}",
            store.full_path(object)
        );
    }
    Ok(copied)
}

/// Fetches what a PoSt with `challenges` reads of sector `id` from `store`
/// into `into` (created): the persisted cache files, whole, and the
/// challenged segments of the sealed file into a sparse file of its size.
/// Blocking.
pub fn fetch_sector(
    store: &dyn Store,
    id: SectorID,
    sector_size: u64,
    challenges: &[u64],
    into: &Path,
) -> Result<Fetched> {
    let object = |rel: String| ObjectPath::new(&rel).map_err(anyhow::Error::from);
    let cache_dir = into.join("cache");
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("create {}", cache_dir.display()))?;
    let (mut bytes, mut requests) = (0u64, 0u64);
    for f in post_cache_files(sector_size) {
        let path = cache_dir.join(f.to_string());
        let mut out = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        bytes += copy_range(
            store,
            &object(objects::cache_file(id, f))?,
            0,
            None,
            &mut out,
        )?;
        requests += 1;
    }

    let sealed = object(objects::sealed(id))?;
    let size = store
        .stat(&sealed)
        .with_context(|| format!("stat {}", store.full_path(&sealed)))?;
    requests += 1;
    if size != sector_size {
        bail!(
            "{} is {size} bytes, not the sector size {sector_size}",
            store.full_path(&sealed)
        );
    }
    let sealed_file = into.join("sealed");
    let mut out =
        File::create(&sealed_file).with_context(|| format!("create {}", sealed_file.display()))?;
    // A sparse file: the holes take no disk, even for a 32GiB sector.
    out.set_len(size)
        .with_context(|| format!("size {}", sealed_file.display()))?;
    for (offset, len) in challenged_ranges(sector_size, challenges) {
        bytes += copy_range(store, &sealed, offset, Some(len), &mut out)?;
        requests += 1;
    }
    out.sync_all().ok();
    Ok(Fetched {
        sealed_file,
        cache_dir,
        bytes,
        requests,
    })
}

/// Every sector of one PoSt fetched into one temporary dir, removed when
/// this is dropped.
pub struct FetchedTask {
    /// The fetched sectors, by number.
    pub sectors: BTreeMap<u64, Fetched>,
    /// The sectors that could not be fetched, with why.
    pub failed: BTreeMap<u64, String>,
    _dir: tempfile::TempDir,
}

/// How many sectors are fetched at once.
const PARALLEL_SECTORS: usize = 8;

/// Fetches, for a PoSt of `proof` with challenge `seed` over all of
/// `sectors` (number and store; numbers repeated are fetched once), what
/// each of the sectors in `stores` reads, into a fresh dir under `root`.
/// A sector that fails is in `failed`; the others are fetched regardless.
/// Blocking.
pub fn fetch_task(
    root: &Path,
    miner: u64,
    proof: RegisteredPoStProof,
    seed: &[u8; 32],
    all_sectors: &[u64],
    stores: &BTreeMap<u64, Arc<dyn Store>>,
) -> Result<FetchedTask> {
    let sector_size = u64::from(proof.sector_size());
    std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("post-")
        .tempdir_in(root)
        .with_context(|| format!("a fetch dir under {}", root.display()))?;
    let challenges = sector_challenges(proof, seed, all_sectors, miner)?;
    let wanted: Vec<(u64, &Arc<dyn Store>)> = stores.iter().map(|(n, s)| (*n, s)).collect();
    let mut sectors = BTreeMap::new();
    let mut failed = BTreeMap::new();
    for chunk in wanted.chunks(PARALLEL_SECTORS) {
        let results: Vec<(u64, Result<Fetched>)> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(n, store)| {
                    let id = SectorID::new(miner, *n);
                    let into = dir.path().join(id.to_string());
                    let ch = challenges.get(n).cloned();
                    (
                        *n,
                        s.spawn(move || {
                            let ch = ch.with_context(|| {
                                format!("sector {id} is not among the PoSt's sectors")
                            })?;
                            fetch_sector(store.as_ref(), id, sector_size, &ch, &into)
                        }),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(n, h)| {
                    let r = h
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the fetch panicked")));
                    (n, r)
                })
                .collect()
        });
        for (n, r) in results {
            match r {
                Ok(f) => {
                    tracing::debug!(
                        miner,
                        sector = n,
                        bytes = f.bytes,
                        requests = f.requests,
                        sector_size,
                        "PoSt files fetched"
                    );
                    sectors.insert(n, f);
                }
                Err(e) => {
                    failed.insert(n, format!("{e:#}"));
                }
            }
        }
    }
    Ok(FetchedTask {
        sectors,
        failed,
        _dir: dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_the_tree_geometry() {
        // 2KiB: 64 leaves, 3 rows, one discarded: the whole file.
        assert_eq!(segment_leaves(2048), 64);
        // 8MiB and up: 2 rows discarded at arity 8, 8^3 leaves.
        assert_eq!(segment_leaves(8 << 20), 512);
        assert_eq!(segment_leaves(512 << 20), 512);
        assert_eq!(segment_leaves(32 << 30), 512);
        assert_eq!(segment_leaves(64 << 30), 512);
    }

    #[test]
    fn ranges_are_aligned_sorted_and_merged() {
        let size = 8 << 20;
        // Leaves 5 and 511 share segment 0; 512 starts the next (merged);
        // 10_000 is alone.
        let r = challenged_ranges(size, &[10_000, 511, 5, 512]);
        assert_eq!(r, vec![(0, 2 * 512 * 32), (19 * 512 * 32, 512 * 32)]);
        assert_eq!(challenged_ranges(2048, &[3, 60]), vec![(0, 2048)]);
        assert!(challenged_ranges(size, &[]).is_empty());
    }

    #[test]
    fn challenges_are_the_librarys_and_repeat_free() {
        let seed = [7u8; 32];
        let proof = RegisteredPoStProof::StackedDrgWindow2KiBV1_2;
        let a = sector_challenges(proof, &seed, &[3, 1, 3], 1000).unwrap();
        let b = sector_challenges(proof, &seed, &[1, 3], 1000).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert!(a
            .values()
            .all(|c| !c.is_empty() && c.iter().all(|l| *l < 64)));
    }
}
