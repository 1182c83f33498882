//! `daemon init` and `daemon run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use damocles_api::cli::ManagerCliApiServer;
use damocles_api::proxy::ProxyApiServer;
use damocles_api::rpc::SealerApiServer;
use damocles_api::Permission;
use damocles_chain::Chain;
use damocles_devnet::{Devnet, DevnetMiner};
use jsonrpsee::RpcModule;
use tracing::{info, warn};

use crate::config::{self, parse_sector_size, ManagerConfig};
use crate::db::{now_secs, Db};
use crate::ext_prover::{self, PoStKind};
use crate::home::{write_private, Home};
use crate::metrics::Metrics;
use crate::post::api::ProvingRpc;
use crate::post::checks::{Checker, Locator, SectorIndex};
use crate::post::jobs::{Jobs, JobsRpc};
use crate::post::prover::Prover;
use crate::post::Proving;
use crate::proxy::{ProxyIndex, ProxyRpc, RemoteChain};
use crate::sealer::Sealer;
use crate::server;
use crate::stores::{load_plugins, PieceStores, Stores};
use damocles_api::proving::ProvingApiServer;
use damocles_api::wdpost::WdPoStApiServer;
use damocles_gate::{Access, Tokens};

pub struct InitOptions {
    pub miner: u64,
    /// Default: `<home>/store-1`, created.
    pub store: Option<PathBuf>,
    pub listen: String,
    /// Devnet epoch length, e.g. `4s`.
    pub block_time: String,
    /// Devnet epochs from precommit to seed.
    pub seed_delay: i64,
    /// CC sectors to seal into the store and make active at the devnet's
    /// genesis ([`crate::preseal`]); 0 for none.
    pub pre_seal: u64,
    /// A config file to start from instead of the template.
    pub config: Option<PathBuf>,
    /// `[Devnet.Policy]` keys to set before the genesis is made, as
    /// `Key=Value` (e.g. `DeadlinesPerPeriod=4`).
    pub policy: Vec<String>,
}

/// Sets `Key = Value` lines of the template's `[Devnet.Policy]` section.
fn set_policy(text: &str, sets: &[String]) -> Result<String> {
    if sets.is_empty() {
        return Ok(text.to_string());
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "[Devnet.Policy]")
        .context("the config template has no [Devnet.Policy]")?;
    for set in sets {
        let (key, value) = set
            .split_once('=')
            .with_context(|| format!("--policy {set:?}: expected Key=Value"))?;
        let (key, value) = (key.trim(), value.trim());
        let line = lines[start..]
            .iter()
            .position(|l| l.split('=').next().map(str::trim) == Some(key))
            .map(|i| i + start)
            .with_context(|| format!("--policy {set:?}: {key} is not a Devnet.Policy key"))?;
        lines[line] = format!("{key} = {value}");
    }
    Ok(lines.join("\n") + "\n")
}

