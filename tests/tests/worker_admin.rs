//! The worker's admin RPC through its CLI: `worker list` shows each thread,
//! `worker pause` / `worker resume` change what it shows; `worker set-env` /
//! `remove-env` change what restarted ext-processors inherit; the worker pings
//! the manager. No sector is sealed: the manager has allocation switched off, so the
//! threads idle.

use std::time::{Duration, Instant};

use damocles_e2e::kill9;
use damocles_e2e::manager::{http, init_home, ManagerProcess};
use damocles_e2e::worker::{
    children_of, kill_group, list_threads as list, spawn, worker_cli, write_config_with, Setup,
};

/// Kills the worker's pc1 child and returns the environment of the one that
/// replaces it.
fn restart_pc1(worker: u32) -> String {
    let old = children_of(worker, &["processor", "pc1"]);
    assert_eq!(old.len(), 1, "one pc1 child: {old:?}");
    kill9(old[0]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = children_of(worker, &["processor", "pc1"]);
        if let Some(pid) = now.iter().find(|p| **p != old[0]) {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            return String::from_utf8_lossy(&env).replace('\0', "\n");
        }
        assert!(Instant::now() < deadline, "pc1 was not restarted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_show_in_worker_list_and_the_worker_pings() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| {
        c.replace(
            "Enabled = true\nEnableDeals",
            "Enabled = false\nEnableDeals",
        )
    });
    let m = ManagerProcess::start(&home);
    let cfg = write_config_with(
        dir.path(),
        &m,
        &m.token("write"),
        &Setup {
            threads: 2,
            ..Setup::default()
        },
    );
    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);
    let cli = |args: &[&str]| worker_cli(&cfg, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));

    wait_until("the admin RPC", || worker_cli(&cfg, &["list"]).is_ok());
    let threads = list(&cfg);
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert_eq!(threads[0]["thread_state"]["state"], "Idle", "{threads:?}");

    cli(&["pause", "--index", "0"]);
    wait_until("thread 0 paused", || {
        list(&cfg)[0]["thread_state"]["state"] == "Paused"
    });
    assert_eq!(
        list(&cfg)[1]["thread_state"]["state"],
        "Idle",
        "only thread 0 pauses"
    );
    let table = cli(&["list"]);
    assert!(table.contains("paused"), "{table}");

    let out = cli(&["resume", "--index", "0"]);
    assert!(out.contains("resumed"), "{out}");
    wait_until("thread 0 running again", || {
        list(&cfg)[0]["thread_state"]["state"] != "Paused"
    });

    // Bad input answers clearly.
    let bad = worker_cli(&cfg, &["resume", "--index", "7"]).expect_err("no thread 7");
    assert!(bad.contains("no sealing thread 7"), "{bad}");

    // What restarted ext-processors inherit; the worker's own env stays.
    cli(&["set-env", "DAMOCLES_TEST_MARK", "on"]);
    let env = restart_pc1(worker.id());
    assert!(env.lines().any(|l| l == "DAMOCLES_TEST_MARK=on"), "{env}");
    cli(&["remove-env", "DAMOCLES_TEST_MARK"]);
    let env = restart_pc1(worker.id());
    assert!(!env.contains("DAMOCLES_TEST_MARK"), "{env}");
    let bad = worker_cli(&cfg, &["set-env", "A=B", "x"]).expect_err("a name with '='");
    assert!(bad.contains("not an environment variable name"), "{bad}");

    // The worker pings the manager.
    wait_until("a WorkerPing", || {
        let (_, body) = http(&m.authority(), "GET", "/metrics", &[], "");
        body.contains(r#"method="Venus.WorkerPing",outcome="ok""#)
    });
    kill_group(&mut worker);
}
