//! The manager's durable state in redb: sector records (online while in
//! progress, offline once finalized or aborted, as in damocles), the sector
//! number allocator, persist-store reservations and worker pings.
//!
//! Every change is one redb write transaction, committed (fsync'd) before the
//! caller answers: a number handed out survives kill -9, and a change that
//! fails half-way leaves nothing behind. The devnet keeps its tables in the
//! same database file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use damocles_api::{SealProof, SectorID, SectorState, WorkerInfo};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

type Key = (u64, u64);
const ONLINE: TableDefinition<Key, &str> = TableDefinition::new("sectors_online");
const OFFLINE: TableDefinition<Key, &str> = TableDefinition::new("sectors_offline");
const NUMBERS: TableDefinition<u64, u64> = TableDefinition::new("sector_numbers");
const RESERVATIONS: TableDefinition<Key, &str> = TableDefinition::new("store_reservations");
const WORKERS: TableDefinition<&str, &str> = TableDefinition::new("workers");

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn key(id: SectorID) -> Key {
    (id.miner, id.number)
}

/// Why a database call failed. The RPC layer maps it to its error codes
/// (`From<DbError> for ApiError`); this layer knows nothing of the RPC.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// redb failed (I/O, a transaction, a table).
    #[error("database: {0}")]
    Storage(String),
    /// A record that does not decode.
    #[error("database record: {0}")]
    Record(#[from] serde_json::Error),
    /// The sector has no online record: finished, aborted, or never here.
    #[error("sector state not found: {id}: {why}")]
    NotOnline { id: SectorID, why: String },
    /// A restore of a sector that has no offline record.
    #[error("sector {0} is not offline: nothing to restore")]
    NotOffline(SectorID),
}

macro_rules! storage_errors {
    ($($t:ty),+) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Storage(e.to_string())
            }
        }
    )+};
}
storage_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

type Result<T, E = DbError> = std::result::Result<T, E>;

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

fn from_json<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T> {
    Ok(serde_json::from_str(s)?)
}

/// Space promised to a sector in a persist store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub store: String,
    pub size: u64,
    pub at: u64,
}

/// A worker's last ping.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub info: WorkerInfo,
    pub last_ping: u64,
}

/// How to pick the next number for a miner.
#[derive(Clone, Copy, Debug)]
pub struct NumberPolicy {
    pub init_number: u64,
    pub min_number: Option<u64>,
    pub max_number: Option<u64>,
}

#[derive(Clone)]
pub struct Db {
    db: Arc<Database>,
}

impl Db {
    pub fn open(path: &Path) -> anyhow::Result<Db> {
        use anyhow::Context;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let db =
            Database::create(path).with_context(|| format!("open database {}", path.display()))?;
        let tx = db.begin_write()?;
        tx.open_table(ONLINE)?;
        tx.open_table(OFFLINE)?;
        tx.open_table(NUMBERS)?;
        tx.open_table(RESERVATIONS)?;
        tx.open_table(WORKERS)?;
        tx.commit()?;
        Ok(Db { db: Arc::new(db) })
    }

