//! A `plan = "wdpost"` thread: a worker-prover. It takes window PoSt jobs
//! from a manager running `daemon run --worker-prover` (`Venus.WdPoSt*`),
//! keeps each alive with a heartbeat every 3 s, proves it with the
//! `window_post` processor (builtin or `[[processors.window_post]]`) from
//! the `[[attached]]` stores the job names (a plugin store's sectors are
//! fetched by ranged reads: the cache files PoSt reads and the challenged
//! segments of the sealed file, into `<location>/post-fetch`, removed after
//! the proof), and reports the result. A
//! manager without `--worker-prover` answers "method not found": the
//! thread idles. Nothing is persisted: a job lost in a crash fails on the
//! manager by heartbeat timeout and is handed out again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use damocles_api::wdpost::{
    AllocateWdPoStJobSpec, WdPoStAllocatedJob, WdPoStApiClient, WindowPoStOutput,
};
use damocles_objstore::Store;
use damocles_post_fetch::FetchedTask;
use damocles_sector::{objects, SectorID};
use jsonrpsee::core::client::Error as ClientError;
use tracing::{info, info_span, warn, Instrument};
use vc_processors::tasks::{PoStReplicaInfo, WindowPoSt};

use super::ctrl::Ctrl;
use super::state::State;
use crate::config::Sealing;
use crate::manager_client::ManagerClient;
use crate::processors::Processors;
use crate::stores::Attached;

/// damocles' heartbeat interval.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);
/// JSON-RPC "method not found".
const METHOD_NOT_FOUND: i32 = -32601;

/// Stops a task when its owner's turn ends, however it ends (an error, a
/// panic, a cancelled future): a job's heartbeat must not outlive its turn.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct WdPostThread {
    pub ctrl: Arc<Ctrl>,
    sealing: Sealing,
    instance: String,
    client: ManagerClient,
    processors: Arc<Processors>,
    attached: Vec<Attached>,
    /// Where sectors of plugin stores are fetched for a proof.
    fetch_root: PathBuf,
    /// The manager said "method not found" last time (logged once).
    manager_without_jobs: bool,
}

/// What one turn of the thread did.
pub enum Turn {
    /// No job: wait `recover_interval`.
    Idle,
    /// A job was proven (or failed) and reported.
    Done,
}

/// The proof type names a worker for `sizes` takes, as damocles' worker
/// sends them (winning, window, window V1_2 per size); empty means any.
pub fn allowed_proof_types(sizes: &[u64]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for &size in sizes {
        let s = match size {
            2048 => "2KiB",
            0x80_0000 => "8MiB",
            0x2000_0000 => "512MiB",
            0x8_0000_0000 => "32GiB",
            0x10_0000_0000 => "64GiB",
            other => bail!("sector size {other} has no PoSt proof type"),
        };
        out.push(format!("StackedDrgWinning{s}V1"));
        out.push(format!("StackedDrgWindow{s}V1"));
        out.push(format!("StackedDrgWindow{s}V1_2"));
    }
    Ok(out)
}

impl WdPostThread {
    pub fn new(
        index: usize,
        location: PathBuf,
        sealing: Sealing,
        instance: String,
        client: ManagerClient,
        processors: Arc<Processors>,
        attached: Vec<Attached>,
    ) -> Result<WdPostThread> {
        std::fs::create_dir_all(&location)
            .with_context(|| format!("create {}", location.display()))?;
        let fetch_root = location.join("post-fetch");
        // Copies a killed worker left behind belong to jobs long failed.
        if fetch_root.exists() {
            std::fs::remove_dir_all(&fetch_root)
                .with_context(|| format!("clear {}", fetch_root.display()))?;
        }
        allowed_proof_types(&sealing.allowed_sizes)
            .with_context(|| format!("sealing_thread[{index}] (plan wdpost): allowed_sizes"))?;
        Ok(WdPostThread {
            ctrl: Arc::new(Ctrl::with_plan(
                index,
                location.display().to_string(),
                "wdpost",
            )),
            sealing,
            instance,
            client,
            processors,
            attached,
            fetch_root,
            manager_without_jobs: false,
        })
    }

    /// How long to wait after an idle turn or an error.
    pub fn idle_wait(&self) -> Duration {
        self.sealing.recover_interval
    }

