//! Window PoSt jobs for worker-provers (`daemon run --worker-prover`): a
//! durable queue in the manager's database, with damocles' ids, states and
//! loops. The window scheduler queues one job per partition batch and waits
//! for it; workers with `plan = "wdpost"` allocate, heartbeat and finish
//! jobs over `Venus.WdPoSt*`.
//!
//! - a running job with no heartbeat for `HeartbeatTimeout` fails
//!   ("heartbeat timeout");
//! - a failed job is handed out again until it has been tried `JobMaxTry`
//!   times; beyond that only `wdpost reset` runs it again;
//! - finished jobs are deleted `JobLifetime` after they were queued.
//!
//! Every change is one database transaction and wakes the waiters.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use async_trait::async_trait;
use damocles_api::limits::{MAX_NAME_BYTES, MAX_PROOF_BYTES, MAX_TEXT_BYTES};
use damocles_api::wdpost::{
    AllWdPoStJob, AllocateWdPoStJobSpec, JobState, WdPoStAllocatedJob, WdPoStApiServer,
    WdPoStInput, WdPoStJob, WdPoStJobBrief, WindowPoStOutput,
};
use jsonrpsee::core::RpcResult;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::WorkerProverConfig;
use crate::db::{Db, DbError};
use crate::error::ApiError;

/// How often heartbeats are checked and failed jobs re-queued.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How often old finished jobs are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(30 * 60);
/// How often a waiter re-reads its job when nothing wakes it.
const WAIT_POLL: Duration = Duration::from_secs(3);
/// Jobs one allocation may take.
const MAX_ALLOCATE: u32 = 128;

/// Why a job call was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No job with that id.
    #[error("wdpost job '{0}' does not exist")]
    NotFound(String),
    /// A heartbeat for a job no worker runs.
    #[error("wdpost job '{0}' is not running")]
    NotRunning(String),
    /// A finish of a job that already succeeded.
    #[error("wdpost job '{0}' has already succeeded")]
    AlreadySucceeded(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<serde_json::Error> for JobError {
    fn from(e: serde_json::Error) -> Self {
        JobError::Db(DbError::Record(e))
    }
}

/// A job as stored: the wire job and the epoch its deadline closes.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    job: WdPoStJob,
    close: i64,
}

/// The job queue.
pub struct Jobs {
    db: Db,
    cfg: WorkerProverConfig,
    changed: watch::Sender<u64>,
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read(raw: &str) -> Result<Record, JobError> {
    Ok(serde_json::from_str(raw)?)
}

fn get(t: &redb::Table<&str, &str>, id: &str) -> Result<Option<Record>, JobError> {
    match t.get(id).map_err(DbError::from)? {
        Some(v) => Ok(Some(read(v.value())?)),
        None => Ok(None),
    }
}

fn put(t: &mut redb::Table<&str, &str>, r: &Record) -> Result<(), JobError> {
    let json = serde_json::to_string(r)?;
    t.insert(r.job.id.as_str(), json.as_str())
        .map_err(DbError::from)?;
    Ok(())
}

fn all_records(t: &redb::Table<&str, &str>) -> Result<Vec<Record>, JobError> {
    let mut out = Vec::new();
    for entry in t.iter().map_err(DbError::from)? {
        let (_, v) = entry.map_err(DbError::from)?;
        out.push(read(v.value())?);
    }
    Ok(out)
}

impl Jobs {
    pub fn new(db: Db, cfg: WorkerProverConfig) -> Arc<Jobs> {
        Arc::new(Jobs {
            db,
            cfg,
            changed: watch::channel(0).0,
        })
    }

    pub fn max_try(&self) -> u32 {
        self.cfg.job_max_try
    }

    fn update<R>(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &str>) -> Result<R, JobError>,
    ) -> Result<R, JobError> {
        let r = self.db.update_wdpost_jobs(f)?;
        self.changed.send_modify(|n| *n += 1);
        Ok(r)
    }

