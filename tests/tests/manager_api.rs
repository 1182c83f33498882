//! The manager binary's RPC edges, no proofs needed: tokens and permissions,
//! bad input answered with clear errors and no state change, duplicate
//! submissions, config errors that stop the daemon naming the key, unknown
//! keys warned about, WebSocket, /metrics and /healthcheck.

use std::process::Command;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::encoding::{Base64Bytes, Bytes32};
use damocles_api::rpc::SealerApiClient;
use damocles_api::*;
use damocles_e2e::manager::{http, init_home, manager_bin, ManagerProcess};
use jsonrpsee::core::ClientError;
use serde_json::Value;

fn spec(miners: &[u64]) -> AllocateSectorSpec {
    AllocateSectorSpec {
        allowed_miners: Some(miners.to_vec()),
        allowed_proof_types: None,
    }
}

/// (code, message) of a JSON-RPC error.
fn rpc_err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (i32, String) {
    match r {
        Err(ClientError::Call(e)) => (e.code(), e.message().to_string()),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

fn started() -> (tempfile::TempDir, ManagerProcess) {
    started_with(&[])
}

fn started_with(flags: &[&str]) -> (tempfile::TempDir, ManagerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| {
        c.replace("[Common.API]\n", "[Common.API]\nNoSuchKey = 1\n")
    });
    let m = ManagerProcess::start_with(&home, flags);
    (dir, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_permissions_are_enforced() {
    let (_dir, m) = started();
    let anonymous = m.client(None);
    let reader = m.client(Some(&m.token("read")));
    let writer = m.client(Some(&m.token("write")));
    let admin = m.client(Some(&m.token("admin")));

    let (code, msg) = rpc_err(anonymous.allocate_sector(spec(&[1000]), None).await);
    assert_eq!(code, 11003);
    assert!(
        msg.contains("Venus.AllocateSector needs the write permission") && msg.contains("no token"),
        "{msg}"
    );
    rpc_err(anonymous.chain_head().await);

    let (_, msg) = rpc_err(reader.allocate_sector(spec(&[1000]), None).await);
    assert!(msg.contains("this token allows read"), "{msg}");
    reader.chain_head().await.expect("read may read");

    let s = writer
        .allocate_sector(spec(&[1000]), None)
        .await
        .unwrap()
        .unwrap();
    let (_, msg) = rpc_err(writer.abort_sector(s.id, "x".into()).await);
    assert!(msg.contains("needs the admin permission"), "{msg}");
    admin
        .abort_sector(s.id, "operator says no".into())
        .await
        .unwrap();
    let r = writer.report_state(s.id, report()).await.unwrap();
    assert!(
        r.finalized && r.abort_reason.as_deref() == Some("operator says no"),
        "{r:?}"
    );

    // A token from another manager's secret: HTTP 401 before any method runs.
    let (status, body) = http(
        &m.authority(),
        "POST",
        "/rpc/v0",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.bad"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"Venus.ChainHead","params":[]}"#,
    );
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("not signed with this daemon's secret"),
        "{body}"
    );

    // The Authorization header works over WebSocket too.
    let ws_url = m.url.replace("http://", "ws://");
    let mut headers = jsonrpsee::http_client::HeaderMap::new();
    headers.insert(
        "Authorization",
        format!("Bearer {}", m.token("read")).parse().unwrap(),
    );
    let ws = jsonrpsee::ws_client::WsClientBuilder::default()
        .set_headers(headers)
        .build(&ws_url)
        .await
        .expect("websocket connect");
    let head = ws.chain_head().await.expect("ChainHead over WebSocket");
    assert_eq!(head.network, "devnet");
    assert_eq!(
        rpc_err(ws.allocate_sector(spec(&[1000]), None).await).0,
        11003
    );

    // A batch runs only if every call in it is permitted.
    let write = m.token("write");
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"Venus.ChainHead","params":[]},
                    {"jsonrpc":"2.0","id":2,"method":"Venus.FinalizeSector","params":[{"Miner":1000,"Number":1}]}]"#;
    let (_, body) = http(
        &m.authority(),
        "POST",
        "/rpc/v0",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {write}")),
        ],
        batch,
    );
    assert!(
        body.contains("11003") && body.contains("Venus.FinalizeSector needs the admin permission"),
        "{body}"
    );
    assert!(
        !body.contains("\"Height\""),
        "no part of a refused batch runs: {body}"
    );

    // A method this manager does not have: -32601 whatever the token, as
    // damocles workers expect (they read it as "not supported here").
    let (_, body) = http(
        &m.authority(),
        "POST",
        "/rpc/v0",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {write}")),
        ],
        r#"{"jsonrpc":"2.0","id":3,"method":"Venus.WdPoStAllocateJobs","params":[{},1,"w"]}"#,
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32601, "{body}");
}

