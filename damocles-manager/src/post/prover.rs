//! Who computes a PoSt: the builtin processors in this process (on the
//! blocking pool, never on the async runtime), or ext-provers, child
//! processes from `ext-prover.cfg` on the vc-processors producer (restarted
//! when they die, each request timed out by the time its deadline leaves).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use tokio::sync::Semaphore;
use tracing::{info, warn};
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::producer::{Producer, ProducerConfig};
use vc_processors::{Ctx, Processor, Task};

use crate::ext_prover::{weighted_pick, PoStKind, ProverCommand};

/// One kind of PoSt's prover.
pub struct Prover {
    kind: PoStKind,
    backend: Backend,
}

enum Backend {
    Builtin,
    Ext(Vec<ExtChild>),
}

struct ExtChild {
    /// `WdPost[i]` / `WinPost[i]`, for logs and errors.
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

    /// `builtin` or `ext`, the label of the PoSt duration metrics.
    pub fn label(&self) -> &'static str {
        match self.backend {
            Backend::Builtin => "builtin",
            Backend::Ext(_) => "ext",
        }
    }

    /// Runs `task`; gives up when `limit` has passed (an ext-prover's
    /// request is then cancelled or the child killed and restarted).
    pub async fn prove<T>(&self, task: T, limit: Duration) -> Result<T::Output>
    where
        T: Task + Send + 'static,
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
            Backend::Ext(children) => {
                let started = Instant::now();
                let child = pick(children);
                let _slot = tokio::time::timeout(limit, child.slots.acquire())
                    .await
                    .map_err(|_| anyhow!("{}: no free slot within {limit:?}", child.entry))?
                    .expect("semaphores are never closed");
                let left = limit.saturating_sub(started.elapsed());
                child
                    .producer
                    .process_within(&task, Some(left))
                    .await
                    .with_context(|| format!("ext-prover {}", child.entry))
            }
        }
    }

    /// Restarts per child so far, for logs.
    pub fn restarts(&self) -> Vec<(String, u64)> {
        match &self.backend {
            Backend::Builtin => vec![],
            Backend::Ext(children) => children
                .iter()
                .map(|c| (c.entry.clone(), c.producer.status().restarts))
                .collect(),
        }
    }
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
    }
}
