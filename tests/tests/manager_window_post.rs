//! Window PoSt end to end: `damocles-manager daemon run --poster` proves the
//! deadlines of pre-sealed genesis sectors on the devnet, which verifies
//! every proof and turns unproven sectors faulty.
//!
//! - every deadline with sectors is proven over two proving periods, power
//!   never drops, and `proving deadlines` shows what the chain holds;
//! - a sealed file removed: its partition is still proven with that sector
//!   skipped, the chain holds it faulty (power down one sector); restored:
//!   declared recovered, proven, power back;
//! - the manager SIGKILLed after sending a deadline's proof and after
//!   proving one but before sending it: each deadline is proven, and no
//!   deadline's proof is sent twice.

use std::collections::BTreeMap;
use std::time::Duration;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::proving::{DeadlineRow, ProvingApiClient};
use damocles_api::SectorID;
use damocles_e2e::flaky_forwarder::FlakyForwarder;
use damocles_e2e::manager::ManagerProcess;
use damocles_e2e::post::{
    all_logs, cli_json, deadlines, init_post_home, log_lines, metric, wait_until, MINER,
};
use damocles_e2e::proof_params;
use fil_params::ParamSet;

const SECTOR: u64 = 2048;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deadline_with_sectors_is_proven_over_two_periods() {
    proof_params(&[ParamSet::WindowPost2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 4 deadlines of 20 epochs at 500 ms: a period is 40 s.
    init_post_home(&home, "500ms", 6, &["DeadlinesPerPeriod=4"], |t| t);
    let m = ManagerProcess::start_with(&home, &["--poster"]);
    let c = m.client(Some(&m.token("read")));

    let rows: Vec<DeadlineRow> = c.proving_deadlines(None).await.unwrap();
    let with_sectors: Vec<u64> = rows
        .iter()
        .filter(|r| r.sectors > 0)
        .map(|r| r.epochs.index)
        .collect();
    assert_eq!(rows.iter().map(|r| r.sectors).sum::<u64>(), 6, "{rows:?}");
    // `proving deadlines` agrees with each sector's own chain record.
    let mut per_deadline: BTreeMap<u64, u64> = BTreeMap::new();
    for n in 1..=6 {
        let s = c
            .chain_sector_info(SectorID::new(MINER, n))
            .await
            .unwrap()
            .expect("genesis sector on chain");
        *per_deadline.entry(s.deadline.unwrap()).or_default() += 1;
    }
    for r in &rows {
        assert_eq!(
            per_deadline.get(&r.epochs.index).copied().unwrap_or(0),
            r.sectors,
            "{r:?}"
        );
    }

    // Two whole periods: every deadline with sectors proven twice, while
    // power and faults are watched at every poll.
    let want = 2.0 * with_sectors.len() as f64;
    wait_until(
        &m,
        Duration::from_secs(150),
        "two periods of proven deadlines",
        || {
            let c = c.clone();
            let m = &m;
            async move {
                let info = c.proving_info(None).await.unwrap();
                assert_eq!(
                    (info.faults, info.power),
                    (0, 6 * SECTOR),
                    "power dropped: {info:?}\n{}",
                    all_logs(&m.home)
                );
                let missed = deadlines(m, "missed");
                assert_eq!(missed, 0.0, "a deadline was missed:\n{}", all_logs(&m.home));
                let proven = deadlines(m, "proven");
                (proven >= want).then_some(())
            }
        },
    )
    .await;
    assert!(
        log_lines(&home, &["without a window PoSt"]).is_empty(),
        "the devnet closed a deadline without a proof:\n{}",
        all_logs(&home)
    );
    // The CLI's table view of the same: every deadline with sectors listed
    // with its partitions, none faulty.
    let table = damocles_e2e::manager::cli(&home, &["util", "sealer", "proving", "deadlines"]);
    assert!(table.contains("(current)"), "{table}");
    let json = cli_json(&home, &["sealer", "proving", "deadlines"]);
    for r in json.as_array().unwrap() {
        assert_eq!(r["Faults"], 0, "{r}");
    }
    assert!(
        metric(
            &m,
            "damocles_manager_post_proof_seconds_count",
            &["kind=\"window\"", "prover=\"builtin\""]
        ) >= want,
        "PoSt durations are measured by prover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_sealed_file_is_skipped_then_recovered() {
    proof_params(&[ParamSet::WindowPost2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 4 deadlines of 20 epochs at 500 ms (a 40 s period); 6 sectors in
    // partitions of two: a skipped sector leaves its partner to prove.
    init_post_home(&home, "500ms", 6, &["DeadlinesPerPeriod=4"], |t| t);
    let m = ManagerProcess::start_with(&home, &["--poster"]);
    let c = m.client(Some(&m.token("admin")));
    let victim = SectorID::new(MINER, 1);
    let on_chain = c.chain_sector_info(victim).await.unwrap().unwrap();
    let (dl, part) = (on_chain.deadline.unwrap(), on_chain.partition.unwrap());

    // Proven once with every file in place.
    wait_until(
        &m,
        Duration::from_secs(60),
        "the victim's partition proven",
        || {
            let c = c.clone();
            async move {
                let d = c.proving_deadline(None, dl).await.unwrap();
                d.row.proven_partitions.contains(&part).then_some(())
            }
        },
    )
    .await;

    let sealed = home.join("store-1").join(format!("sealed/{victim}"));
    let aside = home.join("sealed-aside");
    std::fs::rename(&sealed, &aside).unwrap();
    let check = cli_json(&home, &["sealer", "proving", "check", &dl.to_string()]);
    let bad: Vec<&serde_json::Value> = check
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["Good"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "{check}");
    assert_eq!(bad[0]["Sector"], 1);
    assert!(
        bad[0]["Reason"].as_str().unwrap().contains("missing"),
        "{check}"
    );

    // The next proof of that deadline skips it: faulty, one sector of power gone.
    wait_until(&m, Duration::from_secs(60), "the victim faulty", || {
        let c = c.clone();
        async move {
            let faults = c.proving_faults(None).await.unwrap();
            (!faults.is_empty()).then_some(faults)
        }
    })
    .await;
    let info = c.proving_info(None).await.unwrap();
    assert_eq!((info.faults, info.power), (1, 5 * SECTOR), "{info:?}");
    let faults = c.proving_faults(None).await.unwrap();
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].sector, 1);
    // Skipped by a proof, not missed: the partner was proven in that message.
    assert_eq!(deadlines(&m, "missed"), 0.0, "{}", all_logs(&home));
    assert!(!log_lines(&home, &["sector check failed", "sector=1"]).is_empty());

    // Restored: declared recovered, proven, power back.
    std::fs::rename(&aside, &sealed).unwrap();
    wait_until(&m, Duration::from_secs(90), "the victim recovered", || {
        let c = c.clone();
        async move {
            let info = c.proving_info(None).await.unwrap();
            (info.faults == 0 && info.power == 6 * SECTOR).then_some(())
        }
    })
    .await;
    assert!(
        !log_lines(&home, &["faulty sectors declared recovered"]).is_empty(),
        "{}",
        all_logs(&home)
    );
    assert_eq!(deadlines(&m, "missed"), 0.0);
}

/// `open=<epoch>` of a log line in a wdpost span.
fn open_of(line: &str) -> i64 {
    let rest = line.split("open=").nth(1).expect("open= in the span");
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_killed_mid_deadline_proves_it_once_after_restart() {
    proof_params(&[ParamSet::WindowPost2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 1 s blocks: 30 s from a deadline's start to its close, room for restarts.
    init_post_home(&home, "1s", 2, &["DeadlinesPerPeriod=4"], |t| t);
    let mut m = ManagerProcess::start_with(&home, &["--poster"]);

    // 1. Killed right after sending: the restarted manager does not send again.
    let sent = wait_until(
        &m,
        Duration::from_secs(90),
        "a window PoSt sent",
        || async {
            log_lines(&home, &["window PoSt sent devnet"])
                .into_iter()
                .next()
        },
    )
    .await;
    m.kill9();
    let first = open_of(&sent);
    let mut m = ManagerProcess::start_with(&home, &["--poster"]);

    // 2. Killed after proving but before sending (proofs are made before
    //    the deadline opens and sent 4 epochs after): proven after restart.
    let proven = wait_until(
        &m,
        Duration::from_secs(90),
        "a later proof generated",
        || async {
            log_lines(&home, &["window PoSt generated and verified"])
                .into_iter()
                .find(|l| open_of(l) > first)
        },
    )
    .await;
    let second = open_of(&proven);
    if log_lines(&home, &["window PoSt sent devnet"])
        .iter()
        .all(|l| open_of(l) != second)
    {
        m.kill9();
        m = ManagerProcess::start_with(&home, &["--poster"]);
    }
    let c = m.client(Some(&m.token("read")));

    // Both deadlines closed: each proven, each sent once.
    wait_until(&m, Duration::from_secs(90), "both deadlines closed", || {
        let c = c.clone();
        async move {
            let head = c.chain_head().await.unwrap().height;
            (head >= second + 20).then_some(())
        }
    })
    .await;
    for open in [first, second] {
        let sends: Vec<String> = log_lines(&home, &["window PoSt sent devnet"])
            .into_iter()
            .filter(|l| open_of(l) == open)
            .collect();
        assert_eq!(
            sends.len(),
            1,
            "deadline opening at {open}: {sends:#?}\n{}",
            all_logs(&home)
        );
        let accepted = log_lines(&home, &["devnet window PoSt accepted"]);
        assert!(!accepted.is_empty());
    }
    let info = c.proving_info(None).await.unwrap();
    assert_eq!(
        (info.faults, info.power),
        (0, 2 * SECTOR),
        "{info:?}\n{}",
        all_logs(&home)
    );
    assert!(
        log_lines(&home, &["without a window PoSt"]).is_empty(),
        "{}",
        all_logs(&home)
    );
    assert!(
        log_lines(&home, &["message failed"]).is_empty(),
        "a proof was refused (sent twice?):\n{}",
        all_logs(&home)
    );
}

/// A poster node (`daemon run --poster --proxy A`) proves every deadline of
/// the sectors of a sealing manager A that runs without `--poster`: it reads
/// A's chain and sector index over A's RPC and proves from the same store.
/// A keeps sealing (allocates sectors) meanwhile; the poster node seals
/// nothing. A poster node that cannot reach its sealing manager, or whose
/// config's deadline geometry differs from A's chain, fails at start. When
/// B cannot read the status of a message it sent (a forwarder fails those
/// calls for a while), it follows that message and never sends the
/// deadline's proof twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poster_node_proves_every_deadline_for_a_sealing_manager() {
    use damocles_e2e::manager::{allocate_one, init_home_with, start_fails};
    proof_params(&[ParamSet::WindowPost2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let (home_a, home_b) = (dir.path().join("sealing"), dir.path().join("poster"));
    // 4 deadlines of 20 epochs at 500 ms: a period is 40 s. Sector numbers
    // after the 4 genesis sectors stay allocatable on A.
    init_post_home(&home_a, "500ms", 4, &["DeadlinesPerPeriod=4"], |t| t);
    let a = ManagerProcess::start_with(&home_a, &[]);
    // The poster node's home: its own database and tokens, A's config (the
    // same miner, persist store and devnet policy).
    init_home_with(&home_b, "500ms", &[]);
    let cfg_a = std::fs::read_to_string(home_a.join("sector-manager.cfg")).unwrap();
    std::fs::write(home_b.join("sector-manager.cfg"), &cfg_a).unwrap();
    let token = dir.path().join("sealing.token");
    std::fs::write(&token, a.token("sign")).unwrap();
    let token = token.to_str().unwrap();

    // Refused at start, naming what is wrong.
    let err = start_fails(
        &home_b,
        &[
            "--poster",
            "--proxy",
            "127.0.0.1:9",
            "--proxy-token-file",
            token,
        ],
    );
    assert!(
        err.contains("--proxy") && err.contains("127.0.0.1:9"),
        "{err}"
    );
    std::fs::write(
        home_b.join("sector-manager.cfg"),
        cfg_a.replace("ChallengeWindow = 20", "ChallengeWindow = 15"),
    )
    .unwrap();
    let err = start_fails(
        &home_b,
        &[
            "--poster",
            "--proxy",
            &a.authority(),
            "--proxy-token-file",
            token,
        ],
    );
    assert!(
        err.contains("Devnet.Policy.ChallengeWindow") && err.contains("differ from the chain"),
        "{err}"
    );
    std::fs::write(home_b.join("sector-manager.cfg"), &cfg_a).unwrap();

    // B reaches A through a forwarder that can fail B's message status calls.
    let fw = FlakyForwarder::start(a.authority(), "Venus.ProxyMessageStatus").await;
    let b = ManagerProcess::start_with(
        &home_b,
        &[
            "--poster",
            "--proxy",
            &fw.addr.to_string(),
            "--proxy-token-file",
            token,
        ],
    );
    let ca = a.client(Some(&a.token("write")));
    let cb = b.client(Some(&b.token("read")));
    let rows: Vec<DeadlineRow> = ca.proving_deadlines(None).await.unwrap();
    let with_sectors = rows.iter().filter(|r| r.sectors > 0).count();
    assert!(with_sectors >= 2, "{rows:?}");
    // The poster node's view of the chain is A's.
    assert_eq!(
        cb.proving_deadlines(None)
            .await
            .unwrap()
            .iter()
            .map(|r| r.sectors)
            .collect::<Vec<_>>(),
        rows.iter().map(|r| r.sectors).collect::<Vec<_>>()
    );

    // A whole period: every deadline with sectors proven by B.
    let want = with_sectors as f64;
    let allocated = std::sync::Mutex::new(Vec::new());
    wait_until(
        &b,
        Duration::from_secs(150),
        "every deadline proven by the poster node",
        || {
            let (ca, b) = (ca.clone(), &b);
            let (allocated, home_a) = (&allocated, &home_a);
            async move {
                let info = ca.proving_info(None).await.unwrap();
                assert_eq!(
                    (info.faults, info.power),
                    (0, 4 * SECTOR),
                    "power dropped: {info:?}\n{}\n{}",
                    all_logs(home_a),
                    all_logs(&b.home)
                );
                assert_eq!(deadlines(b, "missed"), 0.0, "{}", all_logs(&b.home));
                // The sealing manager keeps sealing meanwhile.
                if allocated.lock().unwrap().len() < 2 {
                    if let Some(s) = allocate_one(&ca, MINER).await {
                        allocated.lock().unwrap().push(s.id.number);
                    }
                }
                (deadlines(b, "proven") >= want).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        *allocated.lock().unwrap(),
        vec![5, 6],
        "A allocated sectors while B proved"
    );
    assert!(
        log_lines(&home_a, &["without a window PoSt"]).is_empty(),
        "the devnet closed a deadline without a proof:\n{}",
        all_logs(&home_a)
    );
    assert!(
        log_lines(&home_a, &["window PoSt scheduler started"]).is_empty(),
        "A runs no poster"
    );
    // Every proof A's chain holds this period came from B.
    let proven_on_a: usize = ca
        .proving_deadlines(None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.proven_partitions.len())
        .sum();
    assert!(proven_on_a >= 1);
    // B seals nothing: a worker's call gets "method not found".
    let err = damocles_api::rpc::SealerApiClient::allocate_sector(
        &b.client(Some(&b.token("write"))),
        damocles_api::AllocateSectorSpec {
            allowed_miners: Some(vec![MINER]),
            allowed_proof_types: None,
        },
        None,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Method not found"), "{err}");

    // B loses sight of its messages' status (a dropped link) around a send:
    // it must follow the message it sent, not prove and send again, and the
    // deadline counts as proven once the status is readable again.
    let proven_before = deadlines(&b, "proven");
    let sent_before = log_lines(&home_b, &["window PoSt sent"]).len();
    fw.fail(true);
    wait_until(
        &b,
        Duration::from_secs(60),
        "a window PoSt sent while its status cannot be read",
        || async {
            (log_lines(&home_b, &["window PoSt sent"]).len() > sent_before && fw.failed() >= 3)
                .then_some(())
        },
    )
    .await;
    // Several blocks: the message lands meanwhile, unseen by B.
    tokio::time::sleep(Duration::from_secs(3)).await;
    fw.fail(false);
    wait_until(
        &b,
        Duration::from_secs(60),
        "that deadline proven",
        || async { (deadlines(&b, "proven") > proven_before).then_some(()) },
    )
    .await;
    assert_eq!(deadlines(&b, "missed"), 0.0, "{}", all_logs(&home_b));
    assert!(
        log_lines(&home_b, &["message failed"]).is_empty(),
        "B sent a deadline's proof twice:\n{}",
        all_logs(&home_b)
    );
    assert!(
        log_lines(&home_a, &["without a window PoSt"]).is_empty(),
        "{}",
        all_logs(&home_a)
    );
    // The path under test was taken.
    assert!(
        !log_lines(&home_b, &["message status not read; following it"]).is_empty(),
        "B never missed a status:\n{}",
        all_logs(&home_b)
    );
}
