//! The `[[attached]]` persist stores: a directory, written by the `transfer`
//! processor (builtin or ext), or a store served by an objstore plugin from
//! `[plugins] dir`, written here through the plugin (the same library file
//! the manager loads to check what was written).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use damocles_objstore::registry::{Registry, Wanted};
use damocles_objstore::{Config as StoreConfig, ObjectPath, Store};
use tracing::{error, info};

use damocles_sector::{objects, persisted_cache_files, SectorID, Stage};
use vc_processors::error::retryable;
use vc_processors::tasks;

use crate::config::{AttachedStore, WorkerConfig};
use crate::processors::Processors;

#[derive(Clone)]
pub struct Attached {
    pub config: AttachedStore,
    /// Set for a plugin store; a directory store has none.
    pub plugin: Option<Arc<dyn Store>>,
}

impl Attached {
    pub fn instance_name(&self) -> String {
        self.config.instance_name()
    }

    pub fn writable(&self) -> bool {
        !self.config.readonly
    }

    /// Copies a sector's `files` (local path, object path) into this store:
    /// through its plugin in this process, or for a directory store with
    /// the `transfer` processor (builtin or ext). Returns the bytes a plugin
    /// wrote (a transfer does not count them).
    pub async fn persist(
        &self,
        processors: &Processors,
        files: Vec<(PathBuf, String)>,
    ) -> Result<Option<u64>> {
        if let Some(plugin) = &self.plugin {
            let plugin = Arc::clone(plugin);
            let n = processors
                .run_in_process(Stage::Transfer, move || put_files(&*plugin, &files))
                .await?;
            return Ok(Some(n));
        }
        let name = self.instance_name();
        let routes = files
            .into_iter()
            .map(|(src, dest)| tasks::TransferRoute {
                src: tasks::TransferItem {
                    store_name: None,
                    uri: src,
                },
                dest: tasks::TransferItem {
                    store_name: Some(name.clone()),
                    uri: dest.into(),
                },
                opt: Some(tasks::TransferOption {
                    is_dir: false,
                    allow_link: false,
                }),
            })
            .collect();
        let task = tasks::Transfer {
            stores: BTreeMap::from([(
                name.clone(),
                tasks::TransferStoreInfo {
                    name: name.clone(),
                    meta: Some(BTreeMap::from([(
                        "path".to_string(),
                        self.config.location.display().to_string(),
                    )])),
                },
            )]),
            routes,
        };
        processors.run(task).await?;
        Ok(None)
    }
}

/// What persisting a sector writes: its sealed file and the cache files PoSt
/// needs, each with its object path in the store.
pub fn persist_files(
    sealed: &Path,
    cache: &Path,
    id: SectorID,
    sector_size: u64,
) -> Vec<(PathBuf, String)> {
    let mut files = vec![(sealed.to_path_buf(), objects::sealed(id))];
    for f in persisted_cache_files(sector_size) {
        files.push((cache.join(f.to_string()), objects::cache_file(id, f)));
    }
    files
}

const PLUGINS_DIR_KEY: &str = "plugins.dir";

/// The plugins the `[[attached]]` stores name, or every library in the dir
/// with `load_all`.
fn wanted_plugins(cfg: &WorkerConfig) -> Wanted {
    Wanted::new(
        cfg.plugins.load_all,
        cfg.attached.iter().filter_map(|a| a.plugin_name.as_deref()),
    )
}

/// What `config check` adds to the config's own validation: the plugins
/// loaded as the daemon loads them, but a refused library, or a plugin a
/// store names that no library serves, is an error.
pub fn check_plugins(cfg: &WorkerConfig) -> Result<()> {
    if let Some(dir) = &cfg.plugins.dir {
        Registry::check(dir, PLUGINS_DIR_KEY, &wanted_plugins(cfg))?;
    }
    Ok(())
}

/// The attached stores that can be used. A plugin library that is refused,
/// or a plugin store that does not open, is logged and left out, so the
/// worker persists to the others; only an unreadable plugins dir stops it.
pub fn open(cfg: &WorkerConfig) -> Result<Vec<Attached>> {
    let registry = match &cfg.plugins.dir {
        None => Registry::empty(),
        Some(dir) => Registry::load_logged(dir, PLUGINS_DIR_KEY, &wanted_plugins(cfg))?,
    };
    let mut out = Vec::new();
    for (i, a) in cfg.attached.iter().enumerate() {
        let Some(plugin) = &a.plugin_name else {
            out.push(Attached {
                config: a.clone(),
                plugin: None,
            });
            continue;
        };
        let store_cfg = StoreConfig {
            name: a.instance_name(),
            path: a.location.display().to_string(),
            meta: a.meta.clone(),
            read_only: a.readonly,
            ..Default::default()
        };
        match registry.open(plugin, store_cfg) {
            Ok(store) => {
                info!(store = %a.instance_name(), kind = %store.kind(), "attached store open");
                out.push(Attached {
                    config: a.clone(),
                    plugin: Some(store),
                });
            }
            Err(e) => error!(
                key = %format!("attached[{i}]"),
                store = %a.instance_name(),
                error = %e,
                "attached store left out"
            ),
        }
    }
    Ok(out)
}

/// Writes each local file to its object path in `store`, checking every
/// object's length. Each put is all or nothing (the store's contract), so a
/// failure part way leaves whole objects or none, and a retry overwrites.
pub fn put_files(store: &dyn Store, files: &[(PathBuf, String)]) -> Result<u64> {
    let mut total = 0;
    for (src, dest) in files {
        let path = ObjectPath::new(dest)?;
        let mut f = File::open(src).with_context(|| format!("open {}", src.display()))?;
        let len = f
            .metadata()
            .with_context(|| format!("stat {}", src.display()))?
            .len();
        // A store that failed a put (down, throttled, a short write) may take
        // it later: every put is retried by the sealing thread.
        let written = store.put(&path, &mut f).map_err(|e| {
            retryable(anyhow!(
                "put {} to {} in store {}: {e}",
                src.display(),
                store.full_path(&path),
                store.instance()
            ))
        })?;
        if written != len {
            return Err(retryable(anyhow!(
                "put {} to {} in store {}: {written} bytes written, the file has {len}",
                src.display(),
                store.full_path(&path),
                store.instance()
            )));
        }
        total += written;
    }
    Ok(total)
}
