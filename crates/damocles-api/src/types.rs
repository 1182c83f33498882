//! Request and response types of the `Venus.*` methods the worker calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codes::{OnChainState, SealProof, SubmitResult};
use crate::encoding::{Base64Bytes, Bytes32};

pub use damocles_sector::{ActorID, SectorID, SectorNumber};

/// A chain height (Go `abi.ChainEpoch`), signed as on the wire.
pub type ChainEpoch = i64;

/// What a sealing thread may take (AllocateSector's parameter). Empty or null
/// lists mean "any".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocateSectorSpec {
    /// Miner actor ids the thread may seal for (`AllowedMiners`).
    pub allowed_miners: Option<Vec<ActorID>>,
    /// Seal proof types the thread can seal (`AllowedProofTypes`), as numbers.
    pub allowed_proof_types: Option<Vec<SealProof>>,
}

/// AllocateSector's result (`null` when there is nothing to allocate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedSector {
    /// Spelt `ID` on the wire (no json tag in Go).
    #[serde(rename = "ID")]
    pub id: SectorID,
    /// The seal proof type to seal it with.
    #[serde(rename = "ProofType")]
    pub proof_type: SealProof,
}

/// AcquireDeals' second parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AcquireDealsSpec {
    /// At most this many deals; `null` for no limit.
    pub max_deals: Option<u64>,
    /// The worker's `min_deal_space`: the least bytes of deal data to fill the
    /// sector with; `null` when unset.
    pub min_used_space: Option<u64>,
}

/// Randomness drawn from the chain for PC1 (`{"Ticket": base64, "Epoch": n}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ticket {
    /// 32 random bytes, base64 on the wire (any other length fails to decode).
    pub ticket: Bytes32,
    /// The epoch it was drawn at (the head minus the ticket lookback).
    pub epoch: ChainEpoch,
}

/// Randomness drawn from the chain for C1 (`{"Seed": base64, "Epoch": n}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Seed {
    /// 32 random bytes, base64 on the wire.
    pub seed: Bytes32,
    /// The epoch it was drawn at (the precommit's epoch plus the seed delay).
    pub epoch: ChainEpoch,
}

/// SubmitPreCommit's second parameter: raw commitments (arrays of 32 numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreCommitOnChainInfo {
    /// The replica commitment from PC2 (`CommR`).
    pub comm_r: [u8; 32],
    /// The unsealed data commitment (`CommD`).
    pub comm_d: [u8; 32],
    /// The ticket PC1 sealed with.
    pub ticket: Ticket,
}

/// SubmitProof's second parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProofOnChainInfo {
    /// The C2 proof bytes, base64 on the wire (192 bytes per partition).
    pub proof: Base64Bytes,
}

/// SubmitPreCommit / SubmitProof result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubmitResp {
    /// The outcome (`Res`, a number; never 0).
    pub res: SubmitResult,
    /// An explanation, e.g. why it was rejected; `null` when there is none.
    pub desc: Option<String>,
}

/// PollPreCommitState / PollProofState result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PollStateResp {
    /// Where the message stands (`State`, a number; never 0).
    pub state: OnChainState,
    /// A detail (the message, why it failed); `null` when there is none.
    pub desc: Option<String>,
}

/// WaitSeed result: either a seed, or how many seconds to wait before asking again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitSeedResp {
    /// True while the seed is not available yet: ask again after `delay`.
    pub should_wait: bool,
    /// Seconds.
    pub delay: u64,
    /// The seed, once the chain has released it; `null` until then.
    pub seed: Option<Seed>,
}

/// Which worker thread reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerIdentifier {
    /// The worker's instance name (`[worker].name`, or its local IP).
    pub instance: String,
    /// The sealing thread's local store path.
    pub location: String,
}

/// The state change a ReportState announces, in the worker's state names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorStateChange {
    /// The state before the step, e.g. `PC1Done`.
    pub prev: String,
    /// The state the step left the sector in.
    pub next: String,
    /// A debug rendering of the event; in practice always `None`.
    pub event: String,
}

/// A failure level as the worker prints it: Temporary, Permanent, Abort, Critical.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorFailure {
    /// `Temporary`, `Permanent`, `Abort` or `Critical`; stored, not interpreted.
    pub level: String,
    /// The worker's rendering of the error chain (may span several lines).
    pub desc: String,
}

/// ReportState's second parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReportStateReq {
    /// Which worker and sealing thread reports.
    pub worker: WorkerIdentifier,
    /// The state change just made.
    pub state_change: SectorStateChange,
    /// Why the step failed; `null` when it succeeded.
    pub failure: Option<SectorFailure>,
}