    /// The database, for the devnet's tables.
    pub fn raw(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// Takes the next number for `miner` and records the new sector, in one
    /// transaction. `None` when the miner's numbers are used up.
    pub fn allocate(
        &self,
        miner: u64,
        proof: SealProof,
        policy: NumberPolicy,
    ) -> Result<Option<SectorState>> {
        let tx = self.db.begin_write()?;
        let state = {
            let mut numbers = tx.open_table(NUMBERS)?;
            let last = numbers.get(miner)?.map(|v| v.value());
            let Some(next) = last.unwrap_or(0).max(policy.init_number).checked_add(1) else {
                return Ok(None);
            };
            let next = next.max(policy.min_number.unwrap_or(0));
            if policy.max_number.is_some_and(|max| next > max) {
                return Ok(None);
            }
            numbers.insert(miner, next)?;
            let now = now_secs();
            let state = SectorState {
                id: SectorID {
                    miner,
                    number: next,
                },
                sector_type: proof,
                ticket: None,
                seed: None,
                pre: None,
                pre_message: None,
                proof: None,
                proof_message: None,
                latest_state: None,
                persisted: None,
                finalized: false,
                aborted: false,
                abort_reason: String::new(),
                created_at: now,
                updated_at: now,
            };
            let mut online = tx.open_table(ONLINE)?;
            online.insert(key(state.id), to_json(&state)?.as_str())?;
            state
        };
        tx.commit()?;
        Ok(Some(state))
    }

    pub fn online(&self, id: SectorID) -> Result<Option<SectorState>> {
        self.get(ONLINE, id)
    }

    /// The sector's record and whether it is online.
    pub fn find(&self, id: SectorID) -> Result<Option<(SectorState, bool)>> {
        if let Some(s) = self.get(ONLINE, id)? {
            return Ok(Some((s, true)));
        }
        Ok(self.get(OFFLINE, id)?.map(|s| (s, false)))
    }

    fn get(&self, table: TableDefinition<Key, &str>, id: SectorID) -> Result<Option<SectorState>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        let raw = t.get(key(id))?;
        raw.map(|v| from_json(v.value())).transpose()
    }

    /// Changes an online sector. If `f` fails, nothing is written.
    pub fn update<T, E: From<DbError>>(
        &self,
        id: SectorID,
        f: impl FnOnce(&mut SectorState) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.db.begin_write().map_err(DbError::from)?;
        let mut state = self.take_online(&tx, id)?;
        let out = f(&mut state)?;
        self.put(&tx, ONLINE, &mut state)?;
        tx.commit().map_err(DbError::from)?;
        Ok(out)
    }

    /// The error for a sector that is not online, saying whether it was
    /// finished, aborted or never existed.
    pub fn not_online(&self, id: SectorID) -> DbError {
        let why = match self.get(OFFLINE, id) {
            Ok(Some(s)) if s.aborted => format!("aborted: {}", s.abort_reason),
            Ok(Some(_)) => "already finalized".into(),
            _ => "never allocated here".into(),
        };
        DbError::NotOnline { id, why }
    }

    /// Changes an online sector and moves it offline, dropping its reservation.
    pub fn move_offline(&self, id: SectorID, f: impl FnOnce(&mut SectorState)) -> Result<()> {
        let tx = self.db.begin_write()?;
        let mut state = self.take_online(&tx, id)?;
        tx.open_table(ONLINE)?.remove(key(id))?;
        f(&mut state);
        self.put(&tx, OFFLINE, &mut state)?;
        tx.open_table(RESERVATIONS)?.remove(key(id))?;
        Ok(tx.commit()?)
    }

    /// The online record of `id` inside `tx` (read, not removed);
    /// [`Db::not_online`]'s error when there is none. The one read of every
    /// read-modify-write of a sector record.
    fn take_online(&self, tx: &WriteTransaction, id: SectorID) -> Result<SectorState> {
        let online = tx.open_table(ONLINE)?;
        let raw = online.get(key(id))?.map(|v| v.value().to_string());
        match raw {
            Some(raw) => from_json(&raw),
            None => Err(self.not_online(id)),
        }
    }

    /// Writes a sector record into `table` inside `tx`, stamped now.
    fn put(
        &self,
        tx: &WriteTransaction,
        table: TableDefinition<Key, &str>,
        state: &mut SectorState,
    ) -> Result<()> {
        state.updated_at = now_secs();
        tx.open_table(table)?
            .insert(key(state.id), to_json(state)?.as_str())?;
        Ok(())
    }

