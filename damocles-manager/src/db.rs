//! The manager's durable state in redb: sector records (online while in
//! progress, offline once finalized or aborted, as in damocles), the sector
//! number allocator, persist-store reservations and worker pings.
//!
//! Every change is one redb write transaction, committed (fsync'd) before the
//! caller answers: a number handed out survives kill -9, and a change that
//! fails half-way leaves nothing behind. The devnet keeps its tables in the
//! same database file.
//!
//! Only `daemon init` makes the database ([`Db::create`]); `daemon run` opens
//! it ([`Db::open`]) and refuses one that is missing, empty, corrupt or was
//! not made by init: a silently re-made database would hand out sector
//! numbers a second time.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use damocles_api::limits::{MAX_WORKERS, WORKER_TTL_SECS};
use damocles_api::{SealProof, SectorID, SectorListKind, SectorState, WorkerInfo};
use redb::{
    Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

type Key = (u64, u64);
const ONLINE: TableDefinition<Key, &str> = TableDefinition::new("sectors_online");
const OFFLINE: TableDefinition<Key, &str> = TableDefinition::new("sectors_offline");
const NUMBERS: TableDefinition<u64, u64> = TableDefinition::new("sector_numbers");
const RESERVATIONS: TableDefinition<Key, &str> = TableDefinition::new("store_reservations");
const WORKERS: TableDefinition<&str, &str> = TableDefinition::new("workers");
/// Window PoSt messages sent, by (miner, deadline open epoch, first
/// partition): what a restarted poster must not send again.
const POST_SENT: TableDefinition<(u64, i64, u64), &str> = TableDefinition::new("post_messages");
/// Window PoSt jobs for worker-provers: job id -> JSON record (`post::jobs`).
pub const WDPOST_JOBS: TableDefinition<&str, &str> = TableDefinition::new("wdpost_jobs");
/// Holds [`INITIALIZED`], written by `daemon init` only.
const META: TableDefinition<&str, &str> = TableDefinition::new("manager_meta");
const INITIALIZED: &str = "initialized_at";

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
    /// WorkerPing from a new worker while the worker table is full.
    #[error("{max} workers pinged in the last {} h: a new worker is recorded once one of them expires", WORKER_TTL_SECS / 3600)]
    TooManyWorkers { max: u64 },
}

/// Why the database cannot be opened or made. Each says what was found and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database {} does not exist; `daemon run` never makes one. Restore it from a backup (a new home with a new database is made only by `damocles-manager daemon init`, and it hands out sector numbers from 1 again)", .0.display())]
    Missing(PathBuf),
    #[error("database {} is empty (0 bytes): its data is lost. Restore it from a backup; `daemon run` does not re-initialize a database (only `damocles-manager daemon init` makes one, on a new home)", .0.display())]
    Empty(PathBuf),
    #[error("database {} ({size} bytes) was not made by `damocles-manager daemon init`: it holds no manager tables. Restore the home's database from a backup, or make a new home with `daemon init`", .path.display())]
    NotInitialized { path: PathBuf, size: u64 },
    #[error("database {} exists already ({size} bytes); move it away to start over", .path.display())]
    Exists { path: PathBuf, size: u64 },
    #[error("database {} is corrupt ({why}); restore it from a backup", .path.display())]
    Corrupt { path: PathBuf, why: String },
    #[error("database {} is in use by another process: is a daemon already running on this home?", .0.display())]
    InUse(PathBuf),
    #[error("database {}: {why}", .path.display())]
    Other { path: PathBuf, why: String },
}

impl OpenError {
    /// Sorts a redb error met while opening `path`.
    fn from_redb(path: &Path, e: impl Into<redb::Error>) -> OpenError {
        let path = path.to_path_buf();
        match e.into() {
            redb::Error::DatabaseAlreadyOpen => OpenError::InUse(path),
            redb::Error::Corrupted(why) => OpenError::Corrupt { path, why },
            // redb's word for a file that is not (or no longer) a database.
            redb::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                OpenError::Corrupt {
                    path,
                    why: io.to_string(),
                }
            }
            other => OpenError::Other {
                path,
                why: other.to_string(),
            },
        }
    }
}

