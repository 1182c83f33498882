//! Loading store plugins (shared libraries speaking [`crate::abi`]) and
//! using their stores as [`Store`]s.
//!
//! A library is checked when it is loaded: it must export
//! [`abi::ENTRY_SYMBOL`], and its table must be of this build's ABI version
//! and at least this build's size, hold every function (no NULL), and
//! declare a plain, non-builtin kind. A library that fails is refused with
//! an error naming the file and the reason; the others load regardless.
//!
//! A library runs in the host's process, so one that crashes while loading
//! takes the host with it. The file is logged before `dlopen` and again
//! before its entry point is called, so the last log line names it.

use std::ffi::c_void;
use std::io::{self, Read};
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::abi::{
    self, code, Buf, CloseFn, DelFn, FreeBufFn, FullPathFn, GetFn, InfoFn, ListFn, OpenFn,
    PluginTable, PutFn, RawInfo, ReaderCloseFn, ReaderReadFn, StatFn,
};
use crate::{Config, Error, ErrorKind, Info, ObjectPath, Result, Store};

/// Bytes a plugin reader is asked for per call.
const READ_BUF: usize = 1 << 20;

/// Why a library was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader refused the file.
    #[error("plugin {path}: cannot be loaded: {reason}")]
    Open {
        /// The library file.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library does not export the entry function.
    #[error("plugin {path}: not a store plugin: it does not export `{symbol}` ({reason})")]
    NoEntry {
        /// The library file.
        path: PathBuf,
        /// The symbol looked for, [`abi::ENTRY_SYMBOL`].
        symbol: &'static str,
        /// The loader's message.
        reason: String,
    },
    /// The table is of another ABI version.
    #[error("plugin {path}: speaks store plugin ABI version {found}; this build speaks version {expected}")]
    Version {
        /// The library file.
        path: PathBuf,
        /// The plugin's version.
        found: u32,
        /// This build's, [`abi::ABI_VERSION`].
        expected: u32,
    },
    /// The table is shorter than its version's.
    #[error("plugin {path}: its ABI table is {found} bytes, version {version} needs {expected}")]
    Size {
        /// The library file.
        path: PathBuf,
        /// The size the plugin declares.
        found: u32,
        /// The size of this build's table.
        expected: u32,
        /// The ABI version, the same on both sides.
        version: u32,
    },
    /// The table has NULL where functions must be.
    #[error("plugin {path}: its ABI table has no function (NULL) for {}", .fields.join(", "))]
    NullFunctions {
        /// The library file.
        path: PathBuf,
        /// The table's fields that are NULL, in table order.
        fields: Vec<&'static str>,
    },
    /// Anything else: no table, a bad kind, a kind already served.
    #[error("plugin {path}: {reason}")]
    Invalid {
        /// The library file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
}

/// The table's functions, copied once the library is loaded and none is
/// NULL: no call site has a missing function to handle.
#[derive(Clone, Copy)]
struct Fns {
    open: OpenFn,
    close: CloseFn,
    info: InfoFn,
    stat: StatFn,
    get: GetFn,
    read: ReaderReadFn,
    reader_close: ReaderCloseFn,
    put: PutFn,
    del: DelFn,
    list: ListFn,
    full_path: FullPathFn,
    free_buf: FreeBufFn,
}

/// [`Fns`] from `$t`'s fields, or the names of those that are NULL.
macro_rules! checked_fns {
    ($t:expr; $($f:ident),+ $(,)?) => {
        match ($($t.$f,)+) {
            ($(Some($f),)+) => Ok(Fns { $($f),+ }),
            _ => Err([$((stringify!($f), $t.$f.is_none())),+]
                .into_iter()
                .filter_map(|(name, null)| null.then_some(name))
                .collect::<Vec<&'static str>>()),
        }
    };
}

impl Fns {
    fn of(t: &PluginTable) -> Result<Fns, Vec<&'static str>> {
        checked_fns!(t; open, close, info, stat, get, read, reader_close, put, del, list, full_path, free_buf)
    }
}

/// The table's kind: the bytes up to its NUL, but never more than one past
/// the longest kind allowed, so a string without its NUL is not read on
/// and on.
///
/// # Safety
/// `kind` is null or points at a string readable up to its NUL or
/// [`abi::MAX_KIND_LEN`] + 1 bytes, whichever comes first.
unsafe fn read_kind(kind: *const c_char) -> Result<String, String> {
    if kind.is_null() {
        return Err("its ABI table has no kind (NULL)".into());
    }
    let mut bytes = Vec::new();
    for i in 0..=abi::MAX_KIND_LEN {
        // SAFETY: per the contract, readable up to the NUL, and the loop
        // stops at the NUL or the bound.
        let b = unsafe { *kind.add(i) } as u8;
        if b == 0 {
            break;
        }
        bytes.push(b);
    }
    let kind = String::from_utf8_lossy(&bytes).into_owned();
    abi::check_kind(&kind)?;
    Ok(kind)
}

struct Loaded {
    fns: Fns,
    path: PathBuf,
    kind: String,
    // Last: dropped after everything that points into it.
    _lib: libloading::Library,
}

/// A loaded plugin library. Cheap to clone; the library stays loaded while
/// any clone or any store it opened lives.
#[derive(Clone)]
pub struct Plugin(Arc<Loaded>);

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plugin({} from {})", self.0.kind, self.0.path.display())
    }
}

