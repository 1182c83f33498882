//! `seal-2kib`: seal one real 2KiB sector through ext-processor child processes
//! (`damocles-worker processor <stage>`), verify its proof and prove it with a
//! window PoSt. Generates the (insecure, test-only) 2KiB parameters first if this
//! machine has none yet (about 20 minutes, once).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use example_seal_2kib::{run_dir, seal_and_prove, Children, Mode};
use fil_params::ParamSet;

#[derive(Parser)]
#[command(about = "Seal and prove one real 2KiB sector through ext-processors")]
struct Cli {
    /// The damocles-worker binary serving the stages (default: next to this one).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
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

    let worker = match cli.worker_bin {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("damocles-worker"),
    };
    anyhow::ensure!(
        worker.exists(),
        "{} not found: build it with `cargo build -p damocles-worker`",
        worker.display()
    );
    let tmp;
    let base = match cli.work_dir {
        Some(d) => d,
        None => {
            tmp = tempdir()?;
            tmp.clone()
        }
    };
    let dir = run_dir(&base, "sector-1")?;

    eprintln!(
        "spawning ext-processors: {} processor <stage>",
        worker.display()
    );
    let mode = Mode::External(Children::spawn(&worker).await?);
    let started = Instant::now();
    let report = seal_and_prove(&mode, &dir, 1, &mut |stage| eprintln!("  {stage} ...")).await?;
    println!(
        "sealed and proved sector 1 of miner f0{} in {:.1?}",
        example_seal_2kib::MINER,
        started.elapsed()
    );
    println!("  comm_r       {}", hex(&report.comm_r));
    println!("  seal proof   {} bytes, verified", report.proof_len);
    println!("  window PoSt  verified");
    for (stage, d) in &report.timings {
        println!("  {stage:<12} {d:>10.2?}");
    }
    println!("files in {}", dir.display());
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
