//! The worker config: damocles-worker's TOML sections and keys (snake_case),
//! from `daemon -c FILE` or `DAMOCLES_WORKER_CONFIG`.
//!
//! Unknown keys are reported by name for the caller to warn about (damocles
//! ignores them silently); a bad value is an error naming the key. What is
//! accepted but not acted on yet is listed by [`WorkerConfig::unsupported`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use damocles_sector::Stage;
use serde::{Deserialize, Serialize};

/// Stages that can have `[[processors.<stage>]]` entries: every stage with a
/// task, but winning PoSt (the manager's, never a worker's).
pub fn processor_stages() -> impl Iterator<Item = Stage> {
    Stage::ALL
        .iter()
        .copied()
        .filter(|s| s.has_task() && !manager_only(*s))
}

/// The stage a `limitation.concurrent` / `staggered` key names, if it names
/// one the worker runs.
fn limit_stage(key: &str) -> Option<Stage> {
    key.parse::<Stage>().ok().filter(|s| !manager_only(*s))
}

/// Stages only the manager's provers run: winning PoSt and the PoSt halves.
fn manager_only(s: Stage) -> bool {
    matches!(
        s,
        Stage::WinningPost | Stage::PostVanilla | Stage::PostSnark
    )
}

/// The stage names a `limitation` key may take, for error messages.
fn limit_stage_names() -> String {
    let names: Vec<&str> = Stage::ALL
        .iter()
        .filter(|s| limit_stage(s.as_str()).is_some())
        .map(|s| s.as_str())
        .collect();
    names.join(", ")
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    pub worker: WorkerSection,
    pub metrics: MetricsSection,
    pub sector_manager: SectorManagerSection,
    pub sealing: SealingOptions,
    pub sealing_thread: Vec<SealingThread>,
    pub attached: Vec<AttachedStore>,
    pub plugins: PluginsSection,
    pub processors: Processors,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginsSection {
    /// Objstore plugins (shared libraries) loaded at start, the same files
    /// the manager loads; `[[attached]]` stores name one by `plugin_name`.
    pub dir: Option<PathBuf>,
    /// Load every library in `dir`, not only those the `plugin_name`s need
    /// (docs/objstore.md).
    pub load_all: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerSection {
    /// Instance name reported to the manager (default: the host name).
    pub name: Option<String>,
    pub rpc_server: RpcServer,
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    pub local_pieces_dir: Option<PathBuf>,
    pub local_pieces_dirs: Vec<PathBuf>,
    #[serde(alias = "ScanPersistStores")]
    pub scan_persist_stores: Vec<String>,
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            name: None,
            rpc_server: RpcServer::default(),
            ping_interval: Duration::from_secs(30),
            local_pieces_dir: None,
            local_pieces_dirs: vec![],
            scan_persist_stores: vec![],
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcServer {
    pub host: Option<String>,
    pub port: u16,
}

impl Default for RpcServer {
    fn default() -> Self {
        RpcServer {
            host: None,
            port: 17890,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSection {
    pub enable: bool,
    /// Where `/metrics` is served (default `0.0.0.0:9000`, as damocles).
    pub http_listen: Option<String>,
}

impl MetricsSection {
    /// The address to serve on, when enabled.
    pub fn listen(&self) -> Result<Option<std::net::SocketAddr>> {
        if !self.enable {
            return Ok(None);
        }
        let addr = self.http_listen.as_deref().unwrap_or("0.0.0.0:9000");
        addr.parse().map(Some).map_err(|e| {
            anyhow!("key metrics.http_listen: {addr:?} is not an address like 127.0.0.1:9000: {e}")
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SectorManagerSection {
    pub rpc_client: RpcClient,
    /// Sent to add_pieces as PIECE_FETCHER_TOKEN.
    pub piece_token: Option<String>,
    /// Ours: the manager token, sent as `Authorization: Bearer <token>`
    /// (an Authorization entry in `rpc_client.headers` works too).
    pub token: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcClient {
    /// `/ip4/10.0.0.1/tcp/1789` or `http://10.0.0.1:1789`.
    pub addr: String,
    pub headers: BTreeMap<String, String>,
}

impl SectorManagerSection {
    /// The manager's JSON-RPC URL (`<scheme>://host:port/rpc/v0`).
    pub fn url(&self) -> Result<String> {
        manager_url(&self.rpc_client.addr)
            .map_err(|e| anyhow!("key sector_manager.rpc_client.addr: {e}"))
    }

    /// Headers to send: the configured ones, plus the token.
    pub fn headers(&self) -> BTreeMap<String, String> {
        let mut h = self.rpc_client.headers.clone();
        if let Some(t) = &self.token {
            h.insert("Authorization".into(), format!("Bearer {t}"));
        }
        h
    }
}

/// `/ip4/H/tcp/P[/http|/https]`, `/dns/H/tcp/P`, `/ip6/H/tcp/P` or an http(s)/ws
/// URL → `scheme://H:P/rpc/v0`.
pub fn manager_url(addr: &str) -> std::result::Result<String, String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err("missing: the manager's address, e.g. /ip4/127.0.0.1/tcp/1789".into());
    }
    if let Some((scheme, rest)) = addr.split_once("://") {
        if !matches!(scheme, "http" | "https" | "ws" | "wss") {
            return Err(format!(
                "{addr:?}: scheme {scheme:?} is not http, https, ws or wss"
            ));
        }
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("{addr:?}: no host"));
        }
        return Ok(format!("{scheme}://{host}/rpc/v0"));
    }
    let parts: Vec<&str> = addr.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [proto, host, "tcp", port, rest @ ..]
            if matches!(*proto, "ip4" | "ip6" | "dns" | "dns4" | "dns6") =>
        {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("{addr:?}: {port:?} is not a port"))?;
            let scheme = match rest {
                [] | ["http"] => "http",
                ["https"] => "https",
                ["ws"] => "ws",
                ["wss"] => "wss",
                other => return Err(format!("{addr:?}: unexpected {:?}", other.join("/"))),
            };
            let host = if *proto == "ip6" {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            Ok(format!("{scheme}://{host}:{port}/rpc/v0"))
        }
        _ => Err(format!(
            "{addr:?} is neither a multiaddr like /ip4/127.0.0.1/tcp/1789 nor a URL"
        )),
    }
}

/// `[sealing]` and each thread's `sealing.*` overrides. Unset fields fall back
/// from thread to `[sealing]` to damocles' defaults ([`Sealing::resolve`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SealingOptions {
    pub allowed_miners: Option<Vec<u64>>,
    pub allowed_sizes: Option<Vec<String>>,
    pub enable_deals: Option<bool>,
    pub disable_cc: Option<bool>,
    pub max_deals: Option<u64>,
    pub min_deal_space: Option<String>,
    pub max_retries: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub seal_interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub recover_interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub rpc_polling_interval: Option<Duration>,
    pub ignore_proof_check: Option<bool>,
    pub request_task_max_retries: Option<u32>,
    pub verify_after_pc2: Option<bool>,
}

impl SealingOptions {
    /// Refuses an interval of zero: a thread would spin on the manager and
    /// the disk without pause. `key` names the section in errors.
    fn check_intervals(&self, key: &str) -> Result<()> {
        for (name, value) in [
            ("seal_interval", self.seal_interval),
            ("recover_interval", self.recover_interval),
            ("rpc_polling_interval", self.rpc_polling_interval),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                bail!("key {key}.{name}: 0s would retry without pause; use at least 1s");
            }
        }
        Ok(())
    }
}

/// A thread's effective sealing settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sealing {
    pub allowed_miners: Vec<u64>,
    /// Bytes.
    pub allowed_sizes: Vec<u64>,
    pub enable_deals: bool,
    pub disable_cc: bool,
    pub max_deals: Option<u64>,
    pub max_retries: u32,
    pub seal_interval: Duration,
    pub recover_interval: Duration,
    pub rpc_polling_interval: Duration,
    pub ignore_proof_check: bool,
    pub request_task_max_retries: u32,
    pub verify_after_pc2: bool,
}

impl Sealing {
    /// `thread` over `common` over the defaults. `key` names the thread's
    /// section in errors.
    pub fn resolve(common: &SealingOptions, thread: &SealingOptions, key: &str) -> Result<Sealing> {
        macro_rules! pick {
            ($f:ident, $d:expr) => {
                thread
                    .$f
                    .clone()
                    .or_else(|| common.$f.clone())
                    .unwrap_or($d)
            };
        }
        let sizes = pick!(allowed_sizes, vec![]);
        let allowed_sizes = sizes
            .iter()
            .map(|s| {
                let b = parse_size(s).map_err(|e| anyhow!("key {key}.allowed_sizes: {e}"))?;
                seal_proof_for(b).ok_or_else(|| anyhow!("key {key}.allowed_sizes: {s:?} is not a sector size (2KiB, 8MiB, 512MiB, 32GiB, 64GiB)"))?;
                Ok(b)
            })
            .collect::<Result<Vec<u64>>>()?;
        Ok(Sealing {
            allowed_miners: pick!(allowed_miners, vec![]),
            allowed_sizes,
            enable_deals: pick!(enable_deals, false),
            disable_cc: pick!(disable_cc, false),
            max_deals: thread.max_deals.or(common.max_deals),
            max_retries: pick!(max_retries, 5),
            seal_interval: pick!(seal_interval, Duration::from_secs(30)),
            recover_interval: pick!(recover_interval, Duration::from_secs(60)),
            rpc_polling_interval: pick!(rpc_polling_interval, Duration::from_secs(180)),
            ignore_proof_check: pick!(ignore_proof_check, false),
            request_task_max_retries: pick!(request_task_max_retries, 3),
            verify_after_pc2: pick!(verify_after_pc2, false),
        })
    }
}

/// The seal proof damocles uses for a sector size (the current V1_1 ones).
pub fn seal_proof_for(size: u64) -> Option<filecoin_proofs_api::RegisteredSealProof> {
    damocles_api::SealProof::for_sector_size(size).map(|p| p.0)
}

/// `2KiB`, `32GiB` → bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    damocles_config::parse_size(s).map_err(anyhow::Error::msg)
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SealingThread {
    /// The thread's sealing store directory (created if missing).
    pub location: PathBuf,
    /// `sealer` (default) or `wdpost` (a worker-prover); snapup, rebuild and unseal come later.
    pub plan: Option<String>,
    pub sealing: SealingOptions,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachedStore {
    /// Must match the manager's persist store name (default: location).
    pub name: Option<String>,
    /// A directory, or with `plugin_name` whatever the plugin understands
    /// (the manager store's `Path`: a bucket).
    pub location: PathBuf,
    pub readonly: bool,
    /// The objstore plugin serving this store (its kind, as the manager's
    /// `PluginName`); unset: the directory at `location`.
    #[serde(alias = "plugin")]
    pub plugin_name: Option<String>,
    /// The plugin's settings, as the manager store's `Meta`.
    pub meta: BTreeMap<String, String>,
}

impl AttachedStore {
    pub fn instance_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.location.display().to_string())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Limitation {
    pub concurrent: BTreeMap<String, usize>,
    pub staggered: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Processors {
    pub limitation: Limitation,
    /// Legacy form of `limitation.concurrent`, ignored when that is set.
    pub limit: BTreeMap<String, usize>,
    pub ext_locks: BTreeMap<String, usize>,
    /// Sector size → precomputed tree-d file of a CC sector
    /// (`damocles-worker generator tree-d`), copied instead of building tree-d.
    pub static_tree_d: BTreeMap<String, PathBuf>,
    pub add_pieces: Vec<ProcessorEntry>,
    pub tree_d: Vec<ProcessorEntry>,
    pub pc1: Vec<ProcessorEntry>,
    pub pc2: Vec<ProcessorEntry>,
    pub c2: Vec<ProcessorEntry>,
    pub snap_encode: Vec<ProcessorEntry>,
    pub snap_prove: Vec<ProcessorEntry>,
    pub transfer: Vec<ProcessorEntry>,
    pub unseal: Vec<ProcessorEntry>,
    pub window_post: Vec<ProcessorEntry>,
    pub sealing_daemons: Vec<ProcessorEntry>,
}

impl Processors {
    /// The `[[processors.<stage>]]` entries of a stage (none: builtin).
    pub fn entries(&self, stage: Stage) -> &[ProcessorEntry] {
        match stage {
            Stage::AddPieces => &self.add_pieces,
            Stage::TreeD => &self.tree_d,
            Stage::Pc1 => &self.pc1,
            Stage::Pc2 => &self.pc2,
            Stage::C2 => &self.c2,
            Stage::SnapEncode => &self.snap_encode,
            Stage::SnapProve => &self.snap_prove,
            Stage::Transfer => &self.transfer,
            Stage::Unseal => &self.unseal,
            Stage::WindowPost => &self.window_post,
            // Always in-process, or never the worker's.
            Stage::C1
            | Stage::SynthProof
            | Stage::WinningPost
            | Stage::PostVanilla
            | Stage::PostSnark => &[],
        }
    }

    /// Every entry list by its section name: each stage's, then damocles'
    /// `sealing_daemons` (accepted and checked, not run).
    pub fn sections(&self) -> Vec<(&'static str, &[ProcessorEntry])> {
        processor_stages()
            .map(|s| (s.as_str(), self.entries(s)))
            .chain([("sealing_daemons", &self.sealing_daemons[..])])
            .collect()
    }

    /// Per-stage thread limits: `limitation.concurrent`, else the legacy `limit`.
    pub fn concurrent_limits(&self) -> &BTreeMap<String, usize> {
        if self.limitation.concurrent.is_empty() {
            &self.limit
        } else {
            &self.limitation.concurrent
        }
    }

    /// `static_tree_d` by sector size in bytes, each file checked (it exists
    /// and holds a whole tree-d of its size). Reads the disk: run at start.
    pub fn static_tree_d_files(&self) -> Result<BTreeMap<u64, PathBuf>> {
        let mut out = BTreeMap::new();
        for (size, path) in &self.static_tree_d {
            let key = format!("processors.static_tree_d.{size}");
            let bytes = parse_size(size).map_err(|e| anyhow!("key {key}: {e}"))?;
            let proof = seal_proof_for(bytes)
                .ok_or_else(|| anyhow!("key {key}: {size:?} is not a sector size"))?;
            vc_processors::builtin::check_cc_tree_d(proof, path).map_err(|e| {
                anyhow!("key {key}: {e:#} (make one with `damocles-worker generator tree-d -s {size} -p DIR`)")
            })?;
            out.insert(bytes, path.clone());
        }
        Ok(out)
    }

    /// `limitation.staggered`, parsed.
    pub fn staggered(&self) -> Result<BTreeMap<String, Duration>> {
        self.limitation
            .staggered
            .iter()
            .map(|(stage, d)| {
                humantime::parse_duration(d)
                    .map(|d| (stage.clone(), d))
                    .map_err(|e| anyhow!("key processors.limitation.staggered.{stage}: {d:?}: {e}"))
            })
            .collect()
    }
}

/// One `[[processors.<stage>]]` entry: one ext-processor child.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessorEntry {
    /// Default: this worker's own executable.
    pub bin: Option<PathBuf>,
    /// Default: `["processor", "<stage>"]`.
    pub args: Option<Vec<String>>,
    /// How long to wait for the child's ready line.
    #[serde(with = "humantime_serde")]
    pub stable_wait: Option<Duration>,
    pub cgroup: Option<Cgroup>,
    pub envs: BTreeMap<String, String>,
    pub numa_preferred: Option<i32>,
    /// In-flight requests this child takes (unset: no limit).
    pub concurrent: Option<usize>,
    /// `ext_locks` taken for each request.
    pub locks: Vec<String>,
    pub auto_restart: bool,
    pub inherit_envs: bool,
    /// Ours: give up on a request after this long (the child is killed, or
    /// asked to cancel if it speaks protocol v2).
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

impl Default for ProcessorEntry {
    fn default() -> Self {
        ProcessorEntry {
            bin: None,
            args: None,
            stable_wait: None,
            cgroup: None,
            envs: BTreeMap::new(),
            numa_preferred: None,
            concurrent: None,
            locks: vec![],
            auto_restart: true,
            inherit_envs: true,
            timeout: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Cgroup {
    pub group_name: Option<String>,
    pub cpuset: Option<String>,
}

impl ProcessorEntry {
    /// Refuses values that cannot work: a zero `timeout` fails every request
    /// at once, a zero `stable_wait` every start, a negative NUMA node names
    /// no node. `key` names the entry in errors.
    fn check_numbers(&self, key: &str) -> Result<()> {
        if self.timeout.is_some_and(|d| d.is_zero()) {
            bail!("key {key}.timeout: 0s would fail every request at once; remove it for no limit");
        }
        if self.stable_wait.is_some_and(|d| d.is_zero()) {
            bail!("key {key}.stable_wait: 0s leaves no time for the ready line");
        }
        if let Some(n) = self.numa_preferred.filter(|n| *n < 0) {
            bail!("key {key}.numa_preferred: {n} is not a NUMA node (0, 1, ...)");
        }
        Ok(())
    }

    /// The child's command line (defaults filled in).
    pub fn command(&self, stage: &str, self_exe: &Path) -> (PathBuf, Vec<String>) {
        let bin = self.bin.clone().unwrap_or_else(|| self_exe.to_path_buf());
        let args = self
            .args
            .clone()
            .unwrap_or_else(|| vec!["processor".into(), stage.into()]);
        (bin, args)
    }
}

/// A loaded config and the keys it had that this version does not know.
pub type Loaded = damocles_config::Loaded<WorkerConfig>;

pub fn load(path: &Path) -> Result<Loaded> {
    damocles_config::load(path)
}

pub fn parse(text: &str) -> Result<Loaded> {
    damocles_config::parse_valid(text)
}

impl damocles_config::Validate for WorkerConfig {
    fn validate(&self) -> Result<()> {
        WorkerConfig::validate(self)
    }
}

impl WorkerConfig {
    /// Everything that can be checked without I/O; each error names its key.
    pub fn validate(&self) -> Result<()> {
        self.sector_manager.url()?;
        self.metrics.listen()?;
        if self.sealing_thread.is_empty() {
            bail!(
                "key sealing_thread: no [[sealing_thread]] configured; a worker needs at least one"
            );
        }
        let mut locations = BTreeSet::new();
        for (i, t) in self.sealing_thread.iter().enumerate() {
            let key = format!("sealing_thread[{i}]");
            if t.location.as_os_str().is_empty() {
                bail!("key {key}.location: missing");
            }
            require_absolute(&t.location, &format!("{key}.location"))?;
            t.sealing.check_intervals(&format!("{key}.sealing"))?;
            if !locations.insert(&t.location) {
                bail!(
                    "key {key}.location: {} is used by another thread",
                    t.location.display()
                );
            }
            match t.plan.as_deref().unwrap_or("sealer") {
                "sealer" | "wdpost" => {}
                p @ ("snapup" | "rebuild" | "unseal") => {
                    bail!("key {key}.plan: plan {p:?} is not supported by this release (only \"sealer\" and \"wdpost\")")
                }
                p => bail!(
                    "key {key}.plan: unknown plan {p:?} (sealer, snapup, rebuild, unseal, wdpost)"
                ),
            }
            Sealing::resolve(&self.sealing, &t.sealing, &format!("{key}.sealing"))?;
        }
        self.sealing.check_intervals("sealing")?;
        Sealing::resolve(&self.sealing, &SealingOptions::default(), "sealing")?;
        let mut names = BTreeSet::new();
        for (i, a) in self.attached.iter().enumerate() {
            if a.location.as_os_str().is_empty() {
                bail!("key attached[{i}].location: missing");
            }
            if !names.insert(a.instance_name()) {
                bail!(
                    "key attached[{i}].name: {:?} is used by another attached store",
                    a.instance_name()
                );
            }
            if self
                .plugins
                .dir
                .as_ref()
                .is_some_and(|d| d.as_os_str().is_empty())
            {
                bail!("key plugins.dir: empty; remove it or name the plugins directory");
            }
            match &a.plugin_name {
                Some(p) if p.is_empty() => bail!("key attached[{i}].plugin_name: empty"),
                Some(p) if self.plugins.dir.is_none() => bail!(
                    "key attached[{i}].plugin_name: store {:?} names plugin {p:?}, but plugins.dir is not set",
                    a.instance_name()
                ),
                Some(_) => {}
                None if !a.meta.is_empty() => bail!(
                    "key attached[{i}].meta: only a plugin store (plugin_name) takes meta"
                ),
                // A directory store; a plugin's location is the plugin's business.
                None => require_absolute(&a.location, &format!("attached[{i}].location"))?,
            }
        }
        let p = &self.processors;
        for (section, map) in [
            ("limitation.concurrent", p.concurrent_limits()),
            ("ext_locks", &p.ext_locks),
        ] {
            for (k, v) in map {
                if section != "ext_locks" && limit_stage(k).is_none() {
                    bail!(
                        "key processors.{section}.{k}: {k:?} is not a stage ({})",
                        limit_stage_names()
                    );
                }
                if *v == 0 {
                    bail!("key processors.{section}.{k}: 0 would block the stage forever");
                }
            }
        }
        for k in p.limitation.staggered.keys() {
            if limit_stage(k).is_none() {
                bail!(
                    "key processors.limitation.staggered.{k}: {k:?} is not a stage ({})",
                    limit_stage_names()
                );
            }
        }
        p.staggered()?;
        for size in p.static_tree_d.keys() {
            let bytes = parse_size(size)
                .map_err(|e| anyhow!("key processors.static_tree_d.{size}: {e}"))?;
            if seal_proof_for(bytes).is_none() {
                bail!("key processors.static_tree_d.{size}: {size:?} is not a sector size (2KiB, 8MiB, 512MiB, 32GiB, 64GiB)");
            }
        }
        for (stage, entries) in p.sections() {
            for (i, e) in entries.iter().enumerate() {
                let key = format!("processors.{stage}[{i}]");
                for lock in &e.locks {
                    if !p.ext_locks.contains_key(lock) {
                        bail!("key {key}.locks: lock {lock:?} is not declared in [processors.ext_locks]");
                    }
                }
                if e.concurrent == Some(0) {
                    bail!("key {key}.concurrent: 0 would never run a task");
                }
                e.check_numbers(&key)?;
                if let Some(cpuset) = e.cgroup.as_ref().and_then(|c| c.cpuset.as_deref()) {
                    vc_processors::sys::parse_cpuset(cpuset)
                        .map_err(|e| anyhow!("key {key}.cgroup.cpuset: {e:#}"))?;
                }
                if let Some(bin) = &e.bin {
                    if bin.as_os_str().is_empty() {
                        bail!("key {key}.bin: empty");
                    }
                }
            }
        }
        Ok(())
    }

    /// The checks that read the disk, for `config check` and the daemon's
    /// start; errors name their keys, and so do the warnings returned. Links
    /// are resolved: two threads may not share a location under two names, and
    /// an attached directory store may not be, hold or lie in a sealing
    /// location (persisting would copy sector files onto themselves).
    pub fn check_paths(&self) -> Result<Vec<String>> {
        let threads = self
            .sealing_thread
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let key = format!("sealing_thread[{i}].location");
                let real = resolve(&t.location, &key)?;
                Ok((key, real))
            })
            .collect::<Result<Vec<_>>>()?;
        for (j, (key, real)) in threads.iter().enumerate() {
            if let Some((first, _)) = threads[..j].iter().find(|(_, r)| r == real) {
                bail!(
                    "key {key}: {} is the same directory as {first}; each thread needs its own",
                    real.display()
                );
            }
        }
        let mut warnings = Vec::new();
        for (i, a) in self.attached.iter().enumerate() {
            if a.plugin_name.is_none() {
                let key = format!("attached[{i}].location");
                warnings.extend(check_store_dir(&a.location, &key)?);
                refuse_overlap(&a.location, &key, &threads)?;
            }
        }
        Ok(warnings)
    }

    /// [`check_paths`](Self::check_paths), its warnings logged.
    pub fn check_paths_logged(&self) -> Result<()> {
        for w in self.check_paths()? {
            tracing::warn!("{w}");
        }
        Ok(())
    }

    /// Keys that parse but that this release does not act on, by name.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.processors.sealing_daemons.is_empty() {
            out.push("processors.sealing_daemons".to_string());
        }
        if !self.worker.scan_persist_stores.is_empty() {
            out.push("worker.scan_persist_stores".into());
        }
        if self.worker.local_pieces_dir.is_some() || !self.worker.local_pieces_dirs.is_empty() {
            out.push("worker.local_pieces_dir(s)".into());
        }
        if self.sealing.enable_deals == Some(true)
            || self
                .sealing_thread
                .iter()
                .any(|t| t.sealing.enable_deals == Some(true))
        {
            out.push("sealing.enable_deals (the manager has no market yet)".into());
        }
        out
    }
}

/// A location must not depend on the directory the daemon starts in.
fn require_absolute(path: &Path, key: &str) -> Result<()> {
    if !path.is_absolute() {
        bail!(
            "key {key}: {} is relative; give an absolute path",
            path.display()
        );
    }
    Ok(())
}

/// Where `path` really is, links resolved (through its nearest existing
/// ancestor if it does not exist yet).
fn resolve(path: &Path, key: &str) -> Result<PathBuf> {
    vc_processors::builtin::real_path(path)
        .map_err(|e| anyhow!("key {key}: cannot resolve {}: {e}", path.display()))
}

/// An attached directory store: a file there is an error; a missing directory
/// only a warning (a mount not there yet: persisting waits for it).
fn check_store_dir(path: &Path, key: &str) -> Result<Option<String>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(None),
        Ok(_) => bail!("key {key}: {} is not a directory", path.display()),
        Err(e) => Ok(Some(format!(
            "key {key}: {}: {e}; persisting to this store fails until it is there",
            path.display()
        ))),
    }
}

/// Refuses a store at `path` that is, holds or lies in a sealing location.
fn refuse_overlap(path: &Path, key: &str, threads: &[(String, PathBuf)]) -> Result<()> {
    let real = resolve(path, key)?;
    for (thread_key, thread) in threads {
        let how = if real == *thread {
            "is"
        } else if real.starts_with(thread) {
            "lies inside"
        } else if thread.starts_with(&real) {
            "contains"
        } else {
            continue;
        };
        bail!(
            "key {key}: {} (resolved: {}) {how} {thread_key} ({}); persisting would copy \
             sector files onto themselves",
            path.display(),
            real.display(),
            thread.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAMOCLES_STYLE: &str = r#"
[worker]
name = "worker-1"
rpc_server.host = "0.0.0.0"
rpc_server.port = 17890
ping_interval = "30s"

[metrics]
enable = true
http_listen = "127.0.0.1:9000"

[sector_manager]
rpc_client.addr = "/ip4/127.0.0.1/tcp/1789"
rpc_client.headers = { User-Agent = "jsonrpc-core-client" }
piece_token = "abc"

[sealing]
allowed_miners = [1000]
allowed_sizes = ["2KiB"]
max_retries = 3
seal_interval = "10s"
recover_interval = "5s"
rpc_polling_interval = "2s"

[[sealing_thread]]
location = "/data/sealing-1"

[[sealing_thread]]
location = "/data/sealing-2"
sealing.max_retries = 7

[[attached]]
name = "store-1"
location = "/data/store-1"

[processors.limitation.concurrent]
pc1 = 2
c2 = 1

[processors.limitation.staggered]
pc1 = "1s"

[processors.ext_locks]
gpu = 1

[processors.static_tree_d]
2KiB = "/data/tree-d-2KiB"

[[processors.pc2]]
envs = { FIL_PROOFS_USE_GPU_TREE_BUILDER = "0" }
locks = ["gpu"]
cgroup.cpuset = "0-1"

[[processors.c2]]
bin = "/usr/local/bin/verified-c2"
args = ["c2"]
locks = ["gpu"]
concurrent = 1
stable_wait = "10s"
weight = 2
"#;

    #[test]
    fn a_damocles_worker_config_loads_with_unknown_keys_named() {
        let l = parse(DAMOCLES_STYLE).unwrap();
        assert_eq!(l.unknown_keys, vec!["processors.c2.0.weight"]);
        let c = &l.config;
        assert_eq!(
            c.sector_manager.url().unwrap(),
            "http://127.0.0.1:1789/rpc/v0"
        );
        assert_eq!(c.sealing_thread.len(), 2);
        let t2 = Sealing::resolve(&c.sealing, &c.sealing_thread[1].sealing, "t").unwrap();
        assert_eq!((t2.max_retries, t2.allowed_sizes.clone()), (7, vec![2048]));
        let t1 = Sealing::resolve(&c.sealing, &c.sealing_thread[0].sealing, "t").unwrap();
        assert_eq!(
            (t1.max_retries, t1.recover_interval),
            (3, Duration::from_secs(5))
        );
        assert_eq!(c.processors.c2[0].concurrent, Some(1));
        assert_eq!(
            c.processors.staggered().unwrap()["pc1"],
            Duration::from_secs(1)
        );
        let (bin, args) = c.processors.pc2[0].command("pc2", Path::new("/bin/damocles-worker"));
        assert_eq!(
            (bin, args),
            (
                PathBuf::from("/bin/damocles-worker"),
                vec!["processor".to_string(), "pc2".into()]
            )
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = |from: &str, to: &str| {
            parse(&DAMOCLES_STYLE.replace(from, to))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad("max_retries = 3", "max_retries = \"x\"").contains("sealing.max_retries"));
        assert!(bad("seal_interval = \"10s\"", "seal_interval = \"soon\"")
            .contains("sealing.seal_interval"));
        assert!(
            bad("allowed_sizes = [\"2KiB\"]", "allowed_sizes = [\"2KB\"]")
                .contains("allowed_sizes")
        );
        assert!(
            bad("locks = [\"gpu\"]\ncgroup", "locks = [\"tpu\"]\ncgroup")
                .contains("processors.pc2[0].locks")
        );
        assert!(bad("cgroup.cpuset = \"0-1\"", "cgroup.cpuset = \"1-0\"")
            .contains("processors.pc2[0].cgroup.cpuset"));
        assert!(bad("pc1 = 2", "pc3 = 2").contains("processors.limitation.concurrent.pc3"));
        assert!(bad("/ip4/127.0.0.1/tcp/1789", "127.0.0.1:1789")
            .contains("sector_manager.rpc_client.addr"));
        assert!(bad(
            "location = \"/data/sealing-2\"",
            "location = \"/data/sealing-1\""
        )
        .contains("sealing_thread[1].location"));
        assert!(bad(
            "location = \"/data/sealing-1\"",
            "location = \"/data/sealing-1\"\nplan = \"unseal\""
        )
        .contains("not supported"));
    }

    #[test]
    fn manager_addresses() {
        assert_eq!(
            manager_url("/ip4/10.0.0.1/tcp/1789").unwrap(),
            "http://10.0.0.1:1789/rpc/v0"
        );
        assert_eq!(
            manager_url("/dns/mgr/tcp/1789/https").unwrap(),
            "https://mgr:1789/rpc/v0"
        );
        assert_eq!(
            manager_url("/ip6/::1/tcp/1789").unwrap(),
            "http://[::1]:1789/rpc/v0"
        );
        assert_eq!(
            manager_url("http://10.0.0.1:1789").unwrap(),
            "http://10.0.0.1:1789/rpc/v0"
        );
        assert_eq!(
            manager_url("http://10.0.0.1:1789/rpc/v0").unwrap(),
            "http://10.0.0.1:1789/rpc/v0"
        );
        assert!(manager_url("/ip4/x/udp/1").is_err());
        assert!(manager_url("ftp://x").is_err());
    }

    /// A value that parses but cannot work is refused, naming its key.
    #[test]
    fn values_that_cannot_work_name_their_key() {
        let bad = |from: &str, to: &str| {
            assert!(DAMOCLES_STYLE.contains(from), "{from}");
            parse(&DAMOCLES_STYLE.replace(from, to))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| format!("accepted: {to}"))
        };
        let cases = [
            (
                "stable_wait = \"10s\"",
                "stable_wait = \"0s\"",
                "processors.c2[0].stable_wait",
            ),
            (
                "stable_wait = \"10s\"",
                "timeout = \"0s\"",
                "processors.c2[0].timeout",
            ),
            (
                "cgroup.cpuset = \"0-1\"",
                "numa_preferred = -1",
                "processors.pc2[0].numa_preferred",
            ),
            (
                "seal_interval = \"10s\"",
                "seal_interval = \"0s\"",
                "sealing.seal_interval",
            ),
            (
                "recover_interval = \"5s\"",
                "recover_interval = \"0s\"",
                "sealing.recover_interval",
            ),
            (
                "rpc_polling_interval = \"2s\"",
                "rpc_polling_interval = \"0s\"",
                "sealing.rpc_polling_interval",
            ),
            (
                "sealing.max_retries = 7",
                "sealing.seal_interval = \"0ms\"",
                "sealing_thread[1].sealing.seal_interval",
            ),
            (
                "location = \"/data/sealing-1\"",
                "location = \"data/sealing-1\"",
                "sealing_thread[0].location",
            ),
            (
                "location = \"/data/store-1\"",
                "location = \"./store-1\"",
                "attached[0].location",
            ),
        ];
        for (from, to, key) in cases {
            let err = bad(from, to);
            assert!(err.contains(&format!("key {key}:")), "{to}: {err}");
        }
        // A plugin store's location is a bucket, not a path.
        let plugin = DAMOCLES_STYLE.replace(
            "location = \"/data/store-1\"",
            "location = \"bucket\"\nplugin_name = \"s3\"\n[plugins]\ndir = \"/p\"\n[[attached]]\nlocation = \"/data/store-2\"",
        );
        parse(&plugin).unwrap();
    }

    fn with_locations(threads: &[&Path], attached: &[&Path]) -> WorkerConfig {
        WorkerConfig {
            sealing_thread: threads
                .iter()
                .map(|l| SealingThread {
                    location: l.to_path_buf(),
                    ..Default::default()
                })
                .collect(),
            attached: attached
                .iter()
                .map(|l| AttachedStore {
                    location: l.to_path_buf(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn an_attached_store_overlapping_a_sealing_location_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let sealing = d.path().join("sealing");
        std::fs::create_dir_all(sealing.join("data")).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&sealing, &link).unwrap();
        let store = d.path().join("store");
        std::fs::create_dir(&store).unwrap();

        let refused = |attached: &Path, how: &str| {
            let err = with_locations(&[&sealing], &[&store, attached])
                .check_paths()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("key attached[1].location:")
                    && err.contains(&format!(") {how} sealing_thread[0].location")),
                "{}: {err}",
                attached.display()
            );
        };
        // The finding's config: the store is the thread's data directory.
        refused(&sealing.join("data"), "lies inside");
        refused(&link.join("data"), "lies inside");
        refused(&link, "is");
        refused(d.path(), "contains");
        // Not there yet, but would be inside once created.
        refused(&link.join("data/persist"), "lies inside");

        let ok = with_locations(&[&sealing], &[&store])
            .check_paths()
            .unwrap();
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn thread_locations_and_store_dirs_are_checked_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let alias = d.path().join("alias");
        std::os::unix::fs::symlink(&a, &alias).unwrap();
        let store = d.path().join("store");
        std::fs::create_dir(&store).unwrap();

        let err = with_locations(&[&a, &alias], &[&store])
            .check_paths()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key sealing_thread[1].location:")
                && err.contains("same directory as sealing_thread[0].location"),
            "{err}"
        );
        // Created later, under the same name twice: the same directory too.
        let new = d.path().join("new");
        let err = with_locations(&[&new, &d.path().join("./new/")], &[&store])
            .check_paths()
            .unwrap_err();
        assert!(err.to_string().contains("sealing_thread[1]"), "{err}");

        let file = d.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = with_locations(&[&a], &[&file]).check_paths().unwrap_err();
        assert!(
            err.to_string().contains("key attached[0].location: ")
                && err.to_string().contains("is not a directory"),
            "{err}"
        );
        let missing = d.path().join("missing");
        let warnings = with_locations(&[&a], &[&missing]).check_paths().unwrap();
        assert!(
            warnings.len() == 1 && warnings[0].contains("key attached[0].location:"),
            "{warnings:?}"
        );
    }
}
