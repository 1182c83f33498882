//! A real `damocles-worker daemon` for tests: a config pointing at a test
//! manager, the process in its own group (so a kill takes its ext-processors
//! with it, like a machine going down), and waiting for a sector to finish.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::{SectorID, SectorState};

use crate::manager::ManagerProcess;
use crate::{process_state, workspace_bin};

/// What a test worker runs beyond the common parts.
pub struct Setup {
    /// Sealing threads, in `<dir>/sealing-1`, `<dir>/sealing-2`, ...
    pub threads: usize,
    /// The `[processors]` part of the config, verbatim.
    pub processors: String,
    /// The `[[attached]]` part (and `[plugins]`), verbatim; `None`: the
    /// manager's `store-1` directory.
    pub stores: Option<String>,
}

impl Default for Setup {
    /// One thread; pc1/pc2 in the worker's own children, c2 in the
    /// verified-c2 example, the other stages builtin.
    fn default() -> Setup {
        Setup {
            threads: 1,
            processors: format!(
                "[[processors.pc1]]\n[[processors.pc2]]\n\n[[processors.c2]]\nbin = \"{}\"\n",
                workspace_bin("example-verified-c2", "verified-c2").display()
            ),
            stores: None,
        }
    }
}

/// Writes `<dir>/worker.toml` for the default [`Setup`].
pub fn write_config(dir: &Path, m: &ManagerProcess, token: &str) -> PathBuf {
    write_config_with(dir, m, token, &Setup::default())
}

/// Writes `<dir>/worker.toml`: the setup's threads and processors, the
/// manager's store-1 attached, fast retries and polls.
pub fn write_config_with(dir: &Path, m: &ManagerProcess, token: &str, setup: &Setup) -> PathBuf {
    let threads: String = (1..=setup.threads)
        .map(|i| {
            format!(
                "[[sealing_thread]]\nlocation = \"{}\"\n\n",
                dir.join(format!("sealing-{i}")).display()
            )
        })
        .collect();
    let cfg = dir.join("worker.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[worker]
name = "test-worker"
ping_interval = "1s"
rpc_server.host = "127.0.0.1"
rpc_server.port = {admin_port}

[sector_manager]
rpc_client.addr = "{addr}"
token = "{token}"

[sealing]
allowed_miners = [1000]
seal_interval = "1s"
recover_interval = "1s"
rpc_polling_interval = "300ms"
max_retries = 3

{threads}
{stores}

{processors}
"#,
            addr = m.url.trim_end_matches("/rpc/v0"),
            stores = setup.stores.clone().unwrap_or_else(|| format!(
                "[[attached]]\nname = \"store-1\"\nlocation = \"{}\"\n",
                m.home.join("store-1").display()
            )),
            processors = setup.processors,
            admin_port = free_port(),
        ),
    )
    .unwrap();
    cfg
}

/// `damocles-worker generator tree-d -s 2KiB -p <dir>`: the precomputed CC
/// tree-d for `[processors.static_tree_d]`; returns the file.
pub fn generate_static_tree_d(dir: &Path) -> PathBuf {
    let out = Command::new(workspace_bin("damocles-worker", "damocles-worker"))
        .args(["generator", "tree-d", "-s", "2KiB", "-p"])
        .arg(dir)
        .output()
        .expect("run damocles-worker generator tree-d");
    assert!(
        out.status.success(),
        "generator tree-d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("sc-02-data-tree-d.dat")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// The value of the Prometheus sample `name` whose labels include all of
/// `labels` (`key="value"` each), from a `/metrics` text.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        (n == name && labels.iter().all(|lb| rest.contains(lb)))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// Pids of the children of `parent` whose command line contains every one of
/// `words` (from /proc).
pub fn children_of(parent: u32, words: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if words.iter().all(|w| cmdline.contains(w)) {
            found.push(pid);
        }
    }
    found
}

/// `damocles-worker worker -c cfg <args>`: the admin CLI against the worker
/// of that config. Stdout on success, stderr as the error.
pub fn worker_cli(cfg: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(workspace_bin("damocles-worker", "damocles-worker"))
        .args(["worker", "-c"])
        .arg(cfg)
        .args(args)
        .output()
        .expect("run damocles-worker worker");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `worker list --json`: one object per sealing thread.
pub fn list_threads(cfg: &Path) -> Vec<serde_json::Value> {
    let out = worker_cli(cfg, &["list", "--json"]).unwrap_or_else(|e| panic!("worker list: {e}"));
    serde_json::from_str(&out).expect("worker list --json")
}

/// `damocles-worker daemon -c cfg`, logging to `log`, in its own process group.
pub fn spawn(cfg: &Path, log: &Path) -> Child {
    Command::new(workspace_bin("damocles-worker", "damocles-worker"))
        .args(["daemon", "-c"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .process_group(0)
        .spawn()
        .expect("spawn damocles-worker")
}

/// SIGKILL to the worker and every child it started. Its ext-processors each
/// lead a group of their own, so those groups go too.
pub fn kill_group(child: &mut Child) {
    let pid = child.id();
    // Stopped first, so that it starts no child while they are collected.
    // SAFETY: plain syscall on the process we started.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(1);
    while process_state(pid).as_deref() != Some("T") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for c in children_of(pid, &[]) {
        // SAFETY: plain syscall on a group the worker created.
        unsafe { libc::kill(-(c as i32), libc::SIGKILL) };
    }
    // SAFETY: plain syscall on the group we created.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    let _ = child.wait();
}

/// Polls the manager until `until` holds for the sector's record; panics with
/// both logs on timeout or if the worker exits.
pub async fn wait_for(
    m: &ManagerProcess,
    worker: &mut Child,
    log: &Path,
    id: SectorID,
    timeout: Duration,
    until: impl Fn(&SectorState) -> bool,
) -> SectorState {
    let admin = m.client(Some(&m.token("admin")));
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = admin.find_sector(id).await.unwrap() {
            if until(&s) {
                return s;
            }
        }
        if let Some(status) = worker.try_wait().unwrap() {
            panic!(
                "the worker exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "timed out:\nworker:\n{}\nmanager:\n{}",
            std::fs::read_to_string(log).unwrap(),
            m.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
