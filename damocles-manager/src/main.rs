//! `damocles-manager`: daemon and operator CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use comfy_table::{presets, Table};
use damocles_api::cli::ManagerCliApiClient;
use damocles_api::limits;
use damocles_api::{Permission, SectorID, SectorListKind, SectorState};
use damocles_gate::Tokens;
use damocles_manager::daemon::{self, InitOptions, RunOptions};
use damocles_manager::home::Home;
mod proving_cli;
mod wdpost_cli;

use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};

#[derive(Parser)]
#[command(
    name = "damocles-manager",
    version,
    about = "damocles sector manager: hands sectors to workers, talks to the chain, keeps sector state",
    long_about = "damocles sector manager.\n\n\
Serves the Venus.* JSON-RPC API that damocles workers speak (HTTP and WebSocket at /rpc/v0), \
keeps sector state in an embedded database, chooses persist stores, and runs an embedded \
devnet chain that verifies every proof.\n\n\
Start with `damocles-manager daemon init`, then `damocles-manager daemon run`. \
`damocles-manager util ...` talks to the running daemon with the token from the home directory."
)]
struct Cli {
    /// Home directory (config, token, database). Default: $DAMOCLES_PATH or ~/.damocles-manager.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the home directory, or run the daemon.
    Daemon {
        #[command(subcommand)]
        cmd: DaemonCmd,
    },
    /// Operator commands against the running daemon.
    Util(Util),
    /// Check the home's sector-manager.cfg without starting the daemon.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Load and validate the config, and load the objstore plugins its
    /// stores name as `daemon run` would; any refusal fails the check.
    Check,
}