impl Plugin {
    /// Loads and checks the library at `path`. The file is logged before it
    /// is opened and before its entry point runs: if either crashes the
    /// process, the last log line names the culprit.
    pub fn load(path: &Path) -> Result<Plugin, LoadError> {
        let path = path.to_path_buf();
        tracing::info!(file = %path.display(), "loading objstore plugin");
        // SAFETY: loading runs the library's initializers; loading a plugin
        // means trusting it, as with any plugin system.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| LoadError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // SAFETY: the symbol's type is the ABI's entry function.
        let entry = unsafe {
            lib.get::<unsafe extern "C" fn() -> *const PluginTable>(abi::ENTRY_SYMBOL.as_bytes())
        }
        .map_err(|e| LoadError::NoEntry {
            path: path.clone(),
            symbol: abi::ENTRY_SYMBOL,
            reason: e.to_string(),
        })?;
        tracing::info!(file = %path.display(), symbol = abi::ENTRY_SYMBOL, "calling objstore plugin entry point");
        // SAFETY: calling the entry per the ABI; it only returns a pointer.
        let ptr = unsafe { entry() };
        if ptr.is_null() {
            return Err(LoadError::Invalid {
                path,
                reason: format!("`{}` returned no table", abi::ENTRY_SYMBOL),
            });
        }
        // The first two u32s are the same in every ABI version: read them
        // before trusting the rest of the layout.
        // SAFETY: every version's table starts with these two fields.
        let (version, size) = unsafe {
            let head = ptr as *const u32;
            (*head, *head.add(1))
        };
        if version != abi::ABI_VERSION {
            return Err(LoadError::Version {
                path,
                found: version,
                expected: abi::ABI_VERSION,
            });
        }
        let expected = std::mem::size_of::<PluginTable>() as u32;
        if size < expected {
            return Err(LoadError::Size {
                path,
                found: size,
                expected,
                version,
            });
        }
        // SAFETY: checked above; the table is static data of the library,
        // which `Loaded` keeps loaded for as long as the reference lives.
        let table: &'static PluginTable = unsafe { &*ptr };
        let fns = Fns::of(table).map_err(|fields| LoadError::NullFunctions {
            path: path.clone(),
            fields,
        })?;
        // SAFETY: a static NUL-terminated string, per the ABI, read no
        // further than the longest kind allowed.
        let kind = unsafe { read_kind(table.kind) }.map_err(|reason| LoadError::Invalid {
            path: path.clone(),
            reason,
        })?;
        Ok(Plugin(Arc::new(Loaded {
            fns,
            path,
            kind,
            _lib: lib,
        })))
    }

