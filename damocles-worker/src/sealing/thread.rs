//! One sealing thread running the sealer plan: each step does its work
//! (processors, manager calls), turns the result into an [`Event`], saves the
//! document, and reports the change to the manager. Failures carry a level:
//! temporary ones are retried up to `max_retries` after `recover_interval`;
//! permanent and critical ones pause the thread; abort reports the sector
//! aborted and starts over with a fresh one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use damocles_api::encoding::Base64Bytes;
use damocles_api::rpc::SealerApiClient;
use damocles_api::*;
use damocles_sector::{prover_id, Stage};
use filecoin_proofs_api::{SectorId, UnpaddedBytesAmount};
use jsonrpsee::core::ClientError;
use tracing::{info, warn};
use vc_processors::producer::ProcessorError;
use vc_processors::protocol::ErrorKind;
use vc_processors::tasks;

use super::ctrl::Ctrl;
use super::doc_store::DocStore;
use super::state::{Event, SectorDoc, State};
use crate::config::Sealing;
use crate::manager_client::ManagerClient;
use crate::processors::Processors;
use crate::stores::{self, Attached};

/// How a step failed, as damocles grades it.
#[derive(Debug)]
pub enum Failure {
    /// Try again after `recover_interval`.
    Temporary(anyhow::Error),
    /// Needs a person: the thread pauses.
    Permanent(anyhow::Error),
    /// The sector cannot be finished: report it aborted, start over.
    Abort(String),
}

type Step<T> = std::result::Result<T, Failure>;

fn temporary(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Temporary(e.into())
}

/// A stage's error as a failure level, by the grade the processor gave it:
/// `permanent` needs a person (the thread pauses at once); `retryable`,
/// `timeout`, `cancelled` and `resource` are retried, `resource` saying so.
/// A v1 ext-processor sends no grade: its errors are temporary, as damocles
/// treats every processor error. Builtin processors grade their own errors
/// the same way (`vc_processors::error::classify`).
fn stage_failure(e: anyhow::Error) -> Failure {
    let kind = match e.chain().find_map(|c| c.downcast_ref::<ProcessorError>()) {
        Some(ProcessorError::Failed { kind: None, .. }) => return Failure::Temporary(e),
        Some(from_child) => from_child.kind(),
        None => vc_processors::error::classify(&e),
    };
    match kind {
        ErrorKind::Permanent => Failure::Permanent(e),
        ErrorKind::Resource => {
            Failure::Temporary(e.context("out of resources (memory, disk or device); will retry"))
        }
        ErrorKind::Retryable | ErrorKind::Timeout | ErrorKind::Cancelled | ErrorKind::Unknown => {
            Failure::Temporary(e)
        }
    }
}

/// A field the document must hold in its state. Missing, the document is
/// corrupt: the thread pauses for a person instead of panicking.
fn require<'a, T>(field: &'a Option<T>, what: &str, state: State) -> Step<&'a T> {
    field.as_ref().ok_or_else(|| {
        Failure::Permanent(anyhow!(
            "the sector document has no {what} in state {state} (corrupt document?)"
        ))
    })
}

/// A manager call's error: 11001 aborts the sector, other answers are
/// permanent, transport failures (already retried) are temporary.
fn rpc(what: &str, e: ClientError) -> Failure {
    match &e {
        ClientError::Call(o) if o.code() == ERR_SECTOR_STATE_NOT_FOUND => {
            Failure::Abort(format!("{what}: {}", o.message()))
        }
        ClientError::Call(o) if o.code() == damocles_api::codes::ERR_NOT_READY => {
            Failure::Temporary(anyhow!("{what}: {}", o.message()))
        }
        ClientError::Call(_) => Failure::Permanent(anyhow!("{what}: {e}")),
        _ => Failure::Temporary(anyhow!("{what}: {e}")),
    }
}

/// The answer to SubmitPreCommit / SubmitProof as the next event: accepted
/// moves on, rejected aborts the sector, anything else needs a person.
fn submitted(what: &str, r: SubmitResp, ok: Event) -> Step<Event> {
    let desc = r.desc.unwrap_or_default();
    match r.res {
        SubmitResult::Accepted | SubmitResult::DuplicateSubmit => Ok(ok),
        SubmitResult::Rejected => Err(Failure::Abort(format!("{what} rejected: {desc}"))),
        other => Err(Failure::Permanent(anyhow!("{what} {other:?}: {desc}"))),
    }
}

