//! Writing a store plugin in Rust: implement [`Store`] and [`StorePlugin`]
//! for a type, then `damocles_objstore::export_store_plugin!(MyStore);` in a
//! `cdylib` crate. The macro exports the ABI table of [`crate::abi`]; the
//! functions here convert arguments, catch panics (build the plugin with
//! the default `panic = "unwind"`), and hand errors and outputs over in
//! buffers the plugin frees.

use std::ffi::{c_void, CStr};
use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::abi::{self, code, Buf, PluginTable, RawInfo, ReadFn};
use crate::{Config, Error, ErrorKind, ObjectPath, Result, Store};

/// A [`Store`] a plugin serves.
pub trait StorePlugin: Store + Sized + 'static {
    /// The kind reported to the host, e.g. `c"s3"`: a plain identifier
    /// (`[a-z0-9_-]`, at most [`abi::MAX_KIND_LEN`] bytes), not a builtin
    /// kind such as `fs`; the host refuses the library otherwise.
    const KIND: &'static CStr;
    /// Makes a store from its config (the plugin's constructor).
    fn open(cfg: Config) -> Result<Self>;
}

/// Exports `$ty` (a [`StorePlugin`]) as this library's store plugin.
#[macro_export]
macro_rules! export_store_plugin {
    ($ty:ty) => {
        /// The store plugin's entry point: its ABI table.
        #[no_mangle]
        pub extern "C" fn damocles_objstore_plugin() -> *const $crate::abi::PluginTable {
            static TABLE: $crate::abi::PluginTable = $crate::sdk::table::<$ty>();
            &TABLE
        }
    };
}

/// The ABI table serving `P`.
pub const fn table<P: StorePlugin>() -> PluginTable {
    PluginTable {
        abi_version: abi::ABI_VERSION,
        struct_size: std::mem::size_of::<PluginTable>() as u32,
        kind: P::KIND.as_ptr(),
        open: Some(open::<P>),
        close: Some(close::<P>),
        info: Some(info::<P>),
        stat: Some(stat::<P>),
        get: Some(get::<P>),
        read: Some(read),
        reader_close: Some(reader_close),
        put: Some(put::<P>),
        del: Some(del::<P>),
        list: Some(list::<P>),
        full_path: Some(full_path::<P>),
        free_buf: Some(free_buf),
    }
}

/// Hands `bytes` to the host; it comes back through [`free_buf`].
fn to_buf(bytes: Vec<u8>) -> Buf {
    let mut v = std::mem::ManuallyDrop::new(bytes);
    Buf {
        ptr: v.as_mut_ptr(),
        len: v.len(),
        cap: v.capacity(),
    }
}