/// Runs `f`, turning a panic in it into `Err(message)` with nothing printed:
/// redb asserts, rather than returns an error, on some damaged files (a
/// truncated file, flipped bits). Panics of other threads still print.
fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let me = std::thread::current().id();
    let previous = Arc::new(panic::take_hook());
    let others = Arc::clone(&previous);
    panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != me {
            others(info);
        }
    }));
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    // Drop our hook (and its clone of `previous`) before putting it back.
    drop(panic::take_hook());
    match Arc::try_unwrap(previous) {
        Ok(hook) => panic::set_hook(hook),
        Err(shared) => panic::set_hook(Box::new(move |info| shared(info))),
    }
    out.map_err(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "an unknown failure".into());
        format!("redb failed: {what}")
    })
}

/// [`Db::open`] and [`Db::create`] inside [`quietly`]: a panic is a corrupt file.
fn guarded(
    path: &Path,
    f: impl FnOnce() -> std::result::Result<Database, OpenError>,
) -> std::result::Result<Db, OpenError> {
    let db = quietly(f).map_err(|why| OpenError::Corrupt {
        path: path.to_path_buf(),
        why,
    })??;
    Ok(Db { db: Arc::new(db) })
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

/// Sorts a redb error met while opening a database into [`OpenError`].
trait AtOpen<T> {
    fn at(self, path: &Path) -> std::result::Result<T, OpenError>;
}

impl<T, E: Into<redb::Error>> AtOpen<T> for std::result::Result<T, E> {
    fn at(self, path: &Path) -> std::result::Result<T, OpenError> {
        self.map_err(|e| OpenError::from_redb(path, e))
    }
}

/// Whether `daemon init` made `db`. A home from before the mark has the
/// manager's tables but no mark: it gets the mark now.
fn initialized(db: &Database, path: &Path) -> std::result::Result<bool, OpenError> {
    let tx = db.begin_read().at(path)?;
    let marked = match tx.open_table(META) {
        Ok(t) => t.get(INITIALIZED).at(path)?.is_some(),
        Err(redb::TableError::TableDoesNotExist(_)) => false,
        Err(e) => return Err(OpenError::from_redb(path, e)),
    };
    if marked {
        return Ok(true);
    }
    match tx.open_table(NUMBERS) {
        Ok(_) => {}
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
        Err(e) => return Err(OpenError::from_redb(path, e)),
    }
    drop(tx);
    mark_initialized(db, path)?;
    tracing::info!(path = %path.display(), "database made before `daemon init` marked new databases: marked as initialized now");
    Ok(true)
}

/// Writes the mark that `daemon init` made the database.
fn mark_initialized(db: &Database, path: &Path) -> std::result::Result<(), OpenError> {
    let tx = db.begin_write().at(path)?;
    tx.open_table(META)
        .at(path)?
        .insert(INITIALIZED, now_secs().to_string().as_str())
        .at(path)?;
    tx.commit().at(path)
}

/// Creates the manager's tables that are missing (a newer version may add some).
fn ensure_tables(db: &Database, path: &Path) -> std::result::Result<(), OpenError> {
    let tx = db.begin_write().at(path)?;
    tx.open_table(ONLINE).at(path)?;
    tx.open_table(OFFLINE).at(path)?;
    tx.open_table(NUMBERS).at(path)?;
    tx.open_table(RESERVATIONS).at(path)?;
    tx.open_table(WORKERS).at(path)?;
    tx.open_table(POST_SENT).at(path)?;
    tx.open_table(WDPOST_JOBS).at(path)?;
    tx.commit().at(path)
}

/// Records of `t` after `after` in key order, raw, until `limit` records or
/// just past `max_bytes`.
fn scan(
    t: &impl ReadableTable<Key, &'static str>,
    after: Option<SectorID>,
    limit: usize,
    max_bytes: usize,
    into: &mut Vec<(Key, String)>,
) -> Result<()> {
    let from = after.map_or(Bound::Unbounded, |id| Bound::Excluded(key(id)));
    let (mut n, mut bytes) = (0, 0);
    for entry in t.range((from, Bound::Unbounded))? {
        if n == limit || bytes > max_bytes {
            break;
        }
        let (k, v) = entry?;
        bytes += v.value().len();
        n += 1;
        into.push((k.value(), v.value().to_string()));
    }
    Ok(())
}

/// Removes worker records last pinged `WORKER_TTL_SECS` before `now` or
/// earlier (and any that do not decode); how many went.
fn drop_stale_workers(t: &mut Table<&str, &str>, now: u64) -> Result<u64> {
    let before = t.len()?;
    t.retain(|_, v| {
        serde_json::from_str::<WorkerRecord>(v)
            .is_ok_and(|r| r.last_ping.saturating_add(WORKER_TTL_SECS) > now)
    })?;
    Ok(before - t.len()?)
}

/// Takes the next number for `miner` and records the new sector online.
fn allocate_in(
    numbers: &mut Table<u64, u64>,
    online: &mut Table<Key, &str>,
    miner: u64,
    proof: SealProof,
    policy: NumberPolicy,
) -> Result<Option<SectorState>> {
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
    online.insert(key(state.id), to_json(&state)?.as_str())?;
    Ok(Some(state))
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

/// One page of `ListSectors`.
#[derive(Debug, Default)]
pub struct SectorPage {
    pub sectors: Vec<SectorState>,
    /// The byte cap, not the count limit, ended the page early.
    pub cut_by_bytes: bool,
}

impl Db {
    /// Makes the database of a new home (`daemon init`), marked as made by
    /// init. Refuses a file that is there already.
    pub fn create(path: &Path) -> std::result::Result<Db, OpenError> {
        let other = |why: String| OpenError::Other {
            path: path.to_path_buf(),
            why,
        };
        if let Ok(m) = std::fs::metadata(path) {
            return Err(OpenError::Exists {
                path: path.to_path_buf(),
                size: m.len(),
            });
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| other(format!("create {}: {e}", dir.display())))?;
        }
        guarded(path, || {
            let db = Database::create(path).at(path)?;
            ensure_tables(&db, path)?;
            mark_initialized(&db, path)?;
            Ok(db)
        })
    }

    /// Opens the database of an initialized home (`daemon run`). Never makes
    /// one: a missing, empty, corrupt or unmarked file is an error that names
    /// it.
    pub fn open(path: &Path) -> std::result::Result<Db, OpenError> {
        let size = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpenError::Missing(path.to_path_buf()))
            }
            Err(e) => {
                return Err(OpenError::Other {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                })
            }
        };
        if size == 0 {
            return Err(OpenError::Empty(path.to_path_buf()));
        }
        guarded(path, || {
            // `open`, not `create`: redb's create re-initializes an empty file.
            let db = Database::open(path).at(path)?;
            if !initialized(&db, path)? {
                return Err(OpenError::NotInitialized {
                    path: path.to_path_buf(),
                    size,
                });
            }
            ensure_tables(&db, path)?;
            Ok(db)
        })
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
        let state = allocate_in(
            &mut tx.open_table(NUMBERS)?,
            &mut tx.open_table(ONLINE)?,
            miner,
            proof,
            policy,
        )?;
        if state.is_some() {
            tx.commit()?;
        }
        Ok(state)
    }

    /// Allocates up to `count` sectors for `miner` in one transaction, as
    /// [`Db::allocate`] does one at a time: for seeding a database (tests,
    /// tools). How many it allocated (fewer when the numbers ran out).
    pub fn allocate_batch(
        &self,
        miner: u64,
        proof: SealProof,
        policy: NumberPolicy,
        count: u64,
    ) -> Result<u64> {
        let tx = self.db.begin_write()?;
        let mut done = 0;
        {
            let (mut numbers, mut online) = (tx.open_table(NUMBERS)?, tx.open_table(ONLINE)?);
            while done < count
                && allocate_in(&mut numbers, &mut online, miner, proof, policy)?.is_some()
            {
                done += 1;
            }
        }
        tx.commit()?;
        Ok(done)
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

    /// A page of `kind`'s records in SectorID order (online and offline
    /// merged): those after `after`, at most `limit` of them and at most
    /// `max_bytes` of JSON, but always at least one if there is one. Records
    /// are sent as stored, so their stored length is their length on the wire.
    pub fn list_page(
        &self,
        kind: SectorListKind,
        after: Option<SectorID>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<SectorPage> {
        let tx = self.db.begin_read()?;
        let mut raw = Vec::new();
        for (table, wanted) in [
            (ONLINE, kind != SectorListKind::Offline),
            (OFFLINE, kind != SectorListKind::Online),
        ] {
            if wanted {
                scan(&tx.open_table(table)?, after, limit, max_bytes, &mut raw)?;
            }
        }
        raw.sort_unstable_by_key(|(k, _)| *k);
        let mut page = SectorPage::default();
        let mut bytes = 0;
        for (_, json) in raw.iter().take(limit) {
            bytes += json.len();
            if bytes > max_bytes && !page.sectors.is_empty() {
                page.cut_by_bytes = true;
                break;
            }
            page.sectors.push(from_json(json)?);
        }
        Ok(page)
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

    /// Records a worker's ping. A new worker is refused while
    /// [`MAX_WORKERS`] records are fresh; stale ones make room.
    pub fn record_ping(&self, info: WorkerInfo) -> Result<()> {
        self.record_ping_at(info, now_secs(), MAX_WORKERS)
    }

    fn record_ping_at(&self, info: WorkerInfo, now: u64, max: u64) -> Result<()> {
        let rec = WorkerRecord {
            last_ping: now,
            info,
        };
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(WORKERS)?;
            let known = t.get(rec.info.name.as_str())?.is_some();
            if !known && t.len()? >= max {
                drop_stale_workers(&mut t, now)?;
                if t.len()? >= max {
                    return Err(DbError::TooManyWorkers { max });
                }
            }
            t.insert(rec.info.name.as_str(), to_json(&rec)?.as_str())?;
        }
        Ok(tx.commit()?)
    }

    /// Removes the worker records not pinged for [`WORKER_TTL_SECS`] before
    /// `now`; how many went.
    pub fn expire_workers(&self, now: u64) -> Result<u64> {
        let tx = self.db.begin_write()?;
        let gone = drop_stale_workers(&mut tx.open_table(WORKERS)?, now)?;
        tx.commit()?;
        Ok(gone)
    }

    /// The worker records, by name.
    pub fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(WORKERS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            out.push(from_json(entry?.1.value())?);
        }
        Ok(out)
    }
}

