//! A real `damocles-manager` process for tests: a fresh home, a devnet with
//! fast blocks, start / kill -9 / restart, and RPC clients with tokens.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};

use crate::workspace_bin;

pub struct ManagerProcess {
    pub home: PathBuf,
    pub child: Option<Child>,
    /// `http://127.0.0.1:<port>/rpc/v0`
    pub url: String,
    pub log: PathBuf,
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

/// `daemon init` into `home` with miner 1000, then rewrites the devnet
/// section for fast blocks; `edit` may change the config text further.
pub fn init_home(home: &Path, edit: impl FnOnce(String) -> String) {
    cli(home, &["daemon", "init", "--miner", "1000", "--listen", "127.0.0.1:0"]);
    let cfg = home.join("sector-manager.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .replace("BlockTime = \"4s\"", "BlockTime = \"500ms\"")
        .replace("SeedDelay = 5", "SeedDelay = 3");
    std::fs::write(&cfg, edit(text)).unwrap();
}

impl ManagerProcess {
    /// Starts `daemon run` and waits until it serves.
    pub fn start(home: &Path) -> ManagerProcess {
        let api = home.join("api");
        let _ = std::fs::remove_file(&api);
        let log = home.join(format!("manager-{}.log", Instant::now().elapsed().as_nanos() ^ std::process::id() as u128 ^ rand_suffix()));
        let child = Command::new(manager_bin())
            .arg("--home")
            .arg(home)
            .args(["daemon", "run"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn damocles-manager");
        let mut m = ManagerProcess {
            home: home.to_path_buf(),
            child: Some(child),
            url: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(url) = std::fs::read_to_string(&api) {
                m.url = url.trim().to_string();
                return m;
            }
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("damocles-manager exited with {status} before serving:\n{}", m.log_text());
            }
            assert!(Instant::now() < deadline, "damocles-manager did not start:\n{}", m.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A token minted by the CLI from this home's secret.
    pub fn token(&self, perm: &str) -> String {
        cli(&self.home, &["util", "auth", "create-token", "--perm", perm]).trim().to_string()
    }

    pub fn client(&self, token: Option<&str>) -> HttpClient {
        let mut headers = HeaderMap::new();
        if let Some(t) = token {
            headers.insert("Authorization", HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
        }
        HttpClientBuilder::default()
            .set_headers(headers)
            .request_timeout(Duration::from_secs(120))
            .build(&self.url)
            .expect("http client")
    }

    /// `host:port` of the server.
    pub fn authority(&self) -> String {
        self.url.trim_start_matches("http://").trim_end_matches("/rpc/v0").to_string()
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP/1.1 request over a fresh connection: (status code, body).
pub fn http(authority: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
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
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
