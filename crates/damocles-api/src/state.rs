//! What the manager knows about a sector and the chain, as the operator CLI
//! sees it (`Venus.ListSectors`, `Venus.FindSector`, ...). The manager stores
//! [`SectorState`] as is, so the CLI shows exactly what is on disk.

use serde::{Deserialize, Serialize};

use crate::codes::SealProof;
use crate::encoding::Base64Bytes;
use crate::types::*;

/// One sector's record in the manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorState {
    /// The sector (`ID` on the wire).
    #[serde(rename = "ID")]
    pub id: SectorID,
    /// The seal proof type it was allocated with.
    pub sector_type: SealProof,
    /// The PC1 ticket, once AssignTicket has drawn it.
    pub ticket: Option<Ticket>,
    /// The interactive seed, once WaitSeed has released it.
    pub seed: Option<Seed>,
    /// The precommit as submitted, and the chain message that carries it.
    pub pre: Option<PreCommitOnChainInfo>,
    /// Id of the chain message carrying the precommit, once sent.
    pub pre_message: Option<String>,
    /// The C2 proof from SubmitProof (base64 on the wire).
    pub proof: Option<Base64Bytes>,
    /// Id of the chain message carrying the prove-commit, once sent.
    pub proof_message: Option<String>,
    /// The worker's last ReportState.
    pub latest_state: Option<ReportStateReq>,
    /// The persist store instance holding the sealed files, once checked.
    pub persisted: Option<String>,
    /// Set by ReportFinalized or FinalizeSector; the record is then offline.
    pub finalized: bool,
    /// Set by ReportAborted or AbortSector; the record is then offline.
    pub aborted: bool,
    /// Why it was aborted; empty otherwise.
    pub abort_reason: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the record's last change.
    pub updated_at: u64,
}

impl SectorState {
    /// A one-word summary for tables: where the sector stands.
    pub fn phase(&self) -> &'static str {
        if self.aborted {
            "aborted"
        } else if self.finalized {
            "finalized"
        } else if self.proof_message.is_some() {
            "proving"
        } else if self.seed.is_some() {
            "seeded"
        } else if self.persisted.is_some() {
            "persisted"
        } else if self.pre_message.is_some() {
            "precommitted"
        } else if self.ticket.is_some() {
            "sealing"
        } else {
            "allocated"
        }
    }
}

/// Which sectors `ListSectors` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SectorListKind {
    /// In progress.
    #[default]
    Online,
    /// Finalized or aborted.
    Offline,
    /// Both online and offline.
    All,
}

/// A persist store with its space accounting (`Venus.StoreList`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreDetail {
    /// Name, path and flags, as workers see them.
    pub info: StoreBasicInfo,
    /// `embed-fs` for the builtin filesystem store.
    #[serde(rename = "Type")]
    pub store_type: String,
    /// Capacity in bytes, as the store reports it.
    pub total: u64,
    /// Free bytes as the store reports them, before reservations.
    pub free: u64,
    /// Bytes promised to sectors that have not persisted yet.
    pub reserved: u64,
    /// The sectors holding those reservations.
    pub reserved_sectors: Vec<SectorID>,
}

/// The chain head (`Venus.ChainHead`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainHeadInfo {
    /// A short name for the chain (`devnet`, a node URL, ...).
    pub network: String,
    /// The head epoch.
    pub height: ChainEpoch,
    /// Unix seconds at which this epoch started.
    pub timestamp: u64,
    /// Seconds between two epochs.
    pub block_time_secs: f64,
}

/// Where the chain's miner actor has a sector (`Venus.ChainSectorInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainSectorInfo {
    /// `PreCommitted`, `Active` or `Faulty`.
    pub state: String,
    /// The epoch its precommit landed at.
    pub pre_commit_epoch: ChainEpoch,
    /// The epoch it became active; `null` while only precommitted.
    pub activation: Option<ChainEpoch>,
    /// The epoch it expires; `null` while only precommitted.
    pub expiration: Option<ChainEpoch>,
    /// Index of the proving deadline it belongs to; `null` while only precommitted.
    pub deadline: Option<u64>,
    /// Its partition within that deadline; `null` while only precommitted.
    pub partition: Option<u64>,
    /// The replica commitment the chain holds (32 numbers on the wire).
    pub comm_r: [u8; 32],
}
