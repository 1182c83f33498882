//! The `[[attached]]` persist stores: a directory, written by the `transfer`
//! processor (builtin or ext), or a store served by an objstore plugin from
//! `[plugins] dir`, written here through the plugin (the same library file
//! the manager loads to check what was written).

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use damocles_objstore::registry::Registry;
use damocles_objstore::{Config as StoreConfig, ObjectPath, Store};
use tracing::{error, info};

use crate::config::{AttachedStore, WorkerConfig};

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
}

/// The attached stores that can be used. A plugin library that is refused,
/// or a plugin store that does not open, is logged and left out, so the
/// worker persists to the others; only an unreadable plugins dir stops it.
pub fn open(cfg: &WorkerConfig) -> Result<Vec<Attached>> {
    let registry = match &cfg.plugins.dir {
        None => Registry::empty(),
        Some(dir) => {
            let (registry, refused) = Registry::load(dir).context("key plugins.dir")?;
            for e in refused {
                error!(error = %e, "objstore plugin refused");
            }
            for p in registry.plugins() {
                info!(plugin = %p.kind(), file = %p.path().display(), "objstore plugin loaded");
            }
            registry
        }
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
        let written = store.put(&path, &mut f).map_err(|e| {
            anyhow!(
                "put {} to {} in store {}: {e}",
                src.display(),
                store.full_path(&path),
                store.instance()
            )
        })?;
        if written != len {
            return Err(anyhow!(
                "put {} to {} in store {}: {written} bytes written, the file has {len}",
                src.display(),
                store.full_path(&path),
                store.instance()
            ));
        }
        total += written;
    }
    Ok(total)
}
