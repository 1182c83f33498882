//! Persist stores: where finished sectors live. Each `[[Common.PersistStores]]`
//! entry is a [`Store`]: the builtin filesystem store, or the objstore plugin
//! its `PluginName` names, loaded from `[Common.Plugins] Dir`. Every check
//! goes through the store, whatever it is.
//!
//! Reservation picks, at random weighted by `Weight`, among the stores the
//! worker offered that are writable, allowed for the miner, and have room for
//! the size on top of what is already reserved there.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Result};
use damocles_api::{SectorID, StoreBasicInfo};
use damocles_objstore::registry::{Registry, Wanted};
use damocles_objstore::{Config as StoreConfig, ErrorKind as StoreErrorKind, ObjectPath, Store};
use damocles_sector::objects;
use rand::Rng;
use tracing::{error, info};

use crate::config::{ManagerConfig, PersistStoreConfig, PieceStoreConfig};

#[derive(Clone)]
pub struct PersistStore {
    pub config: PersistStoreConfig,
    pub store: Arc<dyn Store>,
}

impl std::fmt::Debug for PersistStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistStore")
            .field("name", &self.name())
            .field("kind", &self.store.kind())
            .finish()
    }
}

/// Why a sector's files do not check out.
#[derive(Debug, PartialEq, Eq)]
pub enum Unpersisted {
    /// An object is missing, empty or the wrong size: the persist did not
    /// happen (as far as this store knows).
    Missing(String),
    /// The store did not answer (a server down, access denied): ask again.
    Unreachable(String),
}

impl std::fmt::Display for Unpersisted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unpersisted::Missing(m) | Unpersisted::Unreachable(m) => f.write_str(m),
        }
    }
}

/// Meta keys whose values are never sent to clients: credentials.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "token", "credential", "session"]
        .iter()
        .any(|s| k.contains(s))
}

/// Space of a store.
#[derive(Clone, Copy, Debug, Default)]
pub struct Space {
    pub total: u64,
    pub free: u64,
}

impl PersistStore {
    pub fn name(&self) -> String {
        self.config.instance_name()
    }

