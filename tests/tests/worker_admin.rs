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

/// A manager that allocates nothing and a worker of `threads` idle threads
/// against it, its admin RPC up: (manager, worker config, worker, its log).
fn idle_worker(
    dir: &std::path::Path,
    threads: usize,
) -> (
    ManagerProcess,
    std::path::PathBuf,
    std::process::Child,
    std::path::PathBuf,
) {
    let home = dir.join("manager");
    init_home(&home, |c| {
        c.replace(
            "Enabled = true\nEnableDeals",
            "Enabled = false\nEnableDeals",
        )
    });
    let m = ManagerProcess::start(&home);
    let setup = Setup {
        threads,
        ..Setup::default()
    };
    let cfg = write_config_with(dir, &m, &m.token("write"), &setup);
    let log = dir.join("worker.log");
    let worker = spawn(&cfg, &log);
    wait_until("the admin RPC", || worker_cli(&cfg, &["list"]).is_ok());
    (m, cfg, worker, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_show_in_worker_list_and_the_worker_pings() {
    let dir = tempfile::tempdir().unwrap();
    let (m, cfg, mut worker, _log) = idle_worker(dir.path(), 2);
    let cli = |args: &[&str]| worker_cli(&cfg, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));

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

/// The admin port from a worker config written by `write_config_with`.
fn admin_authority(cfg: &std::path::Path) -> String {
    let text = std::fs::read_to_string(cfg).unwrap();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("rpc_server.port = "))
        .expect("rpc_server.port in the config");
    format!("127.0.0.1:{}", port.trim())
}

/// Findings H4 and H1 on the worker: a web page (any Origin, any Host)
/// cannot drive the admin RPC, a call without the worker's token changes
/// nothing, and slow clients without a token cannot lock the CLI out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_rpc_needs_the_token_refuses_browsers_and_outlasts_slow_clients() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let (_m, cfg, mut worker, log) = idle_worker(dir.path(), 1);
    let admin = admin_authority(&cfg);
    let token_file = dir.path().join("admin-token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the admin token is private");

    // A browser page: WebSocket upgrade with a foreign Origin and Host.
    let ws = [
        ("Origin", "http://evil.example"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let (status, body) = http(&admin, "GET", "/", &ws, "");
    assert_ne!(status, 101, "a cross-origin WebSocket was accepted");
    assert_eq!(status, 401, "{body}");

    // Plain HTTP without the token: refused, and nothing changes.
    let set_env = r#"{"jsonrpc":"2.0","id":1,"method":"VenusWorker.WorkerSetEnv","params":["LD_PRELOAD","/tmp/evil.so"]}"#;
    let pause = r#"{"jsonrpc":"2.0","id":2,"method":"VenusWorker.WorkerPause","params":[0]}"#;
    for body in [set_env, pause] {
        let (status, answer) = http(
            &admin,
            "POST",
            "/",
            &[("Content-Type", "application/json")],
            body,
        );
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("11003"), "not refused: {answer}");
    }
    // A token signed with another secret: 401.
    let other = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJBbGxvdyI6WyJhZG1pbiJdfQ.Zm9yZ2Vk";
    let (status, _) = http(
        &admin,
        "POST",
        "/",
        &[("Authorization", &format!("Bearer {other}"))],
        pause,
    );
    assert_eq!(status, 401);
    assert_eq!(
        list(&cfg)[0]["thread_state"]["state"],
        "Idle",
        "the pause went through"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("LD_PRELOAD"),
        "the env change went through:\n{text}"
    );

    // 300 slow bodies (the old limit was 100 connections): the CLI still works.
    let req = format!("POST / HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 1000\r\n\r\n{{");
    let mut held = Vec::new();
    for _ in 0..300 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(&admin).await {
            if s.write_all(req.as_bytes()).await.is_ok() {
                held.push(s);
            }
        }
    }
    for _ in 0..3 {
        let out = worker_cli(&cfg, &["list"]);
        assert!(
            out.is_ok(),
            "worker list locked out by slow clients: {out:?}"
        );
    }
    drop(held);
    kill_group(&mut worker);
}
