//! `sector-manager.cfg`: damocles' section and key names (PascalCase), plus a
//! `[Devnet]` section for the embedded chain.
//!
//! Loading never guesses: a key of the wrong type or a bad value stops the
//! daemon with the key's full name; a key this version does not know is kept
//! out of the way and reported by name (damocles configs carry keys for parts
//! not built here yet, such as message fees).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use damocles_devnet::Policy;
use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "sector-manager.cfg";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ManagerConfig {
    pub common: Common,
    pub miners: Vec<MinerConfig>,
    pub devnet: DevnetConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Common {
    #[serde(rename = "API")]
    pub api: ApiConfig,
    pub auth: AuthConfig,
    pub plugins: PluginsConfig,
    pub piece_stores: Vec<PieceStoreConfig>,
    pub persist_stores: Vec<PersistStoreConfig>,
    pub proving: ProvingConfig,
}

/// `[Common.Proving]`: how sectors are checked before a window PoSt.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProvingConfig {
    /// Sectors checked at once (0 or less: all at once).
    pub parallel_check_limit: i64,
    /// One sector's check; a sector not done by then is skipped.
    #[serde(with = "humantime_serde")]
    pub single_check_timeout: Duration,
    /// The checks of one partition; sectors not checked by then are skipped.
    #[serde(with = "humantime_serde")]
    pub partition_check_timeout: Duration,
    /// `[Common.Proving.WorkerProver]`: window PoSt jobs for workers.
    pub worker_prover: WorkerProverConfig,
}

impl Default for ProvingConfig {
    fn default() -> Self {
        ProvingConfig {
            parallel_check_limit: 128,
            single_check_timeout: Duration::from_secs(600),
            partition_check_timeout: Duration::from_secs(1200),
            worker_prover: WorkerProverConfig::default(),
        }
    }
}

/// `[Common.Proving.WorkerProver]` (`daemon run --worker-prover`): the
/// window PoSt job queue that workers with `plan = "wdpost"` serve.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkerProverConfig {
    /// Times a job is handed out before its failure stands (`wdpost reset`
    /// hands it out again).
    pub job_max_try: u32,
    /// A running job whose worker sent no heartbeat for this long fails.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// Finished jobs are deleted this long after they were queued.
    #[serde(with = "humantime_serde")]
    pub job_lifetime: Duration,
}

impl Default for WorkerProverConfig {
    fn default() -> Self {
        WorkerProverConfig {
            job_max_try: 2,
            heartbeat_timeout: Duration::from_secs(15),
            job_lifetime: Duration::from_secs(25 * 3600),
        }
    }
}

