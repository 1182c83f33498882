//! A real `damocles-manager` process for tests: a fresh home, a devnet with
//! fast blocks, start / kill -9 / restart, and RPC clients with tokens.

use std::path::{Path, PathBuf};
use std::process::Command;

use example_seal_2kib::devnet;
use jsonrpsee::http_client::HttpClient;

use crate::workspace_bin;

/// The example's manager process with test-friendly calls: every failure
/// panics with the manager's log.
pub struct ManagerProcess(pub devnet::ManagerProcess);

impl std::ops::Deref for ManagerProcess {
    type Target = devnet::ManagerProcess;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ManagerProcess {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

pub fn manager_bin() -> PathBuf {
    workspace_bin("damocles-manager", "damocles-manager")
}

/// Runs the manager CLI with `--home` and returns stdout, panicking with
/// stderr on failure.
pub fn cli(home: &Path, args: &[&str]) -> String {
    let out = Command::new(manager_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("run damocles-manager");
    assert!(
        out.status.success(),
        "damocles-manager {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `daemon init` into `home` with miner 1000 and a devnet of 500 ms blocks and
/// a 3-epoch seed delay; `edit` may change the config text further.
pub fn init_home(home: &Path, edit: impl FnOnce(String) -> String) {
    devnet::ManagerProcess::init(&manager_bin(), home, "500ms", 3, edit).expect("daemon init");
}

/// `daemon init` into `home` for miner 1000 with `block_time` blocks, a
/// 3-epoch seed delay and `extra` flags (e.g. `--pre-seal 3`); returns its
/// stdout, panicking with stderr on failure.
pub fn init_home_with(home: &Path, block_time: &str, extra: &[&str]) -> String {
    cli(
        home,
        &[
            &[
                "daemon",
                "init",
                "--miner",
                "1000",
                "--listen",
                "127.0.0.1:0",
            ][..],
            &["--block-time", block_time, "--seed-delay", "3"],
            extra,
        ]
        .concat(),
    )
}

impl ManagerProcess {
    /// Starts `daemon run` and waits until it serves.
    pub fn start(home: &Path) -> ManagerProcess {
        ManagerProcess(
            devnet::ManagerProcess::start(&manager_bin(), home).unwrap_or_else(|e| panic!("{e:#}")),
        )
    }

    /// Starts `daemon run <flags>` and waits until it serves.
    pub fn start_with(home: &Path, flags: &[&str]) -> ManagerProcess {
        ManagerProcess(
            devnet::ManagerProcess::start_with(&manager_bin(), home, flags)
                .unwrap_or_else(|e| panic!("{e:#}")),
        )
    }

    /// A token minted by the CLI from this home's secret.
    pub fn token(&self, perm: &str) -> String {
        self.0.token(perm).expect("create-token")
    }

    pub fn client(&self, token: Option<&str>) -> HttpClient {
        self.0.client(token).expect("http client")
    }

    /// Writes the port the manager serves on now into its config, so that
    /// a restart listens there again (clients configured with the address,
    /// like a worker, find it after a restart).
    pub fn pin_port(&self) {
        let cfg = self.home.join("sector-manager.cfg");
        let text = std::fs::read_to_string(&cfg)
            .expect("read sector-manager.cfg")
            .replace("127.0.0.1:0", &self.authority());
        std::fs::write(&cfg, text).expect("write sector-manager.cfg");
    }

    /// `host:port` of the server.
    pub fn authority(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/rpc/v0")
            .to_string()
    }
}

/// One HTTP/1.1 request over a fresh connection: (status code, body).
pub fn http(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(authority).expect("connect to the manager");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `Venus.AllocateSector` for `miner`, any proof type: the sector, or
/// `None` when the manager has none to give.
pub async fn allocate_one(c: &HttpClient, miner: u64) -> Option<damocles_api::AllocatedSector> {
    use damocles_api::rpc::SealerApiClient;
    let spec = damocles_api::AllocateSectorSpec {
        allowed_miners: Some(vec![miner]),
        allowed_proof_types: None,
    };
    c.allocate_sector(spec, None).await.expect("AllocateSector")
}

/// Starts `daemon run <flags>` expecting it to fail before serving: the
/// error with the manager's log (a start that serves panics).
pub fn start_fails(home: &Path, flags: &[&str]) -> String {
    match devnet::ManagerProcess::start_with(&manager_bin(), home, flags) {
        Ok(m) => panic!(
            "damocles-manager daemon run {flags:?} started; its log:\n{}",
            m.log_text()
        ),
        Err(e) => format!("{e:#}"),
    }
}
