//! Where a proven sector's files are, and whether they can be proven:
//! `[Common.Proving]` bounds the checks, `StrictCheck` adds the sealed
//! file's size and a one-challenge vanilla proof to the existence check.
//! A sector that fails is skipped by its window PoSt, never the partition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use damocles_api::SectorID;
use damocles_chain::{SectorNumber, SectorOnChain};
use damocles_objstore::{ErrorKind as StoreErrorKind, ObjectPath, Store};
use damocles_sector::objects;
use filecoin_proofs_api::{PrivateReplicaInfo, RegisteredPoStProof, SectorId};
use tokio::sync::Semaphore;
use vc_processors::tasks::PoStReplicaInfo;

use crate::config::ProvingConfig;
use crate::db::Db;
use crate::proxy::ProxyIndex;
use crate::stores::{PersistStore, Stores};

/// Which persist store holds a sector: this manager's database, or for a
/// poster node (`--proxy`) the sealing manager's.
#[derive(Clone)]
pub enum SectorIndex {
    Local(Db),
    Proxy(Arc<ProxyIndex>),
}

/// Finds the files of the manager's sectors in its persist stores.
#[derive(Clone)]
pub struct Locator {
    index: SectorIndex,
    stores: Arc<Stores>,
    /// Where the files of sectors in plugin stores are fetched to.
    fetch_root: PathBuf,
}

/// A plugin store holding a sector: its name and the store.
pub type RemoteStore = (String, Arc<dyn Store>);

/// A sector's files as a prover opens them.
#[derive(Clone, Debug)]
pub struct Located {
    pub store: String,
    pub sealed_file: PathBuf,
    pub cache_dir: PathBuf,
}

impl Locator {
    pub fn new(index: SectorIndex, stores: Arc<Stores>, fetch_root: PathBuf) -> Locator {
        Locator {
            index,
            stores,
            fetch_root,
        }
    }

    /// Where PoSt fetches the files of sectors in plugin stores.
    pub fn fetch_root(&self) -> &Path {
        &self.fetch_root
    }

    /// The store of a sector kept in a plugin store (S3 and the like): a
    /// prover cannot open its files by path, PoSt fetches what it reads.
    /// `None` for a filesystem store.
    pub fn remote_store(&self, id: SectorID) -> Result<Option<RemoteStore>, String> {
        let store = self.store_of(id)?;
        Ok(
            (!store.config.plugin_name.is_empty())
                .then(|| (store.name(), Arc::clone(&store.store))),
        )
    }

    /// Makes `numbers` known to [`Locator::locate`] and the checks: a poster
    /// node asks the sealing manager where they are (one call); this
    /// manager's own database needs nothing.
    pub async fn resolve(&self, miner: u64, numbers: impl IntoIterator<Item = SectorNumber>) {
        if let SectorIndex::Proxy(index) = &self.index {
            index.resolve(miner, numbers.into_iter().collect()).await;
        }
    }

    fn store_of(&self, id: SectorID) -> Result<&PersistStore, String> {
        let name = match &self.index {
            SectorIndex::Local(db) => {
                let (state, _) = db
                    .find(id)
                    .map_err(|e| format!("sector {id}: database: {e}"))?
                    .ok_or_else(|| format!("sector {id} is not in this manager's database"))?;
                state
                    .persisted
                    .ok_or_else(|| format!("sector {id} has no persist store on record"))?
            }
            SectorIndex::Proxy(index) => index.store(id)?,
        };
        self.stores
            .get(&name)
            .ok_or_else(|| format!("sector {id} is in store {name:?}, which is not in the config"))
    }

    /// The sector's sealed file and cache dir, from its persist store.
    pub fn locate(&self, id: SectorID) -> Result<Located, String> {
        let store = self.store_of(id)?;
        let path = |rel: String| -> Result<PathBuf, String> {
            let p = ObjectPath::new(&rel).map_err(|e| format!("{rel}: {e}"))?;
            Ok(PathBuf::from(store.store.full_path(&p)))
        };
        Ok(Located {
            store: store.name(),
            sealed_file: path(objects::sealed(id))?,
            cache_dir: path(objects::cache_dir(id))?,
        })
    }

    /// The replica as the PoSt tasks carry it, and the name of its store
    /// (what a worker-prover's job names).
    pub fn replica(
        &self,
        sector: &SectorOnChain,
        miner: u64,
    ) -> Result<(PoStReplicaInfo, String), String> {
        let id = SectorID {
            miner,
            number: sector.number,
        };
        let at = self.locate(id)?;
        let replica = PoStReplicaInfo {
            sector_id: SectorId::from(sector.number),
            comm_r: sector.comm_r,
            cache_dir: at.cache_dir,
            sealed_file: at.sealed_file,
        };
        Ok((replica, at.store))
    }

