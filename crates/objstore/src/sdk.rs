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
use crate::{Config, Error, ObjectPath, Result, Store};

/// A [`Store`] a plugin serves.
pub trait StorePlugin: Store + Sized + 'static {
    /// The kind reported to the host, e.g. `c"s3"`.
    const KIND: &'static CStr;
    /// Makes a store from its config (the plugin's constructor).
    fn open(cfg: Config) -> Result<Self>;
}

/// Exports `$ty` (a [`StorePlugin`]) as this library's store plugin.
#[macro_export]
macro_rules! export_store_plugin {
    ($ty:ty) => {
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
        open: open::<P>,
        close: close::<P>,
        info: info::<P>,
        stat: stat::<P>,
        get: get::<P>,
        read,
        reader_close,
        put: put::<P>,
        del: del::<P>,
        list: list::<P>,
        full_path: full_path::<P>,
        free_buf,
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

unsafe extern "C" fn free_buf(buf: Buf) {
    if !buf.ptr.is_null() {
        // SAFETY: made by `to_buf` from a Vec of this length and capacity.
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
fn guarded(err: *mut Buf, f: impl FnOnce() -> Result<()>) -> i32 {
    let e = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return code::OK,
        Ok(Err(e)) => e,
        Err(p) => Error::Panic(panic_message(p)),
    };
    if !err.is_null() {
        // SAFETY: the host passes a writable Buf or null.
        unsafe { *err = to_buf(e.message().as_bytes().to_vec()) };
    }
    abi::code_of(&e)
}

/// # Safety
/// `ptr` points at `len` readable bytes (or `len` is 0).
unsafe fn str_arg<'a>(ptr: *const u8, len: usize) -> Result<&'a str> {
    if len == 0 {
        return Ok("");
    }
    // SAFETY: per the ABI, valid for the call.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    std::str::from_utf8(bytes).map_err(|_| Error::InvalidPath("not UTF-8".into()))
}

unsafe fn path_arg(ptr: *const u8, len: usize) -> Result<ObjectPath> {
    ObjectPath::new(unsafe { str_arg(ptr, len) }?)
}

unsafe fn store<'a, P>(handle: *mut c_void) -> &'a P {
    // SAFETY: made by `open::<P>` and not yet closed, per the ABI.
    unsafe { &*(handle as *const P) }
}

unsafe extern "C" fn open<P: StorePlugin>(
    config: *const u8,
    config_len: usize,
    out: *mut *mut c_void,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let text = unsafe { str_arg(config, config_len) }?;
        let cfg: Config =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config JSON: {e}")))?;
        let s = P::open(cfg)?;
        unsafe { *out = Box::into_raw(Box::new(s)) as *mut c_void };
        Ok(())
    })
}

unsafe extern "C" fn close<P: StorePlugin>(handle: *mut c_void) {
    if !handle.is_null() {
        let _ = catch_unwind(|| drop(unsafe { Box::from_raw(handle as *mut P) }));
    }
}

unsafe extern "C" fn info<P: StorePlugin>(h: *mut c_void, out: *mut RawInfo, err: *mut Buf) -> i32 {
    guarded(err, || {
        let i = unsafe { store::<P>(h) }.info()?;
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

unsafe extern "C" fn stat<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    size: *mut u64,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let p = unsafe { path_arg(path, path_len) }?;
        let n = unsafe { store::<P>(h) }.stat(&p)?;
        unsafe { *size = n };
        Ok(())
    })
}

type BoxedReader = Box<dyn Read + Send>;

unsafe extern "C" fn get<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    offset: u64,
    len: u64,
    reader: *mut *mut c_void,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let p = unsafe { path_arg(path, path_len) }?;
        let len = (len != abi::TO_END).then_some(len);
        let r: BoxedReader = unsafe { store::<P>(h) }.get(&p, offset, len)?;
        unsafe { *reader = Box::into_raw(Box::new(r)) as *mut c_void };
        Ok(())
    })
}

unsafe extern "C" fn read(
    reader: *mut c_void,
    buf: *mut u8,
    cap: usize,
    n: *mut usize,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        // SAFETY: made by `get`; the ABI gives one thread at a time.
        let r = unsafe { &mut *(reader as *mut BoxedReader) };
        let out = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
        let k = r.read(out).map_err(|e| Error::Io(format!("read: {e}")))?;
        unsafe { *n = k };
        Ok(())
    })
}

unsafe extern "C" fn reader_close(reader: *mut c_void) {
    if !reader.is_null() {
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
        // SAFETY: the host's callback, valid for the duration of `put`.
        let rc = unsafe { (self.f)(self.ctx, buf.as_mut_ptr(), buf.len(), &mut n) };
        if rc != code::OK {
            return Err(io::Error::other(format!(
                "the host's data source failed (code {rc})"
            )));
        }
        Ok(n.min(buf.len()))
    }
}

unsafe extern "C" fn put<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    src: ReadFn,
    src_ctx: *mut c_void,
    written: *mut u64,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let p = unsafe { path_arg(path, path_len) }?;
        let mut source = HostSource {
            f: src,
            ctx: src_ctx,
        };
        let n = unsafe { store::<P>(h) }.put(&p, &mut source)?;
        unsafe { *written = n };
        Ok(())
    })
}

unsafe extern "C" fn del<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let p = unsafe { path_arg(path, path_len) }?;
        unsafe { store::<P>(h) }.del(&p)
    })
}

unsafe extern "C" fn list<P: StorePlugin>(
    h: *mut c_void,
    prefix: *const u8,
    prefix_len: usize,
    out: *mut Buf,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let prefix = match prefix_len {
            0 => None,
            _ => Some(unsafe { path_arg(prefix, prefix_len) }?),
        };
        let names = unsafe { store::<P>(h) }.list(prefix.as_ref())?;
        unsafe { *out = to_buf(names.join("\n").into_bytes()) };
        Ok(())
    })
}

unsafe extern "C" fn full_path<P: StorePlugin>(
    h: *mut c_void,
    path: *const u8,
    path_len: usize,
    out: *mut Buf,
    err: *mut Buf,
) -> i32 {
    guarded(err, || {
        let p = unsafe { path_arg(path, path_len) }?;
        let s = unsafe { store::<P>(h) }.full_path(&p);
        unsafe { *out = to_buf(s.into_bytes()) };
        Ok(())
    })
}
