//! What the manager needs from a chain, independent of which chain it is.
//!
//! [`Chain`] is the seam between the manager and a network: head, randomness,
//! messages and the miner actor's view of sectors and deadlines. This crate
//! holds only the trait and its plain data, no storage: the embedded devnet
//! (`damocles-devnet`) implements it, and so can a Lotus/Venus node adapter or
//! a test double, without depending on each other.

#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

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
    /// The chain is reached through another process (a poster node's
    /// sealing manager) that failed the call or could not be reached.
    #[error("{0}")]
    Remote(String),
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

/// One partition of a window PoSt submission.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoStPartition {
    /// The partition's index in its deadline.
    pub index: u64,
    /// Sectors the proof leaves out (unreadable ones): the chain marks them
    /// faulty instead of refusing the partition.
    pub skipped: BTreeSet<SectorNumber>,
}

/// A window PoSt proof as the chain takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoStProof {
    /// Its proof type: the miner's window PoSt proof.
    pub post_proof: RegisteredPoStProof,
    /// The SNARK bytes (one proof per proofs-partition, concatenated).
    pub proof_bytes: Vec<u8>,
}

/// Parameters of a SubmitWindowedPoSt message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitWindowedPoStParams {
    /// The deadline proven; it must be the one open when the message executes.
    pub deadline: u64,
    /// The partitions the proof covers.
    pub partitions: Vec<PoStPartition>,
    /// Exactly one proof, over the partitions' sectors that are neither
    /// faulty (unless recovering) nor skipped, in sector number order.
    pub proofs: Vec<PoStProof>,
    /// The epoch of `chain_commit_rand`: at or after the deadline's challenge
    /// epoch, before the epoch the message executes at.
    pub chain_commit_epoch: Epoch,
    /// The chain's [`Domain::PoStChainCommit`] randomness at
    /// `chain_commit_epoch` ([`Chain::post_commit_randomness`]).
    pub chain_commit_rand: [u8; 32],
}

/// Faulty sectors of one partition that the miner declares recovered: the
/// next proof of that partition must cover them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryDeclaration {
    /// The partition's deadline.
    pub deadline: u64,
    /// The partition's index in that deadline.
    pub partition: u64,
    /// The sectors declared; those not faulty are ignored.
    pub sectors: BTreeSet<SectorNumber>,
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
    /// Prove partitions of the open deadline (Filecoin method 5).
    SubmitWindowedPoSt {
        /// The miner.
        miner: ActorID,
        /// The deadline, partitions and proof.
        params: SubmitWindowedPoStParams,
    },
    /// Declare faulty sectors recovered (Filecoin method 11); refused after
    /// a declared deadline's fault cutoff.
    DeclareFaultsRecovered {
        /// The miner.
        miner: ActorID,
        /// The declarations, applied all or none.
        recoveries: Vec<RecoveryDeclaration>,
    },
}

impl Message {
    /// The actor method's name, for logs.
    pub fn method(&self) -> &'static str {
        match self {
            Message::PreCommitSector { .. } => "PreCommitSector",
            Message::ProveCommitSector { .. } => "ProveCommitSector",
            Message::SubmitWindowedPoSt { .. } => "SubmitWindowedPoSt",
            Message::DeclareFaultsRecovered { .. } => "DeclareFaultsRecovered",
        }
    }

    /// The miner actor the message goes to.
    pub fn miner(&self) -> ActorID {
        match self {
            Message::PreCommitSector { miner, .. }
            | Message::ProveCommitSector { miner, .. }
            | Message::SubmitWindowedPoSt { miner, .. }
            | Message::DeclareFaultsRecovered { miner, .. } => *miner,
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
    /// First epoch a proof is no longer accepted; the chain processes the
    /// deadline's end (missed proofs become faults) at this epoch.
    pub close: Epoch,
    /// The epoch whose randomness challenges this deadline.
    pub challenge: Epoch,
    /// First epoch at which recoveries for this deadline are refused.
    pub fault_cutoff: Epoch,
}

impl DeadlineInfo {
    /// Whether a proof for this deadline is accepted at `epoch`.
    pub fn is_open(&self, epoch: Epoch) -> bool {
        self.open <= epoch && epoch < self.close
    }

    /// Whether the deadline has closed by `epoch`.
    pub fn has_elapsed(&self, epoch: Epoch) -> bool {
        epoch >= self.close
    }

    /// Whether recoveries for this deadline are refused at `epoch`.
    pub fn fault_cutoff_passed(&self, epoch: Epoch) -> bool {
        epoch >= self.fault_cutoff
    }
}

/// A miner's deadline as its state stands at the head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineState {
    /// The deadline's index in the period.
    pub index: u64,
    /// How many partitions it has.
    pub partitions: u64,
    /// Sectors in its partitions.
    pub live_sectors: u64,
    /// Of those, the faulty ones (recovering included).
    pub faulty_sectors: u64,
    /// Partitions with an accepted proof in the current proving period.
    pub proven_partitions: BTreeSet<u64>,
}

