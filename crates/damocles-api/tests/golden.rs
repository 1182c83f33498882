//! Golden JSON of every `Venus.*` method: the positional params a caller
//! sends and the result the manager answers, one file per method under
//! `tests/golden/`. The files are the reviewable record of the wire shapes
//! (docs/manager-rpc.md, DESIGN.md §5): PascalCase keys, SectorID as
//! {"Miner","Number"}, seal proof types and result codes as numbers, tickets,
//! seeds and proofs as base64, commitments as arrays of 32 numbers (window
//! PoSt jobs: proof types by name, seeds as arrays, `proofs`/`faults` lowercase).
//!
//! A change to any wire type fails here; if it is intended, regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p damocles-api --test golden` and review the diff.

use std::collections::BTreeMap;

use damocles_api::encoding::{Base64Bytes, Bytes32};
use damocles_api::*;
use filecoin_proofs_api::RegisteredSealProof;
use serde_json::{json, Value};

const SID: SectorID = SectorID {
    miner: 1000,
    number: 42,
};

fn proof() -> SealProof {
    SealProof(RegisteredSealProof::StackedDrg2KiBV1_1)
}

fn ticket() -> Ticket {
    Ticket {
        ticket: Bytes32([7; 32]),
        epoch: 120,
    }
}

fn store() -> StoreBasicInfo {
    StoreBasicInfo {
        name: "store-1".into(),
        path: "/data/store-1".into(),
        strict: false,
        read_only: false,
        weight: 1,
        meta: Some(BTreeMap::from([("zone".into(), "a".into())])),
    }
}

fn report() -> ReportStateReq {
    ReportStateReq {
        worker: WorkerIdentifier {
            instance: "worker-1".into(),
            location: "/sealing/1".into(),
        },
        state_change: SectorStateChange {
            prev: "PC2Done".into(),
            next: "PCSubmitted".into(),
            event: "SubmitPC".into(),
        },
        failure: Some(SectorFailure {
            level: "Temporary".into(),
            desc: "rpc timeout".into(),
        }),
    }
}

fn sector_state() -> SectorState {
    SectorState {
        id: SID,
        sector_type: proof(),
        ticket: Some(ticket()),
        seed: Some(Seed {
            seed: Bytes32([9; 32]),
            epoch: 130,
        }),
        pre: Some(PreCommitOnChainInfo {
            comm_r: [1; 32],
            comm_d: [2; 32],
            ticket: ticket(),
        }),
        pre_message: Some("devnet-3".into()),
        proof: None,
        proof_message: None,
        latest_state: Some(report()),
        persisted: Some("store-1".into()),
        finalized: false,
        aborted: false,
        abort_reason: String::new(),
        created_at: 1_790_000_000,
        updated_at: 1_790_000_100,
    }
}

fn v<T: serde::Serialize>(x: T) -> Value {
    serde_json::to_value(x).unwrap()
}

