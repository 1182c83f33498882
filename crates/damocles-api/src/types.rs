//! Request and response types of the `Venus.*` methods the worker calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codes::{OnChainState, SealProof, SubmitResult};
use crate::encoding::{Base64Bytes, Bytes32};

pub use damocles_sector::{ActorID, SectorID, SectorNumber};

pub type ChainEpoch = i64;

/// What a sealing thread may take (AllocateSector's parameter). Empty or null
/// lists mean "any".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocateSectorSpec {
    pub allowed_miners: Option<Vec<ActorID>>,
    pub allowed_proof_types: Option<Vec<SealProof>>,
}

/// AllocateSector's result (`null` when there is nothing to allocate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedSector {
    /// Spelt `ID` on the wire (no json tag in Go).
    #[serde(rename = "ID")]
    pub id: SectorID,
    #[serde(rename = "ProofType")]
    pub proof_type: SealProof,
}

/// AcquireDeals' second parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AcquireDealsSpec {
    pub max_deals: Option<u64>,
    pub min_used_space: Option<u64>,
}

/// Randomness drawn from the chain for PC1 (`{"Ticket": base64, "Epoch": n}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ticket {
    pub ticket: Bytes32,
    pub epoch: ChainEpoch,
}

/// Randomness drawn from the chain for C1 (`{"Seed": base64, "Epoch": n}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Seed {
    pub seed: Bytes32,
    pub epoch: ChainEpoch,
}

/// SubmitPreCommit's second parameter: raw commitments (arrays of 32 numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreCommitOnChainInfo {
    pub comm_r: [u8; 32],
    pub comm_d: [u8; 32],
    pub ticket: Ticket,
}

/// SubmitProof's second parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProofOnChainInfo {
    pub proof: Base64Bytes,
}

/// SubmitPreCommit / SubmitProof result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubmitResp {
    pub res: SubmitResult,
    pub desc: Option<String>,
}

/// PollPreCommitState / PollProofState result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PollStateResp {
    pub state: OnChainState,
    pub desc: Option<String>,
}

/// WaitSeed result: either a seed, or how many seconds to wait before asking again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitSeedResp {
    pub should_wait: bool,
    /// Seconds.
    pub delay: u64,
    pub seed: Option<Seed>,
}

/// Which worker thread reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerIdentifier {
    pub instance: String,
    pub location: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorStateChange {
    pub prev: String,
    pub next: String,
    pub event: String,
}

/// A failure level as the worker prints it: Temporary, Permanent, Abort, Critical.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorFailure {
    pub level: String,
    pub desc: String,
}

/// ReportState's second parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReportStateReq {
    pub worker: WorkerIdentifier,
    pub state_change: SectorStateChange,
    pub failure: Option<SectorFailure>,
}

/// ReportState's result; `Finalized: true` makes the worker drop the sector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorStateResp {
    /// Spelt `Id` on the wire.
    #[serde(rename = "Id")]
    pub id: SectorID,
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
    pub threads: u64,
    pub empty: u64,
    pub paused: u64,
    pub running: u64,
    pub waiting: u64,
    pub errors: u64,
}

/// WorkerPing's parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerInfo {
    pub name: String,
    /// `<ip>:<admin rpc port>`.
    pub dest: String,
    pub version: String,
    pub summary: WorkerInfoSummary,
}

/// A persist store as workers see it (StoreReserveSpace / StoreBasicInfo result).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreBasicInfo {
    pub name: String,
    pub path: String,
    pub strict: bool,
    pub read_only: bool,
    pub weight: u64,
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
    #[serde(rename = "/")]
    pub cid: String,
}

/// A piece placed in a sector (go-state-types `abi.PieceInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PieceInfo {
    /// Padded size.
    pub size: u64,
    #[serde(rename = "PieceCID")]
    pub piece_cid: CidJson,
}

/// The deal behind a piece. Workers read DealID, AllocationID, PayloadSize and
/// IsBuiltinMarket; it must never be `null` (zero ids for a filler piece).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealInfo {
    #[serde(rename = "DealID")]
    pub deal_id: u64,
    #[serde(rename = "PublishCid")]
    pub publish_cid: Option<CidJson>,
    #[serde(rename = "AllocationID")]
    pub allocation_id: u64,
    #[serde(rename = "PieceCID")]
    pub piece_cid: Option<CidJson>,
    #[serde(rename = "PieceSize")]
    pub piece_size: u64,
    #[serde(rename = "Client")]
    pub client: String,
    #[serde(rename = "Provider")]
    pub provider: String,
    #[serde(rename = "Offset")]
    pub offset: u64,
    #[serde(rename = "Length")]
    pub length: u64,
    #[serde(rename = "PayloadSize")]
    pub payload_size: u64,
    #[serde(rename = "StartEpoch")]
    pub start_epoch: ChainEpoch,
    #[serde(rename = "EndEpoch")]
    pub end_epoch: ChainEpoch,
    #[serde(rename = "IsBuiltinMarket")]
    pub is_builtin_market: bool,
    #[serde(rename = "IsCompatible")]
    pub is_compatible: bool,
}

/// One entry of AcquireDeals' result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPiece {
    pub piece: PieceInfo,
    pub deal_info: DealInfo,
}
