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
    #[serde(rename = "ID")]
    pub id: SectorID,
    pub sector_type: SealProof,
    pub ticket: Option<Ticket>,
    pub seed: Option<Seed>,
    /// The precommit as submitted, and the chain message that carries it.
    pub pre: Option<PreCommitOnChainInfo>,
    pub pre_message: Option<String>,
    pub proof: Option<Base64Bytes>,
    pub proof_message: Option<String>,
    /// The worker's last ReportState.
    pub latest_state: Option<ReportStateReq>,
    /// The persist store instance holding the sealed files, once checked.
    pub persisted: Option<String>,
    pub finalized: bool,
    pub aborted: bool,
    pub abort_reason: String,
    /// Unix seconds.
    pub created_at: u64,
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
    All,
}

/// A persist store with its space accounting (`Venus.StoreList`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreDetail {
    pub info: StoreBasicInfo,
    /// `embed-fs` for the builtin filesystem store.
    #[serde(rename = "Type")]
    pub store_type: String,
    pub total: u64,
    pub free: u64,
    /// Bytes promised to sectors that have not persisted yet.
    pub reserved: u64,
    pub reserved_sectors: Vec<SectorID>,
}

/// The chain head (`Venus.ChainHead`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainHeadInfo {
    pub network: String,
    pub height: ChainEpoch,
    /// Unix seconds at which this epoch started.
    pub timestamp: u64,
    pub block_time_secs: f64,
}

/// Where the chain's miner actor has a sector (`Venus.ChainSectorInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainSectorInfo {
    /// `PreCommitted`, `Active` or `Faulty`.
    pub state: String,
    pub pre_commit_epoch: ChainEpoch,
    pub activation: Option<ChainEpoch>,
    pub expiration: Option<ChainEpoch>,
    pub deadline: Option<u64>,
    pub partition: Option<u64>,
    pub comm_r: [u8; 32],
}
