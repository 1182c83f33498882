//! One sealing thread running the sealer plan: each step does its work
//! (processors, manager calls), turns the result into an [`Event`], saves the
//! document, and reports the change to the manager. Failures carry a level:
//! temporary ones are retried up to `max_retries` after `recover_interval`;
//! permanent and critical ones pause the thread; abort reports the sector
//! aborted and starts over with a fresh one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use damocles_api::encoding::Base64Bytes;
use damocles_api::rpc::SealerApiClient;
use damocles_api::*;
use filecoin_proofs_api::{SectorId, UnpaddedBytesAmount};
use jsonrpsee::core::ClientError;
use tracing::{info, warn};
use vc_processors::tasks::{self as tasks, prover_id};

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

/// `<location>/data/<kind>/s-t0<miner>-<number>`
fn data_path(location: &Path, kind: &str, id: SectorID) -> PathBuf {
    location
        .join("data")
        .join(kind)
        .join(format!("s-t0{}-{}", id.miner, id.number))
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
                let job = format!("s-t0{}-{}", s.id.miner, s.id.number);
                self.ctrl.working(Some(job), doc.state);
            }
            if doc.state == State::Finished {
                let id = doc.sector.expect("a finished sector has an id").id;
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
                    if let Some(finalized) = self.report(&doc, prev, name, None).await {
                        let id = doc.sector.expect("reported sectors have ids").id;
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
        let c = &self.client;
        let sector = doc.sector;
        let id = sector.map(|s| s.id);
        let paths = |kind: &str| data_path(&self.location, kind, id.expect("allocated"));
        Ok(Some(match doc.state {
            State::Empty => {
                let spec = AllocateSectorSpec {
                    allowed_miners: Some(self.sealing.allowed_miners.clone())
                        .filter(|m| !m.is_empty()),
                    allowed_proof_types: None,
                };
                match c
                    .call("AllocateSector", |c| {
                        let spec = spec.clone();
                        async move { c.allocate_sector(spec, None).await }
                    })
                    .await
                {
                    Ok(Some(s)) => Event::Allocate(s),
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(rpc("AllocateSector", e)),
                }
            }
            State::Allocated => Event::AcquireDeals(vec![]),
            State::DealsAcquired => {
                let s = sector.expect("allocated");
                let size = u64::from(s.proof_type.0.sector_size());
                for kind in ["staged", "sealed"] {
                    std::fs::create_dir_all(paths(kind).parent().expect("has parent"))
                        .map_err(temporary)?;
                }
                std::fs::create_dir_all(paths("cache")).map_err(temporary)?;
                let unpadded =
                    UnpaddedBytesAmount::from(filecoin_proofs_api::PaddedBytesAmount(size));
                let task = tasks::AddPieces {
                    seal_proof_type: s.proof_type.0,
                    pieces: vec![tasks::Piece {
                        piece_file: tasks::PieceFile::Pledge,
                        payload_size: 0,
                        piece_size: unpadded,
                    }],
                    staged_filepath: paths("staged"),
                };
                Event::AddPiece(self.processors.run(task).await.map_err(temporary)?)
            }
            State::PieceAdded => {
                let s = sector.expect("allocated");
                let size = u64::from(s.proof_type.0.sector_size());
                // A CC sector's tree-d is the same for every sector of its size:
                // linked, as damocles does. PC1, PC2 and C1 only read an
                // existing tree-d (the tree library loads it, never rebuilds it).
                match self
                    .processors
                    .static_tree_d(size)
                    .filter(|_| doc.deals.is_empty())
                {
                    Some(src) => {
                        let dest = vc_processors::builtin::tree_d_path(&paths("cache"));
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
                            staged_file: paths("staged"),
                            cache_dir: paths("cache"),
                        };
                        self.processors.run(task).await.map_err(temporary)?;
                    }
                }
                Event::BuildTreeD
            }
            State::TreeDBuilt => {
                let s = sector.expect("allocated");
                Event::AssignTicket(
                    c.call(
                        "AssignTicket",
                        |c| async move { c.assign_ticket(s.id).await },
                    )
                    .await
                    .map_err(|e| rpc("AssignTicket", e))?,
                )
            }
            State::TicketAssigned => {
                let s = sector.expect("allocated");
                // PC1 writes the sealed file from scratch.
                std::fs::File::create(paths("sealed")).map_err(temporary)?;
                let task = tasks::PC1 {
                    registered_proof: s.proof_type.0,
                    cache_path: paths("cache"),
                    in_path: paths("staged"),
                    out_path: paths("sealed"),
                    prover_id: prover_id(s.id.miner),
                    sector_id: SectorId::from(s.id.number),
                    ticket: doc.ticket.expect("ticket assigned").ticket.0,
                    piece_infos: doc.pieces.clone(),
                };
                Event::PC1(self.processors.run(task).await.map_err(temporary)?)
            }
            State::PC1Done => {
                // PC2 rewrites the sealed file in place: a crash half-way leaves
                // it unusable. The marker says so; the retry starts from PC1's
                // output again.
                let marker = self.location.join("data").join(".pc2_running");
                if marker.exists() {
                    // PC1 copied the staged data into the sealed file; PC2
                    // encodes it in place. Start PC2 over from that copy, with
                    // no half-written trees left in the cache.
                    warn!(
                        thread = self.index,
                        "PC2 was interrupted: restoring the sealed file from the staged data"
                    );
                    std::fs::copy(paths("staged"), paths("sealed")).map_err(temporary)?;
                    if let Ok(entries) = std::fs::read_dir(paths("cache")) {
                        for e in entries.flatten() {
                            let n = e.file_name().to_string_lossy().to_string();
                            if n == "p_aux"
                                || n == "t_aux"
                                || n.contains("tree-c")
                                || n.contains("tree-r-last")
                            {
                                let _ = std::fs::remove_file(e.path());
                            }
                        }
                    }
                }
                std::fs::write(&marker, b"").map_err(temporary)?;
                let task = tasks::PC2 {
                    pc1out: doc.pc1out.clone().expect("pc1 done"),
                    cache_dir: paths("cache"),
                    sealed_file: paths("sealed"),
                };
                let out = self.processors.run(task).await.map_err(temporary)?;
                std::fs::remove_file(&marker).map_err(temporary)?;
                Event::PC2(out)
            }
            State::PC2Done => {
                let s = sector.expect("allocated");
                let pc2 = doc.pc2out.clone().expect("pc2 done");
                let info = PreCommitOnChainInfo {
                    comm_r: pc2.comm_r,
                    comm_d: pc2.comm_d,
                    ticket: doc.ticket.expect("ticket"),
                };
                let r = c
                    .call("SubmitPreCommit", |c| async move {
                        c.submit_pre_commit(s, info, false).await
                    })
                    .await
                    .map_err(|e| rpc("SubmitPreCommit", e))?;
                submitted("precommit", r, Event::SubmitPC)?
            }
            State::PCSubmitted => {
                let s = sector.expect("allocated");
                self.until_landed("precommit", Event::CheckPC, Event::ReSubmitPC, || {
                    c.call("PollPreCommitState", |c| async move {
                        c.poll_pre_commit_state(s.id).await
                    })
                })
                .await?
            }
            State::PCLanded => {
                let s = sector.expect("allocated");
                let candidates: Vec<String> = self
                    .attached
                    .iter()
                    .filter(|a| a.writable())
                    .map(|a| a.instance_name())
                    .collect();
                // An empty list would let the manager pick any store, even
                // one attached here read-only.
                if candidates.is_empty() {
                    return Err(Failure::Permanent(anyhow!(
                        "no writable [[attached]] store to persist to (none attached, or all readonly)"
                    )));
                }
                let size = 2 * u64::from(s.proof_type.0.sector_size());
                let cands = candidates.clone();
                let store = c
                    .call("StoreReserveSpace", |c| {
                        let cands = cands.clone();
                        async move { c.store_reserve_space(s.id, size, cands).await }
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
                let name = format!("s-t0{}-{}", s.id.miner, s.id.number);
                let mut files = vec![(paths("sealed"), format!("sealed/{name}"))];
                for f in vc_processors::builtin::persisted_cache_files(u64::from(
                    s.proof_type.0.sector_size(),
                )) {
                    files.push((
                        paths("cache").join(&f),
                        format!("cache/{name}/{}", f.display()),
                    ));
                }
                if let Some(plugin) = &attached.plugin {
                    let plugin = Arc::clone(plugin);
                    let n = self
                        .processors
                        .run_in_process("transfer", move || stores::put_files(&*plugin, &files))
                        .await
                        .map_err(temporary)?;
                    info!(sector = %name, store = %store.name, bytes = n, "persisted through the store plugin");
                    return Ok(Some(Event::Persist(store.name)));
                }
                let route = |src: PathBuf, dest: String| tasks::TransferRoute {
                    src: tasks::TransferItem {
                        store_name: None,
                        uri: src,
                    },
                    dest: tasks::TransferItem {
                        store_name: Some(store.name.clone()),
                        uri: dest.into(),
                    },
                    opt: Some(tasks::TransferOption {
                        is_dir: false,
                        allow_link: false,
                    }),
                };
                let routes = files
                    .into_iter()
                    .map(|(src, dest)| route(src, dest))
                    .collect();
                let task = tasks::Transfer {
                    stores: BTreeMap::from([(
                        store.name.clone(),
                        tasks::TransferStoreInfo {
                            name: store.name.clone(),
                            meta: Some(BTreeMap::from([(
                                "path".to_string(),
                                attached.config.location.display().to_string(),
                            )])),
                        },
                    )]),
                    routes,
                };
                self.processors.run(task).await.map_err(temporary)?;
                Event::Persist(store.name)
            }
            State::Persisted => {
                let s = sector.expect("allocated");
                let instance = doc.persisted_to.clone().expect("persisted");
                let ok = c
                    .call("SubmitPersistedEx", |c| {
                        let i = instance.clone();
                        async move { c.submit_persisted_ex(s.id, i, false).await }
                    })
                    .await
                    .map_err(|e| rpc("SubmitPersistedEx", e))?;
                if !ok {
                    return Err(Failure::Permanent(anyhow!(
                        "the manager found the files persisted to {instance} incomplete"
                    )));
                }
                Event::SubmitPersistance
            }
            State::PersistanceSubmitted => {
                let s = sector.expect("allocated");
                loop {
                    let w = c
                        .call("WaitSeed", |c| async move {
                            c.wait_seed(s.id, Some(s.proof_type)).await
                        })
                        .await
                        .map_err(|e| rpc("WaitSeed", e))?;
                    match (w.should_wait, w.seed) {
                        (false, Some(seed)) => break Event::AssignSeed(seed),
                        _ => {
                            tokio::time::sleep(std::time::Duration::from_secs(w.delay.max(1))).await
                        }
                    }
                }
            }
            State::SeedAssigned => {
                let s = sector.expect("allocated");
                let (cache, sealed) = (paths("cache"), paths("sealed"));
                let (ticket, seed) = (
                    doc.ticket.expect("ticket").ticket.0,
                    doc.seed.expect("seed").seed.0,
                );
                let (pc2, pieces) = (doc.pc2out.clone().expect("pc2"), doc.pieces.clone());
                let started = std::time::Instant::now();
                let c1 = tokio::task::spawn_blocking(move || {
                    vc_processors::builtin::seal_commit_phase1(
                        &cache,
                        &sealed,
                        prover_id(s.id.miner),
                        SectorId::from(s.id.number),
                        ticket,
                        seed,
                        pc2,
                        &pieces,
                    )
                })
                .await
                .map_err(temporary)
                .and_then(|r| r.map_err(temporary));
                self.processors
                    .stage_metrics()
                    .observe("c1", c1.is_ok(), started.elapsed());
                Event::C1(Box::new(c1?))
            }
            State::C1Done => {
                let s = sector.expect("allocated");
                let task = tasks::C2 {
                    c1out: (**doc.c1out.as_ref().expect("c1 done")).clone(),
                    prover_id: prover_id(s.id.miner),
                    sector_id: SectorId::from(s.id.number),
                    miner_id: s.id.miner,
                };
                Event::C2(self.processors.run(task).await.map_err(temporary)?.proof)
            }
            State::C2Done => {
                let s = sector.expect("allocated");
                let proof = ProofOnChainInfo {
                    proof: Base64Bytes(doc.proof.clone().expect("c2 done")),
                };
                let r = c
                    .call("SubmitProof", |c| {
                        let p = proof.clone();
                        async move { c.submit_proof(s.id, p, false).await }
                    })
                    .await
                    .map_err(|e| rpc("SubmitProof", e))?;
                submitted("proof", r, Event::SubmitProof)?
            }
            State::ProofSubmitted => {
                let s = sector.expect("allocated");
                self.until_landed("prove-commit", Event::Finish, Event::ReSubmitProof, || {
                    c.call("PollProofState", |c| async move {
                        c.poll_proof_state(s.id).await
                    })
                })
                .await?
            }
            State::Finished | State::Aborted => return Ok(None),
        }))
    }
}
