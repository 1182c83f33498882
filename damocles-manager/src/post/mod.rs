//! PoSt: the manager proves its sectors.
//!
//! | module | job |
//! |---|---|
//! | [`window`] | the window PoSt scheduler (`daemon run --poster`) |
//! | [`winning`] | winning PoSt for the chain's elections (`daemon run --miner`), the warmup |
//! | [`checks`] | where a sector's files are, whether they can be proven (`[Common.Proving]`) |
//! | [`fetch`] | PoSt of sectors in plugin stores: what the proof reads, fetched by ranged reads |
//! | [`prover`] | builtin or ext-provers (`ext-prover.cfg`), or worker-provers through [`jobs`] |
//! | [`jobs`] | the window PoSt job queue of worker-provers (`--worker-prover`, `Venus.WdPoSt*`) |
//! | [`api`] | the `Venus.Proving*` methods behind `util sealer proving` |

pub mod api;
pub mod checks;
pub mod fetch;
pub mod jobs;
pub mod prover;
pub mod window;
pub mod winning;

use std::sync::Arc;
use std::time::Duration;

use damocles_chain::{ActorID, Chain, Epoch};

use crate::db::Db;
use crate::metrics::Metrics;
use checks::Checker;
use prover::Prover;

/// What the schedulers and the proving RPCs share.
pub struct Proving {
    pub chain: Arc<dyn Chain>,
    pub checker: Checker,
    pub window_prover: Arc<Prover>,
    pub winning_prover: Arc<Prover>,
    pub db: Db,
    pub metrics: Arc<Metrics>,
}

impl Proving {
    /// Wall-clock time until the chain reaches `epoch` (zero if it has).
    pub fn time_left(&self, epoch: Epoch) -> Duration {
        let head = *self.chain.head_changes().borrow();
        let block = self.chain.block_time();
        let at_ms = head.timestamp as i128 * 1000
            + (epoch - head.epoch) as i128 * block.as_millis() as i128;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i128)
            .unwrap_or(0);
        Duration::from_millis((at_ms - now_ms).clamp(0, u64::MAX as i128) as u64)
    }

    /// Sets the faulty-sector gauge of `miner` from the chain.
    pub async fn update_fault_gauge(&self, miner: ActorID) {
        if let Ok(dls) = self.chain.deadlines(miner).await {
            let faulty: u64 = dls.iter().map(|d| d.faulty_sectors).sum();
            self.metrics.set_faulty_sectors(&miner.to_string(), faulty);
        }
    }
}
