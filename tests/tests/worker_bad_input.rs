//! A worker facing a manager that is down, a persist store it cannot write
//! (a missing mount) or one the manager has read-only, or a processor that
//! fails: the trouble shows in the log and in `worker list`'s last_error,
//! the worker retries where retrying helps (and only there: a processor's
//! `permanent` error pauses the thread at once), and the sector is kept. No C2.

use std::time::{Duration, Instant};

use damocles_api::SectorID;
use damocles_e2e::manager::{init_home, ManagerProcess};
use damocles_e2e::proof_params;
use damocles_e2e::worker::{
    generate_static_tree_d, kill_group, list_threads, spawn, wait_for, worker_cli, write_config,
    write_config_with, Setup,
};
use fil_params::ParamSet;
use serde_json::Value;

/// Polls `worker list` until thread 0 satisfies `f`; panics with the log.
fn wait_thread(
    cfg: &std::path::Path,
    log: &std::path::Path,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(out) = worker_cli(cfg, &["list", "--json"]) {
            let threads: Vec<Value> = serde_json::from_str(&out).unwrap();
            if f(&threads[0]) {
                return threads[0].clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn last_error(t: &Value) -> String {
    t["last_error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_is_down_shows_as_last_error_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    // Nothing to allocate: the threads only ever ask.
    init_home(&home, |c| {
        c.replace(
            "Enabled = true\nEnableDeals",
            "Enabled = false\nEnableDeals",
        )
    });
    let mut m = ManagerProcess::start(&home);
    m.pin_port();
    let cfg = write_config(dir.path(), &m, &m.token("write"));
    m.kill9();

    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);
    let t = wait_thread(&cfg, &log, "the outage in last_error", |t| {
        last_error(t).contains("manager unreachable")
    });
    assert!(last_error(&t).contains("AllocateSector"), "{t}");
    assert_eq!(
        t["thread_state"]["state"], "Idle",
        "waiting, not paused: {t}"
    );

    let _m = ManagerProcess::start(&home);
    wait_thread(&cfg, &log, "the error cleared", |t| {
        t["last_error"].is_null()
    });
    kill_group(&mut worker);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("manager unreachable, retrying"),
        "logged:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_written_pauses_the_thread_and_keeps_the_sector() {
    proof_params(&[ParamSet::Porep2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| {
        c.replace("# MaxNumber = 1000000", "MaxNumber = 1")
    });
    let m = ManagerProcess::start(&home);
    // The worker reaches store-1 through a link to a mount that went
    // missing: the start warns about it, and every write fails.
    let mount = dir.path().join("store-1-mount");
    std::os::unix::fs::symlink(dir.path().join("unmounted"), &mount).unwrap();
    // This worker also takes its CC tree-d from a precomputed file.
    let static_tree_d = generate_static_tree_d(&dir.path().join("static"));
    let mut setup = Setup::default();
    setup.processors += &format!(
        "\n[processors.static_tree_d]\n2KiB = \"{}\"\n",
        static_tree_d.display()
    );
    let cfg = write_config_with(dir.path(), &m, &m.token("write"), &setup);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("location = \"{}\"", m.home.join("store-1").display()),
        &format!("location = \"{}\"", mount.display()),
    );
    std::fs::write(&cfg, text).unwrap();

    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);
    // Three retries a second apart, then the thread waits for a person.
    let t = wait_thread(&cfg, &log, "the thread paused", |t| {
        t["thread_state"]["state"] == "Paused"
    });
    assert_eq!(t["job_state"], "PCLanded", "{t}");
    assert_eq!(t["job_id"], "s-t01000-1", "{t}");
    let err = last_error(&t);
    assert!(
        err.contains("transfer") && err.contains("store-1-mount"),
        "last_error names the stage and the path: {err}"
    );
    let listed = list_threads(&cfg);
    assert_eq!(listed.len(), 1);

    // The mount comes back; a resume goes on from where the sector was.
    std::fs::remove_file(&mount).unwrap();
    std::os::unix::fs::symlink(m.home.join("store-1"), &mount).unwrap();
    worker_cli(&cfg, &["resume", "--index", "0"]).unwrap();
    let id = SectorID {
        miner: 1000,
        number: 1,
    };
    let s = wait_for(&m, &mut worker, &log, id, Duration::from_secs(120), |s| {
        s.persisted.is_some()
    })
    .await;
    kill_group(&mut worker);
    assert_eq!(s.persisted.as_deref(), Some("store-1"));
    assert!(home.join("store-1/sealed/s-t01000-1").exists());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("to=PC1Done").count(),
        1,
        "sealed once:\n{text}"
    );
    assert!(
        text.contains("tree-d linked from processors.static_tree_d"),
        "{text}"
    );
    let cache = dir.path().join("sealing-1/data/cache/s-t01000-1");
    assert_eq!(
        std::fs::read_link(cache.join("sc-02-data-tree-d.dat")).unwrap(),
        static_tree_d,
        "the sector's tree-d is the shared file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_persist_store_pauses_the_thread_until_it_is_writable() {
    proof_params(&[ParamSet::Porep2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| {
        c.replace("# MaxNumber = 1000000", "MaxNumber = 1")
            .replace("ReadOnly = false", "ReadOnly = true")
    });
    let mut m = ManagerProcess::start(&home);
    m.pin_port();
    let cfg = write_config(dir.path(), &m, &m.token("write"));
    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);

    let t = wait_thread(&cfg, &log, "the thread paused", |t| {
        t["thread_state"]["state"] == "Paused"
    });
    assert_eq!(t["job_state"], "PCLanded", "{t}");
    assert!(
        last_error(&t).contains("no writable persist store with room among [\"store-1\"]"),
        "{t}"
    );

    // The operator makes the store writable and restarts the manager; a
    // resume persists the same sector.
    m.kill9();
    let text = std::fs::read_to_string(home.join("sector-manager.cfg")).unwrap();
    std::fs::write(
        home.join("sector-manager.cfg"),
        text.replace("ReadOnly = true", "ReadOnly = false"),
    )
    .unwrap();
    let m = ManagerProcess::start(&home);
    worker_cli(&cfg, &["resume", "--index", "0"]).unwrap();
    let id = SectorID {
        miner: 1000,
        number: 1,
    };
    let s = wait_for(&m, &mut worker, &log, id, Duration::from_secs(120), |s| {
        s.persisted.is_some()
    })
    .await;
    kill_group(&mut worker);
    assert_eq!(s.persisted.as_deref(), Some("store-1"));
}

/// A pc1 ext-processor that always fails, graded `mode`: the thread pauses
/// at TicketAssigned. Returns the paused thread and how many times pc1 ran.
async fn pc1_failing_as(mode: &[&str]) -> (Value, usize) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| c.to_string());
    let m = ManagerProcess::start(&home);
    let count = dir.path().join("pc1-attempts");
    let args: Vec<String> = mode.iter().map(|a| format!("{a:?}")).collect();
    let setup = Setup {
        processors: format!(
            "[[processors.pc1]]\nbin = \"{}\"\nargs = [{}]\nenvs = {{ TEST_DOUBLE_COUNT = \"{}\" }}\n",
            env!("CARGO_BIN_EXE_test-double-processor"),
            args.join(", "),
            count.display()
        ),
        ..Setup::default()
    };
    let cfg = write_config_with(dir.path(), &m, &m.token("write"), &setup);
    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);
    let t = wait_thread(&cfg, &log, "the thread paused", |t| {
        t["thread_state"]["state"] == "Paused"
    });
    kill_group(&mut worker);
    assert_eq!(t["job_state"], "TicketAssigned", "{t}");
    let attempts = std::fs::read_to_string(&count)
        .unwrap_or_default()
        .lines()
        .count();
    (t, attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processors_error_grade_decides_whether_the_thread_retries() {
    // permanent: one attempt, then the thread waits for a person; last_error
    // names the stage, the processor entry and the child's message.
    let (t, attempts) = pc1_failing_as(&["failing-pc1", "permanent"]).await;
    assert_eq!(attempts, 1, "a permanent error is not retried: {t}");
    let err = last_error(&t);
    for part in [
        "pc1",
        "processors.pc1[0]",
        "this pc1 always fails (permanent)",
    ] {
        assert!(err.contains(part), "last_error names {part:?}: {err}");
    }

    // retryable: retried max_retries (3) times after the first attempt.
    let (t, attempts) = pc1_failing_as(&["failing-pc1", "retryable"]).await;
    assert_eq!(attempts, 4, "{t}");
    assert!(
        last_error(&t).contains("after 4 tries") && last_error(&t).contains("(retryable)"),
        "{t}"
    );

    // A v1 child sends no grade: retried, as damocles does.
    let (t, attempts) = pc1_failing_as(&["v1-failing-pc1"]).await;
    assert_eq!(attempts, 4, "{t}");
    assert!(last_error(&t).contains("this v1 pc1 always fails"), "{t}");
}