    /// Queues the job for `input`, or returns the one already queued for it
    /// (in whatever state: a retry of the same batch re-attaches to it).
    pub fn create(
        &self,
        deadline_idx: u64,
        partitions: Vec<u64>,
        input: WdPoStInput,
        close: i64,
    ) -> Result<WdPoStJob, JobError> {
        let id = input.job_id();
        self.update(|t| {
            if let Some(r) = get(t, &id)? {
                return Ok(r.job);
            }
            let at = now();
            let job = WdPoStJob {
                id: id.clone(),
                state: JobState::ReadyToRun,
                deadline_idx,
                partitions,
                input,
                output: None,
                try_num: 0,
                error_reason: String::new(),
                worker_name: String::new(),
                started_at: 0,
                heartbeat_at: 0,
                finished_at: 0,
                created_at: at,
                updated_at: at,
            };
            put(t, &Record {
                job: job.clone(),
                close,
            })?;
            info!(job = %id, deadline = deadline_idx, partitions = ?job.partitions, sectors = job.input.sectors.len(), "wdpost job queued");
            Ok(job)
        })
    }

    /// The job `id`, if it exists.
    pub fn get(&self, id: &str) -> Result<Option<WdPoStJob>, JobError> {
        Ok(self
            .db
            .wdpost_job(id)?
            .map(|v| read(&v))
            .transpose()?
            .map(|r| r.job))
    }

    /// Hands up to `num` waiting jobs matching `spec` to `worker`, oldest first.
    pub fn allocate(
        &self,
        spec: &AllocateWdPoStJobSpec,
        num: u32,
        worker: &str,
    ) -> Result<Vec<WdPoStAllocatedJob>, JobError> {
        let num = num.min(MAX_ALLOCATE) as usize;
        if num == 0 {
            return Ok(vec![]);
        }
        let miners: HashSet<u64> = spec.allowed_miners.iter().flatten().copied().collect();
        let types: HashSet<&str> = spec
            .allowed_proof_types
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        self.update(|t| {
            let mut waiting: Vec<Record> = all_records(t)?
                .into_iter()
                .filter(|r| {
                    r.job.state == JobState::ReadyToRun
                        && (miners.is_empty() || miners.contains(&r.job.input.miner_id))
                        && (types.is_empty() || types.contains(r.job.input.proof_type.as_str()))
                })
                .collect();
            waiting.sort_by_key(|r| (r.close, r.job.created_at));
            let at = now();
            let mut out = Vec::new();
            for mut r in waiting.into_iter().take(num) {
                r.job.state = JobState::Running;
                r.job.try_num += 1;
                r.job.started_at = at;
                r.job.heartbeat_at = at;
                r.job.updated_at = at;
                r.job.worker_name = worker.to_string();
                put(t, &r)?;
                info!(job = %r.job.id, worker, try_num = r.job.try_num, "wdpost job allocated");
                out.push(WdPoStAllocatedJob {
                    id: r.job.id.clone(),
                    input: r.job.input,
                });
            }
            Ok(out)
        })
    }

    /// Heartbeats of `worker` for `ids`; nothing is written unless every
    /// job is running.
    pub fn heartbeat(&self, ids: &[String], worker: &str) -> Result<(), JobError> {
        self.update(|t| {
            let at = now();
            let mut records = Vec::with_capacity(ids.len());
            for id in ids {
                match get(t, id)? {
                    // A worker whose job timed out and went to another is
                    // told so, not allowed to take it back.
                    Some(r)
                        if r.job.state == JobState::Running
                            && (r.job.worker_name.is_empty() || r.job.worker_name == worker) =>
                    {
                        records.push(r)
                    }
                    _ => return Err(JobError::NotRunning(id.clone())),
                }
            }
            for mut r in records {
                r.job.heartbeat_at = at;
                r.job.updated_at = at;
                r.job.worker_name = worker.to_string();
                if r.job.started_at == 0 {
                    r.job.started_at = at;
                }
                put(t, &r)?;
            }
            Ok(())
        })
    }