fn report() -> ReportStateReq {
    ReportStateReq {
        worker: WorkerIdentifier {
            instance: "w".into(),
            location: "/l".into(),
        },
        state_change: SectorStateChange {
            prev: "A".into(),
            next: "B".into(),
            event: "E".into(),
        },
        failure: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let (_dir, m) = started();
    let c = m.client(Some(&m.token("write")));
    let admin = m.client(Some(&m.token("admin")));

    // A miner this manager does not manage: no sector for this worker
    // (`null`, as damocles answers), and no number is used up.
    assert_eq!(c.allocate_sector(spec(&[9999]), None).await.unwrap(), None);
    // Proof types the miner does not seal: nothing to allocate.
    let other = AllocateSectorSpec {
        allowed_miners: None,
        allowed_proof_types: Some(vec![SealProof(
            filecoin_proofs_api::RegisteredSealProof::StackedDrg32GiBV1_1,
        )]),
    };
    assert_eq!(c.allocate_sector(other, None).await.unwrap(), None);

    // Unknown sector: 11001, as damocles workers expect.
    let ghost = SectorID {
        miner: 1000,
        number: 777,
    };
    let (code, msg) = rpc_err(c.assign_ticket(ghost).await);
    assert_eq!(code, ERR_SECTOR_STATE_NOT_FOUND);
    assert!(msg.contains("s-t01000-777"), "{msg}");
    assert_eq!(
        rpc_err(c.report_state(ghost, report()).await).0,
        ERR_SECTOR_STATE_NOT_FOUND
    );

    // Malformed params: -32602 naming the problem.
    let (status, body) = http(
        &m.authority(),
        "POST",
        "/rpc/v0",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {}", m.token("write"))),
        ],
        r#"{"jsonrpc":"2.0","id":7,"method":"Venus.AssignTicket","params":[{"Miner":"x"}]}"#,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32602, "{body}");
    assert!(
        v["error"]["data"]
            .as_str()
            .unwrap()
            .contains("invalid type: string \"x\", expected u64"),
        "{body}"
    );

    // Submissions: wrong ticket refused, duplicates recognized, state untouched on refusal.
    let s = c
        .allocate_sector(spec(&[1000]), None)
        .await
        .unwrap()
        .unwrap();
    let ticket = c.assign_ticket(s.id).await.unwrap();
    let wrong = Ticket {
        ticket: Bytes32([9; 32]),
        epoch: ticket.epoch,
    };
    let info = PreCommitOnChainInfo {
        comm_r: [1; 32],
        comm_d: [2; 32],
        ticket: wrong,
    };
    let r = c.submit_pre_commit(s, info, false).await.unwrap();
    assert_eq!(r.res, SubmitResult::Rejected);
    assert!(r.desc.unwrap().contains("ticket"));
    assert!(
        admin
            .find_sector(s.id)
            .await
            .unwrap()
            .unwrap()
            .pre
            .is_none(),
        "refusal leaves no trace"
    );
    let wrong_type = AllocatedSector {
        id: s.id,
        proof_type: SealProof(filecoin_proofs_api::RegisteredSealProof::StackedDrg8MiBV1_1),
    };
    let info = PreCommitOnChainInfo {
        comm_r: [1; 32],
        comm_d: [2; 32],
        ticket,
    };
    assert_eq!(
        c.submit_pre_commit(wrong_type, info, false)
            .await
            .unwrap()
            .res,
        SubmitResult::Rejected
    );
    assert_eq!(
        c.submit_pre_commit(s, info, false).await.unwrap().res,
        SubmitResult::Accepted
    );
    assert_eq!(
        c.submit_pre_commit(s, info, false).await.unwrap().res,
        SubmitResult::DuplicateSubmit
    );
    let changed = PreCommitOnChainInfo {
        comm_r: [3; 32],
        ..info
    };
    assert_eq!(
        c.submit_pre_commit(s, changed, false).await.unwrap().res,
        SubmitResult::MismatchedSubmission
    );
    assert_eq!(
        admin.find_sector(s.id).await.unwrap().unwrap().pre,
        Some(info)
    );

    // A proof before the seed is refused without touching the sector.
    let r = c
        .submit_proof(
            s.id,
            ProofOnChainInfo {
                proof: Base64Bytes(vec![0; 192]),
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(r.res, SubmitResult::Rejected);
    assert!(r.desc.unwrap().contains("WaitSeed"));
    assert_eq!(
        c.poll_proof_state(s.id).await.unwrap().state,
        OnChainState::NotFound
    );

    // Unknown stores.
    let (_, msg) = rpc_err(c.submit_persisted_ex(s.id, "nope".into(), false).await);
    assert!(msg.contains("unknown persist store \"nope\""), "{msg}");
    assert_eq!(c.store_basic_info("nope".into()).await.unwrap(), None);
    assert_eq!(
        c.store_reserve_space(s.id, 4096, vec!["nope".into()])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        c.store_basic_info("store-1".into())
            .await
            .unwrap()
            .unwrap()
            .name,
        "store-1"
    );

    // Finalizing twice is fine; a finished sector answers 11001 to sealing calls.
    c.report_finalized(s.id).await.unwrap();
    c.report_finalized(s.id).await.unwrap();
    let (code, msg) = rpc_err(c.assign_ticket(s.id).await);
    assert_eq!(code, ERR_SECTOR_STATE_NOT_FOUND);
    assert!(msg.contains("already finalized"), "{msg}");
    admin.restore_sector(s.id).await.unwrap();
    assert_eq!(
        c.assign_ticket(s.id).await.unwrap(),
        ticket,
        "restored with its state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_healthcheck_and_unknown_keys() {
    let (_dir, m) = started();
    let c = m.client(Some(&m.token("write")));
    c.allocate_sector(spec(&[1000]), None).await.unwrap();
    let (status, body) = http(&m.authority(), "GET", "/healthcheck", &[], "");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http(&m.authority(), "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(
        body.contains(
            r#"damocles_manager_rpc_calls_total{method="Venus.AllocateSector",outcome="ok"} 1"#
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"damocles_manager_sectors_allocated_total{miner="1000"} 1"#),
        "{body}"
    );
    let (status, body) = http(&m.authority(), "GET", "/elsewhere", &[], "");
    assert_eq!(status, 404);
    assert!(body.contains("/rpc/v0"));
    let log = m.log_text();
    assert!(
        log.contains("unknown config key ignored") && log.contains("Common.API.NoSuchKey"),
        "{log}"
    );
}

#[test]
fn a_bad_config_value_stops_the_daemon_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| {
        c.replace("BlockTime = \"500ms\"", "BlockTime = \"soon\"")
    });
    let out = Command::new(manager_bin())
        .arg("--home")
        .arg(&home)
        .args(["daemon", "run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Devnet.BlockTime") && err.contains("sector-manager.cfg"),
        "{err}"
    );
    assert!(!home.join("api").exists(), "it never served");

    let home2 = dir.path().join("manager2");
    init_home(&home2, |c| {
        c.replace("Path = \"", "Path = \"/does/not/exist")
    });
    let out = Command::new(manager_bin())
        .arg("--home")
        .arg(&home2)
        .args(["daemon", "run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Common.PersistStores[0].Path"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_permission_admits_token_less_workers_only_as_far_as_set() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| {
        c.replace(
            "AnonymousPermission = \"\"",
            "AnonymousPermission = \"write\"",
        )
    });
    let m = ManagerProcess::start(&home);
    let anonymous = m.client(None);
    let s = anonymous
        .allocate_sector(spec(&[1000]), None)
        .await
        .unwrap()
        .expect("a token-less worker may seal");
    let (code, msg) = rpc_err(anonymous.finalize_sector(s.id).await);
    assert_eq!(code, 11003);
    assert!(msg.contains("needs the admin permission"), "{msg}");

    // Not from a web page, though.
    let (_, body) = http(
        &m.authority(),
        "POST",
        "/rpc/v0",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"Venus.AllocateSector","params":[{"AllowedMiners":null,"AllowedProofTypes":null}]}"#,
    );
    assert!(body.contains("11003"), "{body}");
}

/// Every golden request of `crates/damocles-api/tests/golden` is accepted by
/// the real server: the method exists and its params decode (the answer may
/// still be an error about the made-up sector, never -32601 or -32602).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_golden_requests_are_understood_by_the_server() {
    // The worker-prover methods are served with --worker-prover only.
    let (_dir, m) = started_with(&["--worker-prover"]);
    let admin = m.token("admin");
    let golden = damocles_e2e::manifest_dir().join("../crates/damocles-api/tests/golden");
    let mut n = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let req = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": doc["method"], "params": doc["params"]});
        let (_, body) = http(
            &m.authority(),
            "POST",
            "/rpc/v0",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &format!("Bearer {admin}")),
            ],
            &req.to_string(),
        );
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let code = v["error"]["code"].as_i64();
        // -32602 "Invalid params" is jsonrpsee failing to decode; the manager's
        // own -32602 refusals carry their own message.
        let undecodable = code == Some(-32602) && v["error"]["message"] == "Invalid params";
        assert!(
            code != Some(-32601) && !undecodable,
            "{}: {body}",
            doc["method"]
        );
        n += 1;
    }
    assert!(n >= 30, "only {n} golden files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proving_methods_refuse_tokens_without_their_permission() {
    use damocles_api::proving::ProvingApiClient;
    let (_dir, m) = started();
    let anonymous = m.client(None);
    let reader = m.client(Some(&m.token("read")));
    let writer = m.client(Some(&m.token("write")));

    // Reads need a token; proofs and checks need more.
    let (code, msg) = rpc_err(anonymous.proving_info(None).await);
    assert_eq!(code, 11003);
    assert!(
        msg.contains("Venus.ProvingInfo needs the read permission"),
        "{msg}"
    );
    reader.proving_info(None).await.expect("read may read");
    reader.proving_deadlines(None).await.expect("read may read");

    let (_, msg) = rpc_err(reader.check_provable(None, 0, false).await);
    assert!(
        msg.contains("Venus.CheckProvable needs the write permission"),
        "{msg}"
    );
    let (_, msg) = rpc_err(writer.simulate_wdpost(None, 0, 0, false).await);
    assert!(
        msg.contains("Venus.SimulateWdPoSt needs the admin permission"),
        "{msg}"
    );
    let (_, msg) = rpc_err(writer.proving_recover_faults(None, 0).await);
    assert!(
        msg.contains("Venus.ProvingRecoverFaults needs the admin permission"),
        "{msg}"
    );
    // Refused before any work: nothing was declared.
    assert!(reader.proving_faults(None).await.unwrap().is_empty());
}