/// Creates the home: a commented config, the database, the token secret, an
/// admin token, and with `pre_seal` the devnet genesis with that many sealed
/// sectors active. Refuses to overwrite an existing config or database. The
/// only place a database is made: `daemon run` refuses a home without one.
pub fn init(home: &Home, opts: &InitOptions) -> Result<()> {
    std::fs::create_dir_all(home.path())
        .with_context(|| format!("create {}", home.path().display()))?;
    let cfg_path = home.config();
    if cfg_path.exists() {
        bail!(
            "{} exists already; remove it to start over",
            cfg_path.display()
        );
    }
    let text = match &opts.config {
        Some(from) => std::fs::read_to_string(from)
            .with_context(|| format!("--config: read {}", from.display()))?,
        None => {
            let store = match &opts.store {
                Some(s) => std::path::absolute(s)?,
                None => home.path().join("store-1"),
            };
            std::fs::create_dir_all(&store)
                .with_context(|| format!("create persist store {}", store.display()))?;
            config::default_file(&config::InitValues {
                miner: opts.miner,
                store: &store,
                listen: &opts.listen,
                block_time: &opts.block_time,
                seed_delay: opts.seed_delay,
            })
        }
    };
    let text = set_policy(&text, &opts.policy)?;
    let cfg = match &opts.config {
        Some(from) => {
            let loaded =
                config::parse(&text).with_context(|| format!("--config {}", from.display()))?;
            if let Some(key) = loaded.unknown_keys.first() {
                bail!("--config {}: unknown key {key}", from.display());
            }
            loaded.config
        }
        None => {
            config::parse(&text)
                .context("the config these options make does not load")?
                .config
        }
    };
    // Before the config: a failure here leaves nothing that blocks a retry.
    let db = Db::create(&home.database())?;
    if opts.pre_seal > 0 {
        let scratch = home.path().join("pre-seal");
        if let Err(e) = crate::preseal::pre_seal(&cfg, &db, &scratch, opts.pre_seal) {
            drop(db);
            // A half-made database would block the retry.
            let _ = std::fs::remove_file(home.database());
            return Err(e.context(format!("--pre-seal {}", opts.pre_seal)));
        }
    }
    drop(db);
    std::fs::write(&cfg_path, text).with_context(|| format!("write {}", cfg_path.display()))?;
    let ext_cfg = home.path().join(ext_prover::FILE_NAME);
    if !ext_cfg.exists() {
        std::fs::write(&ext_cfg, ext_prover::default_file())
            .with_context(|| format!("write {}", ext_cfg.display()))?;
    }
    if Tokens::create_secret_file(&home.secret())? {
        info!(path = %home.secret().display(), "token secret created");
    }
    let token = Tokens::load(&home.secret())?.create(Permission::Admin);
    write_private(&home.token(), token.as_bytes())?;
    println!("initialized {}", home.path().display());
    println!("  config:      {}", cfg_path.display());
    println!("  database:    {}", home.database().display());
    println!("  admin token: {}", home.token().display());
    for st in &cfg.common.persist_stores {
        let kind = if st.plugin_name.is_empty() {
            "directory"
        } else {
            st.plugin_name.as_str()
        };
        println!(
            "  persist store {:?} ({kind}): {}",
            st.instance_name(),
            st.path.display()
        );
    }
    if opts.pre_seal > 0 {
        println!(
            "  pre-sealed:  {} sector(s), active at the devnet's genesis",
            opts.pre_seal
        );
    }
    println!(
        "next: damocles-manager --home {} daemon run",
        home.path().display()
    );
    Ok(())
}

pub struct RunOptions {
    pub listen: Option<String>,
    /// Window PoSt for the miners with PoSt.Enabled.
    pub poster: bool,
    /// Winning PoSt for the miners with Proof.Enabled.
    pub miner: bool,
    /// PoSt through `ext-prover.cfg`'s child processes.
    pub ext_prover: bool,
    /// Window PoSt as jobs for workers (`Venus.WdPoSt*`).
    pub worker_prover: bool,
    /// With `miner`: one winning PoSt at start.
    pub warmup: bool,
    /// A poster node: the sealing manager (`host:port` or URL) whose chain
    /// and sector index this manager proves for.
    pub proxy: Option<String>,
    /// The file holding a token of the `proxy` manager (`sign`).
    pub proxy_token_file: Option<PathBuf>,
}

