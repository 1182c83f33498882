//! A real S3 server for tests: moto's server (`python3 -m moto.server`,
//! installed by `.ci/run` from PyPI), and the settings that point the S3
//! store plugin at it.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use damocles_objstore::Config;

use crate::manager::http;
use crate::worker::free_port;
use crate::workspace_cdylib;

/// The S3 store plugin library (examples/objstore-s3-plugin), built.
pub fn s3_plugin() -> std::path::PathBuf {
    workspace_cdylib("example-objstore-s3-plugin", "objstore_s3_plugin")
}

/// `python3 -m moto.server` on a free loopback port, killed on drop.
pub struct S3Server {
    child: Child,
    pub authority: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        S3Server::spawn(false)
    }

    /// A server that checks credentials (moto's IAM enforcement from the
    /// first request): the test keys of [`Self::meta`] are unknown to it.
    pub fn start_checking_credentials() -> S3Server {
        S3Server::spawn(true)
    }

    fn spawn(check_credentials: bool) -> S3Server {
        let port = free_port();
        let mut cmd = Command::new("python3");
        if check_credentials {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = cmd
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m moto.server (.ci/run installs moto[server])");
        let authority = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&authority).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on {authority}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        S3Server { child, authority }
    }

    pub fn create_bucket(&self, name: &str) {
        let (status, body) = http(&self.authority, "PUT", &format!("/{name}"), &[], "");
        assert_eq!(status, 200, "create bucket {name}: {body}");
    }

    /// The plugin's `Meta` for this server: test credentials, objects under
    /// `cluster-a/`, 5 MiB parts, one quick retry.
    pub fn meta(&self) -> BTreeMap<String, String> {
        [
            ("endpoint", format!("http://{}", self.authority)),
            ("access_key_id", "test".into()),
            ("secret_access_key", "test".into()),
            ("prefix", "cluster-a".into()),
            ("part_size", (5 << 20).to_string()),
            // Reads of more than 3 MiB take several GETs.
            ("read_window", (3 << 20).to_string()),
            ("max_retries", "1".into()),
            ("retry_timeout_secs", "3".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A store named `name` on `bucket` of this server.
    pub fn store_config(&self, name: &str, bucket: &str) -> Config {
        Config {
            name: name.into(),
            path: bucket.into(),
            meta: self.meta(),
            ..Config::default()
        }
    }

    /// [`Self::meta`] as a TOML inline table.
    pub fn meta_toml(&self) -> String {
        let pairs: Vec<String> = self
            .meta()
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}"))
            .collect();
        format!("{{ {} }}", pairs.join(", "))
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A manager config (written in `dir`, returned) whose store-1 is the S3
/// store on bucket `sectors` of `s3` (created), the S3 plugin copied into
/// `dir/plugins`: the template of `daemon init` with `block_time` blocks and
/// `Devnet.SectorSize = sector_size`, for `daemon init --config`.
pub fn manager_config_on_s3(
    dir: &std::path::Path,
    s3: &S3Server,
    block_time: &str,
    sector_size: &str,
) -> std::path::PathBuf {
    s3.create_bucket("sectors");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let lib = s3_plugin();
    std::fs::copy(&lib, plugins.join(lib.file_name().unwrap())).unwrap();
    crate::post::template_config(dir, "s3", block_time, |text| {
        let local = text
            .lines()
            .find(|l| l.starts_with("Path = "))
            .expect("the template's store-1 Path")
            .to_string();
        text.replace(
            "# Dir = \"/opt/damocles/plugins\"",
            &format!("Dir = {:?}", plugins.display().to_string()),
        )
        .replace(
            &local,
            &format!(
                "Path = \"sectors\"\nPluginName = \"s3\"\nMeta = {}",
                s3.meta_toml()
            ),
        )
        .replace(
            "SectorSize = \"2KiB\"",
            &format!("SectorSize = {sector_size:?}"),
        )
    })
}