    /// Finishes `id` with `output`, or failed with `reason` when it is not
    /// empty.
    pub fn finish(
        &self,
        id: &str,
        output: Option<WindowPoStOutput>,
        reason: &str,
    ) -> Result<(), JobError> {
        self.update(|t| {
            let mut r = get(t, id)?.ok_or_else(|| JobError::NotFound(id.to_string()))?;
            if r.job.state == JobState::Finished && r.job.error_reason.is_empty() {
                return Err(JobError::AlreadySucceeded(id.to_string()));
            }
            // A failure from a worker that lost the job (it timed out and
            // waits or runs again) must not end another try. A proof is
            // taken whenever it comes: the poster verifies it.
            if !reason.is_empty() && r.job.state != JobState::Running {
                warn!(job = %id, state = ?r.job.state, reason, "a failure reported for a job that is not running: ignored");
                return Ok(());
            }
            let at = now();
            r.job.state = JobState::Finished;
            r.job.finished_at = at;
            r.job.updated_at = at;
            if reason.is_empty() {
                r.job.output = Some(output.unwrap_or_default());
                r.job.error_reason.clear();
                info!(job = %id, worker = %r.job.worker_name, "wdpost job finished");
            } else {
                r.job.output = None;
                r.job.error_reason = reason.to_string();
                warn!(job = %id, worker = %r.job.worker_name, try_num = r.job.try_num, reason, "wdpost job failed");
            }
            put(t, &r)
        })
    }

    /// Back to waiting with no tries (an operator's `wdpost reset`).
    pub fn reset(&self, id: &str) -> Result<(), JobError> {
        self.update(|t| {
            let mut r = get(t, id)?.ok_or_else(|| JobError::NotFound(id.to_string()))?;
            let at = now();
            r.job.state = JobState::ReadyToRun;
            r.job.try_num = 0;
            r.job.output = None;
            r.job.error_reason.clear();
            r.job.worker_name.clear();
            r.job.started_at = 0;
            r.job.heartbeat_at = 0;
            r.job.finished_at = 0;
            r.job.created_at = at;
            r.job.updated_at = at;
            info!(job = %id, "wdpost job reset");
            put(t, &r)
        })
    }

    /// Deletes `id` (an unknown id is not an error).
    pub fn remove(&self, id: &str) -> Result<(), JobError> {
        self.update(|t| {
            if t.remove(id).map_err(DbError::from)?.is_some() {
                info!(job = %id, "wdpost job removed");
            }
            Ok(())
        })
    }

    /// Every job, newest first, as `WdPoStAllJobs` lists them.
    pub fn all(&self) -> Result<AllWdPoStJob, JobError> {
        let mut jobs: Vec<WdPoStJob> = self
            .db
            .wdpost_jobs()?
            .into_iter()
            .map(|(_, v)| read(&v).map(|r| r.job))
            .collect::<Result<_, _>>()?;
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(AllWdPoStJob {
            jobs: jobs.into_iter().map(WdPoStJobBrief::of).collect(),
            max_try: self.cfg.job_max_try,
        })
    }

