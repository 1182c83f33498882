//! The store plugin ABI, version 1: what a shared library exports to serve
//! stores, in C terms. `include/damocles_objstore.h` is the same contract for
//! C authors (a test checks the two agree).
//!
//! - The library exports one function, [`ENTRY_SYMBOL`], returning a pointer
//!   to a static [`PluginTable`]. Its first two fields never move: the host
//!   refuses a table whose `abi_version` is not [`ABI_VERSION`] or whose
//!   `struct_size` is smaller than it expects.
//! - Stores and readers are opaque handles made by the plugin and released
//!   through the table (`close`, `reader_close`).
//! - Every function returns a [`code`]; on failure the plugin may fill `err`
//!   with a message. Every [`Buf`] a plugin fills is the plugin's memory: the
//!   host hands it back through `free_buf`. Inputs (paths, config, buffers)
//!   belong to the host and are valid only during the call.
//! - Strings are UTF-8 with an explicit length, not NUL-terminated.
//! - Every function may be called from many threads at once on the same
//!   store; one reader is used by one thread at a time.
//! - Nothing may unwind across the boundary: a Rust plugin built with the
//!   SDK turns a panic into [`code::PANIC`].

use std::ffi::c_void;
use std::os::raw::c_char;

use crate::{Error, ErrorKind};

/// The ABI version this build speaks; a table of another version is refused.
pub const ABI_VERSION: u32 = 1;

/// The exported function: `const damocles_objstore_table *damocles_objstore_plugin(void)`.
pub const ENTRY_SYMBOL: &str = "damocles_objstore_plugin";

/// Result codes. 0 is success; each error maps to a [`crate::Error`] kind.
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// [`crate::ErrorKind::NotFound`].
    pub const NOT_FOUND: i32 = 1;
    /// [`crate::ErrorKind::InvalidPath`].
    pub const INVALID_PATH: i32 = 2;
    /// [`crate::ErrorKind::ReadOnly`].
    pub const READ_ONLY: i32 = 3;
    /// [`crate::ErrorKind::NotRegularFile`].
    pub const NOT_REGULAR_FILE: i32 = 4;
    /// [`crate::ErrorKind::InvalidRange`].
    pub const INVALID_RANGE: i32 = 5;
    /// [`crate::ErrorKind::Io`].
    pub const IO: i32 = 6;
    /// [`crate::ErrorKind::Config`].
    pub const CONFIG: i32 = 7;
    /// [`crate::ErrorKind::Panic`].
    pub const PANIC: i32 = 8;
    /// [`crate::ErrorKind::Other`].
    pub const OTHER: i32 = 9;
}

/// Bytes owned by the plugin; the host returns them with `free_buf`.
#[repr(C)]
#[derive(Debug)]
pub struct Buf {
    /// The first byte; null for no bytes.
    pub ptr: *mut u8,
    /// How many bytes `ptr` holds.
    pub len: usize,
    /// For the plugin's allocator; the host never reads it.
    pub cap: usize,
}

impl Buf {
    /// No bytes: what the host passes for the plugin to fill.
    pub const EMPTY: Buf = Buf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };
}

/// Capacity of a store, as `info` fills it.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RawInfo {
    /// The store's size, in bytes.
    pub total: u64,
    /// Bytes that can still be written.
    pub free: u64,
    /// Bytes taken.
    pub used: u64,
}

/// The host's data source for `put`: fills up to `cap` bytes of `buf`, sets
/// `*n` (0 at the end) and returns [`code::OK`], or an error code.
pub type ReadFn =
    unsafe extern "C" fn(ctx: *mut c_void, buf: *mut u8, cap: usize, n: *mut usize) -> i32;

/// Passed as `len` to `get` to read to the end.
pub const TO_END: u64 = u64::MAX;

/// The longest plugin kind, in bytes.
pub const MAX_KIND_LEN: usize = 64;

/// Kinds served by the host itself, which no plugin may declare.
pub const BUILTIN_KINDS: &[&str] = &["fs"];

