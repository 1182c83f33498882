//! transfer: copy (or link) files and directories route by route.
//!
//! A file is copied to a temporary name beside its destination and renamed into
//! place, so a crash or a full disk never leaves a half-written file under the
//! final name. A route whose destination is, holds or lies in its source (once
//! links are resolved) is refused before anything is touched: replacing the
//! destination would delete the source.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::error::permanent;
use crate::tasks::{Transfer, TransferItem};

/// Carries out `t`'s routes in order, stopping at the first failure;
/// `disable_link` copies even where a route allows a symlink.
pub fn transfer(t: &Transfer, disable_link: bool) -> Result<()> {
    for (i, route) in t.routes.iter().enumerate() {
        let src = resolve(t, &route.src).with_context(|| format!("transfer route {i}: source"))?;
        let dest =
            resolve(t, &route.dest).with_context(|| format!("transfer route {i}: destination"))?;
        let opt = route.opt.clone().unwrap_or(crate::tasks::TransferOption {
            is_dir: false,
            allow_link: false,
        });
        one(&src, &dest, opt.is_dir, opt.allow_link && !disable_link)
            .with_context(|| format!("transfer {} -> {}", src.display(), dest.display()))?;
    }
    Ok(())
}

/// A route end: an absolute local path, or a path inside a store that has a
/// local `path` in its meta.
fn resolve(t: &Transfer, item: &TransferItem) -> Result<PathBuf> {
    let Some(name) = &item.store_name else {
        if !item.uri.is_absolute() {
            return Err(permanent(anyhow!(
                "{} is not an absolute path",
                item.uri.display()
            )));
        }
        return Ok(item.uri.clone());
    };
    let store = t
        .stores
        .get(name)
        .ok_or_else(|| permanent(anyhow!("store {name:?} is not in the task's stores")))?;
    let root = store
        .meta
        .as_ref()
        .and_then(|m| m.get("path"))
        .ok_or_else(|| permanent(anyhow!("store {name:?} has no local `path` in its meta")))?;
    let rel = item.uri.strip_prefix("/").unwrap_or(&item.uri);
    if rel
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(permanent(anyhow!(
            "{} leaves store {name:?}",
            item.uri.display()
        )));
    }
    Ok(Path::new(root).join(rel))
}

fn one(src: &Path, dest: &Path, is_dir: bool, link: bool) -> Result<()> {
    let meta =
        fs::metadata(src).map_err(|e| permanent(anyhow!("source {}: {e}", src.display())))?;
    refuse_overlap(src, dest)?;
    if meta.is_dir() != is_dir {
        bail!(
            "source {} is {}, the route says {}",
            src.display(),
            kind(meta.is_dir()),
            kind(is_dir)
        );
    }
    if let Ok(existing) = fs::symlink_metadata(dest) {
        if existing.file_type().is_symlink() {
            // A link from an earlier (linked) transfer: drop the link, never its target.
            fs::remove_file(dest).with_context(|| format!("remove old link {}", dest.display()))?;
        }
    }
    if let Ok(existing) = fs::symlink_metadata(dest) {
        let existing_dir = existing.is_dir();
        if existing_dir != is_dir {
            bail!(
                "destination {} exists and is {}",
                dest.display(),
                kind(existing_dir)
            );
        }
        if existing_dir {
            fs::remove_dir_all(dest)
        } else {
            fs::remove_file(dest)
        }
        .with_context(|| format!("remove old {}", dest.display()))?;
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    if link {
        return std::os::unix::fs::symlink(src, dest)
            .with_context(|| format!("link {}", dest.display()));
    }
    if is_dir {
        copy_dir(src, dest)
    } else {
        copy_file(src, dest)
    }
}

/// Where `path` really is: its canonical form, or for a path that does not exist
/// yet, the canonical form of its nearest existing ancestor joined with the rest
/// (a link to a path that does not exist is followed there).
pub fn real_path(path: &Path) -> io::Result<PathBuf> {
    // As many links as the kernel follows in one lookup.
    const MAX_LINKS: usize = 40;
    let mut existing = path.to_path_buf();
    let mut missing: Vec<OsString> = Vec::new();
    let mut links = 0;
    loop {
        let probe = if existing.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &existing
        };
        match fs::canonicalize(probe) {
            Ok(real) => return Ok(missing.iter().rev().fold(real, |p, name| p.join(name))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Ok(target) = fs::read_link(&existing) {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    // Relative to the link's directory; an absolute target replaces it.
                    existing.pop();
                    existing.push(target);
                    continue;
                }
                // A path ending in `..` has no name to set aside.
                let Some(name) = existing.file_name() else {
                    return Err(e);
                };
                missing.push(name.to_owned());
                existing.pop();
            }
            Err(e) => return Err(e),
        }
    }
}

