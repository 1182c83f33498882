//! `daemon init --pre-seal N`: committed-capacity sectors sealed at init and
//! active from the devnet's genesis, as `lotus-seed pre-seal` makes them for
//! Lotus devnets. PoSt work then has sectors to prove without any C1/C2.
//!
//! Each sector goes through add_pieces, tree_d, PC1 and PC2 with the builtin
//! processors in this process, in a scratch dir under the home. Its sealed
//! file and the cache files PoSt needs (what a worker persists) are written
//! into the first persist store (a directory or a plugin store such as S3)
//! under the worker's object paths; the rest of
//! the cache (layers, tree-c, tree-d) is dropped with the scratch dir. The
//! devnet then holds the sectors active at its first epochs, and the manager
//! holds them finalized, as a worker's ReportFinalized leaves a sector.
//!
//! The ticket is fixed ([`GENESIS_TICKET`] at epoch 0): there is no chain to
//! draw it from before genesis, and a fixed one makes the replicas depend on
//! the miner and sector number only.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use damocles_api::encoding::Bytes32;
use damocles_api::{PreCommitOnChainInfo, SealProof, SectorID, Ticket};
use damocles_devnet::{Devnet, DevnetMiner, SectorOnChain};
use damocles_objstore::{ObjectPath, Store};
use filecoin_proofs_api::seal::SealPreCommitPhase2Output;
use filecoin_proofs_api::{RegisteredSealProof, SectorId};
use tracing::info;
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::tasks::{AddPieces, TreeD, PC1, PC2};
use vc_processors::{Ctx, Processor};

use crate::config::{parse_sector_size, ManagerConfig};
use crate::db::{Db, NumberPolicy};
use crate::stores::{load_plugins, Stores};

/// The PC1 ticket of every pre-sealed sector (32 bytes), drawn at epoch 0.
pub const GENESIS_TICKET: [u8; 32] = *b"damocles-pre-seal-genesis-ticket";

/// The sector sizes pre-sealing accepts: 2KiB, and 8MiB (seconds each; PoSt
/// from object storage at a size where ranged reads matter). PC1/PC2 need no
/// proof parameters at any size, but larger sectors take minutes to hours.
pub const PRE_SEAL_SECTOR_SIZES: [u64; 2] = [2048, 8 << 20];

/// A sealed sector's commitments.
struct Sealed {
    id: SectorID,
    comm_r: [u8; 32],
    comm_d: [u8; 32],
}

/// Seals `count` CC sectors for the config's first miner into its first
/// persist store, makes them active on the devnet (creating its genesis)
/// and records them finalized in `db`. `scratch` is removed afterwards.
pub fn pre_seal(cfg: &ManagerConfig, db: &Db, scratch: &Path, count: u64) -> Result<()> {
    let sector_size = parse_sector_size(&cfg.devnet.sector_size)?;
    ensure!(
        PRE_SEAL_SECTOR_SIZES.contains(&sector_size),
        "--pre-seal seals 2KiB and 8MiB sectors only; Devnet.SectorSize is {}",
        cfg.devnet.sector_size
    );
    let miner = cfg
        .miners
        .first()
        .context("--pre-seal: the config names no [[Miners]]")?;
    let store_cfg = cfg
        .common
        .persist_stores
        .first()
        .context("--pre-seal: the config names no [[Common.PersistStores]]")?;
    let stores = Stores::open(&cfg.common.persist_stores, &load_plugins(cfg)?)?;
    let store_name = store_cfg.instance_name();
    let store = stores
        .get(&store_name)
        .with_context(|| format!("persist store {store_name} did not open"))?;
    // PC1 reads the parent cache from the path this sets.
    fil_params::configure_process_env();
    let proof = damocles_devnet::devnet::seal_proof_for(sector_size)?;

    let devnet = Devnet::open(
        db.raw(),
        cfg.devnet.block_time,
        cfg.devnet.policy.clone(),
        &[DevnetMiner {
            actor: miner.actor,
            sector_size,
        }],
    )
    .context("create the devnet genesis")?;
    let policy = NumberPolicy {
        init_number: miner.sector.init_number,
        min_number: miner.sector.min_number,
        max_number: miner.sector.max_number,
    };
    let ids = allocate(db, miner.actor, SealProof(proof), policy, count)?;

    let mut sealed = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        info!(sector = %id, n = i + 1, of = count, "pre-seal: sealing");
        let work = scratch.join(id.to_string());
        let s = seal_one(proof, *id, &work).with_context(|| format!("pre-seal sector {id}"))?;
        persist(&work, store.store.as_ref(), *id, sector_size)
            .with_context(|| format!("pre-seal sector {id}: persist to store {store_name}"))?;
        store
            .check_persisted(*id, sector_size)
            .map_err(|e| anyhow::anyhow!("pre-seal sector {id}: {e}"))?;
        std::fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
        info!(sector = %id, store = %store_name, comm_r = %hex::encode(s.comm_r), "pre-seal: sealed and persisted");
        sealed.push(s);
    }
    let _ = std::fs::remove_dir(scratch);

    activate(&devnet, miner.actor, proof, &sealed)?;
    for s in &sealed {
        finish(db, s, &store_name)?;
    }
    info!(
        miner = miner.actor,
        sectors = sealed.len(),
        store = %store_name,
        "pre-sealed sectors active at genesis and finalized"
    );
    Ok(())
}

