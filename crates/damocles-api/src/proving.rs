//! `Venus.Proving*` and friends: what `damocles-manager util sealer proving`
//! shows and does. A `miner` of `null` means the first miner of the
//! manager's config. Reads need `read`; checks need `write`; proving by
//! hand and declaring recoveries need `admin` (see [`crate::perm`]).

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use serde::{Deserialize, Serialize};

use crate::types::ChainEpoch;

/// One deadline's epochs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadlineEpochs {
    /// Its index in the proving period.
    pub index: u64,
    /// First epoch a proof is accepted.
    pub open: ChainEpoch,
    /// First epoch a proof is refused.
    pub close: ChainEpoch,
    /// The epoch whose randomness challenges it.
    pub challenge: ChainEpoch,
    /// First epoch recoveries for it are refused.
    pub fault_cutoff: ChainEpoch,
}

/// `proving info`: the miner's proving period and sector counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvingInfo {
    /// The miner's actor id.
    pub miner: u64,
    /// The chain's head.
    pub current_epoch: ChainEpoch,
    /// Epochs per proving period.
    pub proving_period: ChainEpoch,
    /// First epoch of the current period.
    pub period_start: ChainEpoch,
    /// The deadline open now (or next to open).
    pub deadline: DeadlineEpochs,
    /// Live sectors of that deadline.
    pub deadline_sectors: u64,
    /// Sectors not terminated.
    pub live: u64,
    /// Live sectors that are not faulty.
    pub active: u64,
    /// Faulty sectors (recovering included).
    pub faults: u64,
    /// Faulty sectors declared recovered.
    pub recovering: u64,
    /// Bytes of power (active sectors).
    pub power: u64,
}

/// One row of `proving deadlines`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadlineRow {
    /// The deadline's epochs in the current period.
    pub epochs: DeadlineEpochs,
    /// Its partitions.
    pub partitions: u64,
    /// Its live sectors.
    pub sectors: u64,
    /// Of those, faulty.
    pub faults: u64,
    /// Partitions with an accepted proof this period.
    pub proven_partitions: Vec<u64>,
    /// Whether it is the deadline open now.
    pub current: bool,
}

/// One partition of `proving deadline N`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartitionRow {
    /// Its index in the deadline.
    pub index: u64,
    /// Every sector assigned to it.
    pub all: Vec<u64>,
    /// Sectors not terminated.
    pub live: Vec<u64>,
    /// Live and not faulty.
    pub active: Vec<u64>,
    /// Faulty (recovering included).
    pub faulty: Vec<u64>,
    /// Declared recovered, waiting for a proof.
    pub recovering: Vec<u64>,
}

/// `proving deadline N`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadlineDetail {
    /// The deadline's row.
    pub row: DeadlineRow,
    /// Its partitions.
    pub partitions: Vec<PartitionRow>,
}

/// One faulty sector (`proving faults`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaultRow {
    /// Its deadline.
    pub deadline: u64,
    /// Its partition.
    pub partition: u64,
    /// The sector number.
    pub sector: u64,
    /// Whether it is declared recovered.
    pub recovering: bool,
}

/// One sector's check (`proving check N`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckRow {
    /// Its deadline.
    pub deadline: u64,
    /// Its partition.
    pub partition: u64,
    /// The sector number.
    pub sector: u64,
    /// Whether a window PoSt could prove it now.
    pub good: bool,
    /// Why not, when it is bad.
    pub reason: Option<String>,
}

/// A window PoSt of one partition computed by hand (`proving simulate-wdpost`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SimulateResult {
    /// The deadline.
    pub deadline: u64,
    /// The partition.
    pub partition: u64,
    /// The challenge epoch whose randomness was used.
    pub challenge: ChainEpoch,
    /// Sectors proven.
    pub proven: Vec<u64>,
    /// Sectors skipped (failed their check or found faulty by the prover).
    pub skipped: Vec<u64>,
    /// Bytes of the proof.
    pub proof_bytes: u64,
    /// Milliseconds the prover took.
    pub elapsed_ms: u64,
    /// Whether the proof verifies.
    pub verified: bool,
    /// Why it does not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `builtin` or `ext`.
    pub prover: String,
}

/// One election of the miner (`proving blocks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockRow {
    /// The block's epoch.
    pub epoch: ChainEpoch,
    /// `Pending`, `Won` or `Missed`.
    pub outcome: String,
    /// Why it was missed.
    pub reason: Option<String>,
    /// Milliseconds from the announcement to the proof, when one came.
    pub latency_ms: Option<u64>,
    /// The challenged sectors.
    pub sectors: Vec<u64>,
}

/// The proving methods.
#[rpc(server, client, namespace = "Venus", namespace_separator = ".")]
pub trait ProvingApi {
    /// The miner's proving period, current deadline and sector counts.
    #[method(name = "ProvingInfo")]
    async fn proving_info(&self, miner: Option<u64>) -> RpcResult<ProvingInfo>;

    /// Every deadline of the miner, in index order.
    #[method(name = "ProvingDeadlines")]
    async fn proving_deadlines(&self, miner: Option<u64>) -> RpcResult<Vec<DeadlineRow>>;

    /// One deadline with its partitions' sector sets.
    #[method(name = "ProvingDeadline")]
    async fn proving_deadline(&self, miner: Option<u64>, index: u64) -> RpcResult<DeadlineDetail>;

    /// Every faulty sector of the miner.
    #[method(name = "ProvingFaults")]
    async fn proving_faults(&self, miner: Option<u64>) -> RpcResult<Vec<FaultRow>>;

    /// Checks the live sectors of a deadline as the poster would: files
    /// exist (through their store), and with `slow` the sealed file's size
    /// and a one-challenge vanilla proof.
    #[method(name = "CheckProvable")]
    async fn check_provable(
        &self,
        miner: Option<u64>,
        deadline: u64,
        slow: bool,
    ) -> RpcResult<Vec<CheckRow>>;

    /// Computes and verifies a window PoSt of one partition with the
    /// configured prover, challenged at the deadline's current challenge
    /// epoch; sends nothing.
    #[method(name = "SimulateWdPoSt")]
    async fn simulate_wdpost(
        &self,
        miner: Option<u64>,
        deadline: u64,
        partition: u64,
        include_faulty: bool,
    ) -> RpcResult<SimulateResult>;

    /// Declares every faulty sector of the deadline recovered, without
    /// checks; the message id.
    #[method(name = "ProvingRecoverFaults")]
    async fn proving_recover_faults(&self, miner: Option<u64>, deadline: u64) -> RpcResult<String>;

    /// The miner's elections, newest first.
    #[method(name = "ProvingBlocks")]
    async fn proving_blocks(&self, miner: Option<u64>, limit: u64) -> RpcResult<Vec<BlockRow>>;
}
