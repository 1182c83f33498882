//! Opening a configured store by plugin name, as both daemons do: no name is
//! the builtin filesystem store; a name is the loaded plugin of that kind
//! (what the plugin's `KIND` says, not its file name).
//!
//! A daemon loads only the libraries its stores need ([`Wanted::Kinds`]),
//! unless its config asks for the whole dir ([`Wanted::All`]). A library
//! runs in the daemon's process, so a crashing one kills it: a file that
//! no store needs is never opened. The kind is declared inside the
//! library, so before anything is opened the kind is matched against file
//! names ([`file_may_serve`]). Only the files whose name holds a wanted
//! kind are loaded, in name order, until one declares that kind.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::abi;
use crate::fs::FsStore;
use crate::plugin::{LoadError, Plugin};
use crate::{Config, Error, ErrorKind, Result, Store};

/// Which libraries of a plugins dir a daemon loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// Every library in the dir, each refusal reported (`LoadAll`).
    All,
    /// Only libraries that may serve these kinds, the ones stores name.
    Kinds(BTreeSet<String>),
}

impl Wanted {
    /// [`Wanted::All`] when `load_all`; otherwise the kinds `names` holds
    /// (empty names, which are filesystem stores, left out).
    pub fn new<'a>(load_all: bool, names: impl IntoIterator<Item = &'a str>) -> Wanted {
        if load_all {
            return Wanted::All;
        }
        Wanted::Kinds(
            names
                .into_iter()
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect(),
        )
    }
}

/// Whether the library at `path` may serve `kind`, judged by its file name
/// alone: the kind is a whole word of the name without its extension (and
/// without a `lib` prefix), words being split by `_`, `-` and `.`, and `-`
/// in the kind matching `_`. For kind `s3`: `s3.so`, `libs3.so`,
/// `libobjstore_s3_plugin.so`; not `libs3x.so`.
pub fn file_may_serve(path: &Path, kind: &str) -> bool {
    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
        return false;
    };
    let words = |s: &str| format!("_{}_", s.replace(['-', '.'], "_"));
    let kind = words(kind);
    let bare = stem.strip_prefix(std::env::consts::DLL_PREFIX);
    [Some(stem), bare]
        .into_iter()
        .flatten()
        .any(|s| words(s).contains(&kind))
}

/// The plugins a daemon loaded at start.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    dir: Option<PathBuf>,
    all: bool,
    plugins: Vec<Plugin>,
}

