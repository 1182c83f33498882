//! The manager against a damaged home and against a writer that sends too
//! much: a missing, empty or corrupt database stops `daemon run` with a
//! message naming the file (never a fresh database, never a panic), stored
//! strings have caps, and `ListSectors` pages through 100k sectors.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::encoding::Base64Bytes;
use damocles_api::rpc::SealerApiClient;
use damocles_api::*;
use damocles_e2e::manager::{allocate_one, cli, init_home, manager_bin, ManagerProcess};
use damocles_manager::db::{Db, NumberPolicy};
use filecoin_proofs_api::RegisteredSealProof;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::ClientError;
use jsonrpsee::rpc_params;
use serde_json::Value;

const MINER: u64 = 1000;

fn database(home: &Path) -> PathBuf {
    home.join("data").join("manager.redb")
}

/// A home made by `daemon init` holding `sectors` allocated sectors of
/// miner 1000, numbered from 1 (written straight into the database).
fn home_with_sectors(dir: &Path, sectors: u64) -> PathBuf {
    let home = dir.join("manager");
    init_home(&home, |c| c);
    let db = Db::open(&database(&home)).expect("the database daemon init made");
    let policy = NumberPolicy {
        init_number: 0,
        min_number: None,
        max_number: None,
    };
    let proof = SealProof(RegisteredSealProof::StackedDrg2KiBV1_1);
    assert_eq!(
        db.allocate_batch(MINER, proof, policy, sectors).unwrap(),
        sectors
    );
    home
}

/// `daemon run` on `home`, which must refuse to start: its exit status and
/// stderr. A daemon that serves instead is killed after 30 s and fails the test.
fn run_refused(home: &Path) -> (ExitStatus, String) {
    let _ = std::fs::remove_file(home.join("api"));
    let log = home.with_extension("refused.log");
    let mut child = Command::new(manager_bin())
        .arg("--home")
        .arg(home)
        .args(["daemon", "run"])
        // A panic would print its backtrace: the checks below would see it.
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn damocles-manager");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&log).unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "daemon run started instead of refusing:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// H3: an empty or missing database is never replaced by a fresh one.
#[test]
fn daemon_run_refuses_a_missing_or_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_with_sectors(dir.path(), 3);
    let db = database(&home);
    let path = db.display().to_string();

    std::fs::File::create(&db).unwrap(); // truncated to 0 bytes
    let (status, err) = run_refused(&home);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&path) && err.contains("0 bytes") && err.contains("backup"),
        "{err}"
    );
    assert!(
        err.contains("daemon init"),
        "says how a new home is made: {err}"
    );
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "left as found, not re-initialized"
    );
    assert!(!home.join("api").exists(), "it never served");

    std::fs::remove_file(&db).unwrap();
    let (status, err) = run_refused(&home);
    assert!(
        !status.success() && err.contains(&path) && err.contains("does not exist"),
        "{err}"
    );
    assert!(!db.exists(), "daemon run made a database");

    // `daemon init` makes it, and will not make it over an existing one.
    let fresh = dir.path().join("fresh");
    init_home(&fresh, |c| c);
    assert!(database(&fresh).metadata().unwrap().len() > 0);
    std::fs::remove_file(fresh.join("sector-manager.cfg")).unwrap();
    let out = Command::new(manager_bin())
        .arg("--home")
        .arg(&fresh)
        .args(["daemon", "init"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("exists already"),
        "{err}"
    );
}

/// M3: a damaged database is reported as corrupt, naming the file, without
/// redb's panic and backtrace.
#[test]
fn a_damaged_database_is_reported_corrupt_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_with_sectors(dir.path(), 5_000);
    let db = database(&home);
    let good = std::fs::read(&db).unwrap();
    let half = good[..good.len() / 2].to_vec();
    let mut flipped = good.clone();
    for page in (1..good.len() / 4096).step_by(2) {
        flipped[page * 4096 + 64] ^= 0xff;
    }
    for (damage, bytes) in [("truncated to half", half), ("flipped bytes", flipped)] {
        std::fs::write(&db, &bytes).unwrap();
        let (status, err) = run_refused(&home);
        assert_eq!(status.code(), Some(1), "{damage}: {err}");
        assert!(
            err.contains(&format!("database {} is corrupt (", db.display()))
                && err.contains("); restore it from a backup"),
            "{damage}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{damage}: {err}"
        );
    }
}

