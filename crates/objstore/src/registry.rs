//! Opening a configured store by plugin name, as both daemons do: no name is
//! the builtin filesystem store; a name is the loaded plugin of that kind
//! (what the plugin's `KIND` says, not its file name).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::FsStore;
use crate::plugin::{LoadError, Plugin};
use crate::{Config, Error, ErrorKind, Result, Store};

/// The plugins a daemon loaded at start.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    dir: Option<PathBuf>,
    plugins: Vec<Plugin>,
}

impl Registry {
    /// No plugins: only the filesystem store opens.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// Every plugin in `dir`. A library that is refused, or a second library
    /// of a kind already loaded, comes back as an error for the caller to
    /// report; the others are kept, so one bad file costs only its stores.
    pub fn load(dir: &Path) -> io::Result<(Registry, Vec<LoadError>)> {
        let (found, mut refused) = Plugin::load_dir(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("plugins dir {}: {e}", dir.display())))?;
        let mut plugins: Vec<Plugin> = Vec::new();
        for p in found {
            if let Some(first) = plugins.iter().find(|q| q.kind() == p.kind()) {
                refused.push(LoadError::Invalid {
                    path: p.path().to_path_buf(),
                    reason: format!(
                        "kind {:?} is already served by {}",
                        p.kind(),
                        first.path().display()
                    ),
                });
            } else {
                plugins.push(p);
            }
        }
        Ok((
            Registry {
                dir: Some(dir.to_path_buf()),
                plugins,
            },
            refused,
        ))
    }

    /// [`Registry::load`], as both daemons start: each refused library is
    /// logged as an error naming the file and why, each loaded one as info.
    /// Only an unreadable `dir` fails; its error names the config `key` the
    /// dir came from.
    pub fn load_logged(dir: &Path, key: &str) -> io::Result<Registry> {
        let (registry, refused) =
            Registry::load(dir).map_err(|e| io::Error::new(e.kind(), format!("key {key}: {e}")))?;
        for e in refused {
            tracing::error!(error = %e, "objstore plugin refused");
        }
        for p in registry.plugins() {
            tracing::info!(plugin = %p.kind(), file = %p.path().display(), "objstore plugin loaded");
        }
        Ok(registry)
    }

    /// The plugins kept, one per kind.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The plugin serving `kind`.
    pub fn get(&self, kind: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.kind() == kind)
    }

    /// Opens the store `cfg` describes: through the plugin named
    /// `plugin_name`, or the filesystem store when it is empty.
    pub fn open(&self, plugin_name: &str, cfg: Config) -> Result<Arc<dyn Store>> {
        if plugin_name.is_empty() {
            return Ok(Arc::new(FsStore::open(cfg)?));
        }
        let Some(plugin) = self.get(plugin_name) else {
            let known: Vec<&str> = self.plugins.iter().map(|p| p.kind()).collect();
            let dir = match &self.dir {
                Some(d) => format!("loaded from {}", d.display()),
                None => "no plugins dir is configured".to_string(),
            };
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "store {}: no plugin {plugin_name:?} ({dir}; loaded: {known:?})",
                    cfg.instance_name()
                ),
            ));
        };
        Ok(Arc::new(plugin.open(cfg)?))
    }
}