/// (method, params, result) for every method the manager serves.
fn catalog() -> Vec<(&'static str, Value, Value)> {
    let spec = AllocateSectorSpec {
        allowed_miners: Some(vec![1000]),
        allowed_proof_types: Some(vec![proof()]),
    };
    let allocated = AllocatedSector {
        id: SID,
        proof_type: proof(),
    };
    let pre = PreCommitOnChainInfo {
        comm_r: [1; 32],
        comm_d: [2; 32],
        ticket: ticket(),
    };
    let accepted = SubmitResp {
        res: SubmitResult::Accepted,
        desc: None,
    };
    let landed = PollStateResp {
        state: OnChainState::Landed,
        desc: None,
    };
    let piece = SectorPiece {
        piece: PieceInfo {
            size: 2048,
            piece_cid: CidJson {
                cid: "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy".into(),
            },
        },
        deal_info: DealInfo {
            deal_id: 5,
            allocation_id: 0,
            payload_size: 1900,
            is_builtin_market: true,
            ..Default::default()
        },
    };
    vec![
        ("AllocateSector", json!([v(&spec), false]), v(allocated)),
        (
            "AcquireDeals",
            json!([
                v(SID),
                v(AcquireDealsSpec {
                    max_deals: Some(1),
                    min_used_space: None
                })
            ]),
            json!([v(piece)]),
        ),
        ("AssignTicket", json!([v(SID)]), v(ticket())),
        (
            "SubmitPreCommit",
            json!([v(allocated), v(pre), false]),
            v(&accepted),
        ),
        ("PollPreCommitState", json!([v(SID)]), v(&landed)),
        ("SubmitPersisted", json!([v(SID), "store-1"]), json!(true)),
        (
            "SubmitPersistedEx",
            json!([v(SID), "store-1", false]),
            json!(true),
        ),
        (
            "WaitSeed",
            json!([v(SID), v(proof())]),
            v(WaitSeedResp {
                should_wait: true,
                delay: 12,
                seed: None,
            }),
        ),
        (
            "SubmitProof",
            json!([
                v(SID),
                v(ProofOnChainInfo {
                    proof: Base64Bytes(vec![0xab; 12])
                }),
                false
            ]),
            v(SubmitResp {
                res: SubmitResult::Rejected,
                desc: Some("the proof does not verify".into()),
            }),
        ),
        (
            "PollProofState",
            json!([v(SID)]),
            v(PollStateResp {
                state: OnChainState::PermFailed,
                desc: Some("exit code 16".into()),
            }),
        ),
        (
            "ReportState",
            json!([v(SID), v(report())]),
            v(SectorStateResp {
                id: SID,
                finalized: false,
                abort_reason: None,
            }),
        ),
        ("ReportFinalized", json!([v(SID)]), Value::Null),
        ("ReportAborted", json!([v(SID), "bad sector"]), Value::Null),
        (
            "WorkerPing",
            json!([v(WorkerInfo {
                name: "worker-1".into(),
                dest: "10.0.0.2:17890".into(),
                version: "0.1.0".into(),
                summary: WorkerInfoSummary {
                    threads: 4,
                    empty: 1,
                    paused: 0,
                    running: 3,
                    waiting: 0,
                    errors: 0
                }
            })]),
            Value::Null,
        ),
        (
            "StoreReserveSpace",
            json!([v(SID), 4096, ["store-1"]]),
            v(store()),
        ),
        ("StoreBasicInfo", json!(["store-1"]), v(store())),
        (
            "ListSectors",
            json!([v(SectorListKind::Online)]),
            json!([v(sector_state())]),
        ),
        ("FindSector", json!([v(SID)]), v(sector_state())),
        (
            "AbortSector",
            json!([v(SID), "aborted by the operator"]),
            Value::Null,
        ),
        ("FinalizeSector", json!([v(SID)]), Value::Null),
        ("RestoreSector", json!([v(SID)]), Value::Null),
        (
            "StoreList",
            json!([]),
            json!([v(StoreDetail {
                info: store(),
                store_type: "embed-fs".into(),
                total: 1 << 40,
                free: 1 << 39,
                reserved: 4096,
                reserved_sectors: vec![SID]
            })]),
        ),
        (
            "ChainHead",
            json!([]),
            v(ChainHeadInfo {
                network: "devnet".into(),
                height: 140,
                timestamp: 1_790_000_560,
                block_time_secs: 4.0,
            }),
        ),
        (
            "ChainSectorInfo",
            json!([v(SID)]),
            v(ChainSectorInfo {
                state: "Active".into(),
                pre_commit_epoch: 121,
                activation: Some(135),
                expiration: Some(1_000_135),
                deadline: Some(3),
                partition: Some(0),
                comm_r: [1; 32],
            }),
        ),
        (
            "WdPoStAllocateJobs",
            json!([
                v(wdpost::AllocateWdPoStJobSpec {
                    allowed_miners: Some(vec![1000]),
                    allowed_proof_types: Some(vec![
                        "StackedDrgWinning2KiBV1".into(),
                        "StackedDrgWindow2KiBV1".into(),
                        "StackedDrgWindow2KiBV1_2".into(),
                    ]),
                }),
                1,
                "worker-1"
            ]),
            v(vec![wdpost::WdPoStAllocatedJob {
                id: wd_input().job_id(),
                input: wd_input(),
            }]),
        ),
        (
            "WdPoStHeartbeatJobs",
            json!([[wd_input().job_id()], "worker-1"]),
            Value::Null,
        ),
        (
            "WdPoStFinishJob",
            json!([wd_input().job_id(), v(wd_output()), ""]),
            Value::Null,
        ),
        ("WdPoStResetJob", json!([wd_input().job_id()]), Value::Null),
        ("WdPoStRemoveJob", json!([wd_input().job_id()]), Value::Null),
        (
            "WdPoStAllJobs",
            json!([]),
            v(wdpost::AllWdPoStJob {
                jobs: vec![wdpost::WdPoStJobBrief::of(wdpost::WdPoStJob {
                    id: wd_input().job_id(),
                    state: wdpost::JobState::Finished,
                    deadline_idx: 3,
                    partitions: vec![0, 1],
                    input: wd_input(),
                    output: Some(wd_output()),
                    try_num: 1,
                    error_reason: String::new(),
                    worker_name: "worker-1".into(),
                    started_at: 1_790_000_100,
                    heartbeat_at: 1_790_000_103,
                    finished_at: 1_790_000_104,
                    created_at: 1_790_000_090,
                    updated_at: 1_790_000_104,
                })],
                max_try: 2,
            }),
        ),
    ]
}