/// (code, message) of a JSON-RPC error.
fn rpc_err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (i32, String) {
    match r {
        Err(ClientError::Call(e)) => (e.code(), e.message().to_string()),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

fn report(instance: String, desc: String) -> ReportStateReq {
    ReportStateReq {
        worker: WorkerIdentifier {
            instance,
            location: "/sealing/1".into(),
        },
        state_change: SectorStateChange {
            prev: "PC1Done".into(),
            next: "PC2Done".into(),
            event: "PC2".into(),
        },
        failure: Some(SectorFailure {
            level: "Temporary".into(),
            desc,
        }),
    }
}

fn ping(name: String, version: &str) -> WorkerInfo {
    WorkerInfo {
        name,
        dest: "127.0.0.1:17890".into(),
        version: version.into(),
        summary: WorkerInfoSummary::default(),
    }
}

/// M2: names over their cap are refused naming the field and the cap, free
/// text is cut, and the database does not grow with what a writer sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_strings_have_caps() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| c);
    let m = ManagerProcess::start(&home);
    let c = m.client(Some(&m.token("write")));
    let s = allocate_one(&c, MINER).await.expect("a sector");
    let size_before = database(&home).metadata().unwrap().len();

    c.worker_ping(ping("worker-1".into(), "0.1.0"))
        .await
        .expect("a normal ping");
    for n in 0..5 {
        let (code, msg) = rpc_err(
            c.worker_ping(ping(format!("{n}{}", "w".repeat(4 << 20)), "0.1.0"))
                .await,
        );
        assert_eq!(code, -32602, "{msg}");
        assert_eq!(
            msg,
            format!(
                "Name is {} bytes, more than the limit of 256 bytes",
                (4 << 20) + 1
            )
        );
    }
    let (_, msg) = rpc_err(c.worker_ping(ping("w2".into(), &"v".repeat(300))).await);
    assert!(msg.starts_with("Version is 300 bytes"), "{msg}");

    let (code, msg) = rpc_err(
        c.report_state(s.id, report("i".repeat(1 << 20), "x".into()))
            .await,
    );
    assert_eq!(code, -32602);
    assert!(msg.starts_with("Worker.Instance is 1048576 bytes"), "{msg}");

    // A long failure description is kept, cut to 4 KiB with a marker: an
    // unmodified worker's report still goes through.
    c.report_state(s.id, report("worker-1".into(), "d".repeat(2 << 20)))
        .await
        .expect("a long description is cut, not refused");
    let admin = m.client(Some(&m.token("admin")));
    let state = admin.find_sector(s.id).await.unwrap().unwrap();
    let desc = state.latest_state.unwrap().failure.unwrap().desc;
    assert!(
        desc.len() <= limits::MAX_TEXT_BYTES && desc.ends_with("[... cut from 2097152 bytes]"),
        "{} bytes: {}",
        desc.len(),
        &desc[desc.len().saturating_sub(60)..]
    );

    let (code, msg) = rpc_err(
        c.submit_proof(
            s.id,
            ProofOnChainInfo {
                proof: Base64Bytes(vec![0; 100_000]),
            },
            false,
        )
        .await,
    );
    assert_eq!(code, -32602);
    assert!(msg.starts_with("Proof is 100000 bytes"), "{msg}");

    c.report_aborted(s.id, "r".repeat(5 << 20)).await.unwrap();
    let state = admin.find_sector(s.id).await.unwrap().unwrap();
    assert!(state.aborted && state.abort_reason.len() <= limits::MAX_TEXT_BYTES);

    let grown = database(&home)
        .metadata()
        .unwrap()
        .len()
        .saturating_sub(size_before);
    assert!(grown < 8 << 20, "the database grew {grown} bytes");
}

/// M5: `ListSectors` pages, the CLI walks every page, and the old call shape
/// answers instead of failing as too big.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_sectors_pages_through_100k_sectors() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let home = home_with_sectors(dir.path(), N);
    let m = ManagerProcess::start(&home);
    let reader = m.client(Some(&m.token("read")));

    // The old shape, `["all"]`: an answer (the first 8 MiB of records), not
    // "Response is too big".
    let first: Vec<SectorState> = reader
        .request("Venus.ListSectors", rpc_params!["all"])
        .await
        .expect("the unpaged call answers");
    assert!(
        first.len() > 1_000 && (first.len() as u64) < N,
        "{}",
        first.len()
    );
    assert!(first
        .iter()
        .enumerate()
        .all(|(i, s)| s.id == SectorID::new(MINER, i as u64 + 1)));

    // Paging params: after a SectorID, at most `limit`.
    let page: Vec<SectorState> = reader
        .request(
            "Venus.ListSectors",
            rpc_params!["online", SectorID::new(MINER, N - 10), 5],
        )
        .await
        .unwrap();
    let numbers: Vec<u64> = page.iter().map(|s| s.id.number).collect();
    assert_eq!(numbers, [N - 9, N - 8, N - 7, N - 6, N - 5]);
    let (code, _) = rpc_err(
        reader
            .request::<Value, _>("Venus.ListSectors", rpc_params!["online", Value::Null, 0])
            .await,
    );
    assert_eq!(code, -32602);

    // The CLI lists every sector, once, in order.
    let json = cli(
        &home,
        &["util", "sealer", "sectors", "list", "--all", "--json"],
    );
    let all: Vec<SectorState> = serde_json::from_str(&json).unwrap();
    assert_eq!(all.len() as u64, N);
    assert!(all
        .iter()
        .enumerate()
        .all(|(i, s)| s.id == SectorID::new(MINER, i as u64 + 1)));
    let table = cli(&home, &["util", "sealer", "sectors", "list"]);
    let mut rows = table.lines();
    assert!(rows.next().unwrap().starts_with("SECTOR"));
    assert_eq!(rows.clone().count() as u64, N);
    assert!(rows
        .last()
        .unwrap()
        .starts_with(&format!("s-t0{MINER}-{N} ")));
}