/// Loads everything, checks it, serves until SIGINT/SIGTERM.
pub async fn run(home: &Home, opts: RunOptions) -> Result<()> {
    let loaded = config::load(&home.config())?;
    for key in &loaded.unknown_keys {
        warn!(key = %key, file = %home.config().display(), "unknown config key ignored");
    }
    let cfg = loaded.config;
    let listen_s = opts
        .listen
        .clone()
        .unwrap_or_else(|| cfg.common.api.listen.clone());
    let listen: SocketAddr = listen_s.parse().with_context(|| {
        format!("--listen / Common.API.Listen: {listen_s:?} is not an address like 127.0.0.1:1789")
    })?;
    if cfg.common.auth.allow_unauthenticated_loopback && !listen.ip().is_loopback() {
        bail!("key Common.Auth.AllowUnauthenticatedLoopback: only allowed when listening on a loopback address, not {listen}");
    }
    let tokens = Arc::new(Tokens::load(&home.secret())?);
    // Bound before anything on disk changes: a port in use stops the daemon
    // with nothing done.
    let listener = damocles_gate::bind("manager RPC", listen).await?;
    // One descriptor per worker connection: take what the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(open_files = n, "file descriptor limit"),
        Err(e) => warn!(error = %e, "could not raise the file descriptor limit"),
    }
    let plugins = load_plugins(&cfg)?;
    let stores = Stores::open(&cfg.common.persist_stores, &plugins)?;
    let pieces = PieceStores::open(&cfg.common.piece_stores, &plugins)?;
    if cfg.miners.is_empty() {
        warn!("no [[Miners]] configured: nothing to allocate");
    }

    // Proofs are verified here: the parameter cache must be set before the first proofs call.
    let param_dir = fil_params::configure_process_env();
    let sector_size = parse_sector_size(&cfg.devnet.sector_size)?;
    let params = fil_params::ParamSet::Porep2KiB;
    if sector_size == 2048 && !fil_params::is_present(&param_dir, params).unwrap_or(false) {
        warn!(set = ?params, "proof parameters missing: prove-commits cannot be verified until `fil-params generate` has run");
    }

    if opts.ext_prover && opts.worker_prover {
        bail!("--ext-prover and --worker-prover are mutually exclusive: window PoSt runs in ext-prover children or on workers, not both");
    }
    let (window_prover, winning_prover) = provers(home, opts.ext_prover).await?;
    let db = Db::open(&home.database())?;
    let jobs = opts
        .worker_prover
        .then(|| Jobs::new(db.clone(), cfg.common.proving.worker_prover.clone()));
    let window_prover = match &jobs {
        Some(jobs) => {
            let p = Prover::workers(Arc::clone(jobs));
            crate::post::prover::log_choice(&p);
            p
        }
        None => window_prover,
    };
    spawn_worker_sweep(db.clone());
    // The chain and the sector index: this manager's own (the devnet and its
    // database), or a poster node's, read from the sealing manager.
    let (chain, index, devnet): (Arc<dyn Chain>, SectorIndex, Option<Arc<Devnet>>) =
        match &opts.proxy {
            Some(addr) => {
                let (chain, index) = connect_proxy(&cfg, &opts, addr).await?;
                (chain, index, None)
            }
            None => {
                let miners: Vec<DevnetMiner> = cfg
                    .miners
                    .iter()
                    .map(|m| DevnetMiner {
                        actor: m.actor,
                        sector_size,
                    })
                    .collect();
                let devnet = Arc::new(
                    Devnet::open(
                        db.raw(),
                        cfg.devnet.block_time,
                        cfg.devnet.policy.clone(),
                        &miners,
                    )
                    .context("open the devnet chain")?,
                );
                devnet.advance().context("devnet: execute due messages")?;
                (devnet.clone(), SectorIndex::Local(db.clone()), Some(devnet))
            }
        };
    let _ticker = devnet.as_ref().map(|d| d.spawn_ticker());

    let metrics = Arc::new(Metrics::new());
    {
        let (metrics, heads) = (Arc::clone(&metrics), chain.head_changes());
        tokio::spawn(async move {
            loop {
                metrics.chain_head.set(heads.borrow().epoch);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }

    // Copies a killed manager left behind are of proofs that are long gone.
    if home.post_fetch().exists() {
        if let Err(e) = std::fs::remove_dir_all(home.post_fetch()) {
            warn!(path = %home.post_fetch().display(), error = %e, "cannot clear the PoSt fetch dir");
        }
    }
    let proving = Arc::new(Proving {
        chain: Arc::clone(&chain),
        checker: Checker::new(
            Locator::new(index, Arc::new(stores.clone()), home.post_fetch()),
            cfg.common.proving.clone(),
        ),
        window_prover: Arc::new(window_prover),
        winning_prover: Arc::new(winning_prover),
        db: db.clone(),
        metrics: Arc::clone(&metrics),
    });
    let mut methods = RpcModule::new(());
    if devnet.is_some() {
        // The sealing manager: workers' and operators' methods, and what
        // poster nodes read. A poster node seals nothing: a worker pointed
        // at it gets "method not found".
        let sealer = Sealer::new(
            cfg.clone(),
            db.clone(),
            Arc::clone(&chain),
            stores,
            Arc::clone(&metrics),
        );
        methods.merge(SealerApiServer::into_rpc(sealer.clone()))?;
        methods.merge(ManagerCliApiServer::into_rpc(sealer))?;
        methods.merge(ProxyApiServer::into_rpc(ProxyRpc::new(
            Arc::clone(&chain),
            db,
            cfg.miners.iter().map(|m| m.actor).collect(),
        )))?;
    }
    if let Some(jobs) = &jobs {
        methods.merge(WdPoStApiServer::into_rpc(JobsRpc {
            jobs: Arc::clone(jobs),
        }))?;
        let heads = chain.head_changes();
        jobs.spawn_loops(move || {
            let epoch = heads.borrow().epoch;
            async move { Some(epoch) }
        });
    }
    methods.merge(ProvingApiServer::into_rpc(ProvingRpc::new(
        Arc::clone(&proving),
        cfg.clone(),
    )))?;
    if opts.miner {
        let miners: Vec<u64> = cfg
            .miners
            .iter()
            .filter(|m| m.proof.enabled)
            .map(|m| m.actor)
            .collect();
        if opts.warmup {
            crate::post::winning::warmup(&proving, &miners)
                .await
                .context("--warmup: the winning PoSt warmup failed (see docs/post.md; --warmup false skips it)")?;
        }
        crate::post::winning::spawn(Arc::clone(&proving), miners);
    }
    if opts.poster {
        crate::post::window::spawn(Arc::clone(&proving), cfg.miners.clone());
    }
    let access = Access {
        tokens,
        open_on_loopback: cfg.common.auth.allow_unauthenticated_loopback,
        anonymous: match cfg.common.auth.anonymous_permission.as_str() {
            "" => vec![],
            p => p
                .parse::<Permission>()
                .map_err(anyhow::Error::msg)?
                .and_below(),
        },
    };
    let (addr, handle) = server::serve(
        listener,
        methods,
        access,
        (&cfg.common.api.limits).into(),
        metrics,
        pieces,
    )?;
    // Atomically: the CLI and tests read it as soon as it exists.
    write_private(
        &home.api(),
        format!("http://{addr}{}\n", server::RPC_PATH).as_bytes(),
    )?;
    info!(%addr, path = server::RPC_PATH, home = %home.path().display(), head = chain.head_changes().borrow().epoch, network = %chain.network(), "damocles-manager serving");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupted, stopping"),
        _ = term.recv() => info!("terminated, stopping"),
        _ = handle.clone().stopped() => warn!("server stopped"),
    }
    let _ = handle.stop();
    let _ = std::fs::remove_file(home.api());
    Ok(())
}

/// A poster node's chain and sector index: the sealing manager at `addr`,
/// checked before anything starts (reachable, the token accepted, every
/// configured miner on its chain, the same deadline geometry as this
/// config's [Devnet.Policy], which the confidences were checked against).
async fn connect_proxy(
    cfg: &ManagerConfig,
    opts: &RunOptions,
    addr: &str,
) -> Result<(Arc<dyn Chain>, SectorIndex)> {
    if !opts.poster && !opts.miner {
        bail!("--proxy: a poster node only proves; give --poster, --miner or both");
    }
    let token_file = opts.proxy_token_file.as_ref().context(
        "--proxy needs --proxy-token-file: a file holding a token of the sealing manager with `sign` \
         (made there by `damocles-manager util auth create-token --perm sign`)",
    )?;
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("--proxy-token-file {}", token_file.display()))?;
    let url = crate::proxy::proxy_url(addr);
    let client = crate::proxy::client(&url, &token)?;
    let chain = RemoteChain::connect(&url, client.clone()).await?;
    let head = chain.head_changes().borrow().epoch;
    let policy = &cfg.devnet.policy;
    for (i, m) in cfg.miners.iter().enumerate() {
        chain.miner_info(m.actor).await.with_context(|| {
            format!(
                "key Miners[{i}].Actor ({}): not a miner on the chain behind --proxy {url}",
                m.actor
            )
        })?;
        let dl = chain.deadline_info(m.actor, head).await?;
        let (window, lookback) = (dl.close - dl.open, dl.open - dl.challenge);
        if window != policy.challenge_window || lookback != policy.challenge_lookback {
            bail!(
                "keys Devnet.Policy.ChallengeWindow ({}) and ChallengeLookback ({}) differ from the chain \
                 behind --proxy {url} ({window} and {lookback}): copy the sealing manager's [Devnet] section, \
                 which the PoSt confidences are checked against",
                policy.challenge_window,
                policy.challenge_lookback
            );
        }
    }
    let index = SectorIndex::Proxy(Arc::new(ProxyIndex::new(&url, client)));
    Ok((Arc::new(chain), index))
}

