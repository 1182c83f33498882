//! PoSt of sectors kept in plugin stores (S3 and the like): before a prover
//! runs, what the PoSt reads of each such sector (the small cache files and
//! the challenged segments of the sealed file) is fetched by ranged reads
//! into `<home>/post-fetch` ([`damocles_post_fetch`]), and the task's paths
//! point at the local copies. Builtin provers and ext-provers (children on
//! this machine) then prove from local paths; the copies go when the proof
//! is done.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use damocles_objstore::Store;
use damocles_post_fetch::FetchedTask;
use damocles_sector::SectorID;
use filecoin_proofs_api::RegisteredPoStProof;
use tracing::{info, warn};
use vc_processors::tasks::{PoStReplicaInfo, WindowPoSt};

use super::Proving;

/// The local copies of one PoSt's remote sectors, and the sectors that
/// could not be fetched (with why). The copies live as long as this.
#[derive(Default)]
pub struct Localized {
    _fetched: Option<FetchedTask>,
    pub failed: BTreeMap<u64, String>,
}

/// [`localize`] for a window PoSt task, unless worker-provers prove it
/// (they fetch for themselves, from the job's store names).
pub async fn localize_window(p: &Proving, task: &mut WindowPoSt) -> Result<Localized> {
    if p.window_prover.keeps_jobs() {
        return Ok(Localized::default());
    }
    let (miner, proof, seed) = (task.miner_id, task.proof_type, task.seed);
    localize(p, "window", miner, proof, seed, &mut task.replicas).await
}

/// Points every replica of a sector in a plugin store at a local copy of
/// what a PoSt of `proof` with `seed` over all of `replicas` reads.
/// `kind` (`window`, `winning`) labels the metrics.
pub async fn localize(
    p: &Proving,
    kind: &'static str,
    miner: u64,
    proof: RegisteredPoStProof,
    seed: [u8; 32],
    replicas: &mut [PoStReplicaInfo],
) -> Result<Localized> {
    let mut remote: BTreeMap<u64, (String, Arc<dyn Store>)> = BTreeMap::new();
    for r in replicas.iter() {
        let n = u64::from(r.sector_id);
        if remote.contains_key(&n) {
            continue;
        }
        if let Some(store) = p
            .checker
            .locator
            .remote_store(SectorID::new(miner, n))
            .map_err(|e| anyhow!(e))?
        {
            remote.insert(n, store);
        }
    }
    if remote.is_empty() {
        return Ok(Localized::default());
    }
    let all: Vec<u64> = replicas.iter().map(|r| u64::from(r.sector_id)).collect();
    let stores: BTreeMap<u64, Arc<dyn Store>> = remote
        .iter()
        .map(|(n, (_, s))| (*n, Arc::clone(s)))
        .collect();
    let root = p.checker.locator.fetch_root().to_path_buf();
    let started = Instant::now();
    let fetched = tokio::task::spawn_blocking(move || {
        damocles_post_fetch::fetch_task(&root, miner, proof, &seed, &all, &stores)
    })
    .await
    .map_err(|e| anyhow!("the PoSt fetch task failed: {e}"))??;

    let sector_size = u64::from(proof.sector_size());
    let (mut bytes, mut requests) = (0u64, 0u64);
    for (n, f) in &fetched.sectors {
        let store = &remote[n].0;
        p.metrics.post_fetch(kind, store, f.bytes, f.requests);
        bytes += f.bytes;
        requests += f.requests;
    }
    for (n, why) in &fetched.failed {
        warn!(miner, sector = n, store = %remote[n].0, error = %why, "cannot fetch the sector's PoSt files");
    }
    let count = fetched.sectors.len() as u64;
    if count > 0 {
        info!(
            kind,
            miner,
            sectors = count,
            bytes,
            bytes_per_sector = bytes / count,
            sealed_file_bytes = sector_size,
            requests,
            elapsed = ?started.elapsed(),
            "PoSt files fetched from plugin stores by ranged reads"
        );
    }
    for r in replicas.iter_mut() {
        if let Some(f) = fetched.sectors.get(&u64::from(r.sector_id)) {
            r.sealed_file = f.sealed_file.clone();
            r.cache_dir = f.cache_dir.clone();
        }
    }
    Ok(Localized {
        failed: fetched.failed.clone(),
        _fetched: Some(fetched),
    })
}
