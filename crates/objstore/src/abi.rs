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

pub const ABI_VERSION: u32 = 1;

/// The exported function: `const damocles_objstore_table *damocles_objstore_plugin(void)`.
pub const ENTRY_SYMBOL: &str = "damocles_objstore_plugin";

/// Result codes. 0 is success; each error maps to a [`crate::Error`] kind.
pub mod code {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const INVALID_PATH: i32 = 2;
    pub const READ_ONLY: i32 = 3;
    pub const NOT_REGULAR_FILE: i32 = 4;
    pub const INVALID_RANGE: i32 = 5;
    pub const IO: i32 = 6;
    pub const CONFIG: i32 = 7;
    pub const PANIC: i32 = 8;
    pub const OTHER: i32 = 9;
}

/// Bytes owned by the plugin; the host returns them with `free_buf`.
#[repr(C)]
#[derive(Debug)]
pub struct Buf {
    pub ptr: *mut u8,
    pub len: usize,
    /// For the plugin's allocator; the host never reads it.
    pub cap: usize,
}

impl Buf {
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
    pub total: u64,
    pub free: u64,
    pub used: u64,
}

/// The host's data source for `put`: fills up to `cap` bytes of `buf`, sets
/// `*n` (0 at the end) and returns [`code::OK`], or an error code.
pub type ReadFn =
    unsafe extern "C" fn(ctx: *mut c_void, buf: *mut u8, cap: usize, n: *mut usize) -> i32;

/// Passed as `len` to `get` to read to the end.
pub const TO_END: u64 = u64::MAX;

#[repr(C)]
pub struct PluginTable {
    pub abi_version: u32,
    pub struct_size: u32,
    /// NUL-terminated kind of store, static: `"fs"`, `"s3"`.
    pub kind: *const c_char,
    /// Makes a store from its config, damocles' JSON shape (`Name`, `Path`,
    /// `Meta`, `Strict`, `ReadOnly`, `Weight`).
    pub open: unsafe extern "C" fn(
        config: *const u8,
        config_len: usize,
        store: *mut *mut c_void,
        err: *mut Buf,
    ) -> i32,
    pub close: unsafe extern "C" fn(store: *mut c_void),
    pub info: unsafe extern "C" fn(store: *mut c_void, out: *mut RawInfo, err: *mut Buf) -> i32,
    pub stat: unsafe extern "C" fn(
        store: *mut c_void,
        path: *const u8,
        path_len: usize,
        size: *mut u64,
        err: *mut Buf,
    ) -> i32,
    /// Opens a reader over `len` bytes ([`TO_END`]: to the end) from `offset`.
    pub get: unsafe extern "C" fn(
        store: *mut c_void,
        path: *const u8,
        path_len: usize,
        offset: u64,
        len: u64,
        reader: *mut *mut c_void,
        err: *mut Buf,
    ) -> i32,
    /// Reads up to `cap` bytes into `buf`, sets `*n`; 0 means the end.
    pub read: unsafe extern "C" fn(
        reader: *mut c_void,
        buf: *mut u8,
        cap: usize,
        n: *mut usize,
        err: *mut Buf,
    ) -> i32,
    pub reader_close: unsafe extern "C" fn(reader: *mut c_void),
    /// Writes the object from `src`: whole, or not at all.
    pub put: unsafe extern "C" fn(
        store: *mut c_void,
        path: *const u8,
        path_len: usize,
        src: ReadFn,
        src_ctx: *mut c_void,
        written: *mut u64,
        err: *mut Buf,
    ) -> i32,
    pub del: unsafe extern "C" fn(
        store: *mut c_void,
        path: *const u8,
        path_len: usize,
        err: *mut Buf,
    ) -> i32,
    /// Fills `out` with the object paths under `prefix` (all when
    /// `prefix_len` is 0), one per line.
    pub list: unsafe extern "C" fn(
        store: *mut c_void,
        prefix: *const u8,
        prefix_len: usize,
        out: *mut Buf,
        err: *mut Buf,
    ) -> i32,
    pub full_path: unsafe extern "C" fn(
        store: *mut c_void,
        path: *const u8,
        path_len: usize,
        out: *mut Buf,
        err: *mut Buf,
    ) -> i32,
    pub free_buf: unsafe extern "C" fn(buf: Buf),
}

// SAFETY: the table is immutable static data; `kind` points at a static string.
unsafe impl Sync for PluginTable {}

/// The code of an error kind, and back.
pub fn code_of(e: &crate::Error) -> i32 {
    use crate::Error::*;
    match e {
        NotFound(_) => code::NOT_FOUND,
        InvalidPath(_) => code::INVALID_PATH,
        ReadOnly(_) => code::READ_ONLY,
        NotRegularFile(_) => code::NOT_REGULAR_FILE,
        InvalidRange(_) => code::INVALID_RANGE,
        Io(_) => code::IO,
        Config(_) => code::CONFIG,
        Panic(_) => code::PANIC,
        Other(_) => code::OTHER,
    }
}

pub fn error_of(code: i32, msg: String) -> crate::Error {
    use crate::Error::*;
    match code {
        code::NOT_FOUND => NotFound(msg),
        code::INVALID_PATH => InvalidPath(msg),
        code::READ_ONLY => ReadOnly(msg),
        code::NOT_REGULAR_FILE => NotRegularFile(msg),
        code::INVALID_RANGE => InvalidRange(msg),
        code::IO => Io(msg),
        code::CONFIG => Config(msg),
        code::PANIC => Panic(msg),
        other => Other(format!("error code {other}: {msg}")),
    }
}