/// What a round of [`SealingThread::run_sector`] ended with.
#[derive(Debug)]
pub enum Outcome {
    Finished(SectorID),
    Aborted(SectorID, String),
    /// The manager had nothing to allocate.
    Idle,
    /// A permanent failure: the thread waits for a person.
    Paused(String),
}

pub struct SealingThread {
    pub index: usize,
    pub location: PathBuf,
    pub sealing: Sealing,
    pub instance: String,
    pub ctrl: Arc<Ctrl>,
    store: DocStore,
    client: ManagerClient,
    processors: Arc<Processors>,
    attached: Vec<Attached>,
}

/// Creates a sealing location's layout (data directories, sector database)
/// and returns the sector document it holds.
pub fn init_location(location: &Path) -> anyhow::Result<SectorDoc> {
    for kind in ["staged", "sealed", "cache"] {
        let d = location.join("data").join(kind);
        std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
    }
    DocStore::open(location)?.load()
}

/// `<location>/data/<kind>/<sector name>`
fn data_path(location: &Path, kind: &str, id: SectorID) -> PathBuf {
    location.join("data").join(kind).join(id.to_string())
}

impl SealingThread {
    pub fn open(
        index: usize,
        location: PathBuf,
        sealing: Sealing,
        instance: String,
        client: ManagerClient,
        processors: Arc<Processors>,
        attached: Vec<Attached>,
    ) -> anyhow::Result<SealingThread> {
        std::fs::create_dir_all(&location)
            .with_context(|| format!("create sealing location {}", location.display()))?;
        let store = DocStore::open(&location)?;
        let ctrl = Arc::new(Ctrl::new(index, location.display().to_string()));
        let seen = Arc::clone(&ctrl);
        let client = client.observed(Arc::new(move |call, e| {
            seen.error(Some(format!("{call}: manager unreachable, retrying: {e}")))
        }));
        Ok(SealingThread {
            index,
            location,
            sealing,
            instance,
            ctrl,
            store,
            client,
            processors,
            attached,
        })
    }

    pub fn doc(&self) -> anyhow::Result<SectorDoc> {
        self.store.load()
    }

    /// `WorkerResume` with a state: set it as is, without checking the
    /// transition (as damocles does; for an operator who knows better).
    pub fn force_state(&self, state: State) -> anyhow::Result<()> {
        let mut doc = self.store.load()?;
        warn!(thread = self.index, from = %doc.state, to = %state, "state set by the operator");
        doc.state = state;
        doc.retries = 0;
        doc.last_error = None;
        self.store.save(&doc)
    }

    /// Waits while paused (by the operator, or with `why` after a failure);
    /// applies a state the resume forces.
    pub async fn pause(&self, why: Option<String>) -> anyhow::Result<()> {
        match self.ctrl.wait_while_paused(why).await {
            Some(state) => self.force_state(state)?,
            // Resumed as is: the state's retries start over.
            None => {
                let mut doc = self.store.load()?;
                if doc.retries != 0 {
                    doc.retries = 0;
                    self.store.save(&doc)?;
                }
            }
        }
        Ok(())
    }