/// # Safety
/// `buf` was made by [`to_buf`] and is freed once.
unsafe extern "C" fn free_buf(buf: Buf) {
    if !buf.ptr.is_null() {
        // SAFETY: per the contract, made by `to_buf` from a Vec of this
        // pointer, length and capacity, which nothing else frees.
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `f`, turning its error or panic into a code and a message in `err`.
fn guarded(err: Option<&mut Buf>, f: impl FnOnce() -> Result<()>) -> i32 {
    let e = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return code::OK,
        Ok(Err(e)) => e,
        Err(p) => Error::new(ErrorKind::Panic, panic_message(p)),
    };
    if let Some(err) = err {
        *err = to_buf(e.message().as_bytes().to_vec());
    }
    abi::code_of(&e)
}

/// # Safety
/// `ptr` points at `len` bytes readable for `'a` (or `len` is 0).
unsafe fn str_arg<'a>(ptr: *const u8, len: usize) -> Result<&'a str> {
    if len == 0 {
        return Ok("");
    }
    // SAFETY: per the contract; the ABI keeps host inputs valid for the call.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    std::str::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidPath, "not UTF-8"))
}

/// # Safety
/// As [`str_arg`].
unsafe fn path_arg(ptr: *const u8, len: usize) -> Result<ObjectPath> {
    // SAFETY: the caller's contract is `str_arg`'s.
    ObjectPath::new(unsafe { str_arg(ptr, len) }?)
}

/// # Safety
/// `handle` was made by `open::<P>` and is not closed for `'a`.
unsafe fn store<'a, P>(handle: *mut c_void) -> &'a P {
    // SAFETY: per the contract, a live `Box<P>` made by `open::<P>`; the
    // ABI allows shared use from many threads, and `P: Sync` (a `Store`).
    unsafe { &*(handle as *const P) }
}

// The ABI functions below are only called by the host, per `crate::abi`:
// handles are live ones this plugin made, input pointers are valid for the
// call, and output pointers are writable. Each states that as its contract.

/// # Safety
/// `config` points at `config_len` readable bytes; `out` is writable; `err`
/// is null or writable.
unsafe extern "C" fn open<P: StorePlugin>(
    config: *const u8,
    config_len: usize,
    out: *mut *mut c_void,
    err: *mut Buf,
) -> i32 {
    // SAFETY: `err` is null or writable per the contract.
    let err = unsafe { err.as_mut() };
    guarded(err, || {
        // SAFETY: `config` per the contract.
        let text = unsafe { str_arg(config, config_len) }?;
        let cfg: Config = serde_json::from_str(text)
            .map_err(|e| Error::new(ErrorKind::Config, format!("config JSON: {e}")))?;
        let s = P::open(cfg)?;
        // SAFETY: `out` is writable per the contract.
        unsafe { *out = Box::into_raw(Box::new(s)) as *mut c_void };
        Ok(())
    })
}

/// # Safety
/// `handle` is null, or made by `open::<P>` and closed only now.
unsafe extern "C" fn close<P: StorePlugin>(handle: *mut c_void) {
    if !handle.is_null() {
        // SAFETY: per the contract, the `Box<P>` from `open::<P>`, freed once.
        let _ = catch_unwind(|| drop(unsafe { Box::from_raw(handle as *mut P) }));
    }
}

/// # Safety
/// `h` is a live store of `open::<P>`; `out` is writable; `err` is null or
/// writable.
unsafe extern "C" fn info<P: StorePlugin>(h: *mut c_void, out: *mut RawInfo, err: *mut Buf) -> i32 {
    // SAFETY: `err` is null or writable per the contract.
    let err = unsafe { err.as_mut() };
    guarded(err, || {
        // SAFETY: `h` per the contract.
        let i = unsafe { store::<P>(h) }.info()?;
        // SAFETY: `out` is writable per the contract.
        unsafe {
            *out = RawInfo {
                total: i.total,
                free: i.free,
                used: i.used,
            }
        };
        Ok(())
    })
}

/// # Safety
/// `h` is a live store of `open::<P>`; `path` points at `path_len` readable
/// bytes; `size` is writable; `err` is null or writable.
unsafe extern "C" fn stat<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    size: *mut u64,
    err: *mut Buf,
) -> i32 {
    // SAFETY: `err` is null or writable per the contract.
    let err = unsafe { err.as_mut() };
    guarded(err, || {
        // SAFETY: `path` per the contract.
        let p = unsafe { path_arg(path, path_len) }?;
        // SAFETY: `h` per the contract.
        let n = unsafe { store::<P>(h) }.stat(&p)?;
        // SAFETY: `size` is writable per the contract.
        unsafe { *size = n };
        Ok(())
    })
}

type BoxedReader = Box<dyn Read + Send>;

/// # Safety
/// `h` is a live store of `open::<P>`; `path` points at `path_len` readable
/// bytes; `reader` is writable; `err` is null or writable.
unsafe extern "C" fn get<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    offset: u64,
    len: u64,
    reader: *mut *mut c_void,
    err: *mut Buf,
) -> i32 {
    // SAFETY: `err` is null or writable per the contract.
    let err = unsafe { err.as_mut() };
    guarded(err, || {
        // SAFETY: `path` per the contract.
        let p = unsafe { path_arg(path, path_len) }?;
        let len = (len != abi::TO_END).then_some(len);
        // SAFETY: `h` per the contract.
        let r: BoxedReader = unsafe { store::<P>(h) }.get(&p, offset, len)?;
        // SAFETY: `reader` is writable per the contract.
        unsafe { *reader = Box::into_raw(Box::new(r)) as *mut c_void };
        Ok(())
    })
}

/// # Safety
/// `reader` is a live reader of `get`, used by this thread alone during the
/// call; `buf` is `cap` writable bytes; `n` is writable; `err` is null or
/// writable.
unsafe extern "C" fn read(
    reader: *mut c_void,
    buf: *mut u8,
    cap: usize,
    n: *mut usize,
    err: *mut Buf,
) -> i32 {
    // SAFETY: `err` is null or writable per the contract.
    let err = unsafe { err.as_mut() };
    guarded(err, || {
        // SAFETY: per the contract, the live `BoxedReader` made by `get`,
        // used by no other thread meanwhile.
        let r = unsafe { &mut *(reader as *mut BoxedReader) };
        let out: &mut [u8] = if cap == 0 {
            &mut []
        } else {
            // SAFETY: `buf` is `cap` writable bytes per the contract.
            unsafe { std::slice::from_raw_parts_mut(buf, cap) }
        };
        let k = r
            .read(out)
            .map_err(|e| Error::new(ErrorKind::Io, format!("read: {e}")))?;
        // SAFETY: `n` is writable per the contract.
        unsafe { *n = k };
        Ok(())
    })
}