fn wd_input() -> wdpost::WdPoStInput {
    let sector = |n| wdpost::WdPoStSectorInfo {
        sector_id: n,
        comm_r: [1; 32],
        upgrade: false,
        accesses: wdpost::SectorAccessStores {
            sealed_file: "store-1".into(),
            cache_dir: "store-1".into(),
        },
    };
    wdpost::WdPoStInput {
        sectors: vec![sector(1), sector(3)],
        miner_id: 1000,
        proof_type: "StackedDrgWindow2KiBV1_2".into(),
        seed: [9; 32],
    }
}

fn wd_output() -> wdpost::WindowPoStOutput {
    wdpost::WindowPoStOutput {
        proofs: vec![Base64Bytes(vec![5; 192])],
        faults: vec![],
    }
}

/// Keys of objects on the wire are PascalCase (the CID form `{"/": ...}` and
/// the user's own `Meta` keys aside).
fn assert_pascal_case(method: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                // damocles' WindowPoStOutput keeps Rust's lowercase keys.
                let lowercase_by_damocles = k == "proofs" || k == "faults";
                assert!(
                    k == "/"
                        || lowercase_by_damocles
                        || k.starts_with(|c: char| c.is_ascii_uppercase()),
                    "{method}: key {k:?} is not PascalCase"
                );
                if k != "Meta" {
                    assert_pascal_case(method, x);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| assert_pascal_case(method, x)),
        _ => {}
    }
}

#[test]
fn every_method_matches_its_golden_file() {
    let dir = manifest_dir().join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut seen = Vec::new();
    for (method, params, result) in catalog() {
        let full = format!("Venus.{method}");
        assert_pascal_case(&full, &params);
        assert_pascal_case(&full, &result);
        let doc = json!({ "method": full, "params": params, "result": result });
        let path = dir.join(format!("{full}.json"));
        if update {
            std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
        }
        let golden: Value = serde_json::from_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap();
        assert_eq!(doc, golden, "{full} differs from {}", path.display());
        seen.push(format!("{full}.json"));
    }
    // No stale files for methods that went away.
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    seen.sort();
    assert_eq!(files, seen);
}

#[test]
fn golden_shapes_decode_back_into_the_types() {
    for (method, params, result) in catalog() {
        match method {
            "AllocateSector" => {
                serde_json::from_value::<AllocateSectorSpec>(params[0].clone()).unwrap();
                serde_json::from_value::<AllocatedSector>(result).unwrap();
            }
            "SubmitPreCommit" => {
                serde_json::from_value::<PreCommitOnChainInfo>(params[1].clone()).unwrap();
                serde_json::from_value::<SubmitResp>(result).unwrap();
            }
            "ReportState" => {
                serde_json::from_value::<ReportStateReq>(params[1].clone()).unwrap();
                serde_json::from_value::<SectorStateResp>(result).unwrap();
            }
            "FindSector" => assert_eq!(
                serde_json::from_value::<SectorState>(result).unwrap(),
                sector_state()
            ),
            _ => {}
        }
    }
}

/// The package directory, read at run time (cargo sets it for tests too): a
/// test binary built from another checkout sharing the build directory would
/// carry that checkout's path in `env!`.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