    /// One pass of the loops at `at`: running jobs past the heartbeat
    /// timeout fail; failed jobs with tries left wait again. Returns how
    /// many of each.
    pub fn sweep(&self, at: u64) -> Result<(usize, usize), JobError> {
        let timeout = self.cfg.heartbeat_timeout.as_secs();
        let max_try = self.cfg.job_max_try;
        self.update(|t| {
            let (mut died, mut retried) = (0, 0);
            for mut r in all_records(t)? {
                let j = &mut r.job;
                let (was_died, was_retried) = (died, retried);
                if j.state == JobState::Running
                    && j.heartbeat_at > 0
                    && j.heartbeat_at.saturating_add(timeout) < at
                {
                    warn!(job = %j.id, worker = %j.worker_name, last_heartbeat_secs_ago = at - j.heartbeat_at, "wdpost job heartbeat timeout");
                    j.state = JobState::Finished;
                    j.output = None;
                    j.error_reason = "heartbeat timeout".into();
                    j.finished_at = at;
                    j.updated_at = at;
                    died += 1;
                }
                if j.state == JobState::Finished
                    && !j.error_reason.is_empty()
                    && j.try_num < max_try
                {
                    info!(job = %j.id, try_num = j.try_num, max_try, reason = %j.error_reason, "wdpost job failed; queued again");
                    j.state = JobState::ReadyToRun;
                    j.output = None;
                    j.error_reason.clear();
                    j.started_at = 0;
                    j.finished_at = 0;
                    j.updated_at = at;
                    retried += 1;
                }
                // Only what changed is written: a sweep runs every few seconds.
                if (died, retried) != (was_died, was_retried) {
                    put(t, &r)?;
                }
            }
            Ok((died, retried))
        })
    }

    /// Deletes finished jobs queued more than `JobLifetime` before `at`, and
    /// waiting ones whose deadline closed before `head` (no worker took
    /// them in time; nobody waits for them any more).
    pub fn cleanup(&self, at: u64, head: i64) -> Result<usize, JobError> {
        let lifetime = self.cfg.job_lifetime.as_secs();
        self.update(|t| {
            let old: Vec<String> = all_records(t)?
                .into_iter()
                .filter(|r| {
                    (r.job.state == JobState::Finished
                        && r.job.created_at.saturating_add(lifetime) < at)
                        || (r.job.state == JobState::ReadyToRun && r.close < head)
                })
                .map(|r| r.job.id)
                .collect();
            for id in &old {
                t.remove(id.as_str()).map_err(DbError::from)?;
            }
            Ok(old.len())
        })
    }

    /// Waits for job `id`: its output once a worker finished it, its error
    /// once it failed for the last time, or an error after `limit`. A job
    /// removed meanwhile is an error too (the caller queues it again).
    pub async fn wait(&self, id: &str, limit: Duration) -> Result<WindowPoStOutput> {
        let until = tokio::time::Instant::now() + limit;
        let mut changed = self.changed.subscribe();
        loop {
            match self.get(id)? {
                None => bail!("wdpost job {id} was removed"),
                Some(j) if j.state == JobState::Finished => {
                    if j.error_reason.is_empty() {
                        return Ok(j.output.unwrap_or_default());
                    }
                    if j.try_num >= self.cfg.job_max_try {
                        bail!(
                            "wdpost job {id} failed {} time(s), the last on worker {}: {} (`util worker wdpost reset {id}` runs it again)",
                            j.try_num,
                            j.worker_name,
                            j.error_reason
                        );
                    }
                }
                Some(_) => {}
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(anyhow!("wdpost job {id}: no result within {limit:?}"));
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep(left.min(WAIT_POLL)) => {}
            }
        }
    }

    /// The sweep and cleanup loops; `head` gives the chain's height.
    pub fn spawn_loops<H, F>(self: &Arc<Self>, head: H) -> tokio::task::JoinHandle<()>
    where
        H: Fn() -> F + Send + Sync + 'static,
        F: std::future::Future<Output = Option<i64>> + Send,
    {
        let jobs = Arc::clone(self);
        tokio::spawn(async move {
            let mut last_cleanup = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                if let Err(e) = jobs.sweep(now()) {
                    warn!(error = %e, "wdpost job sweep failed");
                }
                if last_cleanup.elapsed() >= CLEANUP_EVERY {
                    last_cleanup = tokio::time::Instant::now();
                    if let Some(h) = head().await {
                        match jobs.cleanup(now(), h) {
                            Ok(0) => {}
                            Ok(n) => info!(removed = n, "old wdpost jobs removed"),
                            Err(e) => warn!(error = %e, "wdpost job cleanup failed"),
                        }
                    }
                }
            }
        })
    }
}

