//! What the manager needs from a chain, independent of which chain it is.
//!
//! [`Chain`] is the seam between the manager and a network: head, randomness,
//! messages and the miner actor's view of sectors and deadlines. This crate
//! holds only the trait and its plain data, no storage: the embedded devnet
//! (`damocles-devnet`) implements it, and so can a Lotus/Venus node adapter or
//! a test double, without depending on each other.

#![warn(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof};
use serde::{Deserialize, Serialize};

pub use damocles_sector::{ActorID, SectorNumber};

/// A chain epoch (block height).
pub type Epoch = i64;

/// Filecoin's randomness domain separation tags, by their numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Domain {
    /// Block tickets.
    TicketProduction = 1,
    /// Winning PoSt elections (the election proof).
    ElectionProofProduction = 2,
    /// The sectors a winning PoSt challenges.
    WinningPoStChallengeSeed = 3,
    /// The leaves a window PoSt challenges.
    WindowedPoStChallengeSeed = 4,
    /// A sector's sealing ticket.
    SealRandomness = 5,
    /// A sector's interactive seed (the C1 challenge).
    InteractiveSealChallengeSeed = 6,
    /// The chain commit a window PoSt submission names.
    PoStChainCommit = 9,
}

/// Why a chain call failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The chain's own storage failed.
    #[error("chain storage: {0}")]
    Storage(String),
    /// No such miner actor.
    #[error("miner t0{0} does not exist on this chain")]
    UnknownMiner(ActorID),
    /// No such message.
    #[error("message {0} is not known to this chain")]
    UnknownMessage(String),
    /// Randomness asked for an epoch the chain has not reached.
    #[error("randomness for epoch {epoch} is not available yet (head is {head})")]
    FutureEpoch {
        /// The epoch asked for.
        epoch: Epoch,
        /// The chain's head.
        head: Epoch,
    },
    /// The request makes no sense to the chain.
    #[error("{0}")]
    Invalid(String),
}

/// A chain call's result.
pub type Result<T> = std::result::Result<T, ChainError>;

/// The chain's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The head's epoch.
    pub epoch: Epoch,
    /// Unix seconds at which `epoch` started.
    pub timestamp: u64,
}

/// A miner actor's fixed facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerInfo {
    /// The miner's actor id.
    pub actor: ActorID,
    /// Bytes of each of its sectors.
    pub sector_size: u64,
    /// The seal proof its sectors use.
    pub seal_proof: RegisteredSealProof,
    /// The window PoSt proof its deadlines take.
    pub window_post_proof: RegisteredPoStProof,
    /// First epoch of the miner's first proving period (deadline 0 opens here).
    pub proving_period_start: Epoch,
}

/// Parameters of a PreCommitSector message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommitParams {
    /// The sector precommitted.
    pub sector_number: SectorNumber,
    /// Its seal proof type.
    pub seal_proof: RegisteredSealProof,
    /// Its replica commitment.
    pub comm_r: [u8; 32],
    /// Its data commitment.
    pub comm_d: [u8; 32],
    /// The epoch whose SealRandomness is the sector's ticket. The chain derives
    /// the ticket itself: a sector sealed with any other ticket fails its proof.
    pub seal_rand_epoch: Epoch,
}

/// A message to a miner actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Precommit a sealed sector.
    PreCommitSector {
        /// The miner.
        miner: ActorID,
        /// What is precommitted.
        params: PreCommitParams,
    },
    /// Prove a precommitted sector with its seal proof.
    ProveCommitSector {
        /// The miner.
        miner: ActorID,
        /// The sector proven.
        sector_number: SectorNumber,
        /// The seal proof (C2's output).
        proof: Vec<u8>,
    },
}

impl Message {
    /// The actor method's name, for logs.
    pub fn method(&self) -> &'static str {
        match self {
            Message::PreCommitSector { .. } => "PreCommitSector",
            Message::ProveCommitSector { .. } => "ProveCommitSector",
        }
    }
}

/// Filecoin exit codes the miner actor uses.
#[allow(missing_docs)]
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
        /// The epoch it executed at.
        epoch: Epoch,
        /// Its exit code ([`exit_code`]).
        exit_code: i64,
        /// Why it failed, when it did.
        error: Option<String>,
    },
}

/// A precommitted sector, waiting for its proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommitOnChain {
    /// What was precommitted.
    pub params: PreCommitParams,
    /// The epoch the precommit landed at.
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
    /// The sector's number.
    pub number: SectorNumber,
    /// Its seal proof type.
    pub seal_proof: RegisteredSealProof,
    /// Its replica commitment.
    pub comm_r: [u8; 32],
    /// Its data commitment.
    pub comm_d: [u8; 32],
    /// When it was precommitted.
    pub precommit_epoch: Epoch,
    /// When it became active.
    pub activation: Epoch,
    /// When it expires.
    pub expiration: Epoch,
    /// The deadline that proves it.
    pub deadline: u64,
    /// Its partition within that deadline.
    pub partition: u64,
    /// Whether the chain holds it faulty.
    pub faulty: bool,
}

/// One proving deadline of a miner at some epoch (the shape window PoSt
/// scheduling works with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineInfo {
    /// First epoch of the proving period this deadline belongs to.
    pub period_start: Epoch,
    /// The deadline's index in the period.
    pub index: u64,
    /// First epoch a proof is accepted.
    pub open: Epoch,
    /// First epoch a proof is no longer accepted.
    pub close: Epoch,
    /// The epoch whose randomness challenges this deadline.
    pub challenge: Epoch,
}

/// The chain, as the manager uses it.
#[async_trait]
pub trait Chain: Send + Sync + 'static {
    /// A short name for logs and `util chain head` ("devnet", a node URL, ...).
    fn network(&self) -> String;
    /// The time between two epochs.
    fn block_time(&self) -> Duration;
    /// Epochs between a precommit landing and its seed.
    fn seed_delay(&self) -> Epoch;
    /// How far behind the head tickets are drawn.
    fn ticket_lookback(&self) -> Epoch;

    /// The current head.
    async fn head(&self) -> Result<Head>;
    /// A miner actor's fixed facts.
    async fn miner_info(&self, miner: ActorID) -> Result<MinerInfo>;
    /// Randomness of `domain` at `epoch` (at most the head) for `entropy`.
    async fn randomness(&self, domain: Domain, epoch: Epoch, entropy: &[u8]) -> Result<[u8; 32]>;
    /// Queues a message; returns its id.
    async fn push_message(&self, msg: Message) -> Result<String>;
    /// Where a pushed message stands.
    async fn message_status(&self, id: &str) -> Result<MessageStatus>;
    /// A sector's precommit, while it waits for its proof.
    async fn precommit(
        &self,
        miner: ActorID,
        number: SectorNumber,
    ) -> Result<Option<PreCommitOnChain>>;
    /// A proven sector.
    async fn sector(&self, miner: ActorID, number: SectorNumber) -> Result<Option<SectorOnChain>>;
    /// The deadline of `miner` that is current at `epoch`.
    async fn deadline_info(&self, miner: ActorID, epoch: Epoch) -> Result<DeadlineInfo>;
}

/// The entropy chain randomness for a miner's sector draws from (the miner's
/// actor id, little-endian).
pub fn miner_entropy(miner: ActorID) -> [u8; 8] {
    miner.to_le_bytes()
}