/// A window PoSt message the poster sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoStSent {
    pub partitions: Vec<u64>,
    pub message: String,
    pub sent_at: u64,
}

impl Db {
    /// Records a window PoSt message of `miner`'s deadline opening at `open`.
    pub fn record_post_sent(&self, miner: u64, open: i64, sent: &PoStSent) -> Result<()> {
        let first = sent.partitions.first().copied().unwrap_or(0);
        let tx = self.db.begin_write()?;
        tx.open_table(POST_SENT)?
            .insert((miner, open, first), to_json(sent)?.as_str())?;
        Ok(tx.commit()?)
    }

    /// The window PoSt messages sent for `miner`'s deadline opening at `open`.
    pub fn post_sent(&self, miner: u64, open: i64) -> Result<Vec<PoStSent>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(POST_SENT)?;
        let mut out = Vec::new();
        for entry in t.range((miner, open, 0)..=(miner, open, u64::MAX))? {
            out.push(from_json(entry?.1.value())?);
        }
        Ok(out)
    }

    /// Forgets the records of deadlines that opened before `before` (a
    /// closed deadline's records are of no further use).
    pub fn prune_post_sent(&self, miner: u64, before: i64) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(POST_SENT)?;
            let old: Vec<(u64, i64, u64)> = t
                .range((miner, i64::MIN, 0)..(miner, before, 0))?
                .map(|e| e.map(|(k, _)| k.value()))
                .collect::<std::result::Result<_, _>>()?;
            for k in old {
                t.remove(k)?;
            }
        }
        Ok(tx.commit()?)
    }
}

