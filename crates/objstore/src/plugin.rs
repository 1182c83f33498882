//! Loading store plugins (shared libraries speaking [`crate::abi`]) and
//! using their stores as [`Store`]s.
//!
//! A library is checked when it is loaded: it must export
//! [`abi::ENTRY_SYMBOL`], and its table must be of this build's ABI version
//! and at least this build's size. A library that fails is refused with an
//! error naming the file and the reason; the others load regardless.

use std::ffi::{c_void, CStr};
use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::abi::{self, code, Buf, PluginTable, RawInfo};
use crate::{Config, Error, Info, ObjectPath, Result, Store};

/// Bytes a plugin reader is asked for per call.
const READ_BUF: usize = 1 << 20;

/// Why a library was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {path}: cannot be loaded: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("plugin {path}: not a store plugin: it does not export `{symbol}` ({reason})")]
    NoEntry {
        path: PathBuf,
        symbol: &'static str,
        reason: String,
    },
    #[error("plugin {path}: speaks store plugin ABI version {found}; this build speaks version {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("plugin {path}: its ABI table is {found} bytes, version {version} needs {expected}")]
    Size {
        path: PathBuf,
        found: u32,
        expected: u32,
        version: u32,
    },
    #[error("plugin {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

struct Loaded {
    table: &'static PluginTable,
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
    /// Loads and checks the library at `path`.
    pub fn load(path: &Path) -> Result<Plugin, LoadError> {
        let path = path.to_path_buf();
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
        let kind = if table.kind.is_null() {
            "plugin".to_string()
        } else {
            // SAFETY: a static NUL-terminated string, per the ABI.
            unsafe { CStr::from_ptr(table.kind) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(Plugin(Arc::new(Loaded {
            table,
            path,
            kind,
            _lib: lib,
        })))
    }

    /// Every `*.so` (`*.dylib` on macOS) file in `dir`: the plugins that load,
    /// and an error for each that does not.
    pub fn load_dir(dir: &Path) -> io::Result<(Vec<Plugin>, Vec<LoadError>)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == std::env::consts::DLL_EXTENSION)
            })
            .collect();
        files.sort();
        let (mut ok, mut refused) = (Vec::new(), Vec::new());
        for f in files {
            match Plugin::load(&f) {
                Ok(p) => ok.push(p),
                Err(e) => refused.push(e),
            }
        }
        Ok((ok, refused))
    }

    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// Opens a store through the plugin's constructor.
    pub fn open(&self, cfg: Config) -> Result<ExternalStore> {
        let json = serde_json::to_vec(&cfg).expect("a config serializes");
        let mut handle: *mut c_void = std::ptr::null_mut();
        let t = self.0.table;
        let rc = call(&self.0, |err| unsafe {
            (t.open)(json.as_ptr(), json.len(), &mut handle, err)
        });
        let rc = rc.map_err(|e| {
            Error::Config(format!(
                "plugin {} could not open store {}: {}",
                self.0.path.display(),
                cfg.instance_name(),
                e.message()
            ))
        });
        rc?;
        if handle.is_null() {
            return Err(Error::Other(format!(
                "plugin {} returned no store for {}",
                self.0.path.display(),
                cfg.instance_name()
            )));
        }
        Ok(ExternalStore {
            plugin: Arc::clone(&self.0),
            handle,
            cfg,
        })
    }
}