/// Where a route's destination really is. A destination that is a link is
/// replaced, never followed, so only its parent is resolved.
fn real_dest(dest: &Path) -> io::Result<PathBuf> {
    let is_link = fs::symlink_metadata(dest).is_ok_and(|m| m.file_type().is_symlink());
    match (is_link, dest.parent(), dest.file_name()) {
        (true, Some(parent), Some(name)) => Ok(real_path(parent)?.join(name)),
        _ => real_path(dest),
    }
}

/// Device and inode of `real` and of each of its existing ancestors, nearest
/// first: identities that also see through bind mounts and hard links. `real`
/// is resolved but for a last component that is a link, which is not followed.
fn lineage(real: &Path) -> Vec<(u64, u64)> {
    real.ancestors()
        .filter_map(|a| fs::symlink_metadata(a).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// How `dest` overlaps `src`, both resolved, if it does.
fn overlap(src: &Path, dest: &Path) -> Option<&'static str> {
    let src_ids = lineage(src);
    let dest_ids = lineage(dest);
    let src_id = src_ids.first()?;
    // Without a destination, the first identity is its nearest ancestor's.
    let dest_id = if fs::symlink_metadata(dest).is_ok() {
        dest_ids.first()
    } else {
        None
    };
    if dest == src || dest_id == Some(src_id) {
        Some("is")
    } else if dest.starts_with(src) || dest_ids.contains(src_id) {
        Some("lies inside")
    } else if src.starts_with(dest) || dest_id.is_some_and(|d| src_ids[1..].contains(d)) {
        Some("contains")
    } else {
        None
    }
}

/// Refuses, as a permanent error, a destination that is the source, lies
/// inside it, or contains it: removing the old destination, or copying into
/// it, would destroy the source.
fn refuse_overlap(src: &Path, dest: &Path) -> Result<()> {
    let real_src =
        fs::canonicalize(src).with_context(|| format!("resolve source {}", src.display()))?;
    let real_dest =
        real_dest(dest).with_context(|| format!("resolve destination {}", dest.display()))?;
    match overlap(&real_src, &real_dest) {
        None => Ok(()),
        Some(how) => Err(permanent(anyhow!(
            "destination {} (resolved: {}) {how} the source {} (resolved: {}); refused, nothing was touched",
            dest.display(),
            real_dest.display(),
            src.display(),
            real_src.display()
        ))),
    }
}

fn kind(dir: bool) -> &'static str {
    if dir {
        "a directory"
    } else {
        "a file"
    }
}

