//! PoSt tests' shared setup: a manager home with pre-sealed genesis sectors
//! and a small devnet policy, and polling helpers with the manager's log in
//! every failure.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::manager::{cli, http, init_home_with, ManagerProcess};
use crate::worker::sample;

pub const MINER: u64 = 1000;

/// The config `daemon init` writes for `block_time` blocks, changed by
/// `edit`, as `dir/<name>.cfg` for `daemon init --config`. The scratch home
/// it comes from stays in `dir/<name>-template`, with the config's store-1.
pub fn template_config(
    dir: &Path,
    name: &str,
    block_time: &str,
    edit: impl FnOnce(String) -> String,
) -> PathBuf {
    let template = dir.join(format!("{name}-template"));
    cli(
        &template,
        &[
            "daemon",
            "init",
            "--listen",
            "127.0.0.1:0",
            "--block-time",
            block_time,
        ],
    );
    let text = std::fs::read_to_string(template.join("sector-manager.cfg")).unwrap();
    let cfg = dir.join(format!("{name}.cfg"));
    std::fs::write(&cfg, edit(text)).unwrap();
    cfg
}

/// `daemon init --config cfg --pre-seal pre_seal` into `home`, with a
/// `--policy` for each of `policy` (e.g. `DeadlinesPerPeriod=4`).
pub fn init_from_config(home: &Path, cfg: &Path, pre_seal: u64, policy: &[&str]) {
    let n = pre_seal.to_string();
    let mut args = vec![
        "daemon",
        "init",
        "--config",
        cfg.to_str().expect("a UTF-8 path"),
        "--pre-seal",
        n.as_str(),
    ];
    for p in policy {
        args.extend(["--policy", p]);
    }
    cli(home, &args);
}

/// Sector 1 of a home under `dir` pre-sealed at `size_name` (`2KiB`,
/// `8MiB`) into a directory store: its window PoSt proof type, its size and
/// its replica (comm_r read from the devnet through a short-lived manager).
pub async fn pre_sealed_replica(
    dir: &Path,
    size_name: &str,
) -> (
    filecoin_proofs_api::RegisteredPoStProof,
    u64,
    vc_processors::tasks::PoStReplicaInfo,
) {
    use damocles_api::cli::ManagerCliApiClient;
    use vc_processors::sector::objects;
    let cfg = template_config(dir, size_name, "4s", |t| {
        t.replace(
            "SectorSize = \"2KiB\"",
            &format!("SectorSize = {size_name:?}"),
        )
    });
    let home = dir.join(size_name);
    init_from_config(&home, &cfg, 1, &[]);
    let m = ManagerProcess::start_with(&home, &[]);
    let id = damocles_api::SectorID::new(MINER, 1);
    let comm_r = m
        .client(Some(&m.token("read")))
        .chain_sector_info(id)
        .await
        .unwrap()
        .expect("on chain")
        .comm_r;
    drop(m);
    let size = match size_name {
        "2KiB" => 2048,
        "8MiB" => 8 << 20,
        other => panic!("no pre-seal at {other}"),
    };
    let proof = damocles_devnet::devnet::window_post_proof_for(size).unwrap();
    let store = dir.join(format!("{size_name}-template")).join("store-1");
    let replica = vc_processors::tasks::PoStReplicaInfo {
        sector_id: filecoin_proofs_api::SectorId::from(1),
        comm_r,
        cache_dir: store.join(objects::cache_dir(id)),
        sealed_file: store.join(objects::sealed(id)),
    };
    (proof, size, replica)
}

/// `daemon init` with `pre_seal` genesis sectors, `block_time` blocks and
/// the `[Devnet.Policy]` keys in `policy` (e.g. `DeadlinesPerPeriod=2`);
/// `edit` changes the config text after.
pub fn init_post_home(
    home: &Path,
    block_time: &str,
    pre_seal: u64,
    policy: &[&str],
    edit: impl FnOnce(String) -> String,
) {
    let n = pre_seal.to_string();
    let mut flags = vec!["--pre-seal", n.as_str()];
    for p in policy {
        flags.extend(["--policy", p]);
    }
    init_home_with(home, block_time, &flags);
    let cfg = home.join("sector-manager.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, edit(text)).unwrap();
}

/// Replaces the value of the first `key = ...` line after `section`.
pub fn set_key(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut out = Vec::new();
    let mut in_section = false;
    let mut done = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t == section;
        }
        let k = t
            .trim_start_matches('#')
            .split('=')
            .next()
            .unwrap_or("")
            .trim();
        if in_section && !done && k == key && t.contains('=') {
            out.push(format!("{key} = {value}"));
            done = true;
        } else {
            out.push(line.to_string());
        }
    }
    assert!(done, "no {key} under {section}");
    out.join("\n") + "\n"
}