/// Heartbeat ids one call may carry.
const MAX_HEARTBEAT_IDS: usize = 1024;

/// `Venus.WdPoSt*`, served with `daemon run --worker-prover`. Names, ids
/// and texts are bounded ([`damocles_api::limits`]); a finish may only name
/// faulty sectors of its own job.
pub struct JobsRpc {
    pub jobs: Arc<Jobs>,
}

fn bounded(what: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.len() > max {
        return Err(ApiError::Invalid(format!(
            "{what}: {} bytes, at most {max}",
            s.len()
        )));
    }
    Ok(())
}

fn api(e: JobError) -> ApiError {
    match e {
        JobError::Db(e) => ApiError::Internal(e.to_string()),
        other => ApiError::Invalid(other.to_string()),
    }
}

#[async_trait]
impl WdPoStApiServer for JobsRpc {
    async fn wdpost_allocate_jobs(
        &self,
        spec: AllocateWdPoStJobSpec,
        num: u32,
        worker_name: String,
    ) -> RpcResult<Vec<WdPoStAllocatedJob>> {
        bounded("worker name", &worker_name, MAX_NAME_BYTES)?;
        Ok(self.jobs.allocate(&spec, num, &worker_name).map_err(api)?)
    }

    async fn wdpost_heartbeat_jobs(
        &self,
        job_ids: Vec<String>,
        worker_name: String,
    ) -> RpcResult<()> {
        bounded("worker name", &worker_name, MAX_NAME_BYTES)?;
        if job_ids.len() > MAX_HEARTBEAT_IDS {
            return Err(ApiError::Invalid(format!(
                "{} job ids in one heartbeat, at most {MAX_HEARTBEAT_IDS}",
                job_ids.len()
            ))
            .into());
        }
        for id in &job_ids {
            bounded("job id", id, MAX_NAME_BYTES)?;
        }
        Ok(self.jobs.heartbeat(&job_ids, &worker_name).map_err(api)?)
    }

    async fn wdpost_finish_job(
        &self,
        job_id: String,
        output: Option<WindowPoStOutput>,
        error_reason: String,
    ) -> RpcResult<()> {
        bounded("job id", &job_id, MAX_NAME_BYTES)?;
        let mut reason = error_reason;
        if reason.len() > MAX_TEXT_BYTES {
            let mut cut = MAX_TEXT_BYTES;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push_str(" [cut]");
        }
        if let Some(o) = &output {
            let bytes: usize = o.proofs.iter().map(|p| p.0.len()).sum();
            if bytes > MAX_PROOF_BYTES {
                return Err(ApiError::Invalid(format!(
                    "{bytes} proof bytes, at most {MAX_PROOF_BYTES}"
                ))
                .into());
            }
            let job = self
                .jobs
                .get(&job_id)
                .map_err(api)?
                .ok_or_else(|| api(JobError::NotFound(job_id.clone())))?;
            let own: HashSet<u64> = job.input.sectors.iter().map(|s| s.sector_id).collect();
            if let Some(n) = o.faults.iter().find(|n| !own.contains(n)) {
                return Err(ApiError::Invalid(format!(
                    "faulty sector {n} is not a sector of job {job_id}"
                ))
                .into());
            }
        }
        Ok(self.jobs.finish(&job_id, output, &reason).map_err(api)?)
    }

    async fn wdpost_reset_job(&self, job_id: String) -> RpcResult<()> {
        Ok(self.jobs.reset(&job_id).map_err(api)?)
    }

    async fn wdpost_remove_job(&self, job_id: String) -> RpcResult<()> {
        Ok(self.jobs.remove(&job_id).map_err(api)?)
    }