/// The longest error message the host reads from a plugin's `err` buffer. A
/// longer one is not read at all: its length is more likely garbage than
/// a message.
pub const MAX_ERR_LEN: usize = 64 << 10;

/// Checks a plugin kind: a plain identifier (`[a-z0-9_-]`, 1 to
/// [`MAX_KIND_LEN`] bytes) that is not a builtin kind. The error says why,
/// with the kind escaped, so it is safe to log.
pub fn check_kind(kind: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if kind.is_empty() || kind.len() > MAX_KIND_LEN || !kind.chars().all(plain) {
        return Err(format!(
            "kind {kind:?} is not a plain identifier ([a-z0-9_-], 1 to {MAX_KIND_LEN} characters)"
        ));
    }
    if BUILTIN_KINDS.contains(&kind) {
        return Err(format!(
            "kind {kind:?} is builtin; a store without a plugin name is served by it"
        ));
    }
    Ok(())
}

/// `open`: makes a store from its config, damocles' JSON shape (`Name`,
/// `Path`, `Meta`, `Strict`, `ReadOnly`, `Weight`).
pub type OpenFn = unsafe extern "C" fn(
    config: *const u8,
    config_len: usize,
    store: *mut *mut c_void,
    err: *mut Buf,
) -> i32;
/// `close`: releases a store made by `open`; the host calls it once.
pub type CloseFn = unsafe extern "C" fn(store: *mut c_void);
/// `info`: fills `out` with the store's capacity.
pub type InfoFn = unsafe extern "C" fn(store: *mut c_void, out: *mut RawInfo, err: *mut Buf) -> i32;
/// `stat`: sets `*size` to the object's size in bytes.
pub type StatFn = unsafe extern "C" fn(
    store: *mut c_void,
    path: *const u8,
    path_len: usize,
    size: *mut u64,
    err: *mut Buf,
) -> i32;
/// `get`: opens a reader over `len` bytes ([`TO_END`]: to the end) from
/// `offset`.
pub type GetFn = unsafe extern "C" fn(
    store: *mut c_void,
    path: *const u8,
    path_len: usize,
    offset: u64,
    len: u64,
    reader: *mut *mut c_void,
    err: *mut Buf,
) -> i32;
/// `read`: reads up to `cap` bytes into `buf`, sets `*n`; 0 means the end.
pub type ReaderReadFn = unsafe extern "C" fn(
    reader: *mut c_void,
    buf: *mut u8,
    cap: usize,
    n: *mut usize,
    err: *mut Buf,
) -> i32;
/// `reader_close`: releases a reader made by `get`; the host calls it once.
pub type ReaderCloseFn = unsafe extern "C" fn(reader: *mut c_void);
/// `put`: writes the object from `src`: whole, or not at all.
pub type PutFn = unsafe extern "C" fn(
    store: *mut c_void,
    path: *const u8,
    path_len: usize,
    src: ReadFn,
    src_ctx: *mut c_void,
    written: *mut u64,
    err: *mut Buf,
) -> i32;
/// `del`: deletes the object.
pub type DelFn = unsafe extern "C" fn(
    store: *mut c_void,
    path: *const u8,
    path_len: usize,
    err: *mut Buf,
) -> i32;
/// `list`: fills `out` with the object paths under `prefix` (all when
/// `prefix_len` is 0), one per line.
pub type ListFn = unsafe extern "C" fn(
    store: *mut c_void,
    prefix: *const u8,
    prefix_len: usize,
    out: *mut Buf,
    err: *mut Buf,
) -> i32;
/// `full_path`: fills `out` with the store's own locator of the object.
pub type FullPathFn = unsafe extern "C" fn(
    store: *mut c_void,
    path: *const u8,
    path_len: usize,
    out: *mut Buf,
    err: *mut Buf,
) -> i32;
/// `free_buf`: takes back a buffer the plugin filled.
pub type FreeBufFn = unsafe extern "C" fn(buf: Buf);

