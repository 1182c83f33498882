//! The builtin filesystem store: objects are files under a root directory.
//!
//! Paths are [`ObjectPath`]s, so they cannot name `..`; a symlink inside the
//! root is followed on reads unless the store is `Strict`, and writes are
//! refused wherever a symlink would take them out of the root. A put writes a
//! hidden temporary file next to the target and renames it into place, so a
//! reader never sees half an object.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{check_range, Config, Error, ErrorKind, Info, ObjectPath, Result, Store};

/// A directory served as a store (`kind` "fs").
pub struct FsStore {
    cfg: Config,
    root: PathBuf,
}

impl FsStore {
    /// Opens the directory `cfg.path` (made absolute; it must exist).
    pub fn open(mut cfg: Config) -> Result<FsStore> {
        if cfg.path.is_empty() {
            return Err(Error::new(ErrorKind::Config, "Path is empty"));
        }
        let root = fs::canonicalize(&cfg.path)
            .map_err(|e| Error::new(ErrorKind::Config, format!("Path {:?}: {e}", cfg.path)))?;
        if !root.is_dir() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("Path {:?} is not a directory", cfg.path),
            ));
        }
        if cfg.name.is_empty() {
            cfg.name = root.display().to_string();
        }
        Ok(FsStore { cfg, root })
    }

    /// The store's directory, absolute.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn local(&self, path: &ObjectPath) -> PathBuf {
        self.root.join(path.as_str())
    }

    /// For reads: the file, refusing symlinks anywhere below the root when
    /// strict, and anything but a regular file.
    fn readable(&self, path: &ObjectPath) -> Result<PathBuf> {
        let p = self.local(path);
        if self.cfg.strict {
            let mut at = self.root.clone();
            for seg in path.as_str().split('/') {
                at.push(seg);
                let m = fs::symlink_metadata(&at).map_err(|e| Error::io(path, e))?;
                if m.file_type().is_symlink() {
                    return Err(Error::new(
                        ErrorKind::NotRegularFile,
                        format!(
                            "{path}: {} is a symlink (the store is Strict)",
                            at.display()
                        ),
                    ));
                }
            }
        }
        let m = fs::metadata(&p).map_err(|e| Error::io(path, e))?;
        if !m.is_file() {
            return Err(Error::new(ErrorKind::NotRegularFile, path.to_string()));
        }
        Ok(p)
    }

    /// For writes: the target, once its parent exists and resolves inside
    /// the root (a symlinked directory must not lead elsewhere).
    fn writable(&self, path: &ObjectPath) -> Result<PathBuf> {
        if self.cfg.read_only {
            return Err(Error::new(ErrorKind::ReadOnly, self.cfg.name.clone()));
        }
        let p = self.local(path);
        let parent = p.parent().expect("below the root");
        fs::create_dir_all(parent).map_err(|e| Error::io(path, e))?;
        let real = fs::canonicalize(parent).map_err(|e| Error::io(path, e))?;
        if !real.starts_with(&self.root) {
            return Err(Error::new(
                ErrorKind::InvalidPath,
                format!("{path}: leads to {} outside the store", real.display()),
            ));
        }
        if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::new(
                ErrorKind::InvalidPath,
                format!("{path}: is a symlink"),
            ));
        }
        Ok(p)
    }
}

impl Store for FsStore {
    fn kind(&self) -> &str {
        "fs"
    }

    fn config(&self) -> &Config {
        &self.cfg
    }

    fn info(&self) -> Result<Info> {
        let total = fs4::total_space(&self.root).map_err(|e| Error::io(self.root.display(), e))?;
        let free =
            fs4::available_space(&self.root).map_err(|e| Error::io(self.root.display(), e))?;
        Ok(Info {
            total,
            free,
            used: total.saturating_sub(free),
        })
    }

    fn stat(&self, path: &ObjectPath) -> Result<u64> {
        let p = self.readable(path)?;
        Ok(fs::metadata(&p).map_err(|e| Error::io(path, e))?.len())
    }