    /// Drives the thread's sector (a saved one first) until it finishes,
    /// aborts, the manager has none, or a failure pauses the thread.
    pub async fn run_sector(&mut self) -> anyhow::Result<Outcome> {
        let mut doc = self.store.load()?;
        if doc.state.is_terminal() {
            doc = SectorDoc::default();
            self.store.save(&doc)?;
        }
        loop {
            if self.ctrl.pause_requested() {
                self.pause(None).await?;
                doc = self.store.load()?;
            }
            // Asking the manager for a sector is not work: an idle thread
            // stays idle in `worker list` until it has one.
            if let Some(s) = doc.sector {
                self.ctrl.working(Some(s.id.to_string()), doc.state);
            }
            if doc.state == State::Finished {
                let Some(AllocatedSector { id, .. }) = doc.sector else {
                    return Ok(Outcome::Paused(
                        "the sector document is Finished with no sector (corrupt document?)".into(),
                    ));
                };
                self.client
                    .call("ReportFinalized", |c| async move {
                        c.report_finalized(id).await
                    })
                    .await
                    .map_err(|e| anyhow!("ReportFinalized: {e}"))?;
                self.wipe(id);
                self.store.save(&SectorDoc::default())?;
                return Ok(Outcome::Finished(id));
            }
            let prev = doc.state;
            match self.step(&doc).await {
                Ok(None) => {
                    self.ctrl.error(None);
                    self.ctrl.idle();
                    return Ok(Outcome::Idle);
                }
                Ok(Some(event)) => {
                    let name = event.name();
                    doc.apply(event)
                        .map_err(|e| anyhow!("sealing thread {}: {e}", self.index))?;
                    self.store.save(&doc)?;
                    self.ctrl.error(None);
                    info!(thread = self.index, from = %prev, to = %doc.state, "sector state");
                    let finalized = self.report(&doc, prev, name, None).await;
                    // `report` only answers for a document with a sector.
                    if let (Some(finalized), Some(AllocatedSector { id, .. })) =
                        (finalized, doc.sector)
                    {
                        return self
                            .abort(&mut doc, format!("the manager finalized it: {finalized}"))
                            .await
                            .map(|_| Outcome::Aborted(id, finalized));
                    }
                }
                Err(Failure::Temporary(e)) if doc.sector.is_none() => {
                    // No sector yet (the manager unreachable, say): nothing to
                    // lose by trying again, and nothing a person must fix.
                    let msg = format!("{e:#}");
                    warn!(thread = self.index, error = %msg, "no sector yet, trying again");
                    self.ctrl.error(Some(msg));
                    tokio::time::sleep(self.sealing.recover_interval).await;
                }
                Err(Failure::Temporary(e)) => {
                    doc.retries += 1;
                    doc.last_error = Some(format!("{e:#}"));
                    self.ctrl.error(doc.last_error.clone());
                    self.store.save(&doc)?;
                    if doc.retries > self.sealing.max_retries {
                        let msg = format!("{} after {} tries: {e:#}", doc.state, doc.retries);
                        self.report(&doc, prev, "Retry", Some(("Permanent", &msg)))
                            .await;
                        return Ok(Outcome::Paused(msg));
                    }
                    warn!(thread = self.index, state = %doc.state, retry = doc.retries, error = %format!("{e:#}"), "temporary failure, retrying");
                    self.report(&doc, prev, "Retry", Some(("Temporary", &format!("{e:#}"))))
                        .await;
                    tokio::time::sleep(self.sealing.recover_interval).await;
                }
                Err(Failure::Permanent(e)) => {
                    let msg = format!("{}: {e:#}", doc.state);
                    doc.last_error = Some(msg.clone());
                    self.store.save(&doc)?;
                    self.report(&doc, prev, "Fail", Some(("Permanent", &msg)))
                        .await;
                    return Ok(Outcome::Paused(msg));
                }
                Err(Failure::Abort(reason)) => {
                    let Some(sector) = doc.sector else {
                        return Ok(Outcome::Paused(format!(
                            "abort before allocation: {reason}"
                        )));
                    };
                    self.client
                        .call("ReportAborted", |c| {
                            let r = reason.clone();
                            async move { c.report_aborted(sector.id, r).await }
                        })
                        .await
                        .ok();
                    self.abort(&mut doc, reason.clone()).await?;
                    return Ok(Outcome::Aborted(sector.id, reason));
                }
            }
        }
    }

    async fn abort(&mut self, doc: &mut SectorDoc, reason: String) -> anyhow::Result<()> {
        warn!(thread = self.index, %reason, "sector aborted");
        if let Some(s) = doc.sector {
            self.wipe(s.id);
        }
        let _ = doc.apply(Event::Abort(reason));
        self.store.save(doc)?;
        Ok(())
    }