impl Db {
    /// Runs `f` on the window PoSt job table in one write transaction,
    /// committed only when `f` succeeds.
    pub fn update_wdpost_jobs<R, E>(
        &self,
        f: impl FnOnce(&mut Table<&str, &str>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E>
    where
        E: From<DbError>,
    {
        let tx = self.db.begin_write().map_err(DbError::from)?;
        let r = {
            let mut t = tx.open_table(WDPOST_JOBS).map_err(DbError::from)?;
            f(&mut t)?
        };
        tx.commit().map_err(DbError::from)?;
        Ok(r)
    }

    /// One window PoSt job record, raw.
    pub fn wdpost_job(&self, id: &str) -> Result<Option<String>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(WDPOST_JOBS)?;
        Ok(t.get(id)?.map(|v| v.value().to_string()))
    }

    /// Every window PoSt job record, raw.
    pub fn wdpost_jobs(&self) -> Result<Vec<(String, String)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(WDPOST_JOBS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_string(), v.value().to_string()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damocles_api::WorkerInfoSummary;
    use filecoin_proofs_api::RegisteredSealProof;

    const POLICY: NumberPolicy = NumberPolicy {
        init_number: 0,
        min_number: None,
        max_number: None,
    };

    fn proof() -> SealProof {
        SealProof(RegisteredSealProof::StackedDrg2KiBV1_1)
    }

    fn path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("data").join("manager.redb")
    }

    #[test]
    fn open_never_makes_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        let err = Db::open(&p).err().unwrap();
        assert!(matches!(err, OpenError::Missing(_)), "{err}");
        assert!(!p.exists(), "open made {}", p.display());

        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"").unwrap();
        let err = Db::open(&p).err().unwrap().to_string();
        assert!(
            err.contains(&p.display().to_string())
                && err.contains("0 bytes")
                && err.contains("backup"),
            "{err}"
        );
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "left as found");

        // A valid redb file that init did not make (no manager tables).
        std::fs::remove_file(&p).unwrap();
        drop(Database::create(&p).unwrap());
        let size = std::fs::metadata(&p).unwrap().len();
        let err = Db::open(&p).err().unwrap();
        assert!(
            matches!(&err, OpenError::NotInitialized { size: s, .. } if *s == size),
            "{err}"
        );
        assert!(err.to_string().contains("daemon init"), "{err}");
    }

    #[test]
    fn create_makes_a_database_once_and_open_keeps_its_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        let db = Db::create(&p).unwrap();
        db.allocate(1000, proof(), POLICY).unwrap().unwrap();
        drop(db);
        let err = Db::create(&p).err().unwrap();
        assert!(matches!(err, OpenError::Exists { .. }), "{err}");
        let db = Db::open(&p).unwrap();
        let next = db.allocate(1000, proof(), POLICY).unwrap().unwrap();
        assert_eq!(next.id.number, 2, "numbers go on after a reopen");
    }

    #[test]
    fn a_database_from_before_the_mark_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        {
            // What `daemon run` used to make: the tables, no mark.
            let db = Database::create(&p).unwrap();
            ensure_tables(&db, &p).unwrap();
        }
        Db::open(&p).unwrap();
        let db = Database::open(&p).unwrap();
        let tx = db.begin_read().unwrap();
        let meta = tx.open_table(META).unwrap();
        assert!(meta.get(INITIALIZED).unwrap().is_some());
    }

    #[test]
    fn a_truncated_database_is_reported_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir);
        let db = Db::create(&p).unwrap();
        db.allocate_batch(1000, proof(), POLICY, 5_000).unwrap();
        drop(db);
        for len in [std::fs::metadata(&p).unwrap().len() / 2, 4096] {
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(len).unwrap();
            drop(f);
            let err = Db::open(&p).err().unwrap();
            let msg = err.to_string();
            assert!(matches!(err, OpenError::Corrupt { .. }), "{msg}");
            assert!(
                msg.starts_with(&format!("database {} is corrupt (", p.display()))
                    && msg.ends_with("); restore it from a backup"),
                "{msg}"
            );
        }
    }

    #[test]
    fn quietly_turns_a_panic_into_an_error() {
        assert_eq!(quietly(|| 7), Ok(7));
        let err = quietly(|| -> u32 { panic!("assertion failed: boom") }).unwrap_err();
        assert_eq!(err, "redb failed: assertion failed: boom");
    }

    #[test]
    fn pages_walk_100k_sectors_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::create(&path(&dir)).unwrap();
        assert_eq!(
            db.allocate_batch(1000, proof(), POLICY, 60_000).unwrap(),
            60_000
        );
        assert_eq!(
            db.allocate_batch(1001, proof(), POLICY, 40_000).unwrap(),
            40_000
        );
        // Some offline: `all` merges both tables in SectorID order.
        let offline: Vec<SectorID> = (1..=100).map(|n| SectorID::new(1000, n * 500)).collect();
        for id in &offline {
            db.move_offline(*id, |s| s.finalized = true).unwrap();
        }

        let walk = |kind: SectorListKind, limit: usize| {
            let (mut after, mut seen, mut pages) = (None, Vec::new(), 0);
            loop {
                let page = db.list_page(kind, after, limit, 8 << 20).unwrap();
                let Some(last) = page.sectors.last() else {
                    return (seen, pages);
                };
                assert!(page.sectors.len() <= limit);
                after = Some(last.id);
                seen.extend(page.sectors.iter().map(|s| s.id));
                pages += 1;
            }
        };
        let (all, pages) = walk(SectorListKind::All, 1000);
        assert_eq!(pages, 100);
        assert_eq!(all.len(), 100_000);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        assert_eq!(all[0], SectorID::new(1000, 1));
        assert_eq!(all[99_999], SectorID::new(1001, 40_000));
        let (off, _) = walk(SectorListKind::Offline, 30);
        assert_eq!(off, offline);
        let (on, _) = walk(SectorListKind::Online, 5000);
        assert_eq!(on.len(), 100_000 - offline.len());
    }

    #[test]
    fn a_page_stops_at_the_byte_cap_with_at_least_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::create(&path(&dir)).unwrap();
        db.allocate_batch(1000, proof(), POLICY, 10_000).unwrap();
        let cap = 1 << 20;
        let page = db
            .list_page(SectorListKind::All, None, usize::MAX, cap)
            .unwrap();
        assert!(page.cut_by_bytes && page.sectors.len() < 10_000);
        let bytes: usize = page
            .sectors
            .iter()
            .map(|s| serde_json::to_string(s).unwrap().len())
            .sum();
        assert!(bytes <= cap && bytes > cap - 1000, "{bytes}");

        let one = db.list_page(SectorListKind::All, None, 10, 1).unwrap();
        assert_eq!(
            one.sectors.len(),
            1,
            "a record larger than the cap still comes"
        );
        let whole = db.list_page(SectorListKind::All, None, 10, cap).unwrap();
        assert!(!whole.cut_by_bytes && whole.sectors.len() == 10);
    }

    fn worker(name: &str) -> WorkerInfo {
        WorkerInfo {
            name: name.into(),
            dest: "127.0.0.1:17890".into(),
            version: "0.1.0".into(),
            summary: WorkerInfoSummary::default(),
        }
    }

    #[test]
    fn worker_records_are_capped_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::create(&path(&dir)).unwrap();
        let t0 = 1_800_000_000;
        for name in ["a", "b", "c"] {
            db.record_ping_at(worker(name), t0, 3).unwrap();
        }
        let err = db.record_ping_at(worker("d"), t0 + 60, 3).unwrap_err();
        assert!(matches!(err, DbError::TooManyWorkers { max: 3 }), "{err}");
        db.record_ping_at(worker("a"), t0 + 60, 3)
            .expect("a known worker pings on");

        // A day later b and c are stale: they make room for d.
        let later = t0 + WORKER_TTL_SECS + 1;
        db.record_ping_at(worker("d"), later, 3).unwrap();
        let mut names: Vec<String> = db
            .workers()
            .unwrap()
            .into_iter()
            .map(|w| w.info.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a", "d"]);

        assert_eq!(db.expire_workers(t0 + 60 + WORKER_TTL_SECS).unwrap(), 1);
        let names: Vec<String> = db
            .workers()
            .unwrap()
            .into_iter()
            .map(|w| w.info.name)
            .collect();
        assert_eq!(names, ["d"]);
    }
}