/// What a plugin exports: its version, its size, and its functions.
///
/// The functions are `Option`s because a C table may hold NULL, and a NULL
/// in a plain `fn` pointer is undefined behaviour. `Option<fn>` has the
/// same layout as the C pointer (None is NULL). The host refuses a table
/// with any of them NULL when it loads the library.
#[repr(C)]
pub struct PluginTable {
    /// [`ABI_VERSION`] of the plugin's build; never moves.
    pub abi_version: u32,
    /// `sizeof` the table in the plugin's build; never moves.
    pub struct_size: u32,
    /// NUL-terminated kind of store, static: `"s3"`. A plain identifier
    /// (`[a-z0-9_-]`, at most [`MAX_KIND_LEN`] bytes), not a builtin kind.
    pub kind: *const c_char,
    /// See [`OpenFn`].
    pub open: Option<OpenFn>,
    /// See [`CloseFn`].
    pub close: Option<CloseFn>,
    /// See [`InfoFn`].
    pub info: Option<InfoFn>,
    /// See [`StatFn`].
    pub stat: Option<StatFn>,
    /// See [`GetFn`].
    pub get: Option<GetFn>,
    /// See [`ReaderReadFn`].
    pub read: Option<ReaderReadFn>,
    /// See [`ReaderCloseFn`].
    pub reader_close: Option<ReaderCloseFn>,
    /// See [`PutFn`].
    pub put: Option<PutFn>,
    /// See [`DelFn`].
    pub del: Option<DelFn>,
    /// See [`ListFn`].
    pub list: Option<ListFn>,
    /// See [`FullPathFn`].
    pub full_path: Option<FullPathFn>,
    /// See [`FreeBufFn`].
    pub free_buf: Option<FreeBufFn>,
}

// SAFETY: the table is immutable static data; `kind` points at a static string.
unsafe impl Sync for PluginTable {}

/// Every error kind with its code: the one table both directions read.
const KIND_CODES: [(ErrorKind, i32); 9] = [
    (ErrorKind::NotFound, code::NOT_FOUND),
    (ErrorKind::InvalidPath, code::INVALID_PATH),
    (ErrorKind::ReadOnly, code::READ_ONLY),
    (ErrorKind::NotRegularFile, code::NOT_REGULAR_FILE),
    (ErrorKind::InvalidRange, code::INVALID_RANGE),
    (ErrorKind::Io, code::IO),
    (ErrorKind::Config, code::CONFIG),
    (ErrorKind::Panic, code::PANIC),
    (ErrorKind::Other, code::OTHER),
];

impl ErrorKind {
    /// This kind's code on the ABI.
    pub fn code(self) -> i32 {
        KIND_CODES
            .iter()
            .find(|(k, _)| *k == self)
            .map_or(code::OTHER, |(_, c)| *c)
    }

    /// The kind of an ABI error code; `None` for [`code::OK`] and for codes
    /// this build does not know.
    pub fn from_code(code: i32) -> Option<ErrorKind> {
        KIND_CODES.iter().find(|(_, c)| *c == code).map(|(k, _)| *k)
    }
}

/// The code an error crosses the ABI with.
pub fn code_of(e: &Error) -> i32 {
    e.kind().code()
}

/// The error a plugin reported with `code` and `msg`. A code this build does
/// not know (a newer plugin's) is [`ErrorKind::Other`], the code kept in the
/// message.
pub fn error_of(code: i32, msg: String) -> Error {
    match ErrorKind::from_code(code) {
        Some(kind) => Error::new(kind, msg),
        None => Error::new(ErrorKind::Other, format!("error code {code}: {msg}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_code_and_back() {
        for (i, (kind, c)) in KIND_CODES.iter().enumerate() {
            assert_eq!(*c, i as i32 + 1, "codes are 1..=9 in order");
            assert_eq!(kind.code(), *c);
            assert_eq!(ErrorKind::from_code(*c), Some(*kind));
            let e = error_of(*c, "m".into());
            assert_eq!((e.kind(), e.message(), code_of(&e)), (*kind, "m", *c));
        }
        assert_eq!(ErrorKind::from_code(code::OK), None);
        let e = error_of(42, "newer".into());
        assert_eq!(e.kind(), ErrorKind::Other);
        assert_eq!(e.message(), "error code 42: newer");
    }
}