    /// ReportState; returns the abort reason if the manager says the sector
    /// is finalized there.
    async fn report(
        &self,
        doc: &SectorDoc,
        prev: State,
        event: &str,
        failure: Option<(&str, &str)>,
    ) -> Option<String> {
        let sector = doc.sector?;
        let req = ReportStateReq {
            worker: WorkerIdentifier {
                instance: self.instance.clone(),
                location: self.location.display().to_string(),
            },
            state_change: SectorStateChange {
                prev: prev.name().into(),
                next: doc.state.name().into(),
                event: event.into(),
            },
            failure: failure.map(|(level, desc)| SectorFailure {
                level: level.into(),
                desc: desc.into(),
            }),
        };
        match self
            .client
            .call("ReportState", |c| {
                let req = req.clone();
                async move { c.report_state(sector.id, req).await }
            })
            .await
        {
            Ok(r) if r.finalized && !doc.state.is_terminal() => {
                Some(r.abort_reason.unwrap_or_default())
            }
            Ok(_) => None,
            Err(e) => {
                warn!(thread = self.index, error = %e, "ReportState failed");
                None
            }
        }
    }

    fn wipe(&self, id: SectorID) {
        for kind in ["staged", "sealed", "cache"] {
            let p = data_path(&self.location, kind, id);
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }

    /// Polls a submitted message every `rpc_polling_interval` until it leaves
    /// the pool: `landed` when it took effect, `resubmit` when it failed.
    async fn until_landed<F, Fut>(
        &self,
        what: &str,
        landed: Event,
        resubmit: Event,
        poll: F,
    ) -> Step<Event>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<PollStateResp, ClientError>>,
    {
        loop {
            let r = poll().await.map_err(|e| rpc(what, e))?;
            let desc = r.desc.unwrap_or_default();
            match r.state {
                OnChainState::Landed => return Ok(landed),
                OnChainState::Pending | OnChainState::Packed => {
                    tokio::time::sleep(self.sealing.rpc_polling_interval).await
                }
                OnChainState::Failed => return Ok(resubmit),
                OnChainState::ShouldAbort => return Err(Failure::Abort(format!("{what}: {desc}"))),
                other => return Err(Failure::Permanent(anyhow!("{what} {other:?}: {desc}"))),
            }
        }
    }

    /// Does the work of the current state; `None` when there is nothing to do.
    async fn step(&self, doc: &SectorDoc) -> Step<Option<Event>> {
        let event = match doc.state {
            State::Empty => return self.allocate().await,
            State::Allocated => Event::AcquireDeals(vec![]),
            State::DealsAcquired => self.add_pieces(doc).await?,
            State::PieceAdded => self.tree_d(doc).await?,
            State::TreeDBuilt => self.assign_ticket(doc).await?,
            State::TicketAssigned => self.pc1(doc).await?,
            State::PC1Done => self.pc2(doc).await?,
            State::PC2Done => self.submit_precommit(doc).await?,
            State::PCSubmitted => self.wait_precommit(doc).await?,
            State::PCLanded => self.persist(doc).await?,
            State::Persisted => self.submit_persisted(doc).await?,
            State::PersistanceSubmitted => self.wait_seed(doc).await?,
            State::SeedAssigned => self.c1(doc).await?,
            State::C1Done => self.c2(doc).await?,
            State::C2Done => self.submit_proof(doc).await?,
            State::ProofSubmitted => self.wait_proof(doc).await?,
            State::Finished | State::Aborted => return Ok(None),
        };
        Ok(Some(event))
    }

    /// `<location>/data/<kind>/<sector name>` of the document's sector.
    fn path(&self, sector: &AllocatedSector, kind: &str) -> PathBuf {
        data_path(&self.location, kind, sector.id)
    }

    async fn allocate(&self) -> Step<Option<Event>> {
        let spec = AllocateSectorSpec {
            allowed_miners: Some(self.sealing.allowed_miners.clone()).filter(|m| !m.is_empty()),
            allowed_proof_types: None,
        };
        match self
            .client
            .call("AllocateSector", |c| {
                let spec = spec.clone();
                async move { c.allocate_sector(spec, None).await }
            })
            .await
        {
            Ok(Some(s)) => Ok(Some(Event::Allocate(s))),
            Ok(None) => Ok(None),
            Err(e) => Err(rpc("AllocateSector", e)),
        }
    }

    async fn add_pieces(&self, doc: &SectorDoc) -> Step<Event> {
        let s = require(&doc.sector, "sector", doc.state)?;
        let size = u64::from(s.proof_type.0.sector_size());
        let data = self.location.join("data");
        for dir in [
            data.join("staged"),
            data.join("sealed"),
            self.path(s, "cache"),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("create {}", dir.display()))
                .map_err(temporary)?;
        }
        let unpadded = UnpaddedBytesAmount::from(filecoin_proofs_api::PaddedBytesAmount(size));
        let task = tasks::AddPieces {
            seal_proof_type: s.proof_type.0,
            pieces: vec![tasks::Piece {
                piece_file: tasks::PieceFile::Pledge,
                payload_size: 0,
                piece_size: unpadded,
            }],
            staged_filepath: self.path(s, "staged"),
        };
        Ok(Event::AddPiece(self.run(task).await?))
    }