    /// ReportState in one transaction: records `req` on an online sector
    /// (`None`), or returns the record of a sector already offline.
    pub fn report(
        &self,
        id: SectorID,
        req: damocles_api::ReportStateReq,
    ) -> Result<Option<SectorState>> {
        let tx = self.db.begin_write()?;
        let mut state = match self.take_online(&tx, id) {
            Ok(state) => state,
            Err(DbError::NotOnline { .. }) => {
                let offline = tx.open_table(OFFLINE)?;
                let raw = offline.get(key(id))?;
                return match raw {
                    Some(v) => Ok(Some(from_json(v.value())?)),
                    None => Err(DbError::NotOnline {
                        id,
                        why: "never allocated here".into(),
                    }),
                };
            }
            Err(e) => return Err(e),
        };
        state.latest_state = Some(req);
        self.put(&tx, ONLINE, &mut state)?;
        tx.commit()?;
        Ok(None)
    }

    /// Moves an online sector offline after `f`; a sector already offline is
    /// left as it is (finishing twice is not an error).
    pub fn finish(&self, id: SectorID, f: impl FnOnce(&mut SectorState)) -> Result<()> {
        match self.move_offline(id, f) {
            Err(DbError::NotOnline { .. }) if self.get(OFFLINE, id)?.is_some() => Ok(()),
            other => other,
        }
    }

    /// Moves an offline sector back online, clearing its finalized/aborted marks.
    pub fn restore(&self, id: SectorID) -> Result<()> {
        let tx = self.db.begin_write()?;
        let raw = tx
            .open_table(OFFLINE)?
            .remove(key(id))?
            .map(|v| v.value().to_string());
        let Some(raw) = raw else {
            return Err(DbError::NotOffline(id));
        };
        let mut state: SectorState = from_json(&raw)?;
        state.finalized = false;
        state.aborted = false;
        state.abort_reason.clear();
        self.put(&tx, ONLINE, &mut state)?;
        Ok(tx.commit()?)
    }

    pub fn list(&self, online: bool) -> Result<Vec<SectorState>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(if online { ONLINE } else { OFFLINE })?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            out.push(from_json(entry?.1.value())?);
        }
        Ok(out)
    }

    /// The sector's reservation if it has one of `size` in a store that is
    /// still `usable`; otherwise `pick` chooses a store given the bytes already
    /// reserved per store, and the choice is recorded.
    pub fn reserve(
        &self,
        id: SectorID,
        size: u64,
        usable: impl Fn(&str) -> bool,
        pick: impl FnOnce(&BTreeMap<String, u64>) -> Option<String>,
    ) -> Result<Option<Reservation>> {
        let tx = self.db.begin_write()?;
        let chosen = {
            let mut t = tx.open_table(RESERVATIONS)?;
            let existing = t.get(key(id))?.map(|v| v.value().to_string());
            if let Some(existing) = existing {
                let r: Reservation = from_json(&existing)?;
                if r.size == size && usable(&r.store) {
                    return Ok(Some(r));
                }
            }
            let mut reserved: BTreeMap<String, u64> = BTreeMap::new();
            for entry in t.iter()? {
                let (k, v) = entry?;
                if k.value() == key(id) {
                    continue;
                }
                let r: Reservation = from_json(v.value())?;
                *reserved.entry(r.store).or_default() += r.size;
            }
            let Some(store) = pick(&reserved) else {
                return Ok(None);
            };
            let r = Reservation {
                store,
                size,
                at: now_secs(),
            };
            t.insert(key(id), to_json(&r)?.as_str())?;
            r
        };
        tx.commit()?;
        Ok(Some(chosen))
    }

    pub fn reservations(&self) -> Result<Vec<(SectorID, Reservation)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(RESERVATIONS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let (miner, number) = k.value();
            out.push((SectorID { miner, number }, from_json(v.value())?));
        }
        Ok(out)
    }

    pub fn record_ping(&self, info: WorkerInfo) -> Result<()> {
        let rec = WorkerRecord {
            last_ping: now_secs(),
            info,
        };
        let tx = self.db.begin_write()?;
        tx.open_table(WORKERS)?
            .insert(rec.info.name.as_str(), to_json(&rec)?.as_str())?;
        Ok(tx.commit()?)
    }
}