    async fn wdpost_all_jobs(&self) -> RpcResult<AllWdPoStJob> {
        Ok(self.jobs.all().map_err(api)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damocles_api::wdpost::{SectorAccessStores, WdPoStSectorInfo};

    fn jobs(dir: &std::path::Path) -> Arc<Jobs> {
        let db = Db::create(&dir.join("db")).unwrap();
        Jobs::new(
            db,
            WorkerProverConfig {
                job_max_try: 2,
                heartbeat_timeout: Duration::from_secs(15),
                job_lifetime: Duration::from_secs(3600),
            },
        )
    }

    fn input(miner: u64, seed: u8) -> WdPoStInput {
        WdPoStInput {
            sectors: vec![WdPoStSectorInfo {
                sector_id: 1,
                comm_r: [1; 32],
                upgrade: false,
                accesses: SectorAccessStores {
                    sealed_file: "store-1".into(),
                    cache_dir: "store-1".into(),
                },
            }],
            miner_id: miner,
            proof_type: "StackedDrgWindow2KiBV1_2".into(),
            seed: [seed; 32],
        }
    }

    fn spec(miners: Option<Vec<u64>>) -> AllocateWdPoStJobSpec {
        AllocateWdPoStJobSpec {
            allowed_miners: miners,
            allowed_proof_types: Some(vec!["StackedDrgWindow2KiBV1_2".into()]),
        }
    }

    #[test]
    fn a_job_is_queued_once_allocated_by_filter_and_finished() {
        let dir = tempfile::tempdir().unwrap();
        let q = jobs(dir.path());
        let a = q.create(3, vec![0], input(1000, 1), 100).unwrap();
        let again = q.create(3, vec![0], input(1000, 1), 100).unwrap();
        assert_eq!(a, again, "the same input re-attaches");
        q.create(4, vec![0], input(2000, 2), 120).unwrap();

        assert!(q.allocate(&spec(None), 0, "w").unwrap().is_empty());
        let other_types = AllocateWdPoStJobSpec {
            allowed_miners: None,
            allowed_proof_types: Some(vec!["StackedDrgWindow8MiBV1_2".into()]),
        };
        assert!(q.allocate(&other_types, 5, "w").unwrap().is_empty());
        let got = q.allocate(&spec(Some(vec![2000])), 5, "w1").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].input.miner_id, 2000);
        // Empty lists mean any: the other job.
        let got = q
            .allocate(&AllocateWdPoStJobSpec::default(), 5, "w2")
            .unwrap();
        assert_eq!(got[0].id, a.id);
        let j = q.get(&a.id).unwrap().unwrap();
        assert_eq!(
            (j.state, j.try_num, j.worker_name.as_str()),
            (JobState::Running, 1, "w2")
        );

        // A heartbeat naming one job not running writes nothing.
        let e = q
            .heartbeat(&[a.id.clone(), "nope".into()], "w2")
            .unwrap_err();
        assert!(e.to_string().contains("'nope' is not running"), "{e}");
        q.heartbeat(std::slice::from_ref(&a.id), "w2").unwrap();
        // Another worker cannot heartbeat it.
        let e = q.heartbeat(std::slice::from_ref(&a.id), "w1").unwrap_err();
        assert!(matches!(e, JobError::NotRunning(_)), "{e}");

        let out = WindowPoStOutput {
            proofs: vec![damocles_api::encoding::Base64Bytes(vec![1, 2])],
            faults: vec![],
        };
        q.finish(&a.id, Some(out.clone()), "").unwrap();
        assert!(matches!(
            q.finish(&a.id, None, "late"),
            Err(JobError::AlreadySucceeded(_))
        ));
        let all = q.all().unwrap();
        assert_eq!(all.jobs.len(), 2);
        assert_eq!(all.max_try, 2);
        let brief = all.jobs.iter().find(|b| b.job.id == a.id).unwrap();
        assert_eq!((brief.sectors, brief.faults), (1, 0));
        assert!(brief.job.input.sectors.is_empty());
        q.remove(&a.id).unwrap();
        q.remove(&a.id).unwrap();
        assert!(q.get(&a.id).unwrap().is_none());
    }