    async fn tree_d(&self, doc: &SectorDoc) -> Step<Event> {
        let s = require(&doc.sector, "sector", doc.state)?;
        let size = u64::from(s.proof_type.0.sector_size());
        // A CC sector's tree-d is the same for every sector of its size:
        // linked, as damocles does. PC1, PC2 and C1 only read an existing
        // tree-d (the tree library loads it, never rebuilds it).
        match self
            .processors
            .static_tree_d(size)
            .filter(|_| doc.deals.is_empty())
        {
            Some(src) => {
                let dest = vc_processors::builtin::tree_d_path(&self.path(s, "cache"));
                let _ = std::fs::remove_file(&dest);
                std::os::unix::fs::symlink(src, &dest).map_err(|e| {
                    temporary(anyhow!(
                        "link processors.static_tree_d {} at {}: {e}",
                        src.display(),
                        dest.display()
                    ))
                })?;
                info!(thread = self.index, from = %src.display(), "tree-d linked from processors.static_tree_d");
            }
            None => {
                let task = tasks::TreeD {
                    registered_proof: s.proof_type.0,
                    staged_file: self.path(s, "staged"),
                    cache_dir: self.path(s, "cache"),
                };
                self.run(task).await?;
            }
        }
        Ok(Event::BuildTreeD)
    }

    async fn assign_ticket(&self, doc: &SectorDoc) -> Step<Event> {
        let id = require(&doc.sector, "sector", doc.state)?.id;
        let ticket = self
            .client
            .call("AssignTicket", |c| async move { c.assign_ticket(id).await })
            .await
            .map_err(|e| rpc("AssignTicket", e))?;
        Ok(Event::AssignTicket(ticket))
    }

    async fn pc1(&self, doc: &SectorDoc) -> Step<Event> {
        let s = require(&doc.sector, "sector", doc.state)?;
        // PC1 writes the sealed file from scratch.
        let sealed = self.path(s, "sealed");
        std::fs::File::create(&sealed)
            .with_context(|| format!("create {}", sealed.display()))
            .map_err(temporary)?;
        let task = tasks::PC1 {
            registered_proof: s.proof_type.0,
            cache_path: self.path(s, "cache"),
            in_path: self.path(s, "staged"),
            out_path: sealed,
            prover_id: prover_id(s.id.miner),
            sector_id: SectorId::from(s.id.number),
            ticket: require(&doc.ticket, "ticket", doc.state)?.ticket.0,
            piece_infos: doc.pieces.clone(),
        };
        Ok(Event::PC1(self.run(task).await?))
    }

    /// PC2 rewrites the sealed file in place: a crash half-way leaves it
    /// unusable. A marker file says PC2 is running; a PC2 that finds it
    /// starts over from PC1's output (see [`Self::undo_interrupted_pc2`]).
    async fn pc2(&self, doc: &SectorDoc) -> Step<Event> {
        let s = require(&doc.sector, "sector", doc.state)?;
        let marker = self.location.join("data").join(".pc2_running");
        if marker.exists() {
            self.undo_interrupted_pc2(s).map_err(temporary)?;
        }
        std::fs::write(&marker, b"")
            .with_context(|| format!("write {}", marker.display()))
            .map_err(temporary)?;
        let task = tasks::PC2 {
            pc1out: require(&doc.pc1out, "pc1 output", doc.state)?.clone(),
            cache_dir: self.path(s, "cache"),
            sealed_file: self.path(s, "sealed"),
        };
        let out = self.run(task).await?;
        std::fs::remove_file(&marker)
            .with_context(|| format!("remove {}", marker.display()))
            .map_err(temporary)?;
        Ok(Event::PC2(out))
    }