    fn get(
        &self,
        path: &ObjectPath,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let p = self.readable(path)?;
        let mut f = File::open(&p).map_err(|e| Error::io(path, e))?;
        let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
        let len = check_range(path, size, offset, len)?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(path, e))?;
        Ok(Box::new(f.take(len)))
    }

    fn put(&self, path: &ObjectPath, data: &mut dyn Read) -> Result<u64> {
        let p = self.writable(path)?;
        let name = p.file_name().expect("a file name").to_string_lossy();
        // Unique per put, so concurrent puts of one path never share a file.
        static PUTS: AtomicU64 = AtomicU64::new(0);
        let n = PUTS.fetch_add(1, Ordering::Relaxed);
        let tmp = p.with_file_name(format!(".{name}.part-{}-{n}", std::process::id()));
        let written = (|| -> io::Result<u64> {
            let mut f = File::create(&tmp)?;
            // Large writes: through a plugin every read of `data` is a call
            // back into the host.
            let n = io::copy(&mut io::BufReader::with_capacity(64 << 10, data), &mut f)?;
            f.flush()?;
            f.sync_all()?;
            Ok(n)
        })();
        match written {
            Ok(n) => {
                fs::rename(&tmp, &p).map_err(|e| Error::io(path, e))?;
                Ok(n)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(Error::io(path, e))
            }
        }
    }

    fn del(&self, path: &ObjectPath) -> Result<()> {
        let p = self.writable(path)?;
        fs::remove_file(&p).map_err(|e| Error::io(path, e))
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> Result<Vec<String>> {
        let start = match prefix {
            Some(p) => self.local(p),
            None => self.root.clone(),
        };
        let mut out = Vec::new();
        let mut dirs = vec![start];
        while let Some(d) = dirs.pop() {
            let entries = match fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(d.display(), e)),
            };
            for e in entries {
                let e = e.map_err(|e| Error::io(d.display(), e))?;
                let t = e
                    .file_type()
                    .map_err(|err| Error::io(e.path().display(), err))?;
                let name = e.file_name().to_string_lossy().to_string();
                if t.is_dir() {
                    dirs.push(e.path());
                } else if t.is_file() && !(name.starts_with('.') && name.contains(".part-")) {
                    let rel = e.path();
                    let rel = rel.strip_prefix(&self.root).expect("below the root");
                    out.push(rel.to_string_lossy().to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn full_path(&self, path: &ObjectPath) -> String {
        self.local(path).display().to_string()
    }
}

/// The filesystem store can also be served as a plugin
/// (examples/objstore-fs-plugin), of kind `fs-plugin`: `fs` is the builtin
/// store's, which no plugin may take.
impl crate::sdk::StorePlugin for FsStore {
    const KIND: &'static std::ffi::CStr = c"fs-plugin";
    fn open(cfg: Config) -> Result<Self> {
        FsStore::open(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, strict: bool, read_only: bool) -> FsStore {
        FsStore::open(Config {
            name: "t".into(),
            path: dir.display().to_string(),
            strict,
            read_only,
            ..Config::default()
        })
        .unwrap()
    }

    fn p(s: &str) -> ObjectPath {
        ObjectPath::new(s).unwrap()
    }

    #[test]
    fn put_get_ranges_list_del() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), false, false);
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(s.put(&p("cache/a/p_aux"), &mut &data[..]).unwrap(), 256);
        s.put(&p("sealed/a"), &mut &b"x"[..]).unwrap();
        assert_eq!(s.stat(&p("cache/a/p_aux")).unwrap(), 256);
        let mut got = Vec::new();
        s.get(&p("cache/a/p_aux"), 10, Some(5))
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, vec![10, 11, 12, 13, 14]);
        assert!(matches!(
            s.get(&p("cache/a/p_aux"), 250, Some(7)),
            Err(e) if e.kind() == ErrorKind::InvalidRange
        ));
        assert_eq!(
            s.list(None).unwrap(),
            vec!["cache/a/p_aux".to_string(), "sealed/a".into()]
        );
        assert_eq!(
            s.list(Some(&p("sealed"))).unwrap(),
            vec!["sealed/a".to_string()]
        );
        s.del(&p("sealed/a")).unwrap();
        assert!(matches!(s.stat(&p("sealed/a")), Err(e) if e.kind() == ErrorKind::NotFound));
        assert!(s.info().unwrap().total > 0);
    }

    #[test]
    fn read_only_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();

        let ro = store(dir.path(), false, true);
        assert!(matches!(
            ro.put(&p("a"), &mut &b"x"[..]),
            Err(e) if e.kind() == ErrorKind::ReadOnly
        ));
        let loose = store(dir.path(), false, false);
        assert_eq!(
            loose.stat(&p("link/secret")).unwrap(),
            1,
            "followed when not Strict"
        );
        assert!(
            matches!(
                loose.put(&p("link/new"), &mut &b"x"[..]),
                Err(e) if e.kind() == ErrorKind::InvalidPath
            ),
            "never written outside"
        );
        assert!(!outside.path().join("new").exists());
        let strict = store(dir.path(), true, false);
        assert!(matches!(
            strict.stat(&p("link/secret")),
            Err(e) if e.kind() == ErrorKind::NotRegularFile
        ));
    }

    #[test]
    fn a_failed_put_leaves_nothing_visible() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("source went away"));
                }
                self.0 -= 1;
                buf[0] = 1;
                Ok(1)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), false, false);
        assert!(s.put(&p("sealed/x"), &mut Broken(3)).is_err());
        assert!(matches!(s.stat(&p("sealed/x")), Err(e) if e.kind() == ErrorKind::NotFound));
        assert!(s.list(None).unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("sealed"))
                .unwrap()
                .count(),
            0
        );
    }
}
