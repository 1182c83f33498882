//! `damocles-worker`: the sealing worker.
//!
//! This release carries the processor side: `damocles-worker processor <stage>`
//! serves one stage over stdin/stdout with the builtin (filecoin-proofs-api)
//! implementation, so the worker binary is itself the default ext-processor;
//! and `damocles-worker config check` validates a worker config and says what
//! it will run.

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
        stage: Stage,
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
    /// Worker config files (damocles-worker's TOML format).
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
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

#[derive(Subcommand)]
enum Stage {
    /// Write pieces into the staged file.
    #[command(name = "add_pieces")]
    AddPieces,
    /// Build tree-d of the staged file.
    #[command(name = "tree_d")]
    TreeD,
    /// Pre-commit phase 1 (SDR).
    #[command(name = "pc1")]
    Pc1,
    /// Pre-commit phase 2 (tree-c, tree-r-last).
    #[command(name = "pc2")]
    Pc2,
    /// Commit phase 2 (the seal SNARK).
    #[command(name = "c2")]
    C2,
    /// Snap-deal encoding.
    #[command(name = "snap_encode")]
    SnapEncode,
    /// Snap-deal proof.
    #[command(name = "snap_prove")]
    SnapProve,
    /// Copy or link sector files.
    #[command(name = "transfer")]
    Transfer {
        /// Always copy, even where a route allows a symlink.
        #[arg(long = "disable_link", alias = "disable-link", env = "DISABLE_LINK")]
        disable_link: bool,
    },
    /// Window PoSt.
    #[command(name = "window_post")]
    WindowPost,
    /// Winning PoSt.
    #[command(name = "winning_post")]
    WinningPost,
    /// Unseal a range of a sealed sector.
    #[command(name = "unseal")]
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
        Cmd::Daemon { config } => {
            tokio::runtime::Runtime::new()?.block_on(damocles_worker::daemon::run(&config))
        }
    }
}

fn check(path: &std::path::Path) -> Result<()> {
    let loaded = damocles_worker::config::load(path)?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key = %key, file = %path.display(), "unknown config key ignored");
    }
    for key in loaded.config.unsupported() {
        tracing::warn!(key = %key, "accepted but not used by this release");
    }
    let exe = std::env::current_exe()?;
    println!("{}: ok", path.display());
    print!(
        "{}",
        damocles_worker::describe::describe(&loaded.config, &exe)
    );
    Ok(())
}

fn serve(stage: Stage) -> Result<()> {
    let p = BuiltinProcessor::default();
    match stage {
        Stage::AddPieces => run_consumer::<AddPieces, _>(p),
        Stage::TreeD => run_consumer::<TreeD, _>(p),
        Stage::Pc1 => run_consumer::<PC1, _>(p),
        Stage::Pc2 => run_consumer::<PC2, _>(p),
        Stage::C2 => run_consumer::<C2, _>(p),
        Stage::SnapEncode => run_consumer::<SnapEncode, _>(p),
        Stage::SnapProve => run_consumer::<SnapProve, _>(p),
        Stage::Transfer { disable_link } => {
            run_consumer::<Transfer, _>(BuiltinProcessor { disable_link })
        }
        Stage::WindowPost => run_consumer::<WindowPoSt, _>(p),
        Stage::WinningPost => run_consumer::<WinningPoSt, _>(p),
        Stage::Unseal => run_consumer::<Unseal, _>(p),
    }
}
