//! The worker's processors: for each stage, the builtin implementation run
//! in-process, or the ext-processor children of its `[[processors.<stage>]]`
//! entries, behind damocles' three layers of limits:
//!
//! 1. `limitation.concurrent` / `limitation.staggered`: how many sealing
//!    threads may be in a stage at once, and how far apart they may start;
//! 2. `ext_locks`: named counters an entry takes for each request (a GPU
//!    shared by pc2 and c2);
//! 3. an entry's `concurrent`: requests in flight to that child.
//!
//! Among several entries, the one with the most free capacity whose locks are
//! free right now is taken; if none is free, the caller waits on the first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use damocles_sector::Stage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::producer::{EnvOverrides, Producer, ProducerConfig};
use vc_processors::sys::Placement;
use vc_processors::{Ctx, Processor, Task};

use crate::config;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
    /// `ok` or `error`.
    pub outcome: String,
}

/// Seconds spent in each stage by outcome: written here (every stage goes
/// through [`Processors`]), shown on `/metrics`.
pub type StageSeconds = Family<StageLabels, Histogram, fn() -> Histogram>;

fn stage_histogram() -> Histogram {
    // 10 ms .. ~4.4 h: a 2KiB PC1 to a 32GiB PC1.
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

/// Capacity used for an entry without `concurrent` (as damocles ranks them).
const UNBOUNDED: usize = 64;

struct Child {
    /// `processors.<stage>[<i>]`, the config entry it was started from.
    entry: String,
    producer: Producer,
    slots: Arc<Semaphore>,
    locks: Vec<(String, Arc<Semaphore>)>,
}

struct Held {
    _permits: Vec<OwnedSemaphorePermit>,
}

impl Child {
    fn try_take(&self) -> Option<Held> {
        let mut permits = vec![Arc::clone(&self.slots).try_acquire_owned().ok()?];
        for (_, l) in &self.locks {
            permits.push(Arc::clone(l).try_acquire_owned().ok()?);
        }
        Some(Held { _permits: permits })
    }

    async fn take(&self) -> Held {
        let mut permits = vec![Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("never closed")];
        // Locks in name order, so two entries never wait on each other crosswise.
        for (_, l) in &self.locks {
            permits.push(Arc::clone(l).acquire_owned().await.expect("never closed"));
        }
        Held { _permits: permits }
    }
}

#[derive(Default)]
struct StageLimits {
    tokens: Option<Arc<Semaphore>>,
    stagger: Option<(Duration, Mutex<Option<Instant>>)>,
}

pub struct Processors {
    children: HashMap<String, Vec<Child>>,
    limits: HashMap<String, StageLimits>,
    seconds: StageSeconds,
    env: EnvOverrides,
    static_tree_d: BTreeMap<u64, PathBuf>,
}

/// The producer config of one entry, defaults filled in.
pub fn producer_config(
    stage: &str,
    i: usize,
    e: &config::ProcessorEntry,
    self_exe: &Path,
) -> Result<ProducerConfig> {
    let (bin, args) = e.command(stage, self_exe);
    let mut cfg = ProducerConfig::new(stage, bin, args);
    cfg.envs = e.envs.clone();
    cfg.inherit_envs = e.inherit_envs;
    cfg.auto_restart = e.auto_restart;
    if let Some(w) = e.stable_wait {
        cfg.ready_timeout = w;
    }
    cfg.request_timeout = e.timeout;
    let numa_preferred = match e.numa_preferred {
        Some(n) if n < 0 => {
            return Err(anyhow!(
                "key processors.{stage}[{i}].numa_preferred: {n} is not a NUMA node"
            ))
        }
        n => n.map(|n| n as u32),
    };
    cfg.placement = Placement {
        cpuset: e.cgroup.as_ref().and_then(|c| c.cpuset.clone()),
        cgroup: e.cgroup.as_ref().and_then(|c| {
            c.cpuset.as_ref().map(|_| {
                let group = c.group_name.clone().unwrap_or_else(|| "vc-worker".into());
                format!("{group}/sub-{stage}-{}-{i}", std::process::id())
            })
        }),
        numa_preferred,
    };
    Ok(cfg)
}

impl Processors {
    /// Starts every configured child (each must print its ready line in time)
    /// and sets up the limits. An entry that cannot start fails the whole
    /// start, naming the entry.
    pub async fn start(cfg: &config::Processors, self_exe: &Path) -> Result<Processors> {
        let locks: BTreeMap<String, Arc<Semaphore>> = cfg
            .ext_locks
            .iter()
            .map(|(name, n)| (name.clone(), Arc::new(Semaphore::new(*n))))
            .collect();
        let static_tree_d = cfg.static_tree_d_files()?;
        let env = EnvOverrides::default();
        let mut children = HashMap::new();
        for (stage, entries) in config::processor_stages().map(|s| (s.as_str(), cfg.entries(s))) {
            let mut list = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                let mut pcfg = producer_config(stage, i, e, self_exe)?;
                pcfg.env_overrides = env.clone();
                let line = pcfg.command_line();
                let producer = Producer::spawn(pcfg)
                    .await
                    .with_context(|| format!("start processors.{stage}[{i}] ({line})"))?;
                let mut names = e.locks.clone();
                names.sort();
                names.dedup();
                list.push(Child {
                    entry: format!("processors.{stage}[{i}]"),
                    producer,
                    slots: Arc::new(Semaphore::new(e.concurrent.unwrap_or(UNBOUNDED))),
                    locks: names
                        .iter()
                        .map(|n| (n.clone(), Arc::clone(&locks[n])))
                        .collect(),
                });
            }
            if !list.is_empty() {
                children.insert(stage.to_string(), list);
            }
        }
        let mut limits: HashMap<String, StageLimits> = HashMap::new();
        for (stage, n) in cfg.concurrent_limits() {
            limits.entry(stage.clone()).or_default().tokens = Some(Arc::new(Semaphore::new(*n)));
        }
        for (stage, d) in cfg.staggered()? {
            limits.entry(stage).or_default().stagger = Some((d, Mutex::new(None)));
        }
        Ok(Processors {
            children,
            limits,
            seconds: Family::new_with_constructor(stage_histogram),
            env,
            static_tree_d,
        })
    }

    /// Environment changes for children started from now on (restarts
    /// included): `WorkerSetEnv` / `WorkerRemoveEnv`.
    pub fn env_overrides(&self) -> &EnvOverrides {
        &self.env
    }

    /// The precomputed CC tree-d for a sector size, if configured.
    pub fn static_tree_d(&self, sector_size: u64) -> Option<&Path> {
        self.static_tree_d.get(&sector_size).map(PathBuf::as_path)
    }

    /// Each stage's durations, for `/metrics`.
    pub fn stage_seconds(&self) -> StageSeconds {
        self.seconds.clone()
    }

    fn observe(&self, stage: &str, ok: bool, took: Duration) {
        self.seconds
            .get_or_create(&StageLabels {
                stage: stage.to_string(),
                outcome: if ok { "ok" } else { "error" }.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Whether `stage` runs in ext-processors (else builtin).
    pub fn is_external(&self, stage: &str) -> bool {
        self.children.contains_key(stage)
    }

    /// Restarts of each stage's children so far, for metrics and `worker list`.
    pub fn restarts(&self) -> BTreeMap<String, u64> {
        self.children
            .iter()
            .map(|(s, list)| {
                (
                    s.clone(),
                    list.iter().map(|c| c.producer.status().restarts).sum(),
                )
            })
            .collect()
    }

    /// Takes the stage's thread token and stagger slot: held for the whole step.
    async fn enter(&self, stage: &str) -> Option<OwnedSemaphorePermit> {
        let limits = self.limits.get(stage)?;
        let token = match &limits.tokens {
            Some(t) => Some(Arc::clone(t).acquire_owned().await.expect("never closed")),
            None => None,
        };
        if let Some((every, last)) = &limits.stagger {
            let mut last = last.lock().await;
            if let Some(prev) = *last {
                let ready = prev + *every;
                tokio::time::sleep_until(ready.into()).await;
            }
            *last = Some(Instant::now());
        }
        token
    }

    /// Runs `task` in its stage's processor, within the stage's limits.
    pub async fn run<T>(&self, task: T) -> Result<T::Output>
    where
        T: Task + Send + 'static,
        T::Output: Send + 'static,
        BuiltinProcessor: Processor<T>,
    {
        let _token = self.enter(T::STAGE).await;
        // Timed from when the stage's limits let the task in: waiting for a
        // free child counts, waiting behind `limitation` does not.
        let started = Instant::now();
        let out = self.dispatch(task).await;
        self.observe(T::STAGE, out.is_ok(), started.elapsed());
        out
    }

    /// Runs `work` on a blocking thread of this process as stage `stage`:
    /// within the stage's limits and timed like any processor run. For work
    /// with no task type (C1) or that needs the daemon's own state (a loaded
    /// store plugin).
    pub async fn run_in_process<R: Send + 'static>(
        &self,
        stage: Stage,
        work: impl FnOnce() -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let stage = stage.as_str();
        let _token = self.enter(stage).await;
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| anyhow!("{stage} (in process) panicked or was cancelled: {e}"))
            .and_then(|r| r.with_context(|| format!("{stage} (in process)")));
        self.observe(stage, out.is_ok(), started.elapsed());
        out
    }

    async fn dispatch<T>(&self, task: T) -> Result<T::Output>
    where
        T: Task + Send + 'static,
        T::Output: Send + 'static,
        BuiltinProcessor: Processor<T>,
    {
        match self.children.get(T::STAGE) {
            None => tokio::task::spawn_blocking(move || {
                BuiltinProcessor::default().process(task, &Ctx::detached())
            })
            .await
            .map_err(|e| anyhow!("{} (builtin) panicked or was cancelled: {e}", T::STAGE))?
            .with_context(|| format!("{} (builtin)", T::STAGE)),
            Some(list) => {
                // Most free capacity first, among those free right now.
                let mut order: Vec<&Child> = list.iter().collect();
                order.sort_by_key(|c| std::cmp::Reverse(c.slots.available_permits()));
                let (child, _held) = match order.iter().find_map(|c| c.try_take().map(|h| (*c, h)))
                {
                    Some(found) => found,
                    None => (&list[0], list[0].take().await),
                };
                child.producer.process(&task).await.map_err(|e| {
                    let line = child.producer.config().command_line();
                    // The ProcessorError stays the source: its kind decides
                    // how the sealing thread treats the failure.
                    anyhow::Error::new(e).context(format!("{} ({}: {line})", T::STAGE, child.entry))
                })
            }
        }
    }
}
