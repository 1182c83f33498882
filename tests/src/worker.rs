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
use crate::workspace_bin;

/// Writes `<dir>/worker.toml`: one sealing thread in `<dir>/sealing-1`, the
/// manager's store-1 attached, pc1/pc2 in the worker's own children and c2 in
/// the verified-c2 example.
pub fn write_config(dir: &Path, m: &ManagerProcess, token: &str) -> PathBuf {
    let c2_bin = workspace_bin("example-verified-c2", "verified-c2");
    let cfg = dir.join("worker.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[worker]
name = "test-worker"

[sector_manager]
rpc_client.addr = "{addr}"
token = "{token}"

[sealing]
allowed_miners = [1000]
seal_interval = "1s"
recover_interval = "1s"
rpc_polling_interval = "300ms"
max_retries = 3

[[sealing_thread]]
location = "{loc}"

[[attached]]
name = "store-1"
location = "{store}"

[[processors.pc1]]
[[processors.pc2]]

[[processors.c2]]
bin = "{c2}"
args = []
"#,
            addr = m.url.trim_end_matches("/rpc/v0"),
            loc = dir.join("sealing-1").display(),
            store = m.home.join("store-1").display(),
            c2 = c2_bin.display(),
        ),
    )
    .unwrap();
    cfg
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

/// SIGKILL to the worker and every child it started.
pub fn kill_group(child: &mut Child) {
    // SAFETY: plain syscall on the group we created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
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