    /// The `*.so` (`*.dylib` on macOS) files in `dir`, sorted by name;
    /// nothing is opened.
    pub fn library_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == std::env::consts::DLL_EXTENSION)
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Every library file in `dir` ([`Plugin::library_files`]): the plugins
    /// that load, and an error for each that does not.
    pub fn load_dir(dir: &Path) -> io::Result<(Vec<Plugin>, Vec<LoadError>)> {
        let (mut ok, mut refused) = (Vec::new(), Vec::new());
        for f in Plugin::library_files(dir)? {
            match Plugin::load(&f) {
                Ok(p) => ok.push(p),
                Err(e) => refused.push(e),
            }
        }
        Ok((ok, refused))
    }

    /// The kind of store the plugin serves, as its table says.
    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The library file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Opens a store through the plugin's constructor.
    pub fn open(&self, cfg: Config) -> Result<ExternalStore> {
        let json = serde_json::to_vec(&cfg).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("store {}: config to JSON: {e}", cfg.instance_name()),
            )
        })?;
        let mut handle: *mut c_void = std::ptr::null_mut();
        let open = self.0.fns.open;
        // SAFETY: `open` is this loaded library's checked function; the
        // config bytes and `handle` outlive the call, as the ABI asks of
        // inputs and outputs.
        let rc = call(&self.0, |err| unsafe {
            open(json.as_ptr(), json.len(), &mut handle, err)
        });
        rc.map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "plugin {} could not open store {}: {}",
                    self.0.path.display(),
                    cfg.instance_name(),
                    e.message()
                ),
            )
        })?;
        if handle.is_null() {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "plugin {} returned no store for {}",
                    self.0.path.display(),
                    cfg.instance_name()
                ),
            ));
        }
        Ok(ExternalStore {
            plugin: Arc::clone(&self.0),
            handle,
            cfg,
        })
    }
}

/// Takes a plugin's buffer: its bytes, and the buffer back to the plugin.
/// A buffer that cannot be right (a null pointer with bytes, more than
/// `limit` bytes) is neither read nor handed back, since freeing it could
/// crash as surely as reading it; the error says what was wrong.
fn take(p: &Loaded, buf: Buf, limit: usize) -> Result<Vec<u8>, String> {
    if buf.ptr.is_null() {
        return match buf.len {
            0 => Ok(Vec::new()),
            n => Err(format!("a null pointer with a length of {n} bytes")),
        };
    }
    if buf.len > limit {
        return Err(format!("{} bytes, over the {limit}-byte limit", buf.len));
    }
    // SAFETY: the plugin filled `len` bytes at `ptr` (not null, checked
    // above), and they stay valid until `free_buf` below.
    let bytes = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }.to_vec();
    // SAFETY: a buffer this plugin filled, handed back exactly once (`buf`
    // is moved in).
    unsafe { (p.fns.free_buf)(buf) };
    Ok(bytes)
}

/// Runs one ABI call and turns its code and message into a result. A plugin
/// function that unwinds anyway (not built with the SDK) aborts rather than
/// corrupting the host: Rust stops unwinding at an `extern "C"` boundary.
fn call(p: &Loaded, f: impl FnOnce(*mut Buf) -> i32) -> Result<()> {
    let mut err = Buf::EMPTY;
    let rc = f(&mut err);
    let msg = match take(p, err, abi::MAX_ERR_LEN) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(why) => format!("(its error message was not read: {why})"),
    };
    if rc == code::OK {
        Ok(())
    } else {
        Err(abi::error_of(rc, msg))
    }
}

/// A store served by a plugin.
pub struct ExternalStore {
    plugin: Arc<Loaded>,
    handle: *mut c_void,
    cfg: Config,
}

// SAFETY: the ABI requires every store function to be callable from many
// threads at once, so the handle may move to another thread...
unsafe impl Send for ExternalStore {}
// SAFETY: ...and be used from several at once.
unsafe impl Sync for ExternalStore {}

