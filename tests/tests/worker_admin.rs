//! The worker's admin RPC through its CLI: `worker list` shows each thread,
//! `worker pause` / `worker resume` change what it shows; the worker pings the
//! manager. No sector is sealed: the manager has allocation switched off, so the
//! threads idle.

use std::process::Command;
use std::time::{Duration, Instant};

use damocles_e2e::manager::{http, init_home, ManagerProcess};
use damocles_e2e::worker::{kill_group, spawn, write_config};
use damocles_e2e::workspace_bin;
use serde_json::Value;

fn worker_cli(host: &str, args: &[&str]) -> String {
    let out = Command::new(workspace_bin("damocles-worker", "damocles-worker"))
        .args(["worker", "--host", host])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "worker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn list(host: &str) -> Vec<Value> {
    serde_json::from_str(&worker_cli(host, &["list", "--json"])).unwrap()
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = write_config(dir.path(), &m, &m.token("write"));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "name = \"test-worker\"",
        &format!("name = \"test-worker\"\nping_interval = \"1s\"\nrpc_server.host = \"127.0.0.1\"\nrpc_server.port = {port}"),
    ) + &format!("\n[[sealing_thread]]\nlocation = \"{}\"\n", dir.path().join("sealing-2").display());
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);
    let host = format!("127.0.0.1:{port}");

    wait_until("the admin RPC", || {
        Command::new(workspace_bin("damocles-worker", "damocles-worker"))
            .args(["worker", "--host", &host, "list"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let threads = list(&host);
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert_eq!(threads[0]["thread_state"]["state"], "Idle", "{threads:?}");

    worker_cli(&host, &["pause", "--index", "0"]);
    wait_until("thread 0 paused", || {
        list(&host)[0]["thread_state"]["state"] == "Paused"
    });
    assert_eq!(
        list(&host)[1]["thread_state"]["state"],
        "Idle",
        "only thread 0 pauses"
    );
    let table = worker_cli(&host, &["list"]);
    assert!(table.contains("paused"), "{table}");

    let out = worker_cli(&host, &["resume", "--index", "0"]);
    assert!(out.contains("resumed"), "{out}");
    wait_until("thread 0 running again", || {
        list(&host)[0]["thread_state"]["state"] != "Paused"
    });

    // Bad input answers clearly.
    let bad = Command::new(workspace_bin("damocles-worker", "damocles-worker"))
        .args(["worker", "--host", &host, "resume", "--index", "7"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no sealing thread 7"));

    // The worker pings the manager.
    wait_until("a WorkerPing", || {
        let (_, body) = http(&m.authority(), "GET", "/metrics", &[], "");
        body.contains(r#"method="Venus.WorkerPing",outcome="ok""#)
    });
    kill_group(&mut worker);
}