fn copy_file(src: &Path, dest: &Path) -> Result<()> {
    let name = dest
        .file_name()
        .ok_or_else(|| anyhow!("destination {} has no file name", dest.display()))?;
    let tmp = dest.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let result = fs::copy(src, &tmp)
        .with_context(|| format!("copy to {}", tmp.display()))
        .and_then(|_| {
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .context("sync")
        })
        .and_then(|_| {
            fs::rename(&tmp, dest).with_context(|| format!("rename into {}", dest.display()))
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn copy_dir(src: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).with_context(|| format!("create {}", dest.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("read {}", src.display()))? {
        let entry = entry?;
        let to = dest.join(entry.file_name());
        // Follows links: a linked sub-directory is copied as a directory.
        if fs::metadata(entry.path())?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            copy_file(&entry.path(), &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{TransferOption, TransferRoute};

    fn route(src: &Path, dest: &Path, is_dir: bool, allow_link: bool) -> Transfer {
        Transfer {
            stores: Default::default(),
            routes: vec![TransferRoute {
                src: TransferItem {
                    store_name: None,
                    uri: src.into(),
                },
                dest: TransferItem {
                    store_name: None,
                    uri: dest.into(),
                },
                opt: Some(TransferOption { is_dir, allow_link }),
            }],
        }
    }

    #[test]
    fn copies_files_and_dirs_and_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("cache");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("p_aux"), b"aux").unwrap();
        fs::write(src.join("sub/t"), b"t").unwrap();
        let dest = d.path().join("out/cache");
        transfer(&route(&src, &dest, true, false), false).unwrap();
        assert_eq!(fs::read(dest.join("sub/t")).unwrap(), b"t");

        let file_dest = d.path().join("out/sealed");
        transfer(&route(&src.join("p_aux"), &file_dest, false, true), false).unwrap();
        assert!(fs::symlink_metadata(&file_dest)
            .unwrap()
            .file_type()
            .is_symlink());
        transfer(&route(&src.join("p_aux"), &file_dest, false, true), true).unwrap();
        assert!(fs::symlink_metadata(&file_dest).unwrap().is_file());
        assert_eq!(fs::read(&file_dest).unwrap(), b"aux");
    }

    #[test]
    fn refuses_kind_mismatch_and_relative_paths() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"x").unwrap();
        let err = transfer(&route(&f, &d.path().join("g"), true, false), false).unwrap_err();
        assert!(
            format!("{err:#}").contains("is a file, the route says a directory"),
            "{err:#}"
        );
        let err = transfer(
            &route(Path::new("rel"), &d.path().join("g"), false, false),
            false,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("not an absolute path"),
            "{err:#}"
        );
    }

    /// A transfer refused as overlapping: a permanent error, and the tree
    /// under `keep` is byte for byte what it was.
    fn assert_refused(t: &Transfer, keep: &Path, want: &str) {
        let before = snapshot(keep);
        let err = transfer(t, false).unwrap_err();
        assert!(format!("{err:#}").contains(want), "{err:#}");
        assert_eq!(
            crate::error::classify(&err),
            crate::protocol::ErrorKind::Permanent
        );
        assert_eq!(snapshot(keep), before, "{} was touched", keep.display());
    }

    /// Every path under `root` with its bytes (empty for a directory).
    fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(p) = todo.pop() {
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                todo.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                out.push((p, Vec::new()));
            } else {
                out.push((p.clone(), fs::read(&p).unwrap_or_default()));
            }
        }
        out.sort();
        out
    }

    fn store_route(src: &Path, store_root: &Path, uri: &str, is_dir: bool) -> Transfer {
        let mut t = route(src, Path::new("/unused"), is_dir, false);
        t.stores.insert(
            "s".into(),
            crate::tasks::TransferStoreInfo {
                name: "s".into(),
                meta: Some([("path".to_string(), store_root.display().to_string())].into()),
            },
        );
        t.routes[0].dest = TransferItem {
            store_name: Some("s".into()),
            uri: uri.into(),
        };
        t
    }

    #[test]
    fn refuses_a_destination_that_is_its_source() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/t"), b"t").unwrap();
        let file = dir.join("p_aux");
        fs::write(&file, b"aux").unwrap();

        assert_refused(&route(&file, &file, false, false), &dir, "is the source");
        assert_refused(&route(&dir, &dir, true, false), &dir, "is the source");
        assert_refused(
            &route(&dir, &dir.join("."), true, false),
            &dir,
            "is the source",
        );
        // A hard link is the same file under another name.
        let hard = d.path().join("hard");
        fs::hard_link(&file, &hard).unwrap();
        assert_refused(&route(&file, &hard, false, false), &dir, "is the source");
    }

    #[test]
    fn refuses_an_alias_of_the_source_through_links() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("sealing/data");
        fs::create_dir_all(real.join("sealed")).unwrap();
        fs::write(real.join("sealed/s-t01000-1"), b"sealed").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        // The worker's persist route with a store that is the sealing data dir.
        let t = store_route(
            &link.join("sealed/s-t01000-1"),
            &real,
            "sealed/s-t01000-1",
            false,
        );
        assert_refused(&t, &real, "is the source");
        let t = store_route(
            &real.join("sealed/s-t01000-1"),
            &link,
            "sealed/s-t01000-1",
            false,
        );
        assert_refused(&t, &real, "is the source");
    }

    #[test]
    fn refuses_a_destination_inside_or_around_its_source() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("a/cache");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/t"), b"t").unwrap();

        // An ancestor of the source would be removed, source and all.
        assert_refused(
            &route(&src, &d.path().join("a"), true, false),
            d.path(),
            "contains",
        );
        let file = src.join("sub/t");
        assert_refused(&route(&file, &src, false, false), d.path(), "contains");
        // Inside: an existing sub-directory, or a new path under it.
        assert_refused(
            &route(&src, &src.join("sub"), true, false),
            d.path(),
            "lies inside",
        );
        assert_refused(
            &route(&src, &src.join("new/deeper/copy"), true, false),
            d.path(),
            "lies inside",
        );
        assert_refused(
            &route(&src, &src.join("../cache/x"), true, false),
            d.path(),
            "lies inside",
        );
    }

    #[test]
    fn a_link_left_by_an_earlier_transfer_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("f");
        fs::write(&src, b"data").unwrap();
        let dest = d.path().join("out/f");
        transfer(&route(&src, &dest, false, true), false).unwrap();
        // The destination is a link to the source: the copy replaces the link.
        transfer(&route(&src, &dest, false, false), false).unwrap();
        assert!(fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(fs::read(&src).unwrap(), b"data");
        assert_eq!(fs::read(&dest).unwrap(), b"data");
    }

    #[test]
    fn real_path_resolves_through_the_nearest_existing_ancestor() {
        let d = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(d.path()).unwrap();
        std::os::unix::fs::symlink(&real, real.join("link")).unwrap();
        assert_eq!(real_path(&real.join("link/x/y")).unwrap(), real.join("x/y"));
        assert_eq!(real_path(&real.join("link/.")).unwrap(), real);
        // A link to what is not there yet resolves where it points.
        std::os::unix::fs::symlink("later/dir", real.join("dangling")).unwrap();
        assert_eq!(
            real_path(&real.join("dangling/x")).unwrap(),
            real.join("later/dir/x")
        );
        std::os::unix::fs::symlink("loop", real.join("loop")).unwrap();
        assert!(real_path(&real.join("loop")).is_err());
    }
}
