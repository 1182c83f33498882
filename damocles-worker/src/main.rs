//! `damocles-worker`: the sealing worker.
//!
//! `daemon -c FILE` runs the sealing threads; `worker list|pause|resume`
//! talks to a running daemon; `processor <stage>` serves one stage over
//! stdin/stdout with the builtin (filecoin-proofs-api) implementation, so the
//! worker binary is itself the default ext-processor; `config check`
//! validates a config and says what it will run; `store sealing-init`
//! prepares sealing locations.

use anyhow::Result;
use clap::{Parser, Subcommand};
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::run_consumer;
use vc_processors::tasks::*;

#[derive(Parser)]
#[command(name = "damocles-worker", version, about = "damocles sealing worker")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve one stage as an ext-processor over stdin/stdout (vc-processors protocol).
    ///
    /// The parent writes one JSON request per line to stdin; answers come back one
    /// per line on stdout; logs go to stderr. Proof parameters are read from
    /// FIL_PROOFS_PARAMETER_CACHE (default: $HOME/.cache/damocles/filecoin-proof-parameters).
    Processor {
        #[command(subcommand)]
        stage: StageCmd,
    },
    /// Run the sealing threads of a config until stopped.
    Daemon {
        #[arg(
            short = 'c',
            long = "config",
            env = "DAMOCLES_WORKER_CONFIG",
            value_name = "FILE"
        )]
        config: std::path::PathBuf,
    },
    /// Sealing threads of a running worker, through its admin RPC.
    Worker {
        /// The worker's admin address (default: from the config's
        /// worker.rpc_server, else 127.0.0.1:17890).
        #[arg(long, value_name = "HOST:PORT")]
        host: Option<String>,
        /// The admin token (default: the `admin-token` file the daemon
        /// writes beside its config file).
        #[arg(long, env = "DAMOCLES_WORKER_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(
            short = 'c',
            long = "config",
            env = "DAMOCLES_WORKER_CONFIG",
            value_name = "FILE"
        )]
        config: Option<std::path::PathBuf>,
        #[command(subcommand)]
        cmd: WorkerCmd,
    },
    /// Worker config files (damocles-worker's TOML format).
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Precomputed files.
    Generator {
        #[command(subcommand)]
        cmd: GeneratorCmd,
    },
    /// Local sealing stores.
    Store {
        #[command(subcommand)]
        cmd: StoreCmd,
    },
}

