//! `util sealer proving ...`: tables (or `--json`) over the `Venus.Proving*`
//! methods.

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use damocles_api::proving::{DeadlineRow, ProvingApiClient};
use jsonrpsee::http_client::HttpClient;

use crate::{print_json, table};

#[derive(Args)]
pub struct Proving {
    /// The miner actor id (default: the first miner of the manager's config).
    #[arg(long, global = true)]
    miner: Option<u64>,
    #[command(subcommand)]
    cmd: ProvingCmd,
}

#[derive(Subcommand)]
enum ProvingCmd {
    /// The proving period, the current deadline and sector counts.
    Info,
    /// Every faulty sector: deadline, partition, whether it is recovering.
    Faults,
    /// Every deadline: partitions, sectors, faults, proven partitions.
    Deadlines,
    /// One deadline's partitions and their sector sets.
    Deadline {
        /// The deadline index.
        index: u64,
        /// List the sector numbers, not only counts.
        #[arg(long, short = 'n')]
        sector_nums: bool,
    },
    /// Check the live sectors of a deadline as the poster would. Without
    /// --slow only the files' existence (through their store) is checked.
    Check {
        /// The deadline index.
        index: u64,
        /// Also the sealed file's size and a one-challenge vanilla proof.
        #[arg(long)]
        slow: bool,
        /// Only the sectors that fail.
        #[arg(long)]
        only_bad: bool,
    },
    /// Compute and verify a window PoSt of one partition now with the
    /// configured prover; nothing is sent to the chain.
    SimulateWdpost {
        /// The deadline index.
        #[arg(long)]
        ddl_idx: u64,
        /// The partition index.
        #[arg(long)]
        partition_idx: u64,
        /// Prove faulty sectors too.
        #[arg(long)]
        include_faulty: bool,
    },
    /// Declare every faulty sector of a deadline recovered, without checks
    /// (the poster declares only sectors that pass them).
    RecoverFaults {
        /// The deadline index.
        #[arg(long)]
        deadline: u64,
    },
    /// The miner's elections and whether each block was won.
    Blocks {
        /// How many, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
}

fn rpc(e: jsonrpsee::core::ClientError) -> anyhow::Error {
    anyhow!("{e}")
}

fn proven(r: &DeadlineRow) -> String {
    format!("{}", r.proven_partitions.len())
}

pub async fn run(c: &HttpClient, p: Proving, json: bool) -> Result<()> {
    let miner = p.miner;
    match p.cmd {
        ProvingCmd::Info => {
            let i = c.proving_info(miner).await.map_err(rpc)?;
            if json {
                return print_json(&i);
            }
            let pct = |n: u64| {
                if i.live == 0 {
                    0.0
                } else {
                    n as f64 * 100.0 / i.live as f64
                }
            };
            println!("Miner:                   t0{}", i.miner);
            println!("Current Epoch:           {}", i.current_epoch);
            println!("Proving Period:          {} epochs", i.proving_period);
            println!("Proving Period Start:    {}", i.period_start);
            println!(
                "Next Period Start:       {}",
                i.period_start + i.proving_period
            );
            println!();
            println!("Live Sectors:            {}", i.live);
            println!("Active Sectors:          {}", i.active);
            println!(
                "Faults:                  {} ({:.2}%)",
                i.faults,
                pct(i.faults)
            );
            println!("Recovering:              {}", i.recovering);
            println!("Power:                   {} bytes", i.power);
            println!();
            println!("Deadline Index:          {}", i.deadline.index);
            println!("Deadline Sectors:        {}", i.deadline_sectors);
            println!("Deadline Open:           {}", i.deadline.open);
            println!("Deadline Close:          {}", i.deadline.close);
            println!("Deadline Challenge:      {}", i.deadline.challenge);
            println!("Deadline FaultCutoff:    {}", i.deadline.fault_cutoff);
        }
        ProvingCmd::Faults => {
            let rows = c.proving_faults(miner).await.map_err(rpc)?;
            if json {
                return print_json(&rows);
            }
            let mut t = table(&["DEADLINE", "PARTITION", "SECTOR", "RECOVERING"]);
            for r in &rows {
                t.add_row(vec![
                    r.deadline.to_string(),
                    r.partition.to_string(),
                    r.sector.to_string(),
                    r.recovering.to_string(),
                ]);
            }
            println!("{t}");
            eprintln!("{} faulty sector(s)", rows.len());
        }
        ProvingCmd::Deadlines => {
            let rows = c.proving_deadlines(miner).await.map_err(rpc)?;
            if json {
                return print_json(&rows);
            }
            let mut t = table(&[
                "DEADLINE",
                "OPEN",
                "PARTITIONS",
                "SECTORS (FAULTS)",
                "PROVEN PARTITIONS",
                "",
            ]);
            for r in &rows {
                t.add_row(vec![
                    r.epochs.index.to_string(),
                    r.epochs.open.to_string(),
                    r.partitions.to_string(),
                    format!("{} ({})", r.sectors, r.faults),
                    proven(r),
                    if r.current {
                        "(current)".into()
                    } else {
                        String::new()
                    },
                ]);
            }
            println!("{t}");
        }
        ProvingCmd::Deadline { index, sector_nums } => {
            let d = c.proving_deadline(miner, index).await.map_err(rpc)?;
            if json {
                return print_json(&d);
            }
            println!("Deadline Index:       {}", d.row.epochs.index);
            println!("Deadline Open:        {}", d.row.epochs.open);
            println!("Partitions:           {}", d.row.partitions);
            println!("Proven Partitions:    {}", proven(&d.row));
            println!("Current:              {}", d.row.current);
            for p in &d.partitions {
                println!();
                println!("Partition Index:      {}", p.index);
                for (name, set) in [
                    ("All", &p.all),
                    ("Live", &p.live),
                    ("Active", &p.active),
                    ("Faulty", &p.faulty),
                    ("Recovering", &p.recovering),
                ] {
                    if sector_nums {
                        println!("{:<22}{} {:?}", format!("{name} Sectors:"), set.len(), set);
                    } else {
                        println!("{:<22}{}", format!("{name} Sectors:"), set.len());
                    }
                }
            }
        }
        ProvingCmd::Check {
            index,
            slow,
            only_bad,
        } => {
            let rows = c.check_provable(miner, index, slow).await.map_err(rpc)?;
            let rows: Vec<_> = rows.into_iter().filter(|r| !only_bad || !r.good).collect();
            if json {
                return print_json(&rows);
            }
            let mut t = table(&["DEADLINE", "PARTITION", "SECTOR", "STATUS"]);
            for r in &rows {
                t.add_row(vec![
                    r.deadline.to_string(),
                    r.partition.to_string(),
                    r.sector.to_string(),
                    match &r.reason {
                        None => "good".to_string(),
                        Some(why) => format!("bad: {why}"),
                    },
                ]);
            }
            println!("{t}");
            let bad = rows.iter().filter(|r| !r.good).count();
            eprintln!("{} checked, {bad} bad", rows.len());
        }
        ProvingCmd::SimulateWdpost {
            ddl_idx,
            partition_idx,
            include_faulty,
        } => {
            let r = c
                .simulate_wdpost(miner, ddl_idx, partition_idx, include_faulty)
                .await
                .map_err(rpc)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "deadline {} partition {}: {} sector(s) proven, skipped {:?}, {} proof bytes in {} ms by the {} prover (challenge epoch {}), verified: {}",
                    r.deadline, r.partition, r.proven.len(), r.skipped, r.proof_bytes, r.elapsed_ms, r.prover, r.challenge, r.verified
                );
            }
            if !r.verified {
                bail!(
                    "the proof does not verify: {}",
                    r.reason.as_deref().unwrap_or("no reason given")
                );
            }
        }
        ProvingCmd::RecoverFaults { deadline } => {
            let id = c
                .proving_recover_faults(miner, deadline)
                .await
                .map_err(rpc)?;
            if json {
                return print_json(&serde_json::json!({ "Message": id }));
            }
            println!("recoveries of deadline {deadline} declared in message {id}");
        }
        ProvingCmd::Blocks { limit } => {
            let rows = c.proving_blocks(miner, limit).await.map_err(rpc)?;
            if json {
                return print_json(&rows);
            }
            let mut t = table(&["EPOCH", "OUTCOME", "LATENCY", "SECTORS", "REASON"]);
            for r in &rows {
                t.add_row(vec![
                    r.epoch.to_string(),
                    r.outcome.clone(),
                    r.latency_ms
                        .map(|ms| format!("{:.2}s", ms as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into()),
                    format!("{:?}", r.sectors),
                    r.reason.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}