/// The PoSt provers: in process, or with `--ext-prover` the children of
/// `ext-prover.cfg` (a kind without entries stays in process). A bad file,
/// a missing binary or a child that does not start stops the daemon,
/// naming the entry.
async fn provers(home: &Home, ext: bool) -> Result<(Prover, Prover)> {
    if !ext {
        let (w, n) = (
            Prover::builtin(PoStKind::Window),
            Prover::builtin(PoStKind::Winning),
        );
        return Ok((w, n));
    }
    let path = home.path().join(ext_prover::FILE_NAME);
    let exe = std::env::current_exe().context("the manager's own path")?;
    let dir = exe.parent().unwrap_or(std::path::Path::new("."));
    let entries = ext_prover::ExtProvers::load(&path, dir)?;
    let of = |kind| -> Vec<ext_prover::ProverCommand> {
        entries
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, c)| c.clone())
            .collect()
    };
    let snark_cmds = of(PoStKind::Snark);
    let snark = if snark_cmds.is_empty() {
        None
    } else {
        Some(Prover::spawn_snark(&snark_cmds).await?)
    };
    let mut out = Vec::new();
    for kind in [PoStKind::Window, PoStKind::Winning] {
        let cmds = of(kind);
        let p = match (&snark, cmds.is_empty()) {
            (_, false) => Prover::spawn_ext(kind, &cmds).await?,
            (Some(children), true) => Prover::split(kind, Arc::clone(children)),
            (None, true) => Prover::builtin(kind),
        };
        crate::post::prover::log_choice(&p);
        out.push(p);
    }
    let winning = out.pop().expect("two provers");
    let window = out.pop().expect("two provers");
    if entries.is_empty() {
        warn!(file = %path.display(), "--ext-prover: the file has no [[WdPost]], [[WinPost]] or [[PostSnark]] entry; PoSt runs in process");
    }
    Ok((window, winning))
}

/// Removes worker records not pinged for a day, at start and every hour.
fn spawn_worker_sweep(db: Db) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let db = db.clone();
            match tokio::task::spawn_blocking(move || db.expire_workers(now_secs())).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => info!(removed = n, "worker records not pinged for a day removed"),
                Ok(Err(e)) => warn!(error = %e, "worker record sweep failed"),
                Err(e) => warn!(error = %e, "worker record sweep failed"),
            }
        }
    });
}