    /// Takes one job, proves it and reports it; `Idle` when there is none.
    pub async fn turn(&mut self) -> Result<Turn> {
        let spec = AllocateWdPoStJobSpec {
            allowed_miners: Some(self.sealing.allowed_miners.clone()),
            allowed_proof_types: Some(allowed_proof_types(&self.sealing.allowed_sizes)?),
        };
        let jobs = match self
            .client
            .raw()
            .wdpost_allocate_jobs(spec, 1, self.instance.clone())
            .await
        {
            Ok(jobs) => {
                self.manager_without_jobs = false;
                jobs
            }
            Err(ClientError::Call(e)) if e.code() == METHOD_NOT_FOUND => {
                if !self.manager_without_jobs {
                    warn!(thread = self.ctrl.index, "the manager serves no window PoSt jobs (it runs without --worker-prover); idle");
                    self.manager_without_jobs = true;
                }
                return Ok(Turn::Idle);
            }
            Err(e) => return Err(anyhow!("allocate a wdpost job: {e}")),
        };
        let Some(job) = jobs.into_iter().next() else {
            self.ctrl.idle();
            return Ok(Turn::Idle);
        };
        let span = info_span!("wdpost", thread = self.ctrl.index, job = %job.id);
        self.run_job(job).instrument(span).await?;
        Ok(Turn::Done)
    }

    async fn run_job(&self, job: WdPoStAllocatedJob) -> Result<()> {
        info!(
            miner = job.input.miner_id,
            sectors = job.input.sectors.len(),
            "wdpost job allocated"
        );
        self.ctrl.working(Some(job.id.clone()), State::Allocated);
        // Told by a heartbeat that the job is no longer ours.
        let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<String>();
        let _heartbeat = AbortOnDrop({
            let (client, id, instance) = (
                self.client.raw().clone(),
                job.id.clone(),
                self.instance.clone(),
            );
            tokio::spawn(async move {
                let mut every = tokio::time::interval(HEARTBEAT_EVERY);
                every.tick().await;
                loop {
                    every.tick().await;
                    match client
                        .wdpost_heartbeat_jobs(vec![id.clone()], instance.clone())
                        .await
                    {
                        Ok(()) => {}
                        Err(ClientError::Call(e)) if e.message().contains("is not running") => {
                            let _ = lost_tx.send(e.message().to_string());
                            return;
                        }
                        Err(e) => warn!(job = %id, error = %e, "wdpost heartbeat failed"),
                    }
                }
            })
        });
        let result = tokio::select! {
            r = self.prove(&job) => r,
            Ok(why) = lost_rx => {
                // The manager timed it out and hands it to another worker:
                // a report from here could only end that worker's try.
                warn!(reason = %why, "the manager took this job back (a heartbeat came too late): abandoned, not reported");
                self.ctrl.error(Some(format!("job taken back by the manager: {why}")));
                self.ctrl.idle();
                return Ok(());
            }
        };
        self.ctrl.working(Some(job.id.clone()), State::Finished);
        let (output, reason) = match result {
            Ok(out) => {
                info!(faults = ?out.faults, "wdpost job proven");
                self.ctrl.error(None);
                (Some(out), String::new())
            }
            Err(e) => {
                let reason = format!("{e:#}");
                warn!(error = %reason, "wdpost job failed");
                self.ctrl.error(Some(reason.clone()));
                (None, reason)
            }
        };
        let mut tries = 0;
        let reported = loop {
            let (id, output, reason) = (job.id.clone(), output.clone(), reason.clone());
            match self
                .client
                .call("WdPoStFinishJob", |c| {
                    let (id, output, reason) = (id.clone(), output.clone(), reason.clone());
                    async move { c.wdpost_finish_job(id, output, reason).await }
                })
                .await
            {
                Ok(()) => break Ok(()),
                Err(e) if tries < self.sealing.max_retries => {
                    tries += 1;
                    warn!(error = %e, attempt = tries, "reporting the wdpost job failed; retrying");
                    tokio::time::sleep(self.sealing.recover_interval).await;
                }
                Err(e) => break Err(anyhow!("report wdpost job {}: {e}", job.id)),
            }
        };
        self.ctrl.idle();
        reported
    }