impl WorkerProverConfig {
    fn validate(&self) -> Result<()> {
        if self.job_max_try == 0 {
            bail!("key Common.Proving.WorkerProver.JobMaxTry: 0 would never hand a job out; use 1 or more");
        }
        if self.heartbeat_timeout <= Duration::from_secs(3) {
            bail!(
                "key Common.Proving.WorkerProver.HeartbeatTimeout ({:?}): workers send a heartbeat every 3 s, so a timeout of 3 s or less fails live jobs",
                self.heartbeat_timeout
            );
        }
        if self.job_lifetime.is_zero() {
            bail!("key Common.Proving.WorkerProver.JobLifetime: must be more than 0");
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ApiConfig {
    /// Where the RPC server listens (`daemon run --listen` overrides it).
    pub listen: String,
    /// Chain node endpoints (`token:multiaddr`): for a node adapter, not used
    /// while the devnet is the chain.
    pub gateway: Vec<String>,
    pub token: String,
    pub chain: String,
    pub messager: String,
    pub market: String,
    #[serde(with = "humantime_serde")]
    pub chain_event_interval: Duration,
    /// Bounds on what clients may hold (see docs/security.md).
    pub limits: ApiLimits,
}

/// `[Common.API.Limits]`: connection, time and size bounds of the RPC server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ApiLimits {
    /// Open connections in all.
    pub max_connections: usize,
    /// Connections that have not yet sent a whole request with rights; the
    /// oldest is dropped to make room for a newcomer.
    pub max_untrusted_connections: usize,
    /// Connections from one remote address (loopback is not capped).
    pub max_connections_per_peer: usize,
    /// Untrusted connections from one remote address.
    pub max_untrusted_per_peer: usize,
    /// How long an untrusted connection has to send a request with rights.
    #[serde(with = "humantime_serde")]
    pub untrusted_timeout: Duration,
    /// Reading request headers, and an idle keep-alive connection.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Reading a request body.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// The largest request body in bytes.
    pub max_request_bytes: u32,
    /// The largest response in bytes.
    pub max_response_bytes: u32,
    /// The most calls in one JSON-RPC batch.
    pub max_batch: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits::from(&damocles_gate::Limits::default())
    }
}

impl From<&damocles_gate::Limits> for ApiLimits {
    fn from(l: &damocles_gate::Limits) -> Self {
        ApiLimits {
            max_connections: l.max_connections,
            max_untrusted_connections: l.max_untrusted,
            max_connections_per_peer: l.max_connections_per_peer,
            max_untrusted_per_peer: l.max_untrusted_per_peer,
            untrusted_timeout: l.untrusted_timeout,
            header_timeout: l.header_timeout,
            body_timeout: l.body_timeout,
            max_request_bytes: l.max_body,
            max_response_bytes: l.max_response,
            max_batch: l.max_batch,
        }
    }
}

impl From<&ApiLimits> for damocles_gate::Limits {
    fn from(l: &ApiLimits) -> Self {
        damocles_gate::Limits {
            max_connections: l.max_connections,
            max_untrusted: l.max_untrusted_connections,
            max_connections_per_peer: l.max_connections_per_peer,
            max_untrusted_per_peer: l.max_untrusted_per_peer,
            untrusted_timeout: l.untrusted_timeout,
            header_timeout: l.header_timeout,
            body_timeout: l.body_timeout,
            max_body: l.max_request_bytes,
            max_response: l.max_response_bytes,
            max_batch: l.max_batch,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:1789".into(),
            gateway: vec![],
            token: String::new(),
            chain: String::new(),
            messager: String::new(),
            market: String::new(),
            chain_event_interval: Duration::from_secs(60),
            limits: ApiLimits::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AuthConfig {
    /// Development only: when the server listens on a loopback address,
    /// requests without a token get every permission. Off by default.
    pub allow_unauthenticated_loopback: bool,
    /// What a request without a token may do: "" (nothing, the default),
    /// "read" or "write". Unmodified damocles workers send no token; "write"
    /// lets them in on a trusted network.
    pub anonymous_permission: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginsConfig {
    /// Where objstore plugins (shared libraries) are loaded from at start;
    /// empty loads none.
    pub dir: PathBuf,
    /// Load every library in `dir`, not only those the stores' `PluginName`s
    /// need (docs/objstore.md).
    pub load_all: bool,
}

/// Where pieces are read from for `GET /piecestore/<cid>`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PieceStoreConfig {
    /// Defaults to `Path`.
    pub name: String,
    pub path: PathBuf,
    pub meta: BTreeMap<String, String>,
    /// Refuse non-regular files (symlinks) when reading.
    pub strict: bool,
    pub read_only: bool,
    /// An objstore plugin serving this store instead of the filesystem.
    #[serde(alias = "Plugin")]
    pub plugin_name: String,
}

impl PieceStoreConfig {
    pub fn instance_name(&self) -> String {
        if self.name.is_empty() {
            self.path.display().to_string()
        } else {
            self.name.clone()
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PersistStoreConfig {
    /// The store's instance name, the contract with workers' `[[attached]]`
    /// stores; defaults to `Path`.
    pub name: String,
    pub path: PathBuf,
    pub meta: BTreeMap<String, String>,
    /// Refuse non-regular files (symlinks) when reading.
    pub strict: bool,
    pub read_only: bool,
    /// Relative chance of being picked; 0 counts as 1.
    pub weight: u64,
    /// Only these miners may persist here (empty: all).
    pub allow_miners: Vec<u64>,
    /// These miners may not (wins over AllowMiners).
    pub deny_miners: Vec<u64>,
    /// An objstore plugin serving this store instead of the filesystem.
    #[serde(alias = "Plugin")]
    pub plugin_name: String,
}

impl Default for PersistStoreConfig {
    fn default() -> Self {
        PersistStoreConfig {
            name: String::new(),
            path: PathBuf::new(),
            meta: BTreeMap::new(),
            strict: false,
            read_only: false,
            weight: 1,
            allow_miners: vec![],
            deny_miners: vec![],
            plugin_name: String::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MinerConfig {
    pub actor: u64,
    #[serde(default)]
    pub sector: SectorConfig,
    #[serde(default)]
    pub commitment: CommitmentConfig,
    #[serde(default, rename = "PoSt")]
    pub post: PoStConfig,
    #[serde(default)]
    pub proof: ProofConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SectorConfig {
    /// Numbers above this are handed out first (the last number already used
    /// elsewhere).
    pub init_number: u64,
    pub min_number: Option<u64>,
    /// No numbers beyond this: allocation stops.
    pub max_number: Option<u64>,
    pub enabled: bool,
    pub enable_deals: bool,
    pub lifetime_days: u64,
    pub verbose: bool,
}

impl Default for SectorConfig {
    fn default() -> Self {
        SectorConfig {
            init_number: 0,
            min_number: None,
            max_number: None,
            enabled: true,
            enable_deals: false,
            lifetime_days: 540,
            verbose: false,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CommitmentConfig {
    /// Epochs a message must be buried under before it counts as landed.
    pub confidence: i64,
}

/// `[Miners.PoSt]`: window PoSt of this miner (`daemon run --poster`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PoStConfig {
    /// Prove this miner's deadlines.
    pub enabled: bool,
    /// Check each sector with a one-challenge vanilla proof (and its sealed
    /// file's size), not only that its files exist.
    pub strict_check: bool,
    /// Prove the partition batches of a deadline at once, not in turn.
    pub parallel: bool,
    /// Epochs a PoSt or recovery message is waited for after it lands.
    pub confidence: u64,
    /// Send proofs from this many epochs after the deadline opens (0: 4).
    pub submit_confidence: u64,
    /// Start proving this many epochs after the challenge (0: 10).
    pub challenge_confidence: u64,
    /// At most this many sectors declared recovered per deadline (0: no limit).
    pub max_recover_sector_limit: u64,
    /// At most this many partitions per SubmitWindowedPoSt (0: the protocol's 3).
    pub max_partitions_per_po_st_message: u64,
    /// At most this many partitions per DeclareFaultsRecovered (0: one message).
    pub max_partitions_per_recovery_message: u64,
}

impl PoStConfig {
    /// SubmitConfidence with damocles' meaning of 0.
    pub fn submit_after(&self) -> u64 {
        match self.submit_confidence {
            0 => 4,
            n => n,
        }
    }

    /// ChallengeConfidence with damocles' meaning of 0.
    pub fn start_after(&self) -> u64 {
        match self.challenge_confidence {
            0 => 10,
            n => n,
        }
    }
}

impl Default for PoStConfig {
    fn default() -> Self {
        PoStConfig {
            enabled: true,
            strict_check: true,
            parallel: false,
            confidence: 10,
            submit_confidence: 4,
            challenge_confidence: 10,
            max_recover_sector_limit: 0,
            max_partitions_per_po_st_message: 0,
            max_partitions_per_recovery_message: 0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProofConfig {
    /// Answer this miner's elections with winning PoSt (`daemon run --miner`).
    pub enabled: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DevnetConfig {
    /// The embedded devnet is the chain (the only chain this release speaks).
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub block_time: Duration,
    /// Sector size of the miners the devnet creates: 2KiB, 8MiB, 512MiB, 32GiB, 64GiB.
    pub sector_size: String,
    pub policy: Policy,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            enabled: true,
            block_time: Duration::from_secs(4),
            sector_size: "2KiB".into(),
            policy: Policy::default(),
        }
    }
}

/// `2KiB` → 2048.
pub fn parse_sector_size(s: &str) -> Result<u64> {
    damocles_config::parse_size(s).map_err(anyhow::Error::msg)
}

/// A loaded config and the keys it had that this version does not know.
pub type Loaded = damocles_config::Loaded<ManagerConfig>;

pub fn load(path: &Path) -> Result<Loaded> {
    damocles_config::load(path)
}

pub fn parse(text: &str) -> Result<Loaded> {
    damocles_config::parse_valid(text)
}

impl damocles_config::Validate for ManagerConfig {
    fn validate(&self) -> Result<()> {
        ManagerConfig::validate(self)
    }
}

impl ManagerConfig {
    /// One `what` ("persist", "piece") store entry at `key`: a Path (absolute
    /// for the filesystem store; a plugin's is whatever it understands, a
    /// bucket), a plugins dir for a plugin, a name not taken in `names`.
    fn check_store(
        &self,
        key: &str,
        what: &str,
        path: &Path,
        plugin_name: &str,
        name: String,
        names: &mut HashSet<String>,
    ) -> Result<()> {
        if path.as_os_str().is_empty() {
            bail!("key {key}.Path: missing; every {what} store needs a Path");
        }
        if plugin_name.is_empty() && !path.is_absolute() {
            bail!(
                "key {key}.Path: {} must be an absolute path",
                path.display()
            );
        }
        if !plugin_name.is_empty() {
            damocles_objstore::abi::check_kind(plugin_name)
                .map_err(|why| anyhow!("key {key}.PluginName: store {name:?}: {why}"))?;
        }
        if !plugin_name.is_empty() && self.common.plugins.dir.as_os_str().is_empty() {
            bail!(
                "key {key}.PluginName: store {name:?} names plugin {plugin_name:?}, but Common.Plugins.Dir is not set"
            );
        }
        if !names.insert(name.clone()) {
            bail!("key {key}.Name: {name:?} is used by two {what} stores");
        }
        Ok(())
    }

    /// Checks that need no I/O; each error names the key.
    pub fn validate(&self) -> Result<()> {
        self.common.api.listen.parse::<SocketAddr>().map_err(|e| {
            anyhow!(
                "key Common.API.Listen: {:?} is not an address like 127.0.0.1:1789: {e}",
                self.common.api.listen
            )
        })?;
        damocles_gate::Limits::from(&self.common.api.limits)
            .validate()
            .map_err(|e| anyhow!("key Common.API.Limits: {e}"))?;
        let mut names = HashSet::new();
        for (i, s) in self.common.persist_stores.iter().enumerate() {
            let key = format!("Common.PersistStores[{i}]");
            self.check_store(
                &key,
                "persist",
                &s.path,
                &s.plugin_name,
                s.instance_name(),
                &mut names,
            )?;
        }
        let mut names = HashSet::new();
        for (i, s) in self.common.piece_stores.iter().enumerate() {
            let key = format!("Common.PieceStores[{i}]");
            self.check_store(
                &key,
                "piece",
                &s.path,
                &s.plugin_name,
                s.instance_name(),
                &mut names,
            )?;
        }
        let mut actors = HashSet::new();
        for (i, m) in self.miners.iter().enumerate() {
            let key = format!("Miners[{i}]");
            if !actors.insert(m.actor) {
                bail!("key {key}.Actor: miner {} is listed twice", m.actor);
            }
            if let (Some(min), Some(max)) = (m.sector.min_number, m.sector.max_number) {
                if min > max {
                    bail!("key {key}.Sector.MinNumber: {min} is larger than MaxNumber {max}");
                }
            }
            if m.commitment.confidence < 0 {
                bail!("key {key}.Commitment.Confidence: must be >= 0");
            }
        }
        match self.common.auth.anonymous_permission.as_str() {
            "" | "read" | "write" => {}
            other => bail!("key Common.Auth.AnonymousPermission: {other:?} is not one of \"\", \"read\", \"write\""),
        }
        let proving = &self.common.proving;
        if proving.single_check_timeout.is_zero() {
            bail!("key Common.Proving.SingleCheckTimeout: must be longer than 0s");
        }
        if proving.partition_check_timeout.is_zero() {
            bail!("key Common.Proving.PartitionCheckTimeout: must be longer than 0s");
        }
        if !self.devnet.enabled {
            bail!(
                "key Devnet.Enabled: false, but the devnet is the only chain this release can use"
            );
        }
        if self.devnet.block_time.is_zero() {
            bail!("key Devnet.BlockTime: must be longer than 0s");
        }
        parse_sector_size(&self.devnet.sector_size)
            .map_err(|e| anyhow!("key Devnet.SectorSize: {e}"))?;
        self.devnet
            .policy
            .validate()
            .map_err(|e| anyhow!("key Devnet.Policy: {e}"))?;
        for (i, m) in self.miners.iter().enumerate() {
            self.check_post_fits(i, &m.post)?;
        }
        self.common.proving.worker_prover.validate()?;
        Ok(())
    }

    /// A deadline's window PoSt starts `ChallengeConfidence` epochs after its
    /// challenge (drawn `ChallengeLookback` before it opens) and is submitted
    /// from `SubmitConfidence` epochs after it opens, all before it closes
    /// `ChallengeWindow` epochs after it opens: confidences that do not fit
    /// would miss every deadline.
    fn check_post_fits(&self, i: usize, post: &PoStConfig) -> Result<()> {
        if !post.enabled {
            return Ok(());
        }
        let policy = &self.devnet.policy;
        let window = u64::try_from(policy.challenge_window).unwrap_or(0);
        let lookback = u64::try_from(policy.challenge_lookback).unwrap_or(0);
        if policy.deadlines_per_period < 4 {
            bail!(
                "keys Miners[{i}].PoSt.Enabled and Devnet.Policy.DeadlinesPerPeriod ({}): the poster declares \
                 recoveries for the deadline two ahead of the one it proves, which with fewer than 4 deadlines \
                 is open or past its fault cutoff; use 4 or more deadlines or set PoSt.Enabled = false",
                policy.deadlines_per_period
            );
        }
        if post.submit_after() >= window {
            bail!(
                "keys Miners[{i}].PoSt.SubmitConfidence ({}) and Devnet.Policy.ChallengeWindow ({window}): \
                 a deadline closes {window} epochs after it opens, so proofs sent {} epochs after it opens never land",
                post.submit_after(),
                post.submit_after()
            );
        }
        if post.start_after() >= lookback + window {
            bail!(
                "keys Miners[{i}].PoSt.ChallengeConfidence ({}), Devnet.Policy.ChallengeLookback ({lookback}) \
                 and ChallengeWindow ({window}): the challenge is drawn {lookback} epochs before a deadline opens \
                 and it closes {window} after, so waiting {} epochs after the challenge leaves no time to prove",
                post.start_after(),
                post.start_after()
            );
        }
        Ok(())
    }

    pub fn miner(&self, actor: u64) -> Option<&MinerConfig> {
        self.miners.iter().find(|m| m.actor == actor)
    }
}

impl PersistStoreConfig {
    pub fn instance_name(&self) -> String {
        if self.name.is_empty() {
            self.path.display().to_string()
        } else {
            self.name.clone()
        }
    }
}

/// What `daemon init` puts in the config it writes.
pub struct InitValues<'a> {
    pub miner: u64,
    pub store: &'a Path,
    pub listen: &'a str,
    pub block_time: &'a str,
    pub seed_delay: i64,
}

/// The commented config `daemon init` writes.
pub fn default_file(v: &InitValues) -> String {
    let InitValues {
        miner,
        store,
        listen,
        block_time,
        seed_delay,
    } = v;
    format!(
        r#"# damocles-manager configuration (TOML). Section and key names follow damocles'
# sector-manager.cfg; see docs/manager.md for every key.

[Common.API]
# Where the Venus.* JSON-RPC server listens (HTTP and WebSocket at /rpc/v0).
Listen = "{listen}"

[Common.Auth]
# Requests carry `Authorization: Bearer <token>` (util auth create-token).
# Development only: with a loopback Listen address, no token needed at all.
AllowUnauthenticatedLoopback = false
# What requests without a token may do: "" (nothing), "read" or "write".
# Unmodified damocles workers send no token: "write" admits them (trusted networks only).
AnonymousPermission = ""

[Common.Plugins]
# Objstore plugins (*.so); a store names one by PluginName, its kind. Only the
# libraries whose file name holds a named kind are loaded (docs/objstore.md),
# unless LoadAll = true.
# Dir = "/opt/damocles/plugins"
# LoadAll = false

# Persist stores: where workers put sealed sectors. Name must match the
# workers' [[attached]] store names. With PluginName = "s3" the store is served
# by that plugin: Path is then the bucket, Meta its settings (docs/objstore.md).
[[Common.PersistStores]]
Name = "store-1"
Path = "{store}"
ReadOnly = false
Weight = 1
# AllowMiners = [{miner}]
# DenyMiners = []

# Sector checks before a window PoSt: how many at once, and how long one
# sector and one partition may take (a sector not checked in time is skipped).
[Common.Proving]
ParallelCheckLimit = 128
SingleCheckTimeout = "10m"
PartitionCheckTimeout = "20m"

# Window PoSt jobs for workers with plan = "wdpost" (`daemon run --worker-prover`):
# tries per job, heartbeat timeout of a running job, how long finished jobs are kept.
[Common.Proving.WorkerProver]
JobMaxTry = 2
HeartbeatTimeout = "15s"
JobLifetime = "25h"

[[Miners]]
Actor = {miner}

[Miners.Sector]
# Sector numbers start after InitNumber and never repeat.
InitNumber = 0
# MaxNumber = 1000000
Enabled = true
EnableDeals = false
LifetimeDays = 540

[Miners.Commitment]
# Epochs a message must be buried under before it counts as landed.
Confidence = 0

# Window PoSt of this miner's deadlines (`daemon run --poster`, docs/post.md).
[Miners.PoSt]
Enabled = true
# Check sectors with a one-challenge vanilla proof, not only their files.
StrictCheck = true
# Prove the partition batches of a deadline at once.
Parallel = false
# Start this many epochs after the challenge; send from this many after open.
ChallengeConfidence = 10
SubmitConfidence = 4
# Epochs a PoSt message is followed after it lands.
Confidence = 10
# MaxRecoverSectorLimit = 0
# MaxPartitionsPerPoStMessage = 0
# MaxPartitionsPerRecoveryMessage = 0

# Winning PoSt for this miner's elections (`daemon run --miner`).
[Miners.Proof]
Enabled = true

# The embedded devnet chain: epochs, randomness, a miner actor that verifies
# every proof. Parameters for the sector size must be in the proof cache.
[Devnet]
Enabled = true
BlockTime = "{block_time}"
SectorSize = "2KiB"

[Devnet.Policy]
SeedDelay = {seed_delay}
TicketLookback = 1
# Window PoSt: epochs per deadline, deadlines per proving period, how far
# before a deadline opens its challenge is drawn, and how long before it
# opens recoveries for it close (mainnet 60, 48, 20, 70).
ChallengeWindow = 20
DeadlinesPerPeriod = 12
ChallengeLookback = 20
FaultDeclarationCutoff = 30
# Elections: the chance in percent that an epoch has a winner (each miner's
# share is its share of power), and the seconds a winning PoSt may take.
ElectionRatePercent = 5
WinningPoStCutoffSecs = 25
"#,
        store = store.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_loads_cleanly() {
        let text = default_file(&InitValues {
            miner: 1000,
            store: Path::new("/tmp/store"),
            listen: "127.0.0.1:1789",
            block_time: "4s",
            seed_delay: 5,
        });
        let l = parse(&text).unwrap();
        assert!(l.unknown_keys.is_empty(), "{:?}", l.unknown_keys);
        assert_eq!(l.config.miners[0].actor, 1000);
        assert_eq!(l.config.common.persist_stores[0].instance_name(), "store-1");
        assert_eq!(l.config.devnet.block_time, Duration::from_secs(4));
    }

    #[test]
    fn unknown_keys_are_reported_by_name() {
        let l = parse(
            "[Common.API]\nListen = \"127.0.0.1:1\"\nFoo = 1\n[[Miners]]\nActor = 1\nBar = true\n",
        )
        .unwrap();
        assert_eq!(l.unknown_keys, vec!["Common.API.Foo", "Miners.0.Bar"]);
    }

    #[test]
    fn post_confidences_must_fit_the_deadline_window() {
        let base = default_file(&InitValues {
            miner: 1000,
            store: Path::new("/tmp/store"),
            listen: "127.0.0.1:1789",
            block_time: "1s",
            seed_delay: 3,
        });
        parse(&base).expect("the defaults fit");
        let late = base.replace("SubmitConfidence = 4", "SubmitConfidence = 20");
        let e = parse(&late).err().unwrap().to_string();
        assert!(
            e.contains("Miners[0].PoSt.SubmitConfidence (20)")
                && e.contains("ChallengeWindow (20)"),
            "{e}"
        );
        let slow = base.replace("ChallengeConfidence = 10", "ChallengeConfidence = 40");
        let e = parse(&slow).err().unwrap().to_string();
        assert!(e.contains("Miners[0].PoSt.ChallengeConfidence (40)"), "{e}");
        let few = base.replace("DeadlinesPerPeriod = 12", "DeadlinesPerPeriod = 3");
        let e = parse(&few).err().unwrap().to_string();
        assert!(e.contains("DeadlinesPerPeriod (3)"), "{e}");
        let off = few.replace("Enabled = true\n# Check", "Enabled = false\n# Check");
        parse(&off).expect("no poster, no recoveries to declare");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("[[Miners]]\nActor = \"x\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("Miners[0].Actor") || e.contains("Miners.0.Actor"),
            "{e}"
        );
        let e = parse("[Devnet]\nBlockTime = \"soon\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("Devnet.BlockTime"), "{e}");
        let e = parse("[Devnet]\nSectorSize = \"2KB\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("Devnet.SectorSize"), "{e}");
        let e = parse("[Common.API]\nListen = \"nowhere\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("Common.API.Listen"), "{e}");
        let e = parse("[[Common.PersistStores]]\nPath = \"rel\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("Common.PersistStores[0].Path"), "{e}");
        // A plugin store's Path is the plugin's (a bucket), but the plugin
        // needs a plugins dir.
        for section in ["PersistStores", "PieceStores"] {
            let e = parse(&format!(
                "[[Common.{section}]]\nPath = \"bucket\"\nPluginName = \"s3\"\n"
            ))
            .err()
            .unwrap()
            .to_string();
            assert!(
                e.contains(&format!("Common.{section}[0].PluginName"))
                    && e.contains("Common.Plugins.Dir is not set"),
                "{e}"
            );
            let ok = format!(
                "[Common.Plugins]\nDir = \"/opt/plugins\"\n[[Common.{section}]]\nPath = \"bucket\"\nPluginName = \"s3\"\nMeta = {{ endpoint = \"http://s3\" }}\n"
            );
            assert!(parse(&ok).is_ok(), "{section}");
            // A name no plugin may declare: the builtin kind, a raw string.
            for (name, why) in [("fs", "builtin"), ("S3\\n", "plain identifier")] {
                let e = parse(&format!(
                    "[Common.Plugins]\nDir = \"/opt/plugins\"\n[[Common.{section}]]\nPath = \"bucket\"\nPluginName = \"{name}\"\n"
                ))
                .err()
                .unwrap()
                .to_string();
                assert!(
                    e.contains(&format!("Common.{section}[0].PluginName")) && e.contains(why),
                    "{e}"
                );
                assert!(!e.contains('\n'), "escaped: {e}");
            }
        }
        let e = parse("[Devnet.Policy]\nSeedDelay = 0\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("Devnet.Policy") && e.contains("SeedDelay"),
            "{e}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_sector_size("2KiB").unwrap(), 2048);
        assert_eq!(parse_sector_size("32GiB").unwrap(), 32 << 30);
        assert!(parse_sector_size("2KB").is_err());
    }
}
