//! transfer: copy (or link) files and directories route by route.
//!
//! A file is copied to a temporary name beside its destination and renamed into
//! place, so a crash or a full disk never leaves a half-written file under the
//! final name.

use std::fs;
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
}