    pub fn basic_info(&self) -> StoreBasicInfo {
        StoreBasicInfo {
            name: self.name(),
            path: self.config.path.display().to_string(),
            strict: self.config.strict,
            read_only: self.config.read_only,
            weight: self.config.weight,
            // StoreBasicInfo needs only `read`: credentials stay here.
            meta: Some(
                self.config
                    .meta
                    .iter()
                    .map(|(k, v)| {
                        let v = if is_secret(k) {
                            "<redacted>".into()
                        } else {
                            v.clone()
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
        }
    }

    /// What the store reports; none at all when it cannot say (a stopped
    /// server), so nothing is reserved there meanwhile.
    pub fn space(&self) -> Space {
        match self.store.info() {
            Ok(i) => Space {
                total: i.total,
                free: i.free,
            },
            Err(e) => {
                error!(store = %self.name(), error = %e, "store capacity unknown");
                Space::default()
            }
        }
    }

    pub fn allows(&self, miner: u64) -> bool {
        let c = &self.config;
        !c.deny_miners.contains(&miner)
            && (c.allow_miners.is_empty() || c.allow_miners.contains(&miner))
    }

    /// Whether a sealed sector's objects are all in the store and whole: the
    /// sealed file is exactly the sector size and every cache file PoSt needs
    /// exists and is not empty. The error says what is missing, by store and
    /// path, or that the store could not answer.
    pub fn check_persisted(
        &self,
        id: SectorID,
        sector_size: u64,
    ) -> std::result::Result<(), Unpersisted> {
        let stat = |path: String| -> std::result::Result<u64, Unpersisted> {
            let p = ObjectPath::new(&path).map_err(|e| Unpersisted::Missing(e.to_string()))?;
            match self.store.stat(&p) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == StoreErrorKind::NotFound => {
                    Err(Unpersisted::Missing(format!(
                        "{} is missing from store {}",
                        self.store.full_path(&p),
                        self.name()
                    )))
                }
                Err(e) => Err(Unpersisted::Unreachable(format!(
                    "{} in store {}: {e}",
                    self.store.full_path(&p),
                    self.name()
                ))),
            }
        };
        let sealed = objects::sealed(id);
        let n = stat(sealed.clone())?;
        if n != sector_size {
            return Err(Unpersisted::Missing(format!(
                "{sealed} in store {} is {n} bytes, expected {sector_size}",
                self.name()
            )));
        }
        for f in damocles_sector::persisted_cache_files(sector_size) {
            let path = objects::cache_file(id, f);
            if stat(path.clone())? == 0 {
                return Err(Unpersisted::Missing(format!(
                    "{path} in store {} is empty",
                    self.name()
                )));
            }
        }
        Ok(())
    }
}

const PLUGINS_DIR_KEY: &str = "Common.Plugins.Dir";

/// The plugins the persist and piece stores name, or every library in the
/// dir with `LoadAll`.
fn wanted_plugins(cfg: &ManagerConfig) -> Wanted {
    let persist = cfg.common.persist_stores.iter().map(|s| &s.plugin_name);
    let piece = cfg.common.piece_stores.iter().map(|s| &s.plugin_name);
    Wanted::new(
        cfg.common.plugins.load_all,
        persist.chain(piece).map(String::as_str),
    )
}

/// The plugins in `[Common.Plugins] Dir` the stores need (none when the dir
/// is empty). Each library refused is logged naming the file; the rest are
/// kept.
pub fn load_plugins(cfg: &ManagerConfig) -> Result<Registry> {
    let dir = &cfg.common.plugins.dir;
    if dir.as_os_str().is_empty() {
        return Ok(Registry::empty());
    }
    Ok(Registry::load_logged(
        dir,
        PLUGINS_DIR_KEY,
        &wanted_plugins(cfg),
    )?)
}

/// What `config check` adds to the config's own validation: the plugins
/// loaded as [`load_plugins`] does, but a refused library, or a plugin a
/// store names that no library serves, is an error.
pub fn check_plugins(cfg: &ManagerConfig) -> Result<()> {
    let dir = &cfg.common.plugins.dir;
    if !dir.as_os_str().is_empty() {
        Registry::check(dir, PLUGINS_DIR_KEY, &wanted_plugins(cfg))?;
    }
    Ok(())
}

/// Opens the `what` ("persist", "piece") store configured at `key`. A
/// plugin store that does not open is logged and `None`, so the daemon serves
/// the others; a filesystem store that does not open stops the start.
fn open_store(
    registry: &Registry,
    key: &str,
    what: &str,
    plugin_name: &str,
    cfg: StoreConfig,
) -> Result<Option<Arc<dyn Store>>> {
    let name = cfg.instance_name().to_string();
    match registry.open(plugin_name, cfg) {
        Ok(store) => {
            info!(store = %name, kind = %store.kind(), "{what} store open");
            Ok(Some(store))
        }
        Err(e) if !plugin_name.is_empty() => {
            error!(%key, store = %name, error = %e, "{what} store left out");
            Ok(None)
        }
        Err(e) => bail!("key {key}: store {name:?}: {e}"),
    }
}

/// `[[Common.PieceStores]]`: where pieces are read from for
/// `GET /piecestore/<cid>`. Opened like persist stores: a plugin store that
/// does not open is logged and left out.
#[derive(Clone)]
pub struct PieceStores {
    stores: Vec<Arc<dyn Store>>,
    /// Downloads in flight: each holds a blocking thread while it streams.
    pub downloads: Arc<tokio::sync::Semaphore>,
}

/// Pieces streamed at once; more wait for a turn.
const MAX_DOWNLOADS: usize = 16;

/// What a piece lookup found.
pub enum PieceLookup {
    /// The object and its size, with a reader already open.
    Found(u64, Box<dyn std::io::Read + Send>),
    /// In none of the stores.
    Missing,
    /// The name is not a CID.
    BadName(String),
    /// A store did not answer, so the piece may be there.
    Unreachable(String),
}

impl PieceStores {
    pub fn open(configs: &[PieceStoreConfig], registry: &Registry) -> Result<PieceStores> {
        let mut stores = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let cfg = StoreConfig {
                name: c.instance_name(),
                path: c.path.display().to_string(),
                meta: c.meta.clone(),
                strict: c.strict,
                read_only: c.read_only,
                ..Default::default()
            };
            let key = format!("Common.PieceStores[{i}]");
            if let Some(store) = open_store(registry, &key, "piece", &c.plugin_name, cfg)? {
                stores.push(store);
            }
        }
        Ok(PieceStores {
            stores,
            downloads: Arc::new(tokio::sync::Semaphore::new(MAX_DOWNLOADS)),
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.stores
            .iter()
            .map(|s| s.instance().to_string())
            .collect()
    }

    /// The first store holding `<cid>` or `<cid>.car`, opened for reading.
    /// A name that is not alphanumeric (dots, slashes, temporary files) is
    /// never looked up.
    pub fn find(&self, cid: &str) -> PieceLookup {
        // A piece CID is well under 128 characters; a longer name is
        // refused here rather than reaching the file system (ENAMETOOLONG
        // would read as "store unreachable").
        const MAX_CID_LEN: usize = 256;
        if cid.is_empty()
            || cid.len() > MAX_CID_LEN
            || !cid.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return PieceLookup::BadName(format!("{cid:?} is not a piece CID"));
        }
        let mut unreachable = Vec::new();
        for name in [cid.to_string(), format!("{cid}.car")] {
            let path = ObjectPath::new(&name).expect("an alphanumeric name");
            for s in &self.stores {
                let opened = s
                    .stat(&path)
                    .and_then(|size| Ok((size, s.get(&path, 0, None)?)));
                match opened {
                    Ok((size, reader)) => return PieceLookup::Found(size, reader),
                    Err(e) if e.kind() == StoreErrorKind::NotFound => {}
                    Err(e) => {
                        error!(store = %s.instance(), piece = %name, error = %e, "piece store did not answer");
                        unreachable.push(format!("{}: {e}", s.instance()));
                    }
                }
            }
        }
        if unreachable.is_empty() {
            PieceLookup::Missing
        } else {
            PieceLookup::Unreachable(unreachable.join("; "))
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stores {
    stores: Vec<PersistStore>,
}

impl Stores {
    /// Opens the stores: the filesystem ones must be directories (refused
    /// at start, by key); a plugin store that cannot be opened, or whose
    /// plugin did not load, is logged and left out, and the daemon serves
    /// the others.
    pub fn open(configs: &[PersistStoreConfig], registry: &Registry) -> Result<Stores> {
        let mut stores = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            if c.plugin_name.is_empty() && !c.path.is_dir() {
                bail!(
                    "key Common.PersistStores[{i}].Path: {} is not a directory (store {:?})",
                    c.path.display(),
                    c.instance_name()
                );
            }
            let cfg = StoreConfig {
                name: c.instance_name(),
                path: c.path.display().to_string(),
                meta: c.meta.clone(),
                strict: c.strict,
                read_only: c.read_only,
                weight: u32::try_from(c.weight).unwrap_or(u32::MAX),
            };
            let key = format!("Common.PersistStores[{i}]");
            if let Some(store) = open_store(registry, &key, "persist", &c.plugin_name, cfg)? {
                stores.push(PersistStore {
                    config: c.clone(),
                    store,
                });
            }
        }
        Ok(Stores { stores })
    }

    pub fn all(&self) -> &[PersistStore] {
        &self.stores
    }

    pub fn get(&self, name: &str) -> Option<&PersistStore> {
        self.stores.iter().find(|s| s.name() == name)
    }

    /// Picks a store for `size` bytes of `miner`'s sector among `candidates`
    /// (all stores when empty), given bytes already reserved per store.
    pub fn pick(
        &self,
        miner: u64,
        size: u64,
        candidates: &[String],
        reserved: &BTreeMap<String, u64>,
        space: impl Fn(&PersistStore) -> Space,
    ) -> Option<String> {
        let eligible: Vec<(&PersistStore, u64)> = self
            .stores
            .iter()
            .filter(|s| candidates.is_empty() || candidates.contains(&s.name()))
            .filter(|s| !s.config.read_only && s.allows(miner))
            .filter(|s| {
                let taken = reserved.get(&s.name()).copied().unwrap_or(0);
                space(s).free >= taken.saturating_add(size)
            })
            .map(|s| (s, s.config.weight.max(1)))
            .collect();
        let total: u64 = eligible.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rand::thread_rng().gen_range(0..total);
        for (s, w) in eligible {
            if ticket < w {
                return Some(s.name());
            }
            ticket -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A filesystem store in `dir`; the picks below never touch it.
    fn store(dir: &Path, name: &str, weight: u64) -> PersistStore {
        let store = damocles_objstore::fs::FsStore::open(StoreConfig {
            name: name.into(),
            path: dir.display().to_string(),
            ..Default::default()
        })
        .unwrap();
        PersistStore {
            config: PersistStoreConfig {
                name: name.into(),
                path: dir.to_path_buf(),
                weight,
                ..Default::default()
            },
            store: Arc::new(store),
        }
    }

    #[test]
    fn credentials_never_leave_in_store_info() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path(), "s3", 1);
        for (k, v) in [
            ("endpoint", "http://s3"),
            ("access_key_id", "AKID"),
            ("secret_access_key", "SECRET"),
            ("session_token", "TOKEN"),
        ] {
            s.config.meta.insert(k.into(), v.into());
        }
        let meta = s.basic_info().meta.unwrap();
        assert_eq!(meta["endpoint"], "http://s3");
        assert_eq!(meta["access_key_id"], "AKID");
        assert_eq!(meta["secret_access_key"], "<redacted>");
        assert_eq!(meta["session_token"], "<redacted>");
    }

    #[test]
    fn picks_only_eligible_stores_weighted() {
        let tmp = tempfile::tempdir().unwrap();
        let store = |name: &str, weight: u64| store(tmp.path(), name, weight);
        let mut ro = store("ro", 1);
        ro.config.read_only = true;
        let mut denied = store("denied", 1);
        denied.config.deny_miners = vec![1000];
        let mut other = store("other-miner", 1);
        other.config.allow_miners = vec![2000];
        let stores = Stores {
            stores: vec![
                ro,
                denied,
                other,
                store("a", 1),
                store("b", 3),
                store("full", 1),
            ],
        };
        let space = |s: &PersistStore| Space {
            total: 100,
            free: if s.name() == "full" { 10 } else { 100 },
        };
        let mut counts = BTreeMap::new();
        for _ in 0..4000 {
            let s = stores.pick(1000, 20, &[], &BTreeMap::new(), space).unwrap();
            *counts.entry(s).or_insert(0) += 1;
        }
        assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(counts["b"] > counts["a"] * 2, "weight 3 vs 1: {counts:?}");

        let only_a = stores.pick(1000, 20, &["a".into()], &BTreeMap::new(), space);
        assert_eq!(only_a.as_deref(), Some("a"));
        let reserved = BTreeMap::from([("a".to_string(), 90u64), ("b".to_string(), 90u64)]);
        assert_eq!(
            stores.pick(1000, 20, &[], &reserved, space),
            None,
            "reserved space counts"
        );
    }
}
