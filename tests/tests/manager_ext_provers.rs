//! Window PoSt through ext-provers (`daemon run --poster --ext-prover`): the
//! manager's `[[WdPost]]` child is the test double running the real builtin
//! window PoSt behind the real consumer, misbehaving on purpose for its
//! first tasks (`TEST_DOUBLE_POST_PLAN`, counted across restarts in the file
//! `TEST_DOUBLE_COUNT`).
//!
//! - SIGKILLed mid-proof, then hanging: restarted, timed out (the request is
//!   cancelled, the child killed after the grace) and the deadline still
//!   proven in time;
//! - a corrupted proof: caught by the manager's verification, never sent;
//! - a damocles-era v1 processor (no negotiation) proves unchanged.
//!
//! One genesis sector, in deadline 2 of 4: its window is the first one
//! proven, so every misbehaviour lands in it.

use std::path::Path;
use std::time::Duration;

use damocles_api::proving::ProvingApiClient;
use damocles_e2e::manager::ManagerProcess;
use damocles_e2e::post::{
    all_logs, deadlines, init_post_home, log_lines, metric, wait_until, write_ext_prover_cfg,
};
use damocles_e2e::proof_params;
use fil_params::ParamSet;

const DOUBLE: &str = env!("CARGO_BIN_EXE_test-double-processor");
const SECTOR: u64 = 2048;

fn attempts(count: &Path) -> usize {
    std::fs::read_to_string(count)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Starts the poster with the ext-prover double in `mode` and `plan`, and
/// waits until the first deadline is proven; returns the manager and the
/// count file.
async fn prove_one_deadline(
    home: &Path,
    block_time: &str,
    mode: &str,
    plan: &str,
) -> (ManagerProcess, std::path::PathBuf) {
    proof_params(&[ParamSet::WindowPost2KiB]);
    init_post_home(home, block_time, 1, &["DeadlinesPerPeriod=4"], |t| t);
    let count = home.join("attempts");
    write_ext_prover_cfg(
        home,
        DOUBLE,
        mode,
        &[
            ("TEST_DOUBLE_POST_PLAN", plan.to_string()),
            ("TEST_DOUBLE_COUNT", count.display().to_string()),
        ],
    );
    let m = ManagerProcess::start_with(home, &["--poster", "--ext-prover"]);
    assert_eq!(
        log_lines(home, &["ext-prover ready", "WdPost[0]"]).len(),
        1,
        "{}",
        all_logs(home)
    );
    // Deadline 2 opens 40 epochs after genesis and closes 20 later.
    wait_until(
        &m,
        Duration::from_secs(120),
        "the first deadline proven",
        || async {
            let proven = deadlines(&m, "proven");
            let missed = deadlines(&m, "missed");
            assert_eq!(missed, 0.0, "a deadline was missed:\n{}", all_logs(home));
            (proven >= 1.0).then_some(())
        },
    )
    .await;
    let c = m.client(Some(&m.token("read")));
    let info = c.proving_info(None).await.unwrap();
    assert_eq!(
        (info.faults, info.power),
        (0, SECTOR),
        "{info:?}\n{}",
        all_logs(home)
    );
    assert!(
        log_lines(home, &["message failed"]).is_empty(),
        "the devnet refused a proof:\n{}",
        all_logs(home)
    );
    assert_eq!(
        metric(
            &m,
            "damocles_manager_post_proof_seconds_count",
            &["kind=\"window\"", "prover=\"ext\""]
        ),
        1.0,
        "one proof made by the ext-prover:\n{}",
        all_logs(home)
    );
    (m, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_then_hanging_ext_prover_is_replaced_and_the_deadline_proven() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 1 s blocks: 30 s from the task's start to the close, so the hang's
    // attempt is limited to half the time left and a third attempt fits.
    let (_m, count) = prove_one_deadline(&home, "1s", "post", "sigkill,hang").await;
    let logs = all_logs(&home);
    assert!(attempts(&count) >= 3, "sigkill, hang, honest:\n{logs}");
    // Killed: the producer saw the child stop and started another.
    assert!(
        logs.contains("processor stopped"),
        "the SIGKILL was seen:\n{logs}"
    );
    // Hung: the attempt hit its limit and the request was cancelled.
    assert!(
        logs.contains("request timed out; cancelling it"),
        "the hang was timed out:\n{logs}"
    );
    let ready = log_lines(&home, &["processor ready", "window_post"]).len();
    assert!(
        ready >= 2,
        "restarted after the SIGKILL ({ready} starts):\n{logs}"
    );
    assert_eq!(
        log_lines(&home, &["window PoSt sent devnet"]).len(),
        1,
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_proof_is_caught_and_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (_m, count) = prove_one_deadline(&home, "500ms", "post", "corrupt").await;
    let logs = all_logs(&home);
    assert_eq!(attempts(&count), 2, "corrupt, honest:\n{logs}");
    assert_eq!(
        log_lines(&home, &["does not verify", "it is not sent"]).len(),
        1,
        "{logs}"
    );
    // One message, the honest proof: the devnet accepted it and never saw
    // the corrupted one (it would have refused it: "message failed").
    assert_eq!(
        log_lines(&home, &["window PoSt sent devnet"]).len(),
        1,
        "{logs}"
    );
    assert!(!log_lines(&home, &["devnet window PoSt accepted"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damocles_era_v1_processor_works_as_an_ext_prover() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (_m, count) = prove_one_deadline(&home, "500ms", "v1-post", "").await;
    assert_eq!(attempts(&count), 1, "{}", all_logs(&home));
    // The producer found no v2 hello: it speaks v1 to this child.
    assert!(
        !log_lines(&home, &["processor ready", "v2=false"]).is_empty(),
        "{}",
        all_logs(&home)
    );
}
