//! `seal-2kib`, the main job: start a damocles-manager with its devnet chain,
//! take a sector from it, seal it for real through ext-processor child
//! processes (`damocles-worker processor <stage>`), precommit, persist and
//! prove-commit it through the manager until the devnet's miner actor has
//! verified the proof and made it active, then prove it with a window PoSt.
//! Generates the (insecure, test-only) 2KiB parameters first if this machine
//! has none yet (about 20 minutes, once).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use example_seal_2kib::devnet::{ManagerCommitments, ManagerProcess};
use example_seal_2kib::{run_dir, seal_and_prove, Children, Mode};
use fil_params::ParamSet;

#[derive(Parser)]
#[command(
    about = "Run a devnet manager and seal, commit and prove one real 2KiB sector through it"
)]
struct Cli {
    /// The damocles-worker binary serving the stages (default: next to this one).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    /// The damocles-manager binary (default: next to this one).
    #[arg(long)]
    manager_bin: Option<PathBuf>,
    /// Where sector files go (default: a fresh temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let params = fil_params::configure_process_env();
    let sets = [ParamSet::Porep2KiB, ParamSet::WindowPost2KiB];
    if !sets
        .iter()
        .all(|s| fil_params::is_present(&params, *s).unwrap_or(false))
    {
        eprintln!(
            "generating 2KiB test parameters into {} (once per machine, ~20 min)...",
            params.display()
        );
    }
    fil_params::ensure(&sets, &mut fil_params::Quiet).context("proof parameters")?;

    let sibling = |name: &str| -> Result<PathBuf> {
        let p = std::env::current_exe()?.with_file_name(name);
        anyhow::ensure!(
            p.exists(),
            "{} not found: build it with `cargo build --workspace --bins`",
            p.display()
        );
        Ok(p)
    };
    let worker = match cli.worker_bin {
        Some(p) => p,
        None => sibling("damocles-worker")?,
    };
    let manager_bin = match cli.manager_bin {
        Some(p) => p,
        None => sibling("damocles-manager")?,
    };
    let tmp;
    let base = match cli.work_dir {
        Some(d) => d,
        None => {
            tmp = tempdir()?;
            tmp.clone()
        }
    };
    let home = base.join("manager");
    ManagerProcess::init(&manager_bin, &home, "1s", 3, |c| c)?;
    let manager = ManagerProcess::start(&manager_bin, &home)?;
    eprintln!(
        "manager with a devnet chain (1 s blocks): {}  (log: {})",
        manager.url,
        manager.log.display()
    );
    let client = manager.client(Some(&manager.token("write")?))?;
    let mut chain =
        ManagerCommitments::allocate(client, ("store-1".into(), home.join("store-1"))).await?;
    let number = chain.sector.id.number;
    eprintln!("allocated {}", chain.name());
    let dir = run_dir(&base, &format!("sector-{number}"))?;

    eprintln!(
        "spawning ext-processors: {} processor <stage>",
        worker.display()
    );
    let mode = Mode::External(Children::spawn(&worker).await?);
    let started = Instant::now();
    let report = seal_and_prove(&mode, &dir, number, &mut chain, &mut |stage| {
        eprintln!("  {stage} ...")
    })
    .await?;
    println!(
        "sealed, committed and proved {} in {:.1?}",
        chain.name(),
        started.elapsed()
    );
    println!("  comm_r       {}", hex(&report.comm_r));
    println!(
        "  seal proof   {} bytes, verified by the devnet: the sector is active",
        report.proof_len
    );
    println!("  window PoSt  verified");
    for (stage, d) in &report.timings {
        println!("  {stage:<12} {d:>10.2?}");
    }
    println!("files in {}", dir.display());
    println!(
        "\n$ damocles-manager util sealer sectors state t0{}-{number}",
        example_seal_2kib::MINER
    );
    print!(
        "{}",
        manager.cli(&[
            "util",
            "sealer",
            "sectors",
            "state",
            &format!("t0{}-{number}", example_seal_2kib::MINER)
        ])?
    );
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("seal-2kib-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