#[derive(Subcommand)]
enum GeneratorCmd {
    /// Build the tree-d of a CC sector once, for `[processors.static_tree_d]`:
    /// writes `<path>/sc-02-data-tree-d.dat` and prints the config line.
    TreeD {
        /// Sector size, e.g. 2KiB or 32GiB.
        #[arg(short = 's', long = "sector-size")]
        size: String,
        /// Directory to write into (created if missing).
        #[arg(short = 'p', long = "path")]
        path: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Prepare sealing locations (the `location` of `[[sealing_thread]]`):
    /// the data directories and the sector database. Safe to run again: a
    /// location with a sector in progress keeps it.
    SealingInit {
        /// Locations to prepare.
        #[arg(short = 'l', long = "location", required = true, num_args = 1..)]
        locations: Vec<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum WorkerCmd {
    /// Each thread: what it does, its sector and state, its last error.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause a thread before its next step.
    Pause {
        #[arg(long)]
        index: usize,
    },
    /// Resume a paused thread, optionally setting its sector's state by name.
    Resume {
        #[arg(long)]
        index: usize,
        #[arg(long)]
        state: Option<String>,
    },
    /// Set a variable in the environment ext-processors inherit, from their
    /// next start or restart on (the worker's own environment is unchanged).
    SetEnv { name: String, value: String },
    /// Remove a variable from what ext-processors inherit, from their next start.
    RemoveEnv { name: String },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a config and print what the worker will run: threads, stores,
    /// and which processor serves each stage. Unknown keys are warned about by
    /// name; a bad value fails naming its key.
    Check {
        #[arg(
            short = 'c',
            long = "config",
            env = "DAMOCLES_WORKER_CONFIG",
            value_name = "FILE"
        )]
        config: std::path::PathBuf,
    },
}

/// One subcommand per stage an ext-processor serves; named by the one
/// list of stage names.
#[derive(Subcommand)]
enum StageCmd {
    /// Write pieces into the staged file.
    #[command(name = Stage::AddPieces.as_str())]
    AddPieces,
    /// Build tree-d of the staged file.
    #[command(name = Stage::TreeD.as_str())]
    TreeD,
    /// Pre-commit phase 1 (SDR).
    #[command(name = Stage::Pc1.as_str())]
    Pc1,
    /// Pre-commit phase 2 (tree-c, tree-r-last).
    #[command(name = Stage::Pc2.as_str())]
    Pc2,
    /// Commit phase 2 (the seal SNARK).
    #[command(name = Stage::C2.as_str())]
    C2,
    /// Snap-deal encoding.
    #[command(name = Stage::SnapEncode.as_str())]
    SnapEncode,
    /// Snap-deal proof.
    #[command(name = Stage::SnapProve.as_str())]
    SnapProve,
    /// Copy or link sector files.
    #[command(name = Stage::Transfer.as_str())]
    Transfer {
        /// Always copy, even where a route allows a symlink.
        #[arg(long = "disable_link", alias = "disable-link", env = "DISABLE_LINK")]
        disable_link: bool,
    },
    /// Window PoSt.
    #[command(name = Stage::WindowPost.as_str())]
    WindowPost,
    /// Winning PoSt.
    #[command(name = Stage::WinningPost.as_str())]
    WinningPost,
    /// The vanilla half of a PoSt, read from the sector files.
    #[command(name = Stage::PostVanilla.as_str())]
    PostVanilla,
    /// The SNARK half of a PoSt, from vanilla proofs (no sector file).
    #[command(name = Stage::PostSnark.as_str())]
    PostSnark,
    /// Unseal a range of a sealed sector.
    #[command(name = Stage::Unseal.as_str())]
    Unseal,
}

/// Errors print as one line with their causes (no backtrace noise).
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    // stdout carries the protocol: every log line goes to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    // Before any proofs call: the library reads its settings once.
    fil_params::configure_process_env();
    match cli.cmd {
        Cmd::Processor { stage } => serve(stage),
        Cmd::Config {
            cmd: ConfigCmd::Check { config },
        } => check(&config),
        Cmd::Worker {
            host,
            token,
            config,
            cmd,
        } => tokio::runtime::Runtime::new()?.block_on(worker_cmd(host, token, config, cmd)),
        Cmd::Generator {
            cmd: GeneratorCmd::TreeD { size, path },
        } => generate_tree_d(&size, &path),
        Cmd::Store {
            cmd: StoreCmd::SealingInit { locations },
        } => {
            for l in &locations {
                let doc = damocles_worker::sealing::thread::init_location(l)?;
                match doc.sector {
                    Some(s) => println!(
                        "{}: ready, holding {} in state {}",
                        l.display(),
                        s.id,
                        doc.state
                    ),
                    None => println!("{}: ready", l.display()),
                }
            }
            Ok(())
        }
        Cmd::Daemon { config } => {
            tokio::runtime::Runtime::new()?.block_on(damocles_worker::daemon::run(&config))
        }
    }
}

async fn worker_cmd(
    host: Option<String>,
    token: Option<String>,
    config: Option<std::path::PathBuf>,
    cmd: WorkerCmd,
) -> Result<()> {
    use damocles_worker::admin::{AdminFiles, WorkerAdminApiClient};
    let token = match (token, &config) {
        (Some(t), _) => t,
        (None, Some(c)) => AdminFiles::of(c).read_token()?,
        (None, None) => anyhow::bail!(
            "the worker's admin RPC needs its token: pass -c <worker config> (the daemon writes \
             `admin-token` beside it) or --token / DAMOCLES_WORKER_TOKEN"
        ),
    };
    let host = match (host, config) {
        (Some(h), _) => h,
        (None, Some(c)) => {
            let cfg = damocles_worker::config::load(&c)?.config;
            let h = cfg
                .worker
                .rpc_server
                .host
                .unwrap_or_else(|| "127.0.0.1".into());
            let h = if h == "0.0.0.0" {
                "127.0.0.1".to_string()
            } else {
                h
            };
            format!("{h}:{}", cfg.worker.rpc_server.port)
        }
        (None, None) => "127.0.0.1:17890".into(),
    };
    let mut headers = jsonrpsee::http_client::HeaderMap::new();
    headers.insert(
        "Authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow::anyhow!("the admin token is not a valid header value"))?,
    );
    let client = jsonrpsee::http_client::HttpClientBuilder::default()
        .set_headers(headers)
        .build(format!("http://{host}"))?;
    let rpc = |e: jsonrpsee::core::ClientError| anyhow::anyhow!("worker at {host}: {e}");
    match cmd {
        WorkerCmd::List { json } => {
            let threads = client.worker_list().await.map_err(rpc)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&threads)?);
                return Ok(());
            }
            println!(
                "{:<5} {:<7} {:<10} {:<16} {:<22} {:<28} LAST ERROR",
                "INDEX", "PLAN", "THREAD", "JOB", "STATE", "LOCATION"
            );
            for t in threads {
                let thread = match &t.thread_state {
                    damocles_worker::sealing::ctrl::ThreadState::Idle => "idle".to_string(),
                    damocles_worker::sealing::ctrl::ThreadState::Paused { elapsed } => {
                        format!("paused {elapsed}s")
                    }
                    damocles_worker::sealing::ctrl::ThreadState::Running { elapsed, .. } => {
                        format!("running {elapsed}s")
                    }
                    damocles_worker::sealing::ctrl::ThreadState::Waiting { elapsed } => {
                        format!("waiting {elapsed}s")
                    }
                };
                println!(
                    "{:<5} {:<7} {:<10} {:<16} {:<22} {:<28} {}",
                    t.index,
                    t.plan,
                    thread,
                    t.job_id.unwrap_or_else(|| "-".into()),
                    t.job_state,
                    t.location,
                    t.last_error.unwrap_or_default()
                );
            }
        }
        WorkerCmd::Pause { index } => {
            client.worker_pause(index).await.map_err(rpc)?;
            println!("thread {index}: pause requested (it stops before its next step)");
        }
        WorkerCmd::SetEnv { name, value } => {
            client
                .worker_set_env(name.clone(), value)
                .await
                .map_err(rpc)?;
            println!("{name} set for ext-processors started from now on");
        }
        WorkerCmd::RemoveEnv { name } => {
            client.worker_remove_env(name.clone()).await.map_err(rpc)?;
            println!("{name} removed for ext-processors started from now on");
        }
        WorkerCmd::Resume { index, state } => {
            let was = client.worker_resume(index, state).await.map_err(rpc)?;
            println!(
                "thread {index}: {}",
                if was { "resumed" } else { "was not paused" }
            );
        }
    }
    Ok(())
}