/// One partition of a deadline, by sector set (Filecoin's names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The partition's index in its deadline.
    pub index: u64,
    /// Every sector assigned to it.
    pub all: BTreeSet<SectorNumber>,
    /// Sectors not terminated (the devnet terminates none: `all`).
    pub live: BTreeSet<SectorNumber>,
    /// Live sectors that are not faulty: they count for power.
    pub active: BTreeSet<SectorNumber>,
    /// Sectors the chain holds faulty (recovering ones included).
    pub faulty: BTreeSet<SectorNumber>,
    /// Faulty sectors declared recovered, waiting for a proof.
    pub recovering: BTreeSet<SectorNumber>,
}

impl PartitionState {
    /// What a window PoSt of this partition proves: the live sectors that
    /// are not faulty, and the recovering ones.
    pub fn to_prove(&self) -> BTreeSet<SectorNumber> {
        self.active.union(&self.recovering).copied().collect()
    }
}

/// An election the miner won: the chain wants a winning PoSt over
/// `sectors` before `cutoff_unix_ms` (venus-gateway's `ComputeProof` event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinningChallenge {
    /// The elected miner.
    pub miner: ActorID,
    /// The epoch of the block the proof is for.
    pub epoch: Epoch,
    /// [`Domain::WinningPoStChallengeSeed`] at `epoch` for the miner
    /// (unmasked: provers take [`post_seed`] of it).
    pub randomness: [u8; 32],
    /// The winning PoSt proof type (e.g. `StackedDrgWinning2KiBV1`).
    pub proof_type: RegisteredPoStProof,
    /// The challenged sectors, in the order the chain drew them.
    pub sectors: Vec<SectorOnChain>,
    /// Unix milliseconds at which the election was announced.
    pub issued_unix_ms: u64,
    /// Unix milliseconds after which a proof no longer makes the block.
    pub cutoff_unix_ms: u64,
}

/// What became of an election.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockOutcome {
    /// Waiting for the proof (before the cutoff).
    Pending,
    /// A proof arrived in time and verified: the block is the miner's.
    Won,
    /// No valid proof arrived in time.
    Missed {
        /// Why: late, invalid, or none at all.
        reason: String,
    },
}

