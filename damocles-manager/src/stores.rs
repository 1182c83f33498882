//! Persist stores: where finished sectors live. Builtin filesystem stores from
//! `[[Common.PersistStores]]`; objstore plugins plug in behind the same calls
//! in a later release.
//!
//! Reservation picks, at random weighted by `Weight`, among the stores the
//! worker offered that are writable, allowed for the miner, and have room for
//! the size on top of what is already reserved there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use damocles_api::{SectorID, StoreBasicInfo};
use rand::Rng;

use crate::config::PersistStoreConfig;
use crate::error::name;

#[derive(Clone, Debug)]
pub struct PersistStore {
    pub config: PersistStoreConfig,
}

/// Space of a store's filesystem.
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
            meta: Some(self.config.meta.clone()),
        }
    }

    pub fn space(&self) -> Space {
        let p = &self.config.path;
        Space {
            total: fs4::total_space(p).unwrap_or(0),
            free: fs4::available_space(p).unwrap_or(0),
        }
    }

    pub fn allows(&self, miner: u64) -> bool {
        let c = &self.config;
        !c.deny_miners.contains(&miner)
            && (c.allow_miners.is_empty() || c.allow_miners.contains(&miner))
    }

    fn sealed_file(&self, id: SectorID) -> PathBuf {
        self.config.path.join("sealed").join(name(id))
    }

    fn cache_dir(&self, id: SectorID) -> PathBuf {
        self.config.path.join("cache").join(name(id))
    }

    /// Whether a sealed sector's files are all here and whole: the sealed file
    /// is exactly the sector size and every cache file PoSt needs exists and is
    /// not empty. `Err` says what is missing.
    pub fn check_persisted(
        &self,
        id: SectorID,
        sector_size: u64,
    ) -> std::result::Result<(), String> {
        let sealed = self.sealed_file(id);
        match std::fs::metadata(&sealed) {
            Ok(m) if m.is_file() && m.len() == sector_size => {}
            Ok(m) => {
                return Err(format!(
                    "{} is {} bytes, expected {sector_size}",
                    sealed.display(),
                    m.len()
                ))
            }
            Err(e) => return Err(format!("{}: {e}", sealed.display())),
        }
        let cache = self.cache_dir(id);
        for f in vc_processors::builtin::persisted_cache_files(sector_size) {
            let p = cache.join(&f);
            match std::fs::metadata(&p) {
                Ok(m) if m.is_file() && m.len() > 0 => {}
                Ok(_) => return Err(format!("{} is empty or not a file", p.display())),
                Err(e) => return Err(format!("{}: {e}", p.display())),
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stores {
    stores: Vec<PersistStore>,
}

impl Stores {
    /// Builds the stores, checking each path is a directory.
    pub fn open(configs: &[PersistStoreConfig]) -> Result<Stores> {
        let mut stores = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            if !c.path.is_dir() {
                bail!(
                    "key Common.PersistStores[{i}].Path: {} is not a directory (store {:?})",
                    c.path.display(),
                    c.instance_name()
                );
            }
            stores.push(PersistStore { config: c.clone() });
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
    use super::*;

    fn store(name: &str, weight: u64) -> PersistStore {
        PersistStore {
            config: PersistStoreConfig {
                name: name.into(),
                path: PathBuf::from("/nonexistent"),
                weight,
                ..Default::default()
            },
        }
    }

    #[test]
    fn picks_only_eligible_stores_weighted() {
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