/// ReportState's result; `Finalized: true` makes the worker drop the sector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorStateResp {
    /// Spelt `Id` on the wire.
    #[serde(rename = "Id")]
    pub id: SectorID,
    /// True when the manager holds the sector offline (finalized or aborted).
    #[serde(rename = "Finalized")]
    pub finalized: bool,
    /// The Go manager always sends a string, `""` for none.
    #[serde(rename = "AbortReason")]
    pub abort_reason: Option<String>,
}

/// Sealing-thread counts in a WorkerPing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerInfoSummary {
    /// Sealing threads in all.
    pub threads: u64,
    /// Threads with no sector.
    pub empty: u64,
    /// Threads paused (after a permanent failure or by an operator) until resumed.
    pub paused: u64,
    /// Threads working on a sector.
    pub running: u64,
    /// Threads waiting for a stage's concurrency slot.
    pub waiting: u64,
    /// Threads whose last step left an error.
    pub errors: u64,
}

/// WorkerPing's parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerInfo {
    /// The worker's instance name; must not be empty.
    pub name: String,
    /// `<ip>:<admin rpc port>`.
    pub dest: String,
    /// The worker's version, e.g. `v0.9.2`; stored, not parsed.
    pub version: String,
    /// Its sealing threads, counted by state.
    pub summary: WorkerInfoSummary,
}

/// A persist store as workers see it (StoreReserveSpace / StoreBasicInfo result).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreBasicInfo {
    /// The store's name, which workers match against their `[[attached]]` stores.
    pub name: String,
    /// The store's root path (its objstore config `Path`).
    pub path: String,
    /// Whether the store refuses to read non-regular files (e.g. symlinks).
    pub strict: bool,
    /// Whether the store refuses writes; a read-only store is never reserved.
    pub read_only: bool,
    /// Relative odds of being picked among fitting stores (0 counts as 1).
    pub weight: u64,
    /// Free-form settings, handed to the worker's `transfer` processor; `null` when unset.
    pub meta: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use filecoin_proofs_api::RegisteredSealProof;
    use serde_json::json;

    fn same<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        v: &T,
        wire: serde_json::Value,
    ) {
        assert_eq!(serde_json::to_value(v).unwrap(), wire);
        assert_eq!(&serde_json::from_value::<T>(wire).unwrap(), v);
    }

    #[test]
    fn allocation_shapes() {
        let id = SectorID {
            miner: 1000,
            number: 42,
        };
        same(&id, json!({"Miner": 1000, "Number": 42}));
        let spec = AllocateSectorSpec {
            allowed_miners: Some(vec![1000]),
            allowed_proof_types: Some(vec![SealProof(RegisteredSealProof::StackedDrg32GiBV1_1)]),
        };
        same(
            &spec,
            json!({"AllowedMiners": [1000], "AllowedProofTypes": [8]}),
        );
        let a = AllocatedSector {
            id,
            proof_type: SealProof(RegisteredSealProof::StackedDrg2KiBV1_1),
        };
        same(
            &a,
            json!({"ID": {"Miner": 1000, "Number": 42}, "ProofType": 5}),
        );
        let r = SectorStateResp {
            id,
            finalized: false,
            abort_reason: Some(String::new()),
        };
        same(
            &r,
            json!({"Id": {"Miner": 1000, "Number": 42}, "Finalized": false, "AbortReason": ""}),
        );
    }

    #[test]
    fn randomness_is_base64_of_exactly_32_bytes() {
        let t = Ticket {
            ticket: Bytes32([1; 32]),
            epoch: 10321,
        };
        same(
            &t,
            json!({"Ticket": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "Epoch": 10321}),
        );
        let short = json!({"Ticket": "AQID", "Epoch": 1});
        assert!(serde_json::from_value::<Ticket>(short)
            .unwrap_err()
            .to_string()
            .contains("expected 32 bytes"));
    }

    #[test]
    fn commitments_are_number_arrays_and_proofs_base64() {
        let info = PreCommitOnChainInfo {
            comm_r: [2; 32],
            comm_d: [3; 32],
            ticket: Ticket {
                ticket: Bytes32([1; 32]),
                epoch: 5,
            },
        };
        let v = serde_json::to_value(info).unwrap();
        assert_eq!(v["CommR"], serde_json::to_value([2u8; 32]).unwrap());
        assert_eq!(v["CommD"][0], json!(3));
        same(
            &ProofOnChainInfo {
                proof: Base64Bytes(vec![1, 2, 3]),
            },
            json!({"Proof": "AQID"}),
        );
    }

    #[test]
    fn result_codes_are_damocles_numbers() {
        same(
            &SubmitResp {
                res: SubmitResult::Accepted,
                desc: None,
            },
            json!({"Res": 1, "Desc": null}),
        );
        same(
            &PollStateResp {
                state: OnChainState::Landed,
                desc: None,
            },
            json!({"State": 3, "Desc": null}),
        );
        assert_eq!(OnChainState::ShouldAbort.code(), 7);
        assert_eq!(SubmitResult::FilesMissed.code(), 5);
        assert!(serde_json::from_value::<SubmitResp>(json!({"Res": 0, "Desc": null})).is_err());
        assert_eq!(
            SealProof(RegisteredSealProof::StackedDrg64GiBV1_1_Feat_SyntheticPoRep).code(),
            14
        );
        assert_eq!(
            SealProof(RegisteredSealProof::StackedDrg2KiBV1_2_Feat_NonInteractivePoRep).code(),
            15
        );
        assert!(SealProof::from_code(20).is_none());
    }

    #[test]
    fn wait_seed_and_report_state_shapes() {
        same(
            &WaitSeedResp {
                should_wait: true,
                delay: 30,
                seed: None,
            },
            json!({"ShouldWait": true, "Delay": 30, "Seed": null}),
        );
        let req = ReportStateReq {
            worker: WorkerIdentifier {
                instance: "w1".into(),
                location: "/data/t1".into(),
            },
            state_change: SectorStateChange {
                prev: "PC1Done".into(),
                next: "PC2Done".into(),
                event: "None".into(),
            },
            failure: Some(SectorFailure {
                level: "Temporary".into(),
                desc: "boom".into(),
            }),
        };
        same(
            &req,
            json!({
                "Worker": {"Instance": "w1", "Location": "/data/t1"},
                "StateChange": {"Prev": "PC1Done", "Next": "PC2Done", "Event": "None"},
                "Failure": {"Level": "Temporary", "Desc": "boom"}
            }),
        );
        let store = StoreBasicInfo {
            name: "p1".into(),
            path: "/mnt/p1".into(),
            strict: false,
            read_only: false,
            weight: 1,
            meta: None,
        };
        same(
            &store,
            json!({"Name": "p1", "Path": "/mnt/p1", "Strict": false, "ReadOnly": false, "Weight": 1, "Meta": null}),
        );
    }
}

