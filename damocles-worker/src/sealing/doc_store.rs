//! A sealing thread's sector document on disk: one redb file in the thread's
//! location. Every save is one committed (fsync'd) transaction, so after kill -9
//! the thread resumes from the last event it applied, never from a half-written
//! document.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use redb::{Database, TableDefinition};

use super::state::SectorDoc;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const KEY: &str = "meta/info";

pub struct DocStore {
    db: Database,
    path: PathBuf,
}

impl DocStore {
    /// Opens (creating) `<location>/meta/sector.redb`.
    pub fn open(location: &Path) -> Result<DocStore> {
        let dir = location.join("meta");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join("sector.redb");
        let db = Database::create(&path).with_context(|| format!("open {}", path.display()))?;
        let tx = db.begin_write()?;
        tx.open_table(META)?;
        tx.commit()?;
        Ok(DocStore { db, path })
    }

    /// The saved document, or a fresh `Empty` one.
    pub fn load(&self) -> Result<SectorDoc> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(META)?;
        match t.get(KEY)? {
            Some(v) => serde_json::from_str(v.value()).with_context(|| {
                format!(
                    "{}: the sector document does not decode",
                    self.path.display()
                )
            }),
            None => Ok(SectorDoc::default()),
        }
    }

    pub fn save(&self, doc: &SectorDoc) -> Result<()> {
        let json = serde_json::to_string(doc)?;
        let tx = self.db.begin_write()?;
        tx.open_table(META)?.insert(KEY, json.as_str())?;
        tx.commit()
            .with_context(|| format!("save the sector document in {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealing::state::{Event, State};
    use damocles_api::{AllocatedSector, SealProof, SectorID};
    use filecoin_proofs_api::RegisteredSealProof;

    #[test]
    fn a_saved_document_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = DocStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap().state, State::Empty);
        let mut d = store.load().unwrap();
        d.apply(Event::Allocate(AllocatedSector {
            id: SectorID {
                miner: 1000,
                number: 9,
            },
            proof_type: SealProof(RegisteredSealProof::StackedDrg2KiBV1_1),
        }))
        .unwrap();
        store.save(&d).unwrap();
        drop(store);
        let again = DocStore::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(again.state, State::Allocated);
        assert_eq!(again.sector.unwrap().id.number, 9);
    }
}