/// The manager's `/metrics` text.
pub fn metrics(m: &ManagerProcess) -> String {
    http(&m.authority(), "GET", "/metrics", &[], "").1
}

/// A sample of the manager's metrics (0 when absent).
pub fn metric(m: &ManagerProcess, name: &str, labels: &[&str]) -> f64 {
    sample(&metrics(m), name, labels).unwrap_or(0.0)
}

/// Deadlines the manager counted with `outcome` (`proven`, `missed`).
pub fn deadlines(m: &ManagerProcess, outcome: &str) -> f64 {
    let label = format!("outcome=\"{outcome}\"");
    metric(
        m,
        "damocles_manager_post_deadlines_total",
        &[label.as_str()],
    )
}

/// `util <args> --json` parsed.
pub fn cli_json(home: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["util"];
    a.extend_from_slice(args);
    a.push("--json");
    serde_json::from_str(&cli(home, &a)).expect("--json output")
}

/// Polls `check` every 500 ms until it returns `Some`, panicking with
/// `what` and the manager's logs after `timeout`.
pub async fn wait_until<T, F, Fut>(
    m: &ManagerProcess,
    timeout: Duration,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}; manager log:\n{}",
            all_logs(&m.home)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every `manager-<n>.log` of the home, in order (a restart starts a new one).
pub fn all_logs(home: &Path) -> String {
    let mut out = String::new();
    for n in 0.. {
        let p = home.join(format!("manager-{n}.log"));
        let Ok(t) = std::fs::read_to_string(&p) else {
            break;
        };
        out.push_str(&format!("===== {}\n{t}", p.display()));
    }
    out
}

/// Lines of the home's logs containing every one of `words`.
pub fn log_lines(home: &Path, words: &[&str]) -> Vec<String> {
    all_logs(home)
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

/// Writes `<home>/ext-prover.cfg` with one `[[WdPost]]` entry running the
/// test double in `mode` (`post` or `v1-post`) for `window_post`, with the
/// given environment (e.g. `TEST_DOUBLE_POST_PLAN`).
pub fn write_ext_prover_cfg(home: &Path, double: &str, mode: &str, envs: &[(&str, String)]) {
    let envs: Vec<String> = envs
        .iter()
        .map(|(k, v)| format!("{k} = {}", toml_string(v)))
        .collect();
    std::fs::write(
        home.join("ext-prover.cfg"),
        format!(
            "[[WdPost]]\nBin = {}\nArgs = [\"{mode}\", \"window_post\"]\nEnvs = {{ {} }}\nConcurrent = 1\n",
            toml_string(double),
            envs.join(", ")
        ),
    )
    .unwrap();
}

/// `s` as a TOML basic string.
pub fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// A worker named `name` with one wdpost thread and the manager's store-1
/// attached; `processors` is its `[processors]` part; it polls for jobs
/// every `recover_interval` when idle.
pub fn wdpost_worker(
    dir: &Path,
    m: &ManagerProcess,
    name: &str,
    processors: &str,
    recover_interval: &str,
) -> (std::process::Child, std::path::PathBuf) {
    let store = format!(
        "[[attached]]\nname = \"store-1\"\nlocation = \"{}\"\nreadonly = true\n",
        m.home.join("store-1").display()
    );
    wdpost_worker_with(dir, m, name, processors, recover_interval, &store)
}

/// [`wdpost_worker`] with `stores` (TOML: `[[attached]]` entries, and
/// `[plugins]` for plugin stores) in place of the manager's store-1 dir.
pub fn wdpost_worker_with(
    dir: &Path,
    m: &ManagerProcess,
    name: &str,
    processors: &str,
    recover_interval: &str,
    stores: &str,
) -> (std::process::Child, std::path::PathBuf) {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            r#"
[worker]
name = "{name}"
rpc_server.host = "127.0.0.1"
rpc_server.port = {port}

[sector_manager]
rpc_client.addr = "{addr}"
token = "{token}"

[sealing]
allowed_miners = [1000]
allowed_sizes = ["2KiB"]
recover_interval = "{recover_interval}"
max_retries = 3

[[sealing_thread]]
location = "{location}"
plan = "wdpost"

{stores}

{processors}
"#,
            port = crate::worker::free_port(),
            addr = m.url.trim_end_matches("/rpc/v0"),
            token = m.token("write"),
            location = dir.join(format!("{name}-wdpost")).display(),
        ),
    )
    .unwrap();
    let log = dir.join(format!("{name}.log"));
    (crate::worker::spawn(&cfg, &log), log)
}