impl Drop for ExternalStore {
    fn drop(&mut self) {
        // SAFETY: opened by this plugin, closed once.
        unsafe { (self.plugin.fns.close)(self.handle) };
    }
}

impl ExternalStore {
    fn t(&self) -> Fns {
        self.plugin.fns
    }

    /// Errors carry the instance name, so a log line says which store.
    fn call(&self, f: impl FnOnce(*mut Buf) -> i32) -> Result<()> {
        call(&self.plugin, f).map_err(|e| prefix(e, self.instance()))
    }

    /// The library file of the plugin serving this store.
    pub fn plugin_path(&self) -> &Path {
        &self.plugin.path
    }
}

fn prefix(e: Error, instance: &str) -> Error {
    e.prefixed(format_args!("store {instance}: "))
}

impl Store for ExternalStore {
    fn kind(&self) -> &str {
        &self.plugin.kind
    }

    fn config(&self) -> &Config {
        &self.cfg
    }

    fn info(&self) -> Result<Info> {
        let mut out = RawInfo::default();
        let (t, h) = (self.t(), self.handle);
        // SAFETY: `h` was made by this plugin's `open` and is not closed
        // (`self` lives); `out` outlives the call.
        self.call(|err| unsafe { (t.info)(h, &mut out, err) })?;
        Ok(Info {
            total: out.total,
            free: out.free,
            used: out.used,
        })
    }

    fn stat(&self, path: &ObjectPath) -> Result<u64> {
        let mut size = 0u64;
        let (t, h, p) = (self.t(), self.handle, path.as_str());
        // SAFETY: `h` was made by this plugin's `open` and is not closed;
        // `p` and `size` outlive the call.
        self.call(|err| unsafe { (t.stat)(h, p.as_ptr(), p.len(), &mut size, err) })?;
        Ok(size)
    }

