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
    /// Refuse writes and deletes.
    pub read_only: bool,
    /// How often the store is picked among writable stores, relative to
    /// the others' weights.
    pub weight: u32,
}

impl Config {
    /// The name the store is known by: `Name`, or `Path` when it is empty.
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
    /// The store's size.
    pub total: u64,
    /// What can still be written.
    pub free: u64,
    /// What is taken.
    pub used: u64,
}

/// The kind of an [`Error`]. Each kind has a code on the plugin ABI
/// ([`abi::code`]), so errors keep their kind across a plugin boundary; a
/// new kind needs its code in `abi`'s table too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object does not exist; the message names it.
    NotFound,
    /// A path was refused (see [`ObjectPath`]).
    InvalidPath,
    /// A write to a read-only store; the message names the store.
    ReadOnly,
    /// A strict store met something other than a regular file.
    NotRegularFile,
    /// A byte range reaching past the end of an object.
    InvalidRange,
    /// The storage below failed (disk, network, the data source).
    Io,
    /// A store's settings are wrong, or it did not open with them.
    Config,
    /// A plugin panicked; the message is the panic's.
    Panic,
    /// Anything else, an unknown ABI code included.
    Other,
}

/// Why a store operation failed: a kind, for callers to decide on, and a
/// message, for people. In the style of [`std::io::Error`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// A result whose error is a store [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message alone, without the kind's prefix: what crosses the plugin
    /// ABI next to the code, which carries the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `prefix` put before its message.
    pub(crate) fn prefixed(self, prefix: impl fmt::Display) -> Error {
        Error::new(self.kind, format!("{prefix}{}", self.message))
    }

    pub(crate) fn io(what: impl fmt::Display, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::NotFound => Error::new(ErrorKind::NotFound, what.to_string()),
            _ => Error::new(ErrorKind::Io, format!("{what}: {e}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.message;
        match self.kind {
            ErrorKind::NotFound => write!(f, "object not found: {m}"),
            ErrorKind::InvalidPath => write!(f, "invalid object path {m}"),
            ErrorKind::ReadOnly => write!(f, "store {m} is read-only"),
            ErrorKind::NotRegularFile => write!(f, "not a regular file: {m}"),
            ErrorKind::InvalidRange => write!(f, "invalid range: {m}"),
            ErrorKind::Config => write!(f, "store config: {m}"),
            ErrorKind::Panic => write!(f, "plugin panicked: {m}"),
            ErrorKind::Io | ErrorKind::Other => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// A path inside a store, checked: relative, `/`-separated, none of its
/// segments empty, `.` or `..`, no NUL, no backslash.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectPath(String);

impl ObjectPath {
    /// Checks `path`; an [`ErrorKind::InvalidPath`] error says why it is refused.
    pub fn new(path: &str) -> Result<ObjectPath> {
        let bad = |why: &str| {
            Err(Error::new(
                ErrorKind::InvalidPath,
                format!("{path:?}: {why}"),
            ))
        };
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

    /// The path as given.
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
        _ => Err(Error::new(
            ErrorKind::InvalidRange,
            format!("{path}: {len} bytes at {offset} end past its {size} bytes"),
        )),
    }
}

/// An object store. Every method may be called from many threads at once.
pub trait Store: Send + Sync {
    /// The kind of store, for display: `fs`, `s3`, ...
    fn kind(&self) -> &str;
    /// The settings the store was opened with.
    fn config(&self) -> &Config;
    /// The store's instance name (see [`Config::instance_name`]).
    fn instance(&self) -> &str {
        self.config().instance_name()
    }
    /// The store's capacity.
    fn info(&self) -> Result<Info>;
    /// The object's size in bytes.
    fn stat(&self, path: &ObjectPath) -> Result<u64>;
    /// Reads `len` bytes (to the end when `None`) from `offset`.
    fn get(&self, path: &ObjectPath, offset: u64, len: Option<u64>)
        -> Result<Box<dyn Read + Send>>;
    /// Writes the object from `data`; it appears whole or not at all.
    /// Returns the bytes written.
    fn put(&self, path: &ObjectPath, data: &mut dyn Read) -> Result<u64>;
    /// Deletes the object; [`ErrorKind::NotFound`] when there is none.
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
            assert_eq!(
                ObjectPath::new(bad).map_err(|e| e.kind()),
                Err(ErrorKind::InvalidPath),
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