/// Takes the next `count` numbers of `miner`, as AllocateSector would.
fn allocate(
    db: &Db,
    miner: u64,
    proof: SealProof,
    policy: NumberPolicy,
    count: u64,
) -> Result<Vec<SectorID>> {
    let mut ids = Vec::new();
    for _ in 0..count {
        match db.allocate(miner, proof, policy)? {
            Some(s) => ids.push(s.id),
            None => bail!(
                "--pre-seal {count}: the sector numbers of miner {miner} ran out after {} (Miners.Sector.MaxNumber)",
                ids.len()
            ),
        }
    }
    Ok(ids)
}

/// add_pieces, tree_d, PC1 and PC2 of one CC sector in `work`.
fn seal_one(proof: RegisteredSealProof, id: SectorID, work: &Path) -> Result<Sealed> {
    let (staged, cache, sealed) = work_paths(work);
    if work.exists() {
        // Left by an init that failed: start the sector over.
        std::fs::remove_dir_all(work).with_context(|| format!("clean {}", work.display()))?;
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    let p = BuiltinProcessor::default();
    let ctx = Ctx::detached();
    let pieces = p.process(
        AddPieces {
            seal_proof_type: proof,
            pieces: vec![],
            staged_filepath: staged.clone(),
        },
        &ctx,
    )?;
    p.process(
        TreeD {
            registered_proof: proof,
            staged_file: staged.clone(),
            cache_dir: cache.clone(),
        },
        &ctx,
    )?;
    let pc1out = p.process(
        PC1 {
            registered_proof: proof,
            cache_path: cache.clone(),
            in_path: staged,
            out_path: sealed.clone(),
            prover_id: damocles_sector::prover_id(id.miner),
            sector_id: SectorId::from(id.number),
            ticket: GENESIS_TICKET,
            piece_infos: pieces,
        },
        &ctx,
    )?;
    let SealPreCommitPhase2Output { comm_r, comm_d, .. } = p.process(
        PC2 {
            pc1out,
            cache_dir: cache,
            sealed_file: sealed,
        },
        &ctx,
    )?;
    Ok(Sealed { id, comm_r, comm_d })
}

/// `(staged, cache, sealed)` inside a sector's scratch dir.
fn work_paths(work: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (work.join("staged"), work.join("cache"), work.join("sealed"))
}

/// Writes the sealed file and the cache files PoSt needs into `store` (a
/// directory or a plugin store such as S3), at the object paths a worker
/// persists to.
fn persist(work: &Path, store: &dyn Store, id: SectorID, sector_size: u64) -> Result<()> {
    let (_, cache, sealed) = work_paths(work);
    let mut files = vec![(sealed, damocles_sector::objects::sealed(id))];
    for f in damocles_sector::persisted_cache_files(sector_size) {
        files.push((
            cache.join(f.to_string()),
            damocles_sector::objects::cache_file(id, f),
        ));
    }
    for (src, object) in files {
        let path = ObjectPath::new(&object)?;
        let mut file =
            std::fs::File::open(&src).with_context(|| format!("open {}", src.display()))?;
        store
            .put(&path, &mut file)
            .with_context(|| format!("write {} to {}", src.display(), store.full_path(&path)))?;
    }
    Ok(())
}

/// Makes the sealed sectors active on the devnet from its current epoch.
fn activate(
    devnet: &Devnet,
    miner: u64,
    proof: RegisteredSealProof,
    sealed: &[Sealed],
) -> Result<()> {
    let epoch = devnet.head_now().epoch;
    let lifetime = devnet.policy().sector_lifetime;
    let sectors = sealed
        .iter()
        .map(|s| SectorOnChain {
            number: s.id.number,
            seal_proof: proof,
            comm_r: s.comm_r,
            comm_d: s.comm_d,
            precommit_epoch: epoch,
            activation: epoch,
            expiration: epoch + lifetime,
            // The actor assigns these.
            deadline: 0,
            partition: 0,
            faulty: false,
        })
        .collect();
    devnet
        .add_genesis_sectors(miner, sectors)
        .context("devnet: add the pre-sealed sectors at genesis")?;
    Ok(())
}

/// Records the sector as a worker's ReportFinalized leaves it.
fn finish(db: &Db, s: &Sealed, store: &str) -> Result<()> {
    let ticket = Ticket {
        ticket: Bytes32(GENESIS_TICKET),
        epoch: 0,
    };
    db.move_offline(s.id, |state| {
        state.ticket = Some(ticket);
        state.pre = Some(PreCommitOnChainInfo {
            comm_r: s.comm_r,
            comm_d: s.comm_d,
            ticket,
        });
        state.persisted = Some(store.to_string());
        state.finalized = true;
    })
    .with_context(|| format!("record pre-sealed sector {} finalized", s.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_sectors_other_than_2kib_and_8mib_before_sealing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::create(&dir.path().join("manager.redb")).unwrap();
        let mut cfg = ManagerConfig::default();
        cfg.devnet.sector_size = "512MiB".into();
        let err = pre_seal(&cfg, &db, &dir.path().join("scratch"), 1).unwrap_err();
        assert!(
            err.to_string().contains("2KiB and 8MiB sectors only"),
            "{err:#}"
        );
        assert!(!dir.path().join("scratch").exists());
    }
}