/// Takes a plugin's buffer: its bytes, and the buffer back to the plugin.
fn take(p: &Loaded, buf: Buf) -> Vec<u8> {
    if buf.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the plugin filled `len` bytes at `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }.to_vec();
    // SAFETY: handed back exactly once.
    unsafe { (p.table.free_buf)(buf) };
    bytes
}

/// Runs one ABI call and turns its code and message into a result. A plugin
/// function that unwinds anyway (not built with the SDK) aborts rather than
/// corrupting the host: Rust stops unwinding at an `extern "C"` boundary.
fn call(p: &Loaded, f: impl FnOnce(*mut Buf) -> i32) -> Result<()> {
    let mut err = Buf::EMPTY;
    let rc = f(&mut err);
    let msg = String::from_utf8_lossy(&take(p, err)).into_owned();
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
// threads at once.
unsafe impl Send for ExternalStore {}
unsafe impl Sync for ExternalStore {}

impl Drop for ExternalStore {
    fn drop(&mut self) {
        // SAFETY: opened by this plugin, closed once.
        unsafe { (self.plugin.table.close)(self.handle) };
    }
}

impl ExternalStore {
    fn t(&self) -> &'static PluginTable {
        self.plugin.table
    }

    /// Errors carry the instance name, so a log line says which store.
    fn call(&self, f: impl FnOnce(*mut Buf) -> i32) -> Result<()> {
        call(&self.plugin, f).map_err(|e| prefix(e, self.instance()))
    }

    pub fn plugin_path(&self) -> &Path {
        &self.plugin.path
    }
}

fn prefix(e: Error, instance: &str) -> Error {
    use Error::*;
    let p = |m: String| format!("store {instance}: {m}");
    match e {
        NotFound(m) => NotFound(p(m)),
        InvalidPath(m) => InvalidPath(p(m)),
        ReadOnly(m) => ReadOnly(p(m)),
        NotRegularFile(m) => NotRegularFile(p(m)),
        InvalidRange(m) => InvalidRange(p(m)),
        Io(m) => Io(p(m)),
        Config(m) => Config(p(m)),
        Panic(m) => Panic(p(m)),
        Other(m) => Other(p(m)),
    }
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
        self.call(|err| unsafe { (t.get)(h, p.as_ptr(), p.len(), offset, len, &mut reader, err) })?;
        if reader.is_null() {
            return Err(Error::Other(format!(
                "store {}: the plugin returned no reader for {path}",
                self.instance()
            )));
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
        let r = self.call(|err| unsafe {
            (t.put)(h, p.as_ptr(), p.len(), host_read, ctx, &mut written, err)
        });
        match (r, src.failed) {
            (Ok(()), _) => Ok(written),
            // The plugin only saw a code: the host's own error says more.
            (Err(_), Some(e)) => Err(Error::Io(format!(
                "store {}: reading the data for {path}: {e}",
                self.instance()
            ))),
            (Err(e), None) => Err(e),
        }
    }

    fn del(&self, path: &ObjectPath) -> Result<()> {
        let (t, h, p) = (self.t(), self.handle, path.as_str());
        self.call(|err| unsafe { (t.del)(h, p.as_ptr(), p.len(), err) })
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> Result<Vec<String>> {
        let mut out = Buf::EMPTY;
        let (t, h) = (self.t(), self.handle);
        let pre = prefix.map(ObjectPath::as_str).unwrap_or("");
        let r = self.call(|err| unsafe { (t.list)(h, pre.as_ptr(), pre.len(), &mut out, err) });
        let bytes = take(&self.plugin, out);
        r?;
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
        let r = self.call(|err| unsafe { (t.full_path)(h, p.as_ptr(), p.len(), &mut out, err) });
        let bytes = take(&self.plugin, out);
        match r {
            Ok(()) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => format!("{}:{path}", self.instance()),
        }
    }
}

struct Source<'a> {
    data: &'a mut dyn Read,
    failed: Option<io::Error>,
}

unsafe extern "C" fn host_read(ctx: *mut c_void, buf: *mut u8, cap: usize, n: *mut usize) -> i32 {
    // SAFETY: `ctx` is the `Source` of the `put` in progress.
    let src = unsafe { &mut *(ctx as *mut Source) };
    let out = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
    match catch_unwind(AssertUnwindSafe(|| src.data.read(out))) {
        Ok(Ok(k)) => {
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
        let (t, h) = (self.plugin.table, self.handle);
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
        unsafe { (self.plugin.table.reader_close)(self.handle) };
    }
}