    #[test]
    fn a_silent_worker_loses_its_job_which_runs_again_until_max_try() {
        let dir = tempfile::tempdir().unwrap();
        let q = jobs(dir.path());
        let j = q.create(0, vec![0], input(1000, 1), 100).unwrap();
        q.allocate(&spec(None), 1, "w1").unwrap();
        let started = q.get(&j.id).unwrap().unwrap().heartbeat_at;
        // At the timeout it still lives; a second later it fails and waits again.
        assert_eq!(q.sweep(started + 15).unwrap(), (0, 0));
        assert_eq!(q.sweep(started + 16).unwrap(), (1, 1));
        let again = q.get(&j.id).unwrap().unwrap();
        assert_eq!((again.state, again.try_num), (JobState::ReadyToRun, 1));
        // The silent worker's late failure does not count a second try.
        q.finish(&j.id, None, "late").unwrap();
        let still = q.get(&j.id).unwrap().unwrap();
        assert_eq!((still.state, still.try_num), (JobState::ReadyToRun, 1));
        // Second try fails for good: tries are used up.
        q.allocate(&spec(None), 1, "w2").unwrap();
        q.finish(&j.id, None, "get access store instance named store-9")
            .unwrap();
        assert_eq!(q.sweep(now()).unwrap(), (0, 0));
        let failed = q.get(&j.id).unwrap().unwrap();
        assert_eq!((failed.state, failed.try_num), (JobState::Finished, 2));
        // An operator's reset runs it again from zero.
        q.reset(&j.id).unwrap();
        let reset = q.get(&j.id).unwrap().unwrap();
        assert_eq!((reset.state, reset.try_num), (JobState::ReadyToRun, 0));
        assert!(reset.error_reason.is_empty() && reset.worker_name.is_empty());
        assert!(matches!(q.reset("nope"), Err(JobError::NotFound(_))));
    }

    #[test]
    fn cleanup_removes_old_finished_and_stale_waiting_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let q = jobs(dir.path());
        let done = q.create(0, vec![0], input(1000, 1), 100).unwrap();
        let stale = q.create(1, vec![0], input(1000, 2), 120).unwrap();
        let live = q.create(2, vec![0], input(1000, 3), 140).unwrap();
        q.allocate(&spec(None), 1, "w").unwrap();
        q.finish(&done.id, Some(WindowPoStOutput::default()), "")
            .unwrap();
        assert_eq!(q.cleanup(now(), 130).unwrap(), 1, "the stale waiting job");
        assert!(q.get(&stale.id).unwrap().is_none());
        assert_eq!(
            q.cleanup(now() + 3601, 130).unwrap(),
            1,
            "the old finished one"
        );
        assert!(q.get(&live.id).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_waiter_gets_the_output_or_the_final_error() {
        let dir = tempfile::tempdir().unwrap();
        let q = jobs(dir.path());
        let j = q.create(0, vec![0], input(1000, 1), 100).unwrap();
        let waiter = {
            let (q, id) = (Arc::clone(&q), j.id.clone());
            tokio::spawn(async move { q.wait(&id, Duration::from_secs(30)).await })
        };
        q.allocate(&spec(None), 1, "w").unwrap();
        q.finish(
            &j.id,
            Some(WindowPoStOutput {
                proofs: vec![],
                faults: vec![1],
            }),
            "",
        )
        .unwrap();
        let out = waiter.await.unwrap().unwrap();
        assert_eq!(out.faults, vec![1]);

        let k = q.create(0, vec![0], input(1000, 2), 100).unwrap();
        for _ in 0..2 {
            q.allocate(&spec(None), 1, "w").unwrap();
            q.finish(&k.id, None, "boom").unwrap();
            q.sweep(now()).unwrap();
        }
        let e = q.wait(&k.id, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            e.to_string().contains("failed 2 time(s)") && e.to_string().contains("boom"),
            "{e}"
        );
        q.remove(&k.id).unwrap();
        let e = q.wait(&k.id, Duration::from_secs(5)).await.unwrap_err();
        assert!(e.to_string().contains("removed"), "{e}");
    }
}
