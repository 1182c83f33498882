//! PoSt tests' shared setup: a manager home with pre-sealed genesis sectors
//! and a small devnet policy, and polling helpers with the manager's log in
//! every failure.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::manager::{cli, http, init_home_with, ManagerProcess};
use crate::worker::sample;

pub const MINER: u64 = 1000;

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
