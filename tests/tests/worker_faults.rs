//! Faults in the middle of sealing, each costing no sector: the sector still
//! ends active on chain with a proof the devnet verified.
//!
//! - `processors_that_hang_or_die`: the pc1 ext-processor hangs on its first
//!   task (the entry's `timeout` gives up on it and the child is replaced),
//!   and the pc2 ext-processor is killed with SIGKILL mid-task (restarted,
//!   and PC2 starts over from the staged data).
//! - `worker_and_manager_killed`: the worker and its children are killed with
//!   SIGKILL during PC2 and started again; later the manager is killed while
//!   the worker polls for the precommit, and started again.
//!
//! pc1/pc2 run in the TEST DOUBLE `test-double-processor sealing <stage>`: the
//! real builtin stage, made slow (`TEST_DOUBLE_DELAY_MS`, since PC2 of 2KiB
//! takes milliseconds) or stuck once (`TEST_DOUBLE_HANG_ONCE`). One C2 per
//! test; the tests take turns so two C2s never share the two cores.

use std::path::Path;
use std::time::Duration;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::{SectorID, SectorState};
use damocles_e2e::manager::{init_home, ManagerProcess};
use damocles_e2e::worker::{children_of, kill_group, spawn, wait_for, write_config_with, Setup};
use damocles_e2e::{kill9, proof_params, workspace_bin};
use fil_params::ParamSet;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DOUBLE: &str = env!("CARGO_BIN_EXE_test-double-processor");
const ID: SectorID = SectorID {
    miner: 1000,
    number: 1,
};

/// `[processors]`: pc1 and pc2 entries in the test double (extra lines
/// appended to each), c2 in the verified-c2 example.
fn processors(pc1: &str, pc2: &str) -> String {
    format!(
        r#"
[[processors.pc1]]
bin = "{DOUBLE}"
args = ["sealing", "pc1"]
{pc1}

[[processors.pc2]]
bin = "{DOUBLE}"
args = ["sealing", "pc2"]
{pc2}

[[processors.c2]]
bin = "{c2}"
"#,
        c2 = workspace_bin("example-verified-c2", "verified-c2").display()
    )
}

fn reached(state: &'static str) -> impl Fn(&SectorState) -> bool {
    move |s| {
        s.latest_state
            .as_ref()
            .is_some_and(|l| l.state_change.next == state)
    }
}

async fn assert_active(m: &ManagerProcess) {
    let admin = m.client(Some(&m.token("admin")));
    let chain = admin
        .chain_sector_info(ID)
        .await
        .unwrap()
        .expect("on chain");
    assert_eq!(chain.state, "Active", "the devnet verified the proof");
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processors_that_hang_or_die_cost_no_sector() {
    let _turn = ONE_AT_A_TIME.lock().await;
    proof_params(&[ParamSet::Porep2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| {
        c.replace("# MaxNumber = 1000000", "MaxNumber = 1")
    });
    let m = ManagerProcess::start(&home);
    let hung = dir.path().join("pc1-hung-once");
    let setup = Setup {
        threads: 1,
        processors: processors(
            &format!(
                "timeout = \"3s\"\nenvs = {{ TEST_DOUBLE_HANG_ONCE = \"{}\" }}",
                hung.display()
            ),
            "envs = { TEST_DOUBLE_DELAY_MS = \"8000\" }",
        ),
        stores: None,
    };
    let cfg = write_config_with(dir.path(), &m, &m.token("write"), &setup);
    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);

    // PC1 hangs once, times out, is tried again and succeeds; PC2 then
    // waits 8 s before working: kill its child in the middle.
    wait_for(
        &m,
        &mut worker,
        &log,
        ID,
        Duration::from_secs(120),
        reached("PC1Done"),
    )
    .await;
    assert!(hung.exists(), "the first PC1 hung");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pc2 = children_of(worker.id(), &["test-double-processor", "pc2"]);
    assert_eq!(pc2.len(), 1, "one pc2 child: {pc2:?}");
    kill9(pc2[0]);

    wait_for(&m, &mut worker, &log, ID, Duration::from_secs(400), |s| {
        s.finalized
    })
    .await;
    kill_group(&mut worker);
    assert_active(&m).await;
    let text = read(&log);
    assert!(text.contains("request timed out"), "pc1 timed out:\n{text}");
    assert!(
        text.contains("PC2 was interrupted"),
        "PC2 restarted from the staged data:\n{text}"
    );
    assert!(!text.contains("thread paused"), "no pause:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_manager_killed_mid_flight_cost_no_sector() {
    let _turn = ONE_AT_A_TIME.lock().await;
    proof_params(&[ParamSet::Porep2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    // Landed only 10 epochs (5 s) after execution: the worker polls a while.
    init_home(&home, |c| {
        c.replace("# MaxNumber = 1000000", "MaxNumber = 1")
            .replace("Confidence = 0", "Confidence = 10")
    });
    let mut m = ManagerProcess::start(&home);
    m.pin_port();
    let setup = Setup {
        threads: 1,
        processors: processors("", "envs = { TEST_DOUBLE_DELAY_MS = \"8000\" }"),
        stores: None,
    };
    let cfg = write_config_with(dir.path(), &m, &m.token("write"), &setup);

    // The worker goes down, children and all, while PC2 runs.
    let log1 = dir.path().join("worker-1.log");
    let mut worker = spawn(&cfg, &log1);
    wait_for(
        &m,
        &mut worker,
        &log1,
        ID,
        Duration::from_secs(120),
        reached("PC1Done"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill_group(&mut worker);
    assert!(
        dir.path().join("sealing-1/data/.pc2_running").exists(),
        "killed during PC2"
    );

    // Started again; the manager goes down while the worker polls.
    let log2 = dir.path().join("worker-2.log");
    let mut worker = spawn(&cfg, &log2);
    wait_for(
        &m,
        &mut worker,
        &log2,
        ID,
        Duration::from_secs(120),
        reached("PCSubmitted"),
    )
    .await;
    m.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = ManagerProcess::start(&home);

    wait_for(&m, &mut worker, &log2, ID, Duration::from_secs(400), |s| {
        s.finalized
    })
    .await;
    kill_group(&mut worker);
    assert_active(&m).await;
    let text = read(&log2);
    assert!(
        text.contains("PC2 was interrupted"),
        "PC2 restarted from the staged data:\n{text}"
    );
    assert!(
        text.lines().any(
            |l| l.contains("manager unreachable, retrying") && l.contains("PollPreCommitState")
        ),
        "the worker kept polling through the outage:\n{text}"
    );
    assert!(!text.contains("thread paused"), "no pause:\n{text}");
}