    /// The job's window PoSt, from the stores it names.
    async fn prove(&self, job: &WdPoStAllocatedJob) -> Result<WindowPoStOutput> {
        let input = &job.input;
        let proof_type =
            serde_json::from_value(serde_json::Value::String(input.proof_type.clone()))
                .map_err(|_| anyhow!("unknown proof type {:?}", input.proof_type))?;
        let mut replicas = Vec::with_capacity(input.sectors.len());
        let mut remote: BTreeMap<u64, Arc<dyn Store>> = BTreeMap::new();
        for s in &input.sectors {
            let id = SectorID {
                miner: input.miner_id,
                number: s.sector_id,
            };
            let (sealed, cache) = if s.upgrade {
                (objects::update(id), objects::update_cache_dir(id))
            } else {
                (objects::sealed(id), objects::cache_dir(id))
            };
            let store = self.attached_named(&s.accesses.sealed_file)?;
            let (sealed_file, cache_dir) = match &store.plugin {
                None => (
                    store.config.location.join(&sealed),
                    self.local(&s.accesses.cache_dir, &cache)?,
                ),
                Some(plugin) => {
                    if s.upgrade {
                        bail!("sector {id}: snap-upgraded sectors are proven from directory stores only, and {} is a plugin store", s.accesses.sealed_file);
                    }
                    if s.accesses.cache_dir != s.accesses.sealed_file {
                        bail!("sector {id}: its sealed file is in plugin store {}, so its cache must be there too, not in {}", s.accesses.sealed_file, s.accesses.cache_dir);
                    }
                    remote.insert(s.sector_id, Arc::clone(plugin));
                    // Replaced by the fetched copies below.
                    (PathBuf::from(&sealed), PathBuf::from(&cache))
                }
            };
            replicas.push(PoStReplicaInfo {
                sector_id: s.sector_id.into(),
                comm_r: s.comm_r,
                sealed_file,
                cache_dir,
            });
        }
        let mut task = WindowPoSt {
            miner_id: input.miner_id,
            proof_type,
            replicas,
            seed: input.seed,
        };
        let _fetched = if remote.is_empty() {
            None
        } else {
            let fetched = self.fetch(&task, remote).await?;
            if !fetched.failed.is_empty() {
                // As the processor reports sectors whose files are gone:
                // faults, which the manager skips on its next attempt.
                return Ok(WindowPoStOutput {
                    proofs: vec![],
                    faults: fetched.failed.keys().copied().collect(),
                });
            }
            for r in &mut task.replicas {
                if let Some(f) = fetched.sectors.get(&u64::from(r.sector_id)) {
                    r.sealed_file = f.sealed_file.clone();
                    r.cache_dir = f.cache_dir.clone();
                }
            }
            Some(fetched)
        };
        let out = self.processors.run(task).await?;
        Ok(serde_json::from_value(serde_json::to_value(out)?)?)
    }

    /// Fetches what the task's PoSt reads of the sectors in `remote`.
    async fn fetch(
        &self,
        task: &WindowPoSt,
        remote: BTreeMap<u64, Arc<dyn Store>>,
    ) -> Result<FetchedTask> {
        let all: Vec<u64> = task
            .replicas
            .iter()
            .map(|r| u64::from(r.sector_id))
            .collect();
        let (root, miner, proof, seed) = (
            self.fetch_root.clone(),
            task.miner_id,
            task.proof_type,
            task.seed,
        );
        let started = std::time::Instant::now();
        let fetched = tokio::task::spawn_blocking(move || {
            damocles_post_fetch::fetch_task(&root, miner, proof, &seed, &all, &remote)
        })
        .await
        .map_err(|e| anyhow!("the PoSt fetch task failed: {e}"))??;
        for (n, why) in &fetched.failed {
            warn!(sector = n, error = %why, "cannot fetch the sector's PoSt files");
        }
        let count = fetched.sectors.len() as u64;
        if count > 0 {
            let bytes: u64 = fetched.sectors.values().map(|f| f.bytes).sum();
            let requests: u64 = fetched.sectors.values().map(|f| f.requests).sum();
            info!(
                sectors = count,
                bytes,
                bytes_per_sector = bytes / count,
                sealed_file_bytes = u64::from(proof.sector_size()),
                requests,
                elapsed = ?started.elapsed(),
                "PoSt files fetched from plugin stores by ranged reads"
            );
        }
        Ok(fetched)
    }

    /// The attached store named `store`.
    fn attached_named(&self, store: &str) -> Result<&Attached> {
        self.attached
            .iter()
            .find(|a| a.instance_name() == store)
            .ok_or_else(|| {
                anyhow!(
                    "get access store instance named {store}: no [[attached]] store has that name"
                )
            })
    }

    /// `rel` in the attached directory store named `store`, as a local path.
    fn local(&self, store: &str, rel: &str) -> Result<PathBuf> {
        let a = self.attached_named(store)?;
        if a.plugin.is_some() {
            bail!("store {store} is a plugin store: it holds a sector's cache only with its sealed file");
        }
        Ok(a.config.location.join(rel))
    }
}
