//! What the manager needs from a chain, independent of which chain it is.

use std::time::Duration;

use async_trait::async_trait;
use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof};
use serde::{Deserialize, Serialize};

pub use crate::randomness::Domain;

pub type Epoch = i64;
pub type ActorID = u64;
pub type SectorNumber = u64;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("chain storage: {0}")]
    Storage(String),
    #[error("miner t0{0} does not exist on this chain")]
    UnknownMiner(ActorID),
    #[error("message {0} is not known to this chain")]
    UnknownMessage(String),
    #[error("randomness for epoch {epoch} is not available yet (head is {head})")]
    FutureEpoch { epoch: Epoch, head: Epoch },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, ChainError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub epoch: Epoch,
    /// Unix seconds at which `epoch` started.
    pub timestamp: u64,
}

/// A miner actor's fixed facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerInfo {
    pub actor: ActorID,
    pub sector_size: u64,
    pub seal_proof: RegisteredSealProof,
    pub window_post_proof: RegisteredPoStProof,
    /// First epoch of the miner's first proving period (deadline 0 opens here).
    pub proving_period_start: Epoch,
}

/// Parameters of a PreCommitSector message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommitParams {
    pub sector_number: SectorNumber,
    pub seal_proof: RegisteredSealProof,
    pub comm_r: [u8; 32],
    pub comm_d: [u8; 32],
    /// The epoch whose SealRandomness is the sector's ticket. The chain derives
    /// the ticket itself: a sector sealed with any other ticket fails its proof.
    pub seal_rand_epoch: Epoch,
}

/// A message to a miner actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    PreCommitSector {
        miner: ActorID,
        params: PreCommitParams,
    },
    ProveCommitSector {
        miner: ActorID,
        sector_number: SectorNumber,
        proof: Vec<u8>,
    },
}

impl Message {
    pub fn method(&self) -> &'static str {
        match self {
            Message::PreCommitSector { .. } => "PreCommitSector",
            Message::ProveCommitSector { .. } => "ProveCommitSector",
        }
    }
}

/// Filecoin exit codes the miner actor uses.
pub mod exit_code {
    pub const OK: i64 = 0;
    pub const ILLEGAL_ARGUMENT: i64 = 16;
    pub const NOT_FOUND: i64 = 17;
    pub const FORBIDDEN: i64 = 18;
    pub const ILLEGAL_STATE: i64 = 20;
}

/// Where a pushed message stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageStatus {
    /// In the pool, not executed yet.
    Pending,
    /// Executed at `epoch`; `exit_code` 0 means it took effect.
    Executed {
        epoch: Epoch,
        exit_code: i64,
        error: Option<String>,
    },
}

/// A precommitted sector, waiting for its proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommitOnChain {
    pub params: PreCommitParams,
    pub precommit_epoch: Epoch,
}

impl PreCommitOnChain {
    /// The epoch whose randomness is the interactive seed.
    pub fn seed_epoch(&self, seed_delay: Epoch) -> Epoch {
        self.precommit_epoch + seed_delay
    }
}

/// A proven sector in the miner actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorOnChain {
    pub number: SectorNumber,
    pub seal_proof: RegisteredSealProof,
    pub comm_r: [u8; 32],
    pub comm_d: [u8; 32],
    pub precommit_epoch: Epoch,
    pub activation: Epoch,
    pub expiration: Epoch,
    pub deadline: u64,
    pub partition: u64,
    pub faulty: bool,
}

/// One proving deadline of a miner at some epoch (the shape window PoSt
/// scheduling works with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineInfo {
    pub period_start: Epoch,
    pub index: u64,
    pub open: Epoch,
    pub close: Epoch,
    /// The epoch whose randomness challenges this deadline.
    pub challenge: Epoch,
}

/// The chain, as the manager uses it.
#[async_trait]
pub trait Chain: Send + Sync + 'static {
    /// A short name for logs and `util chain head` ("devnet", a node URL, ...).
    fn network(&self) -> String;
    fn block_time(&self) -> Duration;
    /// Epochs between a precommit landing and its seed.
    fn seed_delay(&self) -> Epoch;
    /// How far behind the head tickets are drawn.
    fn ticket_lookback(&self) -> Epoch;

    async fn head(&self) -> Result<Head>;
    async fn miner_info(&self, miner: ActorID) -> Result<MinerInfo>;
    /// Randomness of `domain` at `epoch` (at most the head) for `entropy`.
    async fn randomness(&self, domain: Domain, epoch: Epoch, entropy: &[u8]) -> Result<[u8; 32]>;
    /// Queues a message; returns its id.
    async fn push_message(&self, msg: Message) -> Result<String>;
    async fn message_status(&self, id: &str) -> Result<MessageStatus>;
    async fn precommit(
        &self,
        miner: ActorID,
        number: SectorNumber,
    ) -> Result<Option<PreCommitOnChain>>;
    async fn sector(&self, miner: ActorID, number: SectorNumber) -> Result<Option<SectorOnChain>>;
    /// The deadline of `miner` that is current at `epoch`.
    async fn deadline_info(&self, miner: ActorID, epoch: Epoch) -> Result<DeadlineInfo>;
}

/// The entropy chain randomness for a miner's sector draws from (the miner's
/// actor id, little-endian).
pub fn miner_entropy(miner: ActorID) -> [u8; 8] {
    miner.to_le_bytes()
}