/// One election of a miner and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// The challenge the miner was sent.
    pub challenge: WinningChallenge,
    /// What became of it.
    pub outcome: BlockOutcome,
    /// Milliseconds from the announcement to the proof's arrival, when one arrived.
    pub latency_ms: Option<u64>,
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
    /// Every deadline of `miner` at the head, in index order.
    async fn deadlines(&self, miner: ActorID) -> Result<Vec<DeadlineState>>;
    /// The partitions of one deadline of `miner` at the head, in index order.
    async fn partitions(&self, miner: ActorID, deadline: u64) -> Result<Vec<PartitionState>>;
    /// Proven sectors by number, in number order; unknown numbers are left out.
    async fn sectors(
        &self,
        miner: ActorID,
        numbers: &BTreeSet<SectorNumber>,
    ) -> Result<Vec<SectorOnChain>>;
    /// Every new head, once the chain's state at it is settled (its messages
    /// executed, its closed deadlines processed). A receiver that falls
    /// behind sees only the latest head.
    fn head_changes(&self) -> watch::Receiver<Head>;

    /// Elections of `miner` still waiting for a proof (announced at some
    /// head, cutoff not passed), oldest first. Announced before the head is.
    async fn open_winning_challenges(&self, miner: ActorID) -> Result<Vec<WinningChallenge>>;
    /// Hands in the winning PoSt for `miner`'s election at `epoch`. The
    /// record says whether the block was won; a late or invalid proof
    /// misses it (an `Ok` record with [`BlockOutcome::Missed`]).
    async fn submit_winning_post(
        &self,
        miner: ActorID,
        epoch: Epoch,
        proof: Vec<u8>,
    ) -> Result<BlockRecord>;
    /// `miner`'s elections, newest first, at most `limit`.
    async fn blocks(&self, miner: ActorID, limit: usize) -> Result<Vec<BlockRecord>>;

    /// The randomness a deadline's window PoSt is challenged with
    /// ([`Domain::WindowedPoStChallengeSeed`] at its challenge epoch, the
    /// miner's entropy). Unmasked: the proofs take [`post_seed`] of it.
    async fn window_post_randomness(
        &self,
        miner: ActorID,
        deadline: &DeadlineInfo,
    ) -> Result<[u8; 32]> {
        self.randomness(
            Domain::WindowedPoStChallengeSeed,
            deadline.challenge,
            &miner_entropy(miner),
        )
        .await
    }

    /// The chain commit a window PoSt names ([`Domain::PoStChainCommit`] at
    /// `epoch`, no entropy, as Filecoin draws it from tickets).
    async fn post_commit_randomness(&self, epoch: Epoch) -> Result<[u8; 32]> {
        self.randomness(Domain::PoStChainCommit, epoch, &[]).await
    }
}

/// The entropy chain randomness for a miner's sector and PoSt challenge
/// draws from (the miner's actor id, little-endian).
pub fn miner_entropy(miner: ActorID) -> [u8; 8] {
    miner.to_le_bytes()
}

/// The PoSt seed of chain randomness: its top two bits cleared so that it is
/// a field element, as every Filecoin prover and verifier masks it.
pub fn post_seed(randomness: [u8; 32]) -> [u8; 32] {
    let mut seed = randomness;
    seed[31] &= 0x3f;
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline() -> DeadlineInfo {
        DeadlineInfo {
            period_start: 0,
            index: 1,
            open: 20,
            close: 40,
            challenge: 0,
            fault_cutoff: -10,
        }
    }

    #[test]
    fn deadline_windows_are_half_open() {
        let d = deadline();
        assert!(!d.is_open(19) && d.is_open(20) && d.is_open(39) && !d.is_open(40));
        assert!(!d.has_elapsed(39) && d.has_elapsed(40));
        assert!(!d.fault_cutoff_passed(-11) && d.fault_cutoff_passed(-10));
    }

    #[test]
    fn partitions_prove_active_and_recovering_sectors() {
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<_>>();
        let p = PartitionState {
            index: 0,
            all: set(&[1, 2, 3]),
            live: set(&[1, 2, 3]),
            active: set(&[1]),
            faulty: set(&[2, 3]),
            recovering: set(&[3]),
        };
        assert_eq!(p.to_prove(), set(&[1, 3]));
    }

    #[test]
    fn seeds_are_masked_and_messages_name_their_miner() {
        assert_eq!(post_seed([0xff; 32])[31], 0x3f);
        assert_eq!(post_seed([0xff; 32])[30], 0xff);
        let m = Message::DeclareFaultsRecovered {
            miner: 7,
            recoveries: vec![],
        };
        assert_eq!((m.miner(), m.method()), (7, "DeclareFaultsRecovered"));
    }
}