/// A CID as go-ipfs encodes it in JSON: `{"/": "<cid string>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CidJson {
    /// The CID in its string form, e.g. `baga6ea4…` for a piece.
    #[serde(rename = "/")]
    pub cid: String,
}

/// A piece placed in a sector (go-state-types `abi.PieceInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PieceInfo {
    /// Padded size.
    pub size: u64,
    /// The piece commitment as a CID.
    #[serde(rename = "PieceCID")]
    pub piece_cid: CidJson,
}

/// The deal behind a piece. Workers read DealID, AllocationID, PayloadSize and
/// IsBuiltinMarket; it must never be `null` (zero ids for a filler piece).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealInfo {
    /// Builtin-market deal id; 0 for a DDO deal or a filler piece.
    #[serde(rename = "DealID")]
    pub deal_id: u64,
    /// CID of the message that published the deal; `null` when there is none.
    #[serde(rename = "PublishCid")]
    pub publish_cid: Option<CidJson>,
    /// Verified-registry allocation id that names a DDO deal; 0 when there is none.
    #[serde(rename = "AllocationID")]
    pub allocation_id: u64,
    /// The deal's piece commitment.
    #[serde(rename = "PieceCID")]
    pub piece_cid: Option<CidJson>,
    /// The deal's padded piece size, bytes.
    #[serde(rename = "PieceSize")]
    pub piece_size: u64,
    /// The client's address, e.g. `t01005`.
    #[serde(rename = "Client")]
    pub client: String,
    /// The storage provider's address, e.g. `t01000`.
    #[serde(rename = "Provider")]
    pub provider: String,
    /// Where the piece starts in the sector, padded bytes.
    #[serde(rename = "Offset")]
    pub offset: u64,
    /// The piece's length in the sector, padded bytes.
    #[serde(rename = "Length")]
    pub length: u64,
    /// Bytes of real data in the piece; the rest is zero-filled.
    #[serde(rename = "PayloadSize")]
    pub payload_size: u64,
    /// The epoch the deal must start by.
    #[serde(rename = "StartEpoch")]
    pub start_epoch: ChainEpoch,
    /// The epoch the deal ends.
    #[serde(rename = "EndEpoch")]
    pub end_epoch: ChainEpoch,
    /// True for a builtin-market deal (keyed by `DealID`), false for a DDO deal
    /// (keyed by `AllocationID`).
    #[serde(rename = "IsBuiltinMarket")]
    pub is_builtin_market: bool,
    /// damocles' `IsCompatible` flag; workers do not read it.
    #[serde(rename = "IsCompatible")]
    pub is_compatible: bool,
}

/// One entry of AcquireDeals' result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPiece {
    /// The piece's padded size and commitment.
    pub piece: PieceInfo,
    /// The deal behind it; always an object (zero ids for a filler piece).
    pub deal_info: DealInfo,
}
