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
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

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

fn internal<E: std::fmt::Display>(e: E) -> ApiError {
    ApiError::Internal(format!("database: {e}"))
}

fn to_json<T: Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(internal)
}

fn from_json<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, ApiError> {
    serde_json::from_str(s).map_err(internal)
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
    ) -> Result<Option<SectorState>, ApiError> {
        let tx = self.db.begin_write().map_err(internal)?;
        let state = {
            let mut numbers = tx.open_table(NUMBERS).map_err(internal)?;
            let last = numbers.get(miner).map_err(internal)?.map(|v| v.value());
            let Some(next) = last.unwrap_or(0).max(policy.init_number).checked_add(1) else {
                return Ok(None);
            };
            let next = next.max(policy.min_number.unwrap_or(0));
            if policy.max_number.is_some_and(|max| next > max) {
                return Ok(None);
            }
            numbers.insert(miner, next).map_err(internal)?;
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
            let mut online = tx.open_table(ONLINE).map_err(internal)?;
            online
                .insert(key(state.id), to_json(&state)?.as_str())
                .map_err(internal)?;
            state
        };
        tx.commit().map_err(internal)?;
        Ok(Some(state))
    }

    pub fn online(&self, id: SectorID) -> Result<Option<SectorState>, ApiError> {
        self.get(ONLINE, id)
    }

    /// The sector's record and whether it is online.
    pub fn find(&self, id: SectorID) -> Result<Option<(SectorState, bool)>, ApiError> {
        if let Some(s) = self.get(ONLINE, id)? {
            return Ok(Some((s, true)));
        }
        Ok(self.get(OFFLINE, id)?.map(|s| (s, false)))
    }

    fn get(
        &self,
        table: TableDefinition<Key, &str>,
        id: SectorID,
    ) -> Result<Option<SectorState>, ApiError> {
        let tx = self.db.begin_read().map_err(internal)?;
        let t = tx.open_table(table).map_err(internal)?;
        let raw = t.get(key(id)).map_err(internal)?;
        raw.map(|v| from_json(v.value())).transpose()
    }

    /// Changes an online sector. If `f` fails, nothing is written.
    pub fn update<T>(
        &self,
        id: SectorID,
        f: impl FnOnce(&mut SectorState) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let tx = self.db.begin_write().map_err(internal)?;
        let out = {
            let mut online = tx.open_table(ONLINE).map_err(internal)?;
            let raw = online
                .get(key(id))
                .map_err(internal)?
                .map(|v| v.value().to_string());
            let Some(raw) = raw else {
                return Err(self.not_online(id));
            };
            let mut state: SectorState = from_json(&raw)?;
            let out = f(&mut state)?;
            state.updated_at = now_secs();
            online
                .insert(key(id), to_json(&state)?.as_str())
                .map_err(internal)?;
            out
        };
        tx.commit().map_err(internal)?;
        Ok(out)
    }

    /// The error for a sector that is not online: 11001 either way, with a
    /// message saying whether it was finished or never existed.
    pub fn not_online(&self, id: SectorID) -> ApiError {
        match self.get(OFFLINE, id) {
            Ok(Some(s)) if s.aborted => {
                ApiError::NotFound(id, format!("aborted: {}", s.abort_reason))
            }
            Ok(Some(_)) => ApiError::NotFound(id, "already finalized".into()),
            _ => ApiError::NotFound(id, "never allocated here".into()),
        }
    }

    /// Changes an online sector and moves it offline, dropping its reservation.
    pub fn move_offline(
        &self,
        id: SectorID,
        f: impl FnOnce(&mut SectorState),
    ) -> Result<(), ApiError> {
        let tx = self.db.begin_write().map_err(internal)?;
        {
            let mut online = tx.open_table(ONLINE).map_err(internal)?;
            let raw = online
                .remove(key(id))
                .map_err(internal)?
                .map(|v| v.value().to_string());
            let Some(raw) = raw else {
                return Err(self.not_online(id));
            };
            let mut state: SectorState = from_json(&raw)?;
            f(&mut state);
            state.updated_at = now_secs();
            tx.open_table(OFFLINE)
                .map_err(internal)?
                .insert(key(id), to_json(&state)?.as_str())
                .map_err(internal)?;
            tx.open_table(RESERVATIONS)
                .map_err(internal)?
                .remove(key(id))
                .map_err(internal)?;
        }
        tx.commit().map_err(internal)
    }

    /// ReportState in one transaction: records `req` on an online sector
    /// (`None`), or returns the record of a sector already offline.
    pub fn report(
        &self,
        id: SectorID,
        req: damocles_api::ReportStateReq,
    ) -> Result<Option<SectorState>, ApiError> {
        let tx = self.db.begin_write().map_err(internal)?;
        {
            let mut online = tx.open_table(ONLINE).map_err(internal)?;
            let raw = online
                .get(key(id))
                .map_err(internal)?
                .map(|v| v.value().to_string());
            let Some(raw) = raw else {
                drop(online);
                let offline = tx.open_table(OFFLINE).map_err(internal)?;
                let raw = offline.get(key(id)).map_err(internal)?;
                return match raw {
                    Some(v) => Ok(Some(from_json(v.value())?)),
                    None => Err(ApiError::NotFound(id, "never allocated here".into())),
                };
            };
            let mut state: SectorState = from_json(&raw)?;
            state.latest_state = Some(req);
            state.updated_at = now_secs();
            online
                .insert(key(id), to_json(&state)?.as_str())
                .map_err(internal)?;
        }
        tx.commit().map_err(internal)?;
        Ok(None)
    }

    /// Moves an online sector offline after `f`; a sector already offline is
    /// left as it is (finishing twice is not an error).
    pub fn finish(&self, id: SectorID, f: impl FnOnce(&mut SectorState)) -> Result<(), ApiError> {
        match self.move_offline(id, f) {
            Err(ApiError::NotFound(..)) if self.get(OFFLINE, id)?.is_some() => Ok(()),
            other => other,
        }
    }

    /// Moves an offline sector back online, clearing its finalized/aborted marks.
    pub fn restore(&self, id: SectorID) -> Result<(), ApiError> {
        let tx = self.db.begin_write().map_err(internal)?;
        {
            let mut offline = tx.open_table(OFFLINE).map_err(internal)?;
            let raw = offline
                .remove(key(id))
                .map_err(internal)?
                .map(|v| v.value().to_string());
            let Some(raw) = raw else {
                return Err(ApiError::Invalid(format!(
                    "sector {} is not offline: nothing to restore",
                    crate::error::name(id)
                )));
            };
            let mut state: SectorState = from_json(&raw)?;
            state.finalized = false;
            state.aborted = false;
            state.abort_reason.clear();
            state.updated_at = now_secs();
            tx.open_table(ONLINE)
                .map_err(internal)?
                .insert(key(id), to_json(&state)?.as_str())
                .map_err(internal)?;
        }
        tx.commit().map_err(internal)
    }

    pub fn list(&self, online: bool) -> Result<Vec<SectorState>, ApiError> {
        let tx = self.db.begin_read().map_err(internal)?;
        let t = tx
            .open_table(if online { ONLINE } else { OFFLINE })
            .map_err(internal)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(internal)? {
            out.push(from_json(entry.map_err(internal)?.1.value())?);
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
    ) -> Result<Option<Reservation>, ApiError> {
        let tx = self.db.begin_write().map_err(internal)?;
        let chosen = {
            let mut t = tx.open_table(RESERVATIONS).map_err(internal)?;
            let existing = t
                .get(key(id))
                .map_err(internal)?
                .map(|v| v.value().to_string());
            if let Some(existing) = existing {
                let r: Reservation = from_json(&existing)?;
                if r.size == size && usable(&r.store) {
                    return Ok(Some(r));
                }
            }
            let mut reserved: BTreeMap<String, u64> = BTreeMap::new();
            for entry in t.iter().map_err(internal)? {
                let (k, v) = entry.map_err(internal)?;
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
            t.insert(key(id), to_json(&r)?.as_str()).map_err(internal)?;
            r
        };
        tx.commit().map_err(internal)?;
        Ok(Some(chosen))
    }

    pub fn reservations(&self) -> Result<Vec<(SectorID, Reservation)>, ApiError> {
        let tx = self.db.begin_read().map_err(internal)?;
        let t = tx.open_table(RESERVATIONS).map_err(internal)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(internal)? {
            let (k, v) = entry.map_err(internal)?;
            let (miner, number) = k.value();
            out.push((SectorID { miner, number }, from_json(v.value())?));
        }
        Ok(out)
    }

    pub fn record_ping(&self, info: WorkerInfo) -> Result<(), ApiError> {
        let rec = WorkerRecord {
            last_ping: now_secs(),
            info,
        };
        let tx = self.db.begin_write().map_err(internal)?;
        tx.open_table(WORKERS)
            .map_err(internal)?
            .insert(rec.info.name.as_str(), to_json(&rec)?.as_str())
            .map_err(internal)?;
        tx.commit().map_err(internal)
    }
}