fn generate_tree_d(size: &str, dir: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    let bytes =
        damocles_config::parse_size(size).map_err(|e| anyhow::anyhow!("--sector-size: {e}"))?;
    let proof = damocles_api::SealProof::for_sector_size(bytes)
        .ok_or_else(|| anyhow::anyhow!("--sector-size: {size} is not a sector size"))?;
    // Built in a fresh directory and renamed into place: an interrupted run
    // leaves no file that looks finished (the tree library would reuse one).
    let work = dir.join(format!(".tree-d-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    // A CC sector's data is all zeros (the pledge piece, padded).
    let staged = work.join("staged");
    let built = std::fs::File::create(&staged)
        .and_then(|f| f.set_len(bytes))
        .with_context(|| format!("write {}", staged.display()))
        .and_then(|_| {
            vc_processors::builtin::tree_d(&TreeD {
                registered_proof: proof.0,
                staged_file: staged.clone(),
                cache_dir: work.clone(),
            })
        })
        .and_then(|_| {
            vc_processors::builtin::check_cc_tree_d(
                proof.0,
                &vc_processors::builtin::tree_d_path(&work),
            )
        });
    let file = vc_processors::builtin::tree_d_path(dir);
    let built = built.and_then(|_| {
        std::fs::rename(vc_processors::builtin::tree_d_path(&work), &file)
            .with_context(|| format!("move the tree-d to {}", file.display()))
    });
    let _ = std::fs::remove_dir_all(&work);
    built?;
    println!("{}", file.display());
    println!(
        "# [processors.static_tree_d]\n# {size} = \"{}\"",
        file.display()
    );
    Ok(())
}

fn check(path: &std::path::Path) -> Result<()> {
    let loaded = damocles_worker::config::load(path)?;
    loaded.config.check_paths_logged()?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key = %key, file = %path.display(), "unknown config key ignored");
    }
    for key in loaded.config.unsupported() {
        tracing::warn!(key = %key, "accepted but not used by this release");
    }
    damocles_worker::stores::check_plugins(&loaded.config)?;
    let exe = std::env::current_exe()?;
    println!("{}: ok", path.display());
    print!(
        "{}",
        damocles_worker::describe::describe(&loaded.config, &exe)
    );
    Ok(())
}

fn serve(stage: StageCmd) -> Result<()> {
    let p = BuiltinProcessor::default();
    match stage {
        StageCmd::AddPieces => run_consumer::<AddPieces, _>(p),
        StageCmd::TreeD => run_consumer::<TreeD, _>(p),
        StageCmd::Pc1 => run_consumer::<PC1, _>(p),
        StageCmd::Pc2 => run_consumer::<PC2, _>(p),
        StageCmd::C2 => run_consumer::<C2, _>(p),
        StageCmd::SnapEncode => run_consumer::<SnapEncode, _>(p),
        StageCmd::SnapProve => run_consumer::<SnapProve, _>(p),
        StageCmd::Transfer { disable_link } => {
            run_consumer::<Transfer, _>(BuiltinProcessor { disable_link })
        }
        StageCmd::WindowPost => run_consumer::<WindowPoSt, _>(p),
        StageCmd::WinningPost => run_consumer::<WinningPoSt, _>(p),
        StageCmd::PostVanilla => run_consumer::<PoStVanilla, _>(p),
        StageCmd::PostSnark => run_consumer::<PoStSnark, _>(p),
        StageCmd::Unseal => run_consumer::<Unseal, _>(p),
    }
}
