//! Who computes a PoSt: the builtin processors in this process (on the
//! blocking pool, never on the async runtime), ext-provers, child
//! processes from `ext-prover.cfg` on the vc-processors producer (restarted
//! when they die, each request timed out by the time its deadline leaves),
//! split ones (vanilla proofs here, near the sector files; the SNARK in
//! `[[PostSnark]]` children, which read no sector file), or, for window PoSt
//! with `--worker-prover`, workers taking jobs from the [`super::jobs`] queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::Semaphore;
use tracing::{info, warn};
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::producer::{Producer, ProducerConfig};
use vc_processors::tasks::{
    PoStSnark, PoStVanilla, SnarkProof, WindowPoSt, WindowPoStOutput, WinningPoSt,
    WinningPoStOutput,
};
use vc_processors::{Ctx, Processor, Task};

use crate::ext_prover::{weighted_pick, PoStKind, ProverCommand};

use super::jobs::Jobs;

/// One kind of PoSt's prover.
pub struct Prover {
    kind: PoStKind,
    backend: Backend,
}

enum Backend {
    Builtin,
    Ext(Vec<ExtChild>),
    /// Vanilla proofs in this process, the SNARK in these children (shared
    /// by window and winning PoSt).
    Split(Arc<Vec<ExtChild>>),
    Workers(Arc<Jobs>),
}

/// A PoSt task that can also run as its two halves: vanilla proofs, then
/// the SNARK from them.
pub trait SplitPoSt: Task {
    /// The vanilla half of this task.
    fn vanilla(&self) -> PoStVanilla;
    /// The task's output from the SNARK's proofs, or from the sectors the
    /// vanilla half found faulty.
    fn from_split(proofs: Vec<SnarkProof>, faults: Vec<u64>) -> Result<Self::Output>;
}

/// The vanilla half of a PoSt task's fields (window and winning tasks
/// carry the same ones).
fn vanilla_of(
    miner_id: u64,
    proof_type: vc_processors::tasks::RegisteredPoStProof,
    replicas: &[vc_processors::tasks::PoStReplicaInfo],
    seed: [u8; 32],
) -> PoStVanilla {
    PoStVanilla {
        miner_id,
        proof_type,
        replicas: replicas.to_vec(),
        seed,
    }
}

impl SplitPoSt for WindowPoSt {
    fn vanilla(&self) -> PoStVanilla {
        vanilla_of(self.miner_id, self.proof_type, &self.replicas, self.seed)
    }
    fn from_split(proofs: Vec<SnarkProof>, faults: Vec<u64>) -> Result<WindowPoStOutput> {
        Ok(WindowPoStOutput { proofs, faults })
    }
}

impl SplitPoSt for WinningPoSt {
    fn vanilla(&self) -> PoStVanilla {
        vanilla_of(self.miner_id, self.proof_type, &self.replicas, self.seed)
    }
    fn from_split(proofs: Vec<SnarkProof>, faults: Vec<u64>) -> Result<WinningPoStOutput> {
        anyhow::ensure!(
            faults.is_empty(),
            "the vanilla proofs of sectors {faults:?} failed"
        );
        Ok(WinningPoStOutput { proofs })
    }
}

/// What a window PoSt job needs beyond the task: where each replica's
/// files are (store names, in the task's order) and what it proves.
pub struct WindowJob {
    pub deadline_idx: u64,
    pub partitions: Vec<u64>,
    /// The epoch the deadline closes; a job nobody took by then is dropped.
    pub close: i64,
    /// The persist store of each replica of the task, in order.
    pub stores: Vec<String>,
}

/// A window PoSt result, and the job that made it (worker-provers).
pub struct WindowProved {
    pub output: WindowPoStOutput,
    pub job: Option<String>,
}

pub struct ExtChild {
    /// `WdPost[i]` / `WinPost[i]` / `PostSnark[i]`, for logs and errors.
    entry: String,
    producer: Producer,
    slots: Arc<Semaphore>,
    weight: u32,
}

