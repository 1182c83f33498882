//! Object stores for sealed sectors and pieces.
//!
//! [`Store`] is what both daemons program against: the builtin
//! [`fs::FsStore`], or a store served by a plugin (a shared library loaded at
//! run time, [`plugin`]) through the C ABI of [`abi`]. A Rust plugin is one
//! [`Store`] implementation plus [`export_store_plugin!`](crate::export_store_plugin).
//!
//! Paths inside a store are [`ObjectPath`]s: relative, `/`-separated, with no
//! `.`, `..` or empty segment, checked once where they enter.

pub mod abi;
pub mod fs;
pub mod plugin;
pub mod registry;
pub mod sdk;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};

/// A store's settings, with damocles' field names (`Name`, `Path`, `Meta`,
/// `Strict`, `ReadOnly`, `Weight`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Config {
    /// The instance name; the `Path` when empty.
    pub name: String,
    /// Where the store lives: a directory for the filesystem store, whatever
    /// the plugin understands otherwise (a bucket, a URL).
    pub path: String,
    /// Plugin settings (endpoint, credentials, ...), passed as is.
    pub meta: BTreeMap<String, String>,
    /// Refuse anything that is not a regular file (symlinks included).
    pub strict: bool,
    pub read_only: bool,
    pub weight: u32,
}

impl Config {
    pub fn instance_name(&self) -> &str {
        if self.name.is_empty() {
            &self.path
        } else {
            &self.name
        }
    }
}

/// Capacity of a store, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub total: u64,
    pub free: u64,
    pub used: u64,
}

/// Why a store operation failed. Each variant has a code on the plugin ABI
/// ([`abi::code`]), so errors keep their kind across a plugin boundary.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("object not found: {0}")]
    NotFound(String),
    #[error("invalid object path {0}")]
    InvalidPath(String),
    #[error("store {0} is read-only")]
    ReadOnly(String),
    #[error("not a regular file: {0}")]
    NotRegularFile(String),
    #[error("invalid range: {0}")]
    InvalidRange(String),
    #[error("{0}")]
    Io(String),
    #[error("store config: {0}")]
    Config(String),
    #[error("plugin panicked: {0}")]
    Panic(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The message alone, without the kind's prefix: what crosses the plugin
    /// ABI next to the code, which carries the kind.
    pub fn message(&self) -> &str {
        use Error::*;
        match self {
            NotFound(m) | InvalidPath(m) | ReadOnly(m) | NotRegularFile(m) | InvalidRange(m)
            | Io(m) | Config(m) | Panic(m) | Other(m) => m,
        }
    }

    pub(crate) fn io(what: impl fmt::Display, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(what.to_string()),
            _ => Error::Io(format!("{what}: {e}")),
        }
    }
}

/// A path inside a store, checked: relative, `/`-separated, none of its
/// segments empty, `.` or `..`, no NUL, no backslash.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectPath(String);

impl ObjectPath {
    pub fn new(path: &str) -> Result<ObjectPath> {
        let bad = |why: &str| Err(Error::InvalidPath(format!("{path:?}: {why}")));
        if path.is_empty() {
            return bad("empty");
        }
        if path.starts_with('/') {
            return bad("absolute; paths are relative to the store");
        }
        if path.contains('\0') || path.contains('\\') {
            return bad("holds a NUL or a backslash");
        }
        for seg in path.split('/') {
            match seg {
                "" => return bad("has an empty segment"),
                "." | ".." => return bad("has a '.' or '..' segment"),
                _ => {}
            }
        }
        Ok(ObjectPath(path.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a byte range against an object's size: `len: None` reads to the
/// end; a range that starts or ends past the end is refused, never clamped.
pub fn check_range(path: &ObjectPath, size: u64, offset: u64, len: Option<u64>) -> Result<u64> {
    let len = len.unwrap_or(size.saturating_sub(offset));
    match offset.checked_add(len) {
        Some(end) if offset <= size && end <= size => Ok(len),
        _ => Err(Error::InvalidRange(format!(
            "{path}: {len} bytes at {offset} end past its {size} bytes"
        ))),
    }
}

/// An object store. Every method may be called from many threads at once.
pub trait Store: Send + Sync {
    /// The kind of store, for display: `fs`, `s3`, ...
    fn kind(&self) -> &str;
    fn config(&self) -> &Config;
    fn instance(&self) -> &str {
        self.config().instance_name()
    }
    fn info(&self) -> Result<Info>;
    /// The object's size in bytes.
    fn stat(&self, path: &ObjectPath) -> Result<u64>;
    /// Reads `len` bytes (to the end when `None`) from `offset`.
    fn get(&self, path: &ObjectPath, offset: u64, len: Option<u64>)
        -> Result<Box<dyn Read + Send>>;
    /// Writes the object from `data`; it appears whole or not at all.
    /// Returns the bytes written.
    fn put(&self, path: &ObjectPath, data: &mut dyn Read) -> Result<u64>;
    fn del(&self, path: &ObjectPath) -> Result<()>;
    /// Paths of the objects under `prefix` (everything when `None`), sorted.
    fn list(&self, prefix: Option<&ObjectPath>) -> Result<Vec<String>>;
    /// The store's own locator of an object (a file path, an `s3://` URL).
    fn full_path(&self, path: &ObjectPath) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_stay_inside() {
        assert!(ObjectPath::new("sealed/s-t01000-1").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "./a",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
        ] {
            assert!(
                matches!(ObjectPath::new(bad), Err(Error::InvalidPath(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ranges_never_reach_past_the_end() {
        let p = ObjectPath::new("x").unwrap();
        assert_eq!(check_range(&p, 10, 0, None), Ok(10));
        assert_eq!(check_range(&p, 10, 4, Some(6)), Ok(6));
        assert_eq!(check_range(&p, 10, 10, None), Ok(0));
        assert!(check_range(&p, 10, 4, Some(7)).is_err());
        assert!(check_range(&p, 10, 11, None).is_err());
        assert!(check_range(&p, 10, 1, Some(u64::MAX)).is_err());
    }
}