    fn get(
        &self,
        path: &ObjectPath,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let mut reader: *mut c_void = std::ptr::null_mut();
        let (t, h, p) = (self.t(), self.handle, path.as_str());
        let len = len.unwrap_or(abi::TO_END);
        // SAFETY: `h` was made by this plugin's `open` and is not closed;
        // `p` and `reader` outlive the call.
        self.call(|err| unsafe { (t.get)(h, p.as_ptr(), p.len(), offset, len, &mut reader, err) })?;
        if reader.is_null() {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "store {}: the plugin returned no reader for {path}",
                    self.instance()
                ),
            ));
        }
        let reader = PluginReader {
            plugin: Arc::clone(&self.plugin),
            handle: reader,
        };
        // One call across the ABI per MiB, whatever the caller's buffer.
        let cap = READ_BUF
            .min(usize::try_from(len).unwrap_or(READ_BUF))
            .max(1);
        Ok(Box::new(io::BufReader::with_capacity(cap, reader)))
    }

    fn put(&self, path: &ObjectPath, data: &mut dyn Read) -> Result<u64> {
        let mut src = Source { data, failed: None };
        let mut written = 0u64;
        let (t, h, p) = (self.t(), self.handle, path.as_str());
        let ctx = &mut src as *mut Source as *mut c_void;
        // SAFETY: `h` was made by this plugin's `open` and is not closed;
        // `p`, `written` and `src` (behind `ctx`, which only `host_read`
        // reads, during this call) outlive the call.
        let r = self.call(|err| unsafe {
            (t.put)(h, p.as_ptr(), p.len(), host_read, ctx, &mut written, err)
        });
        match (r, src.failed) {
            (Ok(()), _) => Ok(written),
            // The plugin only saw a code: the host's own error says more.
            (Err(_), Some(e)) => Err(Error::new(
                ErrorKind::Io,
                format!(
                    "store {}: reading the data for {path}: {e}",
                    self.instance()
                ),
            )),
            (Err(e), None) => Err(e),
        }
    }

    fn del(&self, path: &ObjectPath) -> Result<()> {
        let (t, h, p) = (self.t(), self.handle, path.as_str());
        // SAFETY: `h` was made by this plugin's `open` and is not closed;
        // `p` outlives the call.
        self.call(|err| unsafe { (t.del)(h, p.as_ptr(), p.len(), err) })
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> Result<Vec<String>> {
        let mut out = Buf::EMPTY;
        let (t, h) = (self.t(), self.handle);
        let pre = prefix.map(ObjectPath::as_str).unwrap_or("");
        // SAFETY: `h` was made by this plugin's `open` and is not closed;
        // `pre` and `out` outlive the call.
        let r = self.call(|err| unsafe { (t.list)(h, pre.as_ptr(), pre.len(), &mut out, err) });
        let bytes = take(&self.plugin, out, usize::MAX).map_err(|why| {
            Error::new(
                ErrorKind::Other,
                format!(
                    "store {}: the plugin's list was not read: {why}",
                    self.instance()
                ),
            )
        });
        r?;
        let bytes = bytes?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    fn full_path(&self, path: &ObjectPath) -> String {
        let mut out = Buf::EMPTY;
        let (t, h, p) = (self.t(), self.handle, path.as_str());
        // SAFETY: `h` was made by this plugin's `open` and is not closed;
        // `p` and `out` outlive the call.
        let r = self.call(|err| unsafe { (t.full_path)(h, p.as_ptr(), p.len(), &mut out, err) });
        match (r, take(&self.plugin, out, usize::MAX)) {
            (Ok(()), Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => format!("{}:{path}", self.instance()),
        }
    }
}

struct Source<'a> {
    data: &'a mut dyn Read,
    failed: Option<io::Error>,
}

/// The [`abi::ReadFn`] the host passes to a plugin's `put`.
///
/// # Safety
/// `ctx` is the `Source` of the `put` in progress, used by no one else
/// during the call; `buf` is `cap` writable bytes; `n` is writable.
unsafe extern "C" fn host_read(ctx: *mut c_void, buf: *mut u8, cap: usize, n: *mut usize) -> i32 {
    // SAFETY: per this function's contract, `ctx` is the live `Source` of
    // the `put` in progress and nothing else touches it meanwhile.
    let src = unsafe { &mut *(ctx as *mut Source) };
    let out: &mut [u8] = if cap == 0 {
        &mut []
    } else {
        // SAFETY: per the contract, `buf` is `cap` writable bytes, and the
        // plugin does not touch them until this call returns.
        unsafe { std::slice::from_raw_parts_mut(buf, cap) }
    };
    match catch_unwind(AssertUnwindSafe(|| src.data.read(out))) {
        Ok(Ok(k)) => {
            // SAFETY: per the contract, `n` is writable.
            unsafe { *n = k };
            code::OK
        }
        Ok(Err(e)) => {
            src.failed = Some(e);
            code::IO
        }
        Err(_) => {
            src.failed = Some(io::Error::other("the data source panicked"));
            code::PANIC
        }
    }
}

struct PluginReader {
    plugin: Arc<Loaded>,
    handle: *mut c_void,
}

// SAFETY: a reader is used by one thread at a time, which `&mut self` ensures.
unsafe impl Send for PluginReader {}

impl Read for PluginReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0usize;
        let (t, h) = (self.plugin.fns, self.handle);
        // SAFETY: `h` was made by this plugin's `get` and is not closed
        // (`self` lives), used by this thread alone (`&mut self`); `buf` and
        // `n` outlive the call.
        call(&self.plugin, |err| unsafe {
            (t.read)(h, buf.as_mut_ptr(), buf.len(), &mut n, err)
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(n.min(buf.len()))
    }
}

impl Drop for PluginReader {
    fn drop(&mut self) {
        // SAFETY: made by this plugin's `get`, closed once.
        unsafe { (self.plugin.fns.reader_close)(self.handle) };
    }
}