/// # Safety
/// `reader` is null, or made by `get` and closed only now.
unsafe extern "C" fn reader_close(reader: *mut c_void) {
    if !reader.is_null() {
        // SAFETY: per the contract, the `Box<BoxedReader>` from `get`, freed once.
        let _ = catch_unwind(|| drop(unsafe { Box::from_raw(reader as *mut BoxedReader) }));
    }
}

/// The host's data source as a [`Read`].
struct HostSource {
    f: ReadFn,
    ctx: *mut c_void,
}

impl Read for HostSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0usize;
        // SAFETY: the host's callback and context, valid for the duration of
        // the `put` this source lives in; `buf` and `n` outlive the call.
        let rc = unsafe { (self.f)(self.ctx, buf.as_mut_ptr(), buf.len(), &mut n) };
        if rc != code::OK {
            return Err(io::Error::other(format!(
                "the host's data source failed (code {rc})"
            )));
        }
        Ok(n.min(buf.len()))
    }
}

/// # Safety
/// `h` is a live store of `open::<P>`; `path` points at `path_len` readable
/// bytes; `src` with `src_ctx` is callable until this returns; `written` is
/// writable; `err` is null or writable.
unsafe extern "C" fn put<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    src: ReadFn,
    src_ctx: *mut c_void,
    written: *mut u64,
    err: *mut Buf,
) -> i32 {
    // SAFETY: `err` is null or writable per the contract.
    let err = unsafe { err.as_mut() };
    guarded(err, || {
        // SAFETY: `path` per the contract.
        let p = unsafe { path_arg(path, path_len) }?;
        // Lives only inside this call, as `src` must.
        let mut source = HostSource {
            f: src,
            ctx: src_ctx,
        };
        // SAFETY: `h` per the contract.
        let n = unsafe { store::<P>(h) }.put(&p, &mut source)?;
        // SAFETY: `written` is writable per the contract.
        unsafe { *written = n };
        Ok(())
    })
}

/// # Safety
/// `h` is a live store of `open::<P>`; `path` points at `path_len` readable
/// bytes; `err` is null or writable.
unsafe extern "C" fn del<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    err: *mut Buf,
) -> i32 {
    // SAFETY: `err` is null or writable per the contract.
    let err = unsafe { err.as_mut() };
    guarded(err, || {
        // SAFETY: `path` per the contract.
        let p = unsafe { path_arg(path, path_len) }?;
        // SAFETY: `h` per the contract.
        unsafe { store::<P>(h) }.del(&p)
    })
}

/// # Safety
/// `h` is a live store of `open::<P>`; `prefix` points at `prefix_len`
/// readable bytes; `out` is writable; `err` is null or writable.
unsafe extern "C" fn list<P: StorePlugin>(
    h: *mut c_void,
    prefix: *const u8,
    prefix_len: usize,
    out: *mut Buf,
    err: *mut Buf,
) -> i32 {
    // SAFETY: `err` is null or writable per the contract.
    let err = unsafe { err.as_mut() };
    guarded(err, || {
        let prefix = match prefix_len {
            0 => None,
            // SAFETY: `prefix` per the contract.
            _ => Some(unsafe { path_arg(prefix, prefix_len) }?),
        };
        // SAFETY: `h` per the contract.
        let names = unsafe { store::<P>(h) }.list(prefix.as_ref())?;
        // SAFETY: `out` is writable per the contract.
        unsafe { *out = to_buf(names.join("\n").into_bytes()) };
        Ok(())
    })
}

/// # Safety
/// `h` is a live store of `open::<P>`; `path` points at `path_len` readable
/// bytes; `out` is writable; `err` is null or writable.
unsafe extern "C" fn full_path<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    out: *mut Buf,
    err: *mut Buf,
) -> i32 {
    // SAFETY: `err` is null or writable per the contract.
    let err = unsafe { err.as_mut() };
    guarded(err, || {
        // SAFETY: `path` per the contract.
        let p = unsafe { path_arg(path, path_len) }?;
        // SAFETY: `h` per the contract.
        let s = unsafe { store::<P>(h) }.full_path(&p);
        // SAFETY: `out` is writable per the contract.
        unsafe { *out = to_buf(s.into_bytes()) };
        Ok(())
    })
}