/// Without `--worker-prover` a wdpost worker's calls are "method not found"
/// (damocles' worker then idles), never a permission error; with it, the
/// shapes damocles' worker sends are answered in damocles' shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wdpost_jobs_are_served_only_with_worker_prover_in_damocles_shapes() {
    let allocate = r#"{"jsonrpc":"2.0","method":"Venus.WdPoStAllocateJobs","params":[{"AllowedMiners":[1000],"AllowedProofTypes":["StackedDrgWinning2KiBV1","StackedDrgWindow2KiBV1","StackedDrgWindow2KiBV1_2"]},1,"worker-1"],"id":20}"#;
    let call = |m: &ManagerProcess, token: &str, body: &str| -> Value {
        let (_, out) = http(
            &m.authority(),
            "POST",
            "/rpc/v0",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &format!("Bearer {token}")),
            ],
            body,
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let (_dir, plain) = started();
    let v = call(&plain, &plain.token("write"), allocate);
    assert_eq!(v["error"]["code"], -32601, "{v}");

    let (_dir2, m) = started_with(&["--worker-prover"]);
    let write = m.token("write");
    let v = call(&m, &write, allocate);
    assert_eq!(
        v["result"],
        serde_json::json!([]),
        "no job: [] not null: {v}"
    );
    let v = call(
        &m,
        &write,
        r#"{"jsonrpc":"2.0","method":"Venus.WdPoStHeartbeatJobs","params":[["nope"],"worker-1"],"id":21}"#,
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wdpost job 'nope' is not running"),
        "{v}"
    );
    let v = call(
        &m,
        &m.token("read"),
        r#"{"jsonrpc":"2.0","method":"Venus.WdPoStAllJobs","params":[],"id":22}"#,
    );
    assert_eq!(
        v["result"],
        serde_json::json!({"Jobs": [], "MaxTry": 2}),
        "{v}"
    );
    let v = call(
        &m,
        &write,
        r#"{"jsonrpc":"2.0","method":"Venus.WdPoStResetJob","params":["x"],"id":23}"#,
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs the admin permission"),
        "{v}"
    );
}