/// Rolls for the weighted choice: a counter mixed so that successive rolls
/// spread (no need for a random generator's state behind a lock).
static ROLLS: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);

fn roll() -> u64 {
    let mut x = ROLLS.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Prover {
    /// The builtin processors, in this process.
    pub fn builtin(kind: PoStKind) -> Prover {
        Prover {
            kind,
            backend: Backend::Builtin,
        }
    }

    /// Starts one child per command and waits for each one's ready line;
    /// the first that fails stops the start, naming its entry.
    pub async fn spawn_ext(kind: PoStKind, commands: &[ProverCommand]) -> Result<Prover> {
        let mut children = Vec::with_capacity(commands.len());
        for (i, cmd) in commands.iter().enumerate() {
            let entry = format!("{}[{i}]", kind.section());
            let mut cfg = ProducerConfig::new(kind.stage(), &cmd.bin, cmd.args.clone());
            cfg.envs = cmd.envs.clone();
            cfg.ready_timeout = cmd.ready_timeout;
            let producer = Producer::spawn(cfg)
                .await
                .map_err(|e| anyhow!("{}: {entry}: {e}", crate::ext_prover::FILE_NAME))?;
            info!(entry = %entry, command = %producer.config().command_line(), pid = ?producer.status().pid, concurrent = cmd.concurrent, weight = cmd.weight, "ext-prover ready");
            children.push(ExtChild {
                entry,
                producer,
                slots: Arc::new(Semaphore::new(cmd.concurrent as usize)),
                weight: cmd.weight,
            });
        }
        Ok(Prover {
            kind,
            backend: Backend::Ext(children),
        })
    }

    /// Starts the `[[PostSnark]]` children once, for both kinds to share.
    pub async fn spawn_snark(commands: &[ProverCommand]) -> Result<Arc<Vec<ExtChild>>> {
        let Prover { backend, .. } = Prover::spawn_ext(PoStKind::Snark, commands).await?;
        match backend {
            Backend::Ext(children) => Ok(Arc::new(children)),
            _ => unreachable!("spawn_ext makes ext children"),
        }
    }

    /// `kind` split: vanilla proofs in this process, the SNARK in `children`.
    pub fn split(kind: PoStKind, children: Arc<Vec<ExtChild>>) -> Prover {
        Prover {
            kind,
            backend: Backend::Split(children),
        }
    }

    /// Window PoSt by workers with `plan = "wdpost"`, through `jobs`.
    pub fn workers(jobs: Arc<Jobs>) -> Prover {
        Prover {
            kind: PoStKind::Window,
            backend: Backend::Workers(jobs),
        }
    }

    /// `builtin`, `ext` or `worker`, the label of the PoSt duration metrics.
    pub fn label(&self) -> &'static str {
        match self.backend {
            Backend::Builtin => "builtin",
            Backend::Ext(_) => "ext",
            Backend::Split(_) => "split",
            Backend::Workers(_) => "worker",
        }
    }

    /// Whether work outlives a timed-out wait (a queued job keeps running):
    /// then a wait may take all the time left, since retrying early gains
    /// nothing.
    pub fn keeps_jobs(&self) -> bool {
        matches!(self.backend, Backend::Workers(_))
    }

    /// A window PoSt: in this process or a child as [`Prover::prove`], or
    /// as a job for the workers (queued once per input: a retry of the same
    /// batch waits for the same job).
    pub async fn prove_window(
        &self,
        task: WindowPoSt,
        job: WindowJob,
        limit: Duration,
    ) -> Result<WindowProved> {
        let Backend::Workers(jobs) = &self.backend else {
            let output = self.prove(task, limit).await?;
            return Ok(WindowProved { output, job: None });
        };
        let input = job_input(&task, &job.stores)?;
        let started = Instant::now();
        loop {
            let queued = jobs
                .create(
                    job.deadline_idx,
                    job.partitions.clone(),
                    input.clone(),
                    job.close,
                )
                .map_err(|e| anyhow!("queue the wdpost job: {e}"))?;
            let left = limit.saturating_sub(started.elapsed());
            match jobs.wait(&queued.id, left).await {
                Ok(out) => {
                    let output = serde_json::from_value(serde_json::to_value(out)?)
                        .context("a worker's window PoSt output")?;
                    return Ok(WindowProved {
                        output,
                        job: Some(queued.id),
                    });
                }
                // Removed by an operator while waited for: queued again.
                Err(e) if e.to_string().ends_with("was removed") && !left.is_zero() => {
                    warn!(job = %queued.id, "wdpost job removed while waited for; queued again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the job behind a result that proved wrong, so that the next
    /// attempt queues a fresh one instead of getting the same result back.
    pub fn discard(&self, job: Option<&str>) {
        if let (Backend::Workers(jobs), Some(id)) = (&self.backend, job) {
            if let Err(e) = jobs.remove(id) {
                warn!(job = %id, error = %e, "cannot remove a wdpost job");
            }
        }
    }

    /// Runs `task`; gives up when `limit` has passed (an ext-prover's
    /// request is then cancelled or the child killed and restarted).
    pub async fn prove<T>(&self, task: T, limit: Duration) -> Result<T::Output>
    where
        T: SplitPoSt + Send + 'static,
        T::Output: Send + 'static,
        BuiltinProcessor: Processor<T>,
    {
        debug_assert_eq!(T::STAGE, self.kind.stage());
        match &self.backend {
            Backend::Builtin => {
                let run = tokio::task::spawn_blocking(move || {
                    BuiltinProcessor::default().process(task, &Ctx::detached())
                });
                match tokio::time::timeout(limit, run).await {
                    Ok(Ok(r)) => r.map_err(|e| anyhow!("{e:#}")),
                    Ok(Err(e)) => Err(anyhow!("builtin {} prover task failed: {e}", T::STAGE)),
                    // The proofs call cannot be stopped; its thread finishes on its own.
                    Err(_) => Err(anyhow!(
                        "builtin {} prover did not finish within {limit:?}",
                        T::STAGE
                    )),
                }
            }
            Backend::Ext(children) => call_ext(children, &task, limit).await,
            Backend::Split(children) => {
                let started = Instant::now();
                let vanilla = task.vanilla();
                let (miner_id, proof_type, seed) =
                    (vanilla.miner_id, vanilla.proof_type, vanilla.seed);
                let run = tokio::task::spawn_blocking(move || {
                    <BuiltinProcessor as Processor<PoStVanilla>>::process(
                        &BuiltinProcessor::default(),
                        vanilla,
                        &Ctx::detached(),
                    )
                });
                let v = match tokio::time::timeout(limit, run).await {
                    Ok(Ok(r)) => r.map_err(|e| anyhow!("vanilla proofs: {e:#}"))?,
                    Ok(Err(e)) => bail!("the vanilla proof task failed: {e}"),
                    Err(_) => bail!("vanilla proofs did not finish within {limit:?}"),
                };
                if !v.faults.is_empty() {
                    return T::from_split(vec![], v.faults);
                }
                let vanilla_took = started.elapsed();
                let snark = PoStSnark {
                    miner_id,
                    proof_type,
                    seed,
                    vanilla_proofs: v.proofs,
                };
                let out =
                    call_ext(&children[..], &snark, limit.saturating_sub(vanilla_took)).await?;
                tracing::debug!(stage = T::STAGE, vanilla = ?vanilla_took, snark = ?started.elapsed() - vanilla_took, "split PoSt proven");
                T::from_split(out.proofs, vec![])
            }
            Backend::Workers(_) => Err(anyhow!(
                "worker-provers prove window PoSt only, through prove_window ({} asked)",
                T::STAGE
            )),
        }
    }

    /// Restarts per child so far, for logs.
    pub fn restarts(&self) -> Vec<(String, u64)> {
        match &self.backend {
            Backend::Builtin | Backend::Workers(_) => vec![],
            Backend::Split(children) => children
                .iter()
                .map(|c| (c.entry.clone(), c.producer.status().restarts))
                .collect(),
            Backend::Ext(children) => children
                .iter()
                .map(|c| (c.entry.clone(), c.producer.status().restarts))
                .collect(),
        }
    }
}

/// `task` in one of `children` (weighted, a free slot first), within `limit`.
async fn call_ext<T: Task>(children: &[ExtChild], task: &T, limit: Duration) -> Result<T::Output> {
    let started = Instant::now();
    let child = pick(children);
    let _slot = tokio::time::timeout(limit, child.slots.acquire())
        .await
        .map_err(|_| anyhow!("{}: no free slot within {limit:?}", child.entry))?
        .expect("semaphores are never closed");
    let left = limit.saturating_sub(started.elapsed());
    child
        .producer
        .process_within(task, Some(left))
        .await
        .with_context(|| format!("ext-prover {}", child.entry))
}

/// A child with a free slot, by weight; when every slot is taken, any child
/// by weight (its request then waits for a slot there).
fn pick(children: &[ExtChild]) -> &ExtChild {
    let free: Vec<u32> = children
        .iter()
        .map(|c| {
            if c.slots.available_permits() > 0 {
                c.weight
            } else {
                0
            }
        })
        .collect();
    let i = weighted_pick(&free, roll()).unwrap_or_else(|| {
        let all: Vec<u32> = children.iter().map(|c| c.weight).collect();
        weighted_pick(&all, roll()).unwrap_or(0)
    });
    if children.len() > 1 {
        tracing::debug!(entry = %children[i].entry, "ext-prover picked");
    }
    &children[i]
}

/// Logs the prover in use at start.
pub fn log_choice(prover: &Prover) {
    match &prover.backend {
        Backend::Builtin => info!(
            stage = prover.kind.stage(),
            "PoSt prover: builtin, in this process"
        ),
        Backend::Ext(c) if c.is_empty() => {
            warn!(stage = prover.kind.stage(), "no ext-prover entries")
        }
        Backend::Ext(c) => info!(
            stage = prover.kind.stage(),
            children = c.len(),
            "PoSt prover: ext-provers"
        ),
        Backend::Split(c) => info!(
            stage = prover.kind.stage(),
            snark_children = c.len(),
            "PoSt prover: split, vanilla proofs in this process, the SNARK in [[PostSnark]] children"
        ),
        Backend::Workers(_) => info!(
            stage = prover.kind.stage(),
            "PoSt prover: workers with plan = \"wdpost\" (Venus.WdPoSt* jobs)"
        ),
    }
}

/// The job input damocles' workers read: the task's replicas in order (the
/// substitutes for skipped sectors included), each with its store's name.
fn job_input(task: &WindowPoSt, stores: &[String]) -> Result<damocles_api::wdpost::WdPoStInput> {
    use damocles_api::wdpost::{SectorAccessStores, WdPoStInput, WdPoStSectorInfo};
    anyhow::ensure!(
        stores.len() == task.replicas.len(),
        "{} stores for {} replicas",
        stores.len(),
        task.replicas.len()
    );
    let proof_type = match serde_json::to_value(task.proof_type)? {
        serde_json::Value::String(s) => s,
        other => anyhow::bail!("proof type {other} has no name"),
    };
    Ok(WdPoStInput {
        sectors: task
            .replicas
            .iter()
            .zip(stores)
            .map(|(r, store)| WdPoStSectorInfo {
                sector_id: u64::from(r.sector_id),
                comm_r: r.comm_r,
                upgrade: false,
                accesses: SectorAccessStores {
                    sealed_file: store.clone(),
                    cache_dir: store.clone(),
                },
            })
            .collect(),
        miner_id: task.miner_id,
        proof_type,
        seed: task.seed,
    })
}