    /// PC1 copied the staged data into the sealed file; PC2 encodes it in
    /// place. Restores that copy and removes PC2's half-written outputs, so
    /// PC2 can start over.
    fn undo_interrupted_pc2(&self, s: &AllocatedSector) -> anyhow::Result<()> {
        warn!(
            thread = self.index,
            "PC2 was interrupted: restoring the sealed file from the staged data"
        );
        let (staged, sealed) = (self.path(s, "staged"), self.path(s, "sealed"));
        std::fs::copy(&staged, &sealed)
            .with_context(|| format!("restore {} from {}", sealed.display(), staged.display()))?;
        if let Ok(entries) = std::fs::read_dir(self.path(s, "cache")) {
            for e in entries.flatten() {
                if damocles_sector::is_pc2_output(&e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    async fn submit_precommit(&self, doc: &SectorDoc) -> Step<Event> {
        let s = *require(&doc.sector, "sector", doc.state)?;
        let pc2 = require(&doc.pc2out, "pc2 output", doc.state)?;
        let info = PreCommitOnChainInfo {
            comm_r: pc2.comm_r,
            comm_d: pc2.comm_d,
            ticket: *require(&doc.ticket, "ticket", doc.state)?,
        };
        let r = self
            .client
            .call("SubmitPreCommit", |c| async move {
                c.submit_pre_commit(s, info, false).await
            })
            .await
            .map_err(|e| rpc("SubmitPreCommit", e))?;
        submitted("precommit", r, Event::SubmitPC)
    }

    async fn wait_precommit(&self, doc: &SectorDoc) -> Step<Event> {
        let id = require(&doc.sector, "sector", doc.state)?.id;
        self.until_landed("precommit", Event::CheckPC, Event::ReSubmitPC, || {
            self.client.call("PollPreCommitState", |c| async move {
                c.poll_pre_commit_state(id).await
            })
        })
        .await
    }

    /// Asks the manager for a store among the writable attached ones and
    /// copies the sector's files there.
    async fn persist(&self, doc: &SectorDoc) -> Step<Event> {
        let s = require(&doc.sector, "sector", doc.state)?;
        let id = s.id;
        let candidates: Vec<String> = self
            .attached
            .iter()
            .filter(|a| a.writable())
            .map(|a| a.instance_name())
            .collect();
        // An empty list would let the manager pick any store, even one
        // attached here read-only.
        if candidates.is_empty() {
            return Err(Failure::Permanent(anyhow!(
                "no writable [[attached]] store to persist to (none attached, or all readonly)"
            )));
        }
        let sector_size = u64::from(s.proof_type.0.sector_size());
        let cands = candidates.clone();
        let store = self
            .client
            .call("StoreReserveSpace", |c| {
                let cands = cands.clone();
                async move { c.store_reserve_space(id, 2 * sector_size, cands).await }
            })
            .await
            .map_err(|e| rpc("StoreReserveSpace", e))?
            .ok_or_else(|| {
                temporary(anyhow!(
                    "the manager has no writable persist store with room among {candidates:?}"
                ))
            })?;
        let attached = self
            .attached
            .iter()
            .find(|a| a.writable() && a.instance_name() == store.name)
            .ok_or_else(|| {
                Failure::Permanent(anyhow!(
                    "the manager chose store {:?}, which is not attached here writable",
                    store.name
                ))
            })?;
        let files = stores::persist_files(
            &self.path(s, "sealed"),
            &self.path(s, "cache"),
            id,
            sector_size,
        );
        let written = attached
            .persist(&self.processors, files)
            .await
            .map_err(stage_failure)?;
        if let Some(bytes) = written {
            info!(sector = %id, store = %store.name, bytes, "persisted through the store plugin");
        }
        Ok(Event::Persist(store.name))
    }

    async fn submit_persisted(&self, doc: &SectorDoc) -> Step<Event> {
        let id = require(&doc.sector, "sector", doc.state)?.id;
        let instance = require(&doc.persisted_to, "persist store", doc.state)?.clone();
        let ok = self
            .client
            .call("SubmitPersistedEx", |c| {
                let i = instance.clone();
                async move { c.submit_persisted_ex(id, i, false).await }
            })
            .await
            .map_err(|e| rpc("SubmitPersistedEx", e))?;
        if !ok {
            return Err(Failure::Permanent(anyhow!(
                "the manager found the files persisted to {instance} incomplete"
            )));
        }
        Ok(Event::SubmitPersistance)
    }

    async fn wait_seed(&self, doc: &SectorDoc) -> Step<Event> {
        let s = *require(&doc.sector, "sector", doc.state)?;
        loop {
            let w = self
                .client
                .call("WaitSeed", |c| async move {
                    c.wait_seed(s.id, Some(s.proof_type)).await
                })
                .await
                .map_err(|e| rpc("WaitSeed", e))?;
            match (w.should_wait, w.seed) {
                (false, Some(seed)) => return Ok(Event::AssignSeed(seed)),
                _ => tokio::time::sleep(std::time::Duration::from_secs(w.delay.max(1))).await,
            }
        }
    }

    /// C1 has no task type (it only reads local files and is quick): it runs
    /// in this process, through the same door as every stage.
    async fn c1(&self, doc: &SectorDoc) -> Step<Event> {
        let s = require(&doc.sector, "sector", doc.state)?;
        let (cache, sealed) = (self.path(s, "cache"), self.path(s, "sealed"));
        let (ticket, seed) = (
            require(&doc.ticket, "ticket", doc.state)?.ticket.0,
            require(&doc.seed, "seed", doc.state)?.seed.0,
        );
        let pc2 = require(&doc.pc2out, "pc2 output", doc.state)?.clone();
        let pieces = doc.pieces.clone();
        let id = s.id;
        let c1 = self
            .processors
            .run_in_process(Stage::C1, move || {
                vc_processors::builtin::seal_commit_phase1(
                    &cache,
                    &sealed,
                    prover_id(id.miner),
                    SectorId::from(id.number),
                    ticket,
                    seed,
                    pc2,
                    &pieces,
                )
            })
            .await
            .map_err(stage_failure)?;
        Ok(Event::C1(Box::new(c1)))
    }

    async fn c2(&self, doc: &SectorDoc) -> Step<Event> {
        let s = require(&doc.sector, "sector", doc.state)?;
        let task = tasks::C2 {
            c1out: (**require(&doc.c1out, "c1 output", doc.state)?).clone(),
            prover_id: prover_id(s.id.miner),
            sector_id: SectorId::from(s.id.number),
            miner_id: s.id.miner,
        };
        Ok(Event::C2(self.run(task).await?.proof))
    }

    async fn submit_proof(&self, doc: &SectorDoc) -> Step<Event> {
        let id = require(&doc.sector, "sector", doc.state)?.id;
        let proof = ProofOnChainInfo {
            proof: Base64Bytes(require(&doc.proof, "proof", doc.state)?.clone()),
        };
        let r = self
            .client
            .call("SubmitProof", |c| {
                let p = proof.clone();
                async move { c.submit_proof(id, p, false).await }
            })
            .await
            .map_err(|e| rpc("SubmitProof", e))?;
        submitted("proof", r, Event::SubmitProof)
    }

    async fn wait_proof(&self, doc: &SectorDoc) -> Step<Event> {
        let id = require(&doc.sector, "sector", doc.state)?.id;
        self.until_landed("prove-commit", Event::Finish, Event::ReSubmitProof, || {
            self.client.call(
                "PollProofState",
                |c| async move { c.poll_proof_state(id).await },
            )
        })
        .await
    }

    /// Runs a stage's task; its error becomes a failure by its grade.
    async fn run<T>(&self, task: T) -> Step<T::Output>
    where
        T: vc_processors::Task + Send + 'static,
        T::Output: Send + 'static,
        vc_processors::builtin::BuiltinProcessor: vc_processors::Processor<T>,
    {
        self.processors.run(task).await.map_err(stage_failure)
    }
}