#[derive(Subcommand)]
enum DaemonCmd {
    /// Write a commented sector-manager.cfg, a token secret and an admin token.
    Init {
        /// The miner actor id to manage.
        #[arg(long, default_value_t = 1000)]
        miner: u64,
        /// Directory of the first persist store (default: <home>/store-1).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Address the RPC server will listen on.
        #[arg(long, default_value = "127.0.0.1:1789")]
        listen: String,
        /// Devnet epoch length (Devnet.BlockTime), e.g. 4s or 500ms.
        #[arg(long, default_value = "4s")]
        block_time: String,
        /// Devnet epochs between a precommit and its seed (Devnet.Policy.SeedDelay).
        #[arg(long, default_value_t = 5)]
        seed_delay: i64,
        /// Seal N committed-capacity sectors of Devnet.SectorSize (2KiB or
        /// 8MiB) now (add_pieces, tree_d, PC1, PC2; no C1/C2), put them in
        /// the first persist store, and make them active at the devnet's
        /// genesis and finalized in the manager, as `lotus-seed pre-seal`
        /// does. Their ticket is fixed.
        #[arg(long, value_name = "N", default_value_t = 0)]
        pre_seal: u64,
        /// Start from this sector-manager.cfg instead of the commented
        /// template (e.g. one whose first persist store is an S3 plugin
        /// store, for --pre-seal to write into); it is checked before
        /// anything is made. Not with --miner, --store, --listen,
        /// --block-time or --seed-delay, which fill the template.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["miner", "store", "listen", "block_time", "seed_delay"])]
        config: Option<PathBuf>,
        /// Set a [Devnet.Policy] key before the genesis is made, e.g.
        /// `--policy DeadlinesPerPeriod=4` (repeatable). Deadline keys
        /// cannot change once sectors are assigned to deadlines.
        #[arg(long, value_name = "KEY=VALUE")]
        policy: Vec<String>,
    },
    /// Serve the RPC (and run the devnet chain, unless --proxy) until interrupted.
    Run {
        /// Listen address; overrides Common.API.Listen.
        #[arg(long)]
        listen: Option<String>,
        /// Prove every deadline of the miners with PoSt.Enabled (window PoSt):
        /// checks, proofs, recoveries and messages, as docs/post.md describes.
        #[arg(long)]
        poster: bool,
        /// Answer the chain's elections with winning PoSt for the miners
        /// with Proof.Enabled.
        #[arg(long)]
        miner: bool,
        /// Run PoSt through the child processes of <home>/ext-prover.cfg
        /// ([[WdPost]], [[WinPost]]) instead of in this process; a kind
        /// with no entry stays in process.
        #[arg(long)]
        ext_prover: bool,
        /// Queue window PoSt as jobs for workers with plan = "wdpost"
        /// (Venus.WdPoSt*, [Common.Proving.WorkerProver]); winning PoSt
        /// stays in process. Not with --ext-prover.
        #[arg(long, conflicts_with = "ext_prover")]
        worker_prover: bool,
        /// With --miner: prove one sector at start so that the first
        /// election finds the parameters loaded; a failure stops the start.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        warmup: bool,
        /// Run as a poster node for the sealing manager at ADDR (`host:port`
        /// or its RPC URL): read its chain and sector index over its RPC
        /// (Venus.Proxy*) and prove from the same persist stores, named
        /// alike in this home's config. Needs --poster and/or --miner.
        #[arg(long, value_name = "ADDR", requires = "proxy_token_file")]
        proxy: Option<String>,
        /// With --proxy: a file holding a token of the sealing manager with
        /// `sign` (it carries this node's PoSt messages and winning proofs).
        #[arg(long, value_name = "FILE", requires = "proxy")]
        proxy_token_file: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct Util {
    /// RPC URL of the daemon (default: the one written in <home>/api).
    #[arg(long, env = "DAMOCLES_API", global = true)]
    api: Option<String>,
    /// Token to send (default: <home>/token).
    #[arg(long, env = "DAMOCLES_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: UtilCmd,
}

#[derive(Subcommand)]
enum UtilCmd {
    /// Sectors being sealed and sealed.
    Sealer {
        #[command(subcommand)]
        cmd: SealerCmd,
    },
    /// Persist stores.
    Storage {
        #[command(subcommand)]
        cmd: StorageCmd,
    },
    /// The chain.
    Chain {
        #[command(subcommand)]
        cmd: ChainCmd,
    },
    /// Tokens.
    Auth {
        #[command(subcommand)]
        cmd: AuthCmd,
    },
    /// Workers.
    Worker {
        #[command(subcommand)]
        cmd: WorkerCmd,
    },
}

#[derive(Subcommand)]
enum WorkerCmd {
    /// Window PoSt jobs of worker-provers (`daemon run --worker-prover`).
    Wdpost {
        #[command(subcommand)]
        cmd: wdpost_cli::WdPostCmd,
    },
}

#[derive(Subcommand)]
enum SealerCmd {
    Sectors {
        #[command(subcommand)]
        cmd: SectorsCmd,
    },
    /// Window and winning PoSt: deadlines, faults, checks, proofs by hand.
    Proving(proving_cli::Proving),
}

#[derive(Subcommand)]
enum SectorsCmd {
    /// List sectors (in progress by default).
    List {
        /// Finalized and aborted sectors instead.
        #[arg(long, conflicts_with = "all")]
        offline: bool,
        /// Both.
        #[arg(long)]
        all: bool,
    },
    /// Everything the manager and the chain know about one sector.
    State { sector: SectorArg },
    /// Abort a sector in progress; its worker drops it at its next report.
    Abort {
        sector: SectorArg,
        #[arg(long, default_value = "aborted by the operator")]
        reason: String,
    },
    /// Mark a sector in progress finalized.
    Finalize { sector: SectorArg },
    /// Bring a finalized or aborted sector back in progress.
    Restore { sector: SectorArg },
}

#[derive(Subcommand)]
enum StorageCmd {
    /// Persist stores with space and reservations.
    List,
}

#[derive(Subcommand)]
enum ChainCmd {
    /// The current head.
    Head,
}

#[derive(Subcommand)]
enum AuthCmd {
    /// Mint a token from this home's secret (no daemon needed).
    CreateToken {
        /// read, write, sign or admin (each includes the ones before it).
        #[arg(long, default_value = "read")]
        perm: Permission,
    },
}

/// A sector named as `t01000-7`, `s-t01000-7` or `1000-7`.
#[derive(Clone, Copy, Debug)]
struct SectorArg(SectorID);

impl std::str::FromStr for SectorArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s
            .trim_start_matches("s-")
            .trim_start_matches("t0")
            .trim_start_matches('f');
        let (m, n) = t
            .split_once('-')
            .ok_or_else(|| format!("{s:?}: name a sector as t01000-7 (miner 1000, number 7)"))?;
        let parse = |x: &str| {
            x.parse::<u64>()
                .map_err(|_| format!("{s:?}: {x:?} is not a number"))
        };
        Ok(SectorArg(SectorID {
            miner: parse(m)?,
            number: parse(n)?,
        }))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A check loads plugins as the daemon does: info logs name each one.
    let daemon_mode = matches!(cli.cmd, Cmd::Daemon { .. } | Cmd::Config { .. });
    let default_level = if daemon_mode { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let home = Home::new(cli.home.clone().unwrap_or_else(Home::default_path));
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(dispatch(home, cli.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(home: Home, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Daemon {
            cmd:
                DaemonCmd::Init {
                    miner,
                    store,
                    listen,
                    block_time,
                    seed_delay,
                    pre_seal,
                    config,
                    policy,
                },
        } => daemon::init(
            &home,
            &InitOptions {
                miner,
                store,
                listen,
                block_time,
                seed_delay,
                pre_seal,
                config,
                policy,
            },
        ),
        Cmd::Daemon {
            cmd:
                DaemonCmd::Run {
                    listen,
                    poster,
                    miner,
                    ext_prover,
                    worker_prover,
                    warmup,
                    proxy,
                    proxy_token_file,
                },
        } => {
            daemon::run(
                &home,
                RunOptions {
                    listen,
                    poster,
                    miner,
                    ext_prover,
                    worker_prover,
                    warmup,
                    proxy,
                    proxy_token_file,
                },
            )
            .await
        }
        Cmd::Util(util) => run_util(home, util).await,
        Cmd::Config {
            cmd: ConfigCmd::Check,
        } => check_config(&home),
    }
}

fn check_config(home: &Home) -> Result<()> {
    let path = home.config();
    let loaded = damocles_manager::config::load(&path)?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key = %key, file = %path.display(), "unknown config key ignored");
    }
    damocles_manager::stores::check_plugins(&loaded.config)?;
    println!("{}: ok", path.display());
    Ok(())
}

fn client(home: &Home, util: &Util) -> Result<HttpClient> {
    let url = match &util.api {
        Some(u) => u.clone(),
        None => home.read_api()?,
    };
    let token = match &util.token {
        Some(t) => t.clone(),
        None => home.read_token()?,
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not a valid header value")?,
    );
    HttpClientBuilder::default()
        .set_headers(headers)
        .build(&url)
        .with_context(|| format!("RPC client for {url}"))
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.to_vec());
    t
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn when(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}

async fn run_util(home: Home, util: Util) -> Result<()> {
    if let UtilCmd::Auth {
        cmd: AuthCmd::CreateToken { perm },
    } = &util.cmd
    {
        println!("{}", Tokens::load(&home.secret())?.create(*perm));
        return Ok(());
    }
    let c = client(&home, &util)?;
    let rpc = |e: jsonrpsee::core::ClientError| anyhow!("{e}");
    match util.cmd {
        UtilCmd::Sealer {
            cmd: SealerCmd::Sectors { cmd },
        } => match cmd {
            SectorsCmd::List { offline, all } => {
                let kind = if all {
                    SectorListKind::All
                } else if offline {
                    SectorListKind::Offline
                } else {
                    SectorListKind::Online
                };
                list_sectors(&c, kind, util.json).await?;
            }
            SectorsCmd::State { sector } => {
                let id = sector.0;
                let state = c.find_sector(id).await.map_err(rpc)?;
                let chain = c.chain_sector_info(id).await.map_err(rpc)?;
                if util.json {
                    return print_json(&serde_json::json!({ "Sector": state, "Chain": chain }));
                }
                let Some(s) = state else {
                    return Err(anyhow!("sector {} is not known to this manager", id));
                };
                print_state(&s);
                match chain {
                    Some(ch) => {
                        println!("chain:        {}", ch.state);
                        println!("  precommit:  epoch {}", ch.pre_commit_epoch);
                        if let Some(a) = ch.activation {
                            println!(
                                "  activation: epoch {a}, expiration {}",
                                ch.expiration.unwrap_or_default()
                            );
                            println!(
                                "  deadline:   {} partition {}",
                                ch.deadline.unwrap_or_default(),
                                ch.partition.unwrap_or_default()
                            );
                        }
                    }
                    None => println!("chain:        not on chain"),
                }
            }
            SectorsCmd::Abort { sector, reason } => {
                c.abort_sector(sector.0, reason).await.map_err(rpc)?;
                println!("{} aborted", sector.0);
            }
            SectorsCmd::Finalize { sector } => {
                c.finalize_sector(sector.0).await.map_err(rpc)?;
                println!("{} finalized", sector.0);
            }
            SectorsCmd::Restore { sector } => {
                c.restore_sector(sector.0).await.map_err(rpc)?;
                println!("{} restored", sector.0);
            }
        },
        UtilCmd::Sealer {
            cmd: SealerCmd::Proving(p),
        } => proving_cli::run(&c, p, util.json).await?,
        UtilCmd::Worker {
            cmd: WorkerCmd::Wdpost { cmd },
        } => wdpost_cli::run(&c, cmd, util.json).await?,
        UtilCmd::Storage {
            cmd: StorageCmd::List,
        } => {
            let stores = c.store_list().await.map_err(rpc)?;
            if util.json {
                return print_json(&stores);
            }
            let mut t = table(&[
                "NAME", "PATH", "TYPE", "RO", "WEIGHT", "FREE", "TOTAL", "RESERVED", "SECTORS",
            ]);
            for s in &stores {
                t.add_row(vec![
                    s.info.name.clone(),
                    s.info.path.clone(),
                    s.store_type.clone(),
                    s.info.read_only.to_string(),
                    s.info.weight.to_string(),
                    bytes(s.free),
                    bytes(s.total),
                    bytes(s.reserved),
                    s.reserved_sectors.len().to_string(),
                ]);
            }
            println!("{t}");
        }
        UtilCmd::Chain {
            cmd: ChainCmd::Head,
        } => {
            let h = c.chain_head().await.map_err(rpc)?;
            if util.json {
                return print_json(&h);
            }
            println!(
                "{} height {} at {} (block time {}s)",
                h.network,
                h.height,
                when(h.timestamp),
                h.block_time_secs
            );
        }
        UtilCmd::Auth { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// Prints the sectors of `kind` page by page as they come: a table, or a
/// JSON array.
async fn list_sectors(c: &HttpClient, kind: SectorListKind, json: bool) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        write!(out, "[")?;
    } else {
        print_sector_row(
            &mut out,
            ["SECTOR", "PHASE", "WORKER STATE", "STORE", "UPDATED"],
        )?;
    }
    let (mut after, mut total) = (None, 0usize);
    loop {
        let page = c
            .list_sectors(kind, after, Some(limits::LIST_SECTORS_DEFAULT_LIMIT))
            .await
            .map_err(|e| anyhow!("{e}"))?;
        // A page that does not start after the cursor comes from a manager
        // that does not page (it answered everything at once): stop there.
        let fresh: Vec<&SectorState> = page.iter().filter(|s| after < Some(s.id)).collect();
        let Some(last) = fresh.last() else { break };
        after = Some(last.id);
        for s in fresh {
            if json {
                let sep = if total == 0 { "\n" } else { ",\n" };
                write!(out, "{sep}{}", serde_json::to_string_pretty(s)?)?;
            } else {
                let row = sector_row(s);
                print_sector_row(&mut out, row.each_ref().map(String::as_str))?;
            }
            total += 1;
        }
        out.flush()?;
    }
    if json {
        writeln!(out, "\n]")?;
        out.flush()?;
    } else {
        out.flush()?;
        eprintln!("{total} sector(s)");
    }
    Ok(())
}

fn sector_row(s: &SectorState) -> [String; 5] {
    [
        s.id.to_string(),
        s.phase().to_string(),
        s.latest_state
            .as_ref()
            .map(|l| l.state_change.next.clone())
            .unwrap_or_default(),
        s.persisted.clone().unwrap_or_default(),
        when(s.updated_at),
    ]
}

/// One row of `sectors list`: fixed widths, since the rows come a page at a time.
fn print_sector_row(
    out: &mut impl std::io::Write,
    [id, phase, worker, store, updated]: [&str; 5],
) -> Result<()> {
    writeln!(
        out,
        "{id:<20} {phase:<12} {worker:<20} {store:<12} {updated}"
    )?;
    Ok(())
}

fn print_state(s: &SectorState) {
    println!(
        "sector:       {} (proof type {})",
        s.id,
        s.sector_type.code()
    );
    println!("phase:        {}", s.phase());
    if let Some(t) = &s.ticket {
        println!("ticket:       epoch {}", t.epoch);
    }
    if let Some(p) = &s.pre {
        println!(
            "precommit:    {} CommR {}",
            s.pre_message.as_deref().unwrap_or("-"),
            hex(&p.comm_r)
        );
    }
    if let Some(p) = &s.persisted {
        println!("persisted:    {p}");
    }
    if let Some(seed) = &s.seed {
        println!("seed:         epoch {}", seed.epoch);
    }
    if let Some(m) = &s.proof_message {
        println!("prove-commit: {m}");
    }
    if let Some(l) = &s.latest_state {
        println!(
            "worker:       {} at {} ({} -> {})",
            l.worker.instance, l.worker.location, l.state_change.prev, l.state_change.next
        );
        if let Some(f) = &l.failure {
            println!("  failure:    {}: {}", f.level, f.desc);
        }
    }
    if s.aborted {
        println!("aborted:      {}", s.abort_reason);
    }
    println!("updated:      {}", when(s.updated_at));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}
