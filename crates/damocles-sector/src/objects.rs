//! Where a sector's files go inside a store: the object paths the worker
//! writes when it persists a sector and the manager checks and proves from.
//!
//! ```text
//! sealed/s-t01000-7                  the sealed replica
//! cache/s-t01000-7/<cache file>      p_aux, t_aux, tree-r-last
//! update/s-t01000-7                  the snap-updated replica
//! update-cache/s-t01000-7/<file>     its cache
//! ```

use crate::{persisted_cache_files, CacheFile, SectorID};

/// `sealed/<name>`
pub fn sealed(id: SectorID) -> String {
    format!("sealed/{id}")
}

/// `cache/<name>`
pub fn cache_dir(id: SectorID) -> String {
    format!("cache/{id}")
}

/// `cache/<name>/<file>`
pub fn cache_file(id: SectorID, file: CacheFile) -> String {
    format!("cache/{id}/{file}")
}

/// `update/<name>`
pub fn update(id: SectorID) -> String {
    format!("update/{id}")
}

/// `update-cache/<name>`
pub fn update_cache_dir(id: SectorID) -> String {
    format!("update-cache/{id}")
}

/// Every object a persisted sector of `sector_size` bytes has in its store:
/// the sealed file first, then the cache files PoSt needs.
pub fn persisted(id: SectorID, sector_size: u64) -> Vec<String> {
    let mut all = vec![sealed(id)];
    all.extend(
        persisted_cache_files(sector_size)
            .into_iter()
            .map(|f| cache_file(id, f)),
    );
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let id = SectorID::new(1000, 7);
        assert_eq!(
            persisted(id, 2048),
            [
                "sealed/s-t01000-7",
                "cache/s-t01000-7/sc-02-data-tree-r-last.dat",
                "cache/s-t01000-7/p_aux",
                "cache/s-t01000-7/t_aux"
            ]
        );
        assert_eq!(update(id), "update/s-t01000-7");
        assert_eq!(update_cache_dir(id), "update-cache/s-t01000-7");
        assert_eq!(cache_dir(id), "cache/s-t01000-7");
    }
}