impl Registry {
    /// No plugins: only the filesystem store opens.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// The `wanted` plugins of `dir`. A library that is refused, or a second
    /// library of a kind already loaded, comes back as an error for the
    /// caller to report; the others are kept, so one bad file costs only its
    /// stores. A wanted kind that is not a plugin kind (see
    /// [`abi::check_kind`]) opens nothing. Only an unreadable `dir` fails.
    pub fn load(dir: &Path, wanted: &Wanted) -> io::Result<(Registry, Vec<LoadError>)> {
        let files = Plugin::library_files(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("plugins dir {}: {e}", dir.display())))?;
        let mut registry = Registry {
            dir: Some(dir.to_path_buf()),
            all: *wanted == Wanted::All,
            plugins: Vec::new(),
        };
        let mut refused = Vec::new();
        match wanted {
            Wanted::All => {
                for f in &files {
                    registry.add(f, &mut refused);
                }
            }
            Wanted::Kinds(kinds) => {
                let mut tried = HashSet::new();
                for kind in kinds.iter().filter(|k| abi::check_kind(k).is_ok()) {
                    for f in files.iter().filter(|f| file_may_serve(f, kind)) {
                        if registry.get(kind).is_some() {
                            break;
                        }
                        if tried.insert(f) {
                            registry.add(f, &mut refused);
                        }
                    }
                }
            }
        }
        Ok((registry, refused))
    }

    /// Loads the library at `file`: kept, or refused into `refused`.
    fn add(&mut self, file: &Path, refused: &mut Vec<LoadError>) {
        let p = match Plugin::load(file) {
            Ok(p) => p,
            Err(e) => return refused.push(e),
        };
        match self.get(p.kind()) {
            Some(first) => refused.push(LoadError::Invalid {
                path: p.path().to_path_buf(),
                reason: format!(
                    "kind {:?} is already served by {}",
                    p.kind(),
                    first.path().display()
                ),
            }),
            None => self.plugins.push(p),
        }
    }

    /// [`Registry::load`], as both daemons start: each refused library is
    /// logged as an error naming the file and why, each loaded one as info.
    /// Only an unreadable `dir` fails; its error names the config `key` the
    /// dir came from.
    pub fn load_logged(dir: &Path, key: &str, wanted: &Wanted) -> io::Result<Registry> {
        match wanted {
            Wanted::All => tracing::info!(dir = %dir.display(), "loading every objstore plugin"),
            Wanted::Kinds(kinds) => {
                tracing::info!(dir = %dir.display(), kinds = ?kinds, "loading the objstore plugins stores name")
            }
        }
        let (registry, refused) = Registry::load(dir, wanted)
            .map_err(|e| io::Error::new(e.kind(), format!("key {key}: {e}")))?;
        for e in refused {
            tracing::error!(error = %e, "objstore plugin refused");
        }
        for p in registry.plugins() {
            tracing::info!(plugin = %p.kind(), file = %p.path().display(), "objstore plugin loaded");
        }
        Ok(registry)
    }

    /// What a config check runs: [`Registry::load`], the daemon's own
    /// load, but every refused library and every wanted kind left unserved
    /// is an error. The error lists them all, after the config `key` of
    /// the dir.
    pub fn check(dir: &Path, key: &str, wanted: &Wanted) -> io::Result<Registry> {
        let (registry, refused) = Registry::load(dir, wanted)
            .map_err(|e| io::Error::new(e.kind(), format!("key {key}: {e}")))?;
        let mut problems: Vec<String> = refused.iter().map(ToString::to_string).collect();
        if let Wanted::Kinds(kinds) = wanted {
            for kind in kinds {
                if let Err(why) = abi::check_kind(kind) {
                    problems.push(format!("a store names plugin {kind:?}, but {why}"));
                } else if registry.get(kind).is_none() {
                    problems.push(format!(
                        "a store names plugin {kind:?}: {}",
                        registry.missing(kind)
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(registry)
        } else {
            Err(io::Error::other(format!(
                "key {key}: {}",
                problems.join("; ")
            )))
        }
    }

    /// The plugins kept, one per kind.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The plugin serving `kind`.
    pub fn get(&self, kind: &str) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.kind() == kind)
    }

    /// Why no plugin serves `kind`, for an error message.
    fn missing(&self, kind: &str) -> String {
        let known: Vec<&str> = self.plugins.iter().map(|p| p.kind()).collect();
        match &self.dir {
            None => "no plugins dir is configured".to_string(),
            Some(d) if self.all => {
                format!("no library in {} serves it; loaded: {known:?}", d.display())
            }
            Some(d) => format!(
                "no library in {} whose file name holds {kind:?} serves it; loaded: {known:?}",
                d.display()
            ),
        }
    }

    /// Opens the store `cfg` describes: through the plugin named
    /// `plugin_name`, or the filesystem store when it is empty.
    pub fn open(&self, plugin_name: &str, cfg: Config) -> Result<Arc<dyn Store>> {
        if plugin_name.is_empty() {
            return Ok(Arc::new(FsStore::open(cfg)?));
        }
        let Some(plugin) = self.get(plugin_name) else {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "store {}: no plugin {plugin_name:?} ({})",
                    cfg.instance_name(),
                    self.missing(plugin_name)
                ),
            ));
        };
        Ok(Arc::new(plugin.open(cfg)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_matched_as_a_whole_word_of_the_file_name() {
        let may = |file: &str, kind: &str| file_may_serve(Path::new(file), kind);
        for (file, kind) in [
            ("/p/s3.so", "s3"),
            ("/p/libs3.so", "s3"),
            ("/p/libobjstore_s3_plugin.so", "s3"),
            ("/p/my-s3.so", "s3"),
            ("/p/libobjstore_fs_plugin.so", "fs-plugin"),
            ("/p/libtest_double_objstore_plugin.so", "test-double"),
            ("/p/libhello_store.so", "hello"),
            ("/p/library.so", "library"),
        ] {
            assert!(may(file, kind), "{file} for {kind}");
        }
        for (file, kind) in [
            ("/p/libs3x.so", "s3"),
            ("/p/s33.so", "s3"),
            ("/p/crash.so", "s3"),
            ("/p/double.so", "test-double"),
            ("/p/a-fs.so", "fs-plugin"),
        ] {
            assert!(!may(file, kind), "{file} for {kind}");
        }
    }

    #[test]
    fn no_store_named_means_no_library_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // Not a library: opening it would be refused, so it was not opened.
        std::fs::write(dir.join("s3.so"), "not a library").unwrap();
        let none = Wanted::new(false, ["", ""]);
        let (r, refused) = Registry::load(dir, &none).unwrap();
        assert!(r.plugins().is_empty() && refused.is_empty(), "{refused:?}");
        let (_, refused) = Registry::load(dir, &Wanted::new(false, ["s3"])).unwrap();
        assert_eq!(refused.len(), 1, "{refused:?}");
        let (_, refused) = Registry::load(dir, &Wanted::new(true, [])).unwrap();
        assert_eq!(refused.len(), 1, "{refused:?}");
        // A kind no plugin may declare opens nothing, and the check says why.
        let e = Registry::check(dir, "plugins.dir", &Wanted::new(false, ["fs"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key plugins.dir") && e.contains("builtin"),
            "{e}"
        );
    }
}
