//! `seal-2kib`, the main job: start a damocles-manager proving its sectors
//! (`--poster --miner`) with its devnet chain and two pre-sealed genesis
//! sectors, take a sector from it, seal it for real through ext-processor
//! child processes (`damocles-worker processor <stage>`), precommit, persist
//! and prove-commit it through the manager until the devnet's miner actor has
//! verified the proof and made it active; then wait until the devnet has
//! accepted the manager's window PoSt of that sector's deadline and the miner
//! has won a block with a winning PoSt. Generates the (insecure, test-only)
//! 2KiB parameters first if this machine has none yet (about 20 minutes, once).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use damocles_api::cli::ManagerCliApiClient;
use damocles_api::proving::ProvingApiClient;
use damocles_api::SectorID;
use example_seal_2kib::devnet::{ManagerCommitments, ManagerProcess};
use example_seal_2kib::{run_dir, seal_and_prove, Children, Mode};
use fil_params::ParamSet;

#[derive(Parser)]
#[command(
    about = "Run a devnet manager that proves its sectors (window and winning PoSt), seal and commit one real 2KiB sector through it, and wait until the devnet has accepted its window PoSt and the miner has won a block"
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
    let sets = [
        ParamSet::Porep2KiB,
        ParamSet::WindowPost2KiB,
        ParamSet::WinningPost2KiB,
    ];
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
    // Two genesis sectors (pre-sealed without C2), 4 deadlines of 20 epochs
    // (an 80 s proving period), an election about every 10 epochs.
    ManagerProcess::init_with(
        &manager_bin,
        &home,
        "1s",
        3,
        &[
            "--pre-seal",
            "2",
            "--policy",
            "DeadlinesPerPeriod=4",
            "--policy",
            "ElectionRatePercent=10",
        ],
        |c| c,
    )?;
    let manager = ManagerProcess::start_with(&manager_bin, &home, &["--poster", "--miner"])?;
    eprintln!(
        "manager proving window and winning PoSt, with a devnet chain (1 s blocks) and 2 pre-sealed sectors: {}  (log: {})",
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

    let reader = manager.client(Some(&manager.token("read")?))?;
    let id = SectorID::new(example_seal_2kib::MINER, number);
    let proven_by = wait_for_window_post(&reader, id).await?;
    println!("\nwindow PoSt: the deadline holding {} closed at epoch {proven_by} with the sector proven (not faulty)", chain.name());
    let won = wait_for_block(&reader).await?;
    println!("winning PoSt: block won at epoch {won}");
    for args in [
        &["util", "sealer", "proving", "info"][..],
        &["util", "sealer", "proving", "deadlines"],
        &["util", "sealer", "proving", "blocks", "--limit", "5"],
    ] {
        println!("\n$ damocles-manager {}", args.join(" "));
        print!("{}", manager.cli(args)?);
    }
    Ok(())
}

/// Waits until the first deadline of `id` that opens after its activation
/// has closed, and checks the sector came out of it proven: a deadline that
/// closes without an accepted window PoSt turns its sectors faulty. Returns
/// the close epoch.
async fn wait_for_window_post(c: &jsonrpsee::http_client::HttpClient, id: SectorID) -> Result<i64> {
    let s = c
        .chain_sector_info(id)
        .await?
        .context("the sector is not on chain")?;
    let (activation, dl) = (
        s.activation.context("the sector is not active")?,
        s.deadline.context("the sector has no deadline")?,
    );
    let info = c.proving_info(None).await?;
    let row = c.proving_deadline(None, dl).await?.row;
    let (mut open, mut close) = (row.epochs.open, row.epochs.close);
    while open <= activation {
        open += info.proving_period;
        close += info.proving_period;
    }
    eprintln!(
        "waiting for window PoSt: {} is in deadline {dl}, open at epochs {open}..{close} (head {})",
        id.number, info.current_epoch
    );
    let timeout = Duration::from_secs((close - info.current_epoch).max(0) as u64 + 120);
    let started = Instant::now();
    while c.chain_head().await?.height <= close {
        anyhow::ensure!(
            started.elapsed() < timeout,
            "deadline {dl} did not close in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let faults = c.proving_faults(None).await?;
    anyhow::ensure!(
        faults.iter().all(|f| f.sector != id.number),
        "deadline {dl} closed with sector {} faulty: no window PoSt of it was accepted (see the manager's log)",
        id.number
    );
    Ok(close)
}

/// Waits for a block the miner won (the devnet verified its winning PoSt).
async fn wait_for_block(c: &jsonrpsee::http_client::HttpClient) -> Result<i64> {
    eprintln!("waiting for an election the miner wins ...");
    let started = Instant::now();
    loop {
        let blocks = c.proving_blocks(None, 100).await?;
        if let Some(b) = blocks.iter().find(|b| b.outcome == "Won") {
            return Ok(b.epoch);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "no block won in 5 minutes: {blocks:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("seal-2kib-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