    /// One sector's check: its files through the store (`Stat`), and with
    /// `strict` the sealed file's size and a vanilla proof of one random
    /// challenge read from them. Blocking.
    pub fn check_one(
        &self,
        miner: u64,
        sector: &SectorOnChain,
        post_proof: RegisteredPoStProof,
        strict: bool,
    ) -> Result<(), String> {
        let id = SectorID {
            miner,
            number: sector.number,
        };
        let store = self.store_of(id)?;
        let size = u64::from(post_proof.sector_size());
        let stat = |rel: String| -> Result<u64, String> {
            let p = ObjectPath::new(&rel).map_err(|e| format!("{rel}: {e}"))?;
            store.store.stat(&p).map_err(|e| match e.kind() {
                StoreErrorKind::NotFound => {
                    format!("{} is missing from store {}", rel, store.name())
                }
                _ => format!("{rel} in store {}: {e}", store.name()),
            })
        };
        let sealed = stat(objects::sealed(id))?;
        for f in damocles_sector::persisted_cache_files(size) {
            stat(objects::cache_file(id, f))?;
        }
        if !strict {
            return Ok(());
        }
        if sealed != size {
            return Err(format!(
                "{} in store {} is {sealed} bytes, not {size}",
                objects::sealed(id),
                store.name()
            ));
        }
        let challenge = rand::random::<u64>() % (size / 32);
        // A plugin store's sector: its files for this one challenge, fetched
        // by ranged reads into a dir removed after the check.
        let mut _fetch_dir: Option<tempfile::TempDir> = None;
        let at = match self.remote_store(id)? {
            None => self.locate(id)?,
            Some((_, remote)) => {
                std::fs::create_dir_all(&self.fetch_root)
                    .map_err(|e| format!("create {}: {e}", self.fetch_root.display()))?;
                let dir = tempfile::Builder::new()
                    .prefix("check-")
                    .tempdir_in(&self.fetch_root)
                    .map_err(|e| format!("a check dir under {}: {e}", self.fetch_root.display()))?;
                let f = damocles_post_fetch::fetch_sector(
                    remote.as_ref(),
                    id,
                    size,
                    &[challenge],
                    dir.path(),
                )
                .map_err(|e| format!("fetch for the check: {e:#}"))?;
                _fetch_dir = Some(dir);
                Located {
                    store: store.name(),
                    sealed_file: f.sealed_file,
                    cache_dir: f.cache_dir,
                }
            }
        };
        let replica =
            PrivateReplicaInfo::new(post_proof, sector.comm_r, at.cache_dir, at.sealed_file);
        let call = std::panic::catch_unwind(|| {
            filecoin_proofs_api::post::generate_single_vanilla_proof(
                post_proof,
                SectorId::from(sector.number),
                &replica,
                &[challenge],
            )
        });
        match call {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("vanilla proof of challenge {challenge}: {e:#}")),
            Err(_) => Err(format!("vanilla proof of challenge {challenge} panicked")),
        }
    }
}

/// Checks sectors with `[Common.Proving]`'s bounds.
#[derive(Clone)]
pub struct Checker {
    pub locator: Locator,
    cfg: ProvingConfig,
}

impl Checker {
    pub fn new(locator: Locator, cfg: ProvingConfig) -> Checker {
        Checker { locator, cfg }
    }

    /// The sectors that cannot be proven, with why: at most
    /// ParallelCheckLimit checks at once, each within SingleCheckTimeout,
    /// all within PartitionCheckTimeout (a check not done by then fails).
    pub async fn bad_sectors(
        &self,
        miner: u64,
        sectors: &[SectorOnChain],
        post_proof: RegisteredPoStProof,
        strict: bool,
    ) -> BTreeMap<SectorNumber, String> {
        self.locator
            .resolve(miner, sectors.iter().map(|s| s.number))
            .await;
        let limit = match self.cfg.parallel_check_limit {
            n if n <= 0 => sectors.len().max(1),
            n => n as usize,
        };
        let slots = Arc::new(Semaphore::new(limit));
        let single = self.cfg.single_check_timeout;
        let mut checks = tokio::task::JoinSet::new();
        for s in sectors.iter().cloned() {
            let (slots, locator) = (Arc::clone(&slots), self.locator.clone());
            checks.spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return (s.number, Err("check pool closed".to_string()));
                };
                let n = s.number;
                let run = tokio::task::spawn_blocking(move || {
                    locator.check_one(miner, &s, post_proof, strict)
                });
                let r = match tokio::time::timeout(single, run).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Err(format!("check task failed: {e}")),
                    Err(_) => Err(format!(
                        "check did not finish within SingleCheckTimeout ({})",
                        humantime::format_duration(single)
                    )),
                };
                (n, r)
            });
        }
        let mut bad = BTreeMap::new();
        let mut pending: std::collections::BTreeSet<SectorNumber> =
            sectors.iter().map(|s| s.number).collect();
        let all = async {
            while let Some(done) = checks.join_next().await {
                if let Ok((n, r)) = done {
                    pending.remove(&n);
                    if let Err(why) = r {
                        bad.insert(n, why);
                    }
                }
            }
        };
        if tokio::time::timeout(self.cfg.partition_check_timeout, all)
            .await
            .is_err()
        {
            checks.abort_all();
        }
        let timeout = humantime::format_duration(self.cfg.partition_check_timeout);
        for n in pending {
            bad.entry(n)
                .or_insert_with(|| format!("not checked within PartitionCheckTimeout ({timeout})"));
        }
        for (n, why) in &bad {
            tracing::warn!(miner, sector = n, reason = %why, "sector check failed: skipped by PoSt");
        }
        bad
    }
}
