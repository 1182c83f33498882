//! `util worker wdpost ...`: the window PoSt jobs of worker-provers
//! (`daemon run --worker-prover`), as damocles' CLI shows and handles them.

use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::Subcommand;
use damocles_api::wdpost::{JobState, WdPoStApiClient, WdPoStJobBrief};
use jsonrpsee::http_client::HttpClient;

use crate::{print_json, table};

#[derive(Subcommand)]
pub enum WdPostCmd {
    /// The jobs, newest first (succeeded ones only with --all).
    List {
        /// Succeeded jobs too.
        #[arg(long)]
        all: bool,
        /// Every time stamp of each job.
        #[arg(long)]
        detail: bool,
    },
    /// Hand jobs out again from their first try (a job that failed
    /// JobMaxTry times runs again only this way).
    Reset {
        /// Job ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete jobs (a poster still waiting for one queues it again).
    Remove {
        /// Job ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete every job.
    RemoveAll {
        /// Without it nothing is deleted.
        #[arg(long)]
        really_do_it: bool,
    },
}

fn rpc(e: jsonrpsee::core::ClientError) -> anyhow::Error {
    anyhow!("{e}")
}

/// damocles' display state: ReadyToRun, Running, Succeed, Faults(n), Failed.
fn display_state(b: &WdPoStJobBrief) -> String {
    match b.job.state {
        JobState::ReadyToRun => "ReadyToRun".into(),
        JobState::Running => "Running".into(),
        JobState::Finished if !b.job.error_reason.is_empty() => "Failed".into(),
        JobState::Finished if b.faults > 0 => format!("Faults({})", b.faults),
        JobState::Finished => "Succeed".into(),
    }
}

fn at(unix: u64) -> String {
    if unix == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn secs(d: u64) -> String {
    humantime::format_duration(Duration::from_secs(d)).to_string()
}

pub async fn run(c: &HttpClient, cmd: WdPostCmd, json: bool) -> Result<()> {
    match cmd {
        WdPostCmd::List { all, detail } => {
            let mut jobs = c.wdpost_all_jobs().await.map_err(rpc)?;
            if !all {
                jobs.jobs.retain(|b| {
                    !(b.job.state == JobState::Finished && b.job.error_reason.is_empty())
                });
            }
            if json {
                return print_json(&jobs);
            }
            let now = damocles_manager::post::jobs::now();
            let header: &[&str] = if detail {
                &[
                    "JobID",
                    "Prefix",
                    "Miner",
                    "DDL",
                    "Partitions",
                    "Sectors",
                    "Worker",
                    "State",
                    "Try",
                    "CreateAt",
                    "StartedAt",
                    "HeartbeatAt",
                    "FinishedAt",
                    "UpdatedAt",
                    "Error",
                ]
            } else {
                &[
                    "JobID",
                    "MinerID",
                    "DDL",
                    "Partitions",
                    "Sectors",
                    "Worker",
                    "State",
                    "Try",
                    "CreateAt",
                    "Elapsed",
                    "Heartbeat",
                    "Error",
                ]
            };
            let mut t = table(header);
            for b in &jobs.jobs {
                let j = &b.job;
                let tries = if j.try_num >= jobs.max_try {
                    format!("{}(Max)", j.try_num)
                } else {
                    j.try_num.to_string()
                };
                let parts = j
                    .partitions
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let state = display_state(b);
                let row: Vec<String> = if detail {
                    vec![
                        j.id.clone(),
                        serde_json::to_value(j.state)?
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        j.input.miner_id.to_string(),
                        j.deadline_idx.to_string(),
                        parts,
                        b.sectors.to_string(),
                        j.worker_name.clone(),
                        state,
                        tries,
                        at(j.created_at),
                        at(j.started_at),
                        at(j.heartbeat_at),
                        at(j.finished_at),
                        at(j.updated_at),
                        j.error_reason.clone(),
                    ]
                } else {
                    let elapsed = match j.state {
                        _ if j.started_at == 0 => "-".into(),
                        JobState::Finished => {
                            format!("{}(done)", secs(j.finished_at.saturating_sub(j.started_at)))
                        }
                        _ => secs(now.saturating_sub(j.started_at)),
                    };
                    let heartbeat = if j.state == JobState::Running {
                        secs(now.saturating_sub(j.heartbeat_at))
                    } else {
                        "-".into()
                    };
                    vec![
                        j.id.clone(),
                        j.input.miner_id.to_string(),
                        j.deadline_idx.to_string(),
                        parts,
                        b.sectors.to_string(),
                        j.worker_name.clone(),
                        state,
                        tries,
                        at(j.created_at),
                        elapsed,
                        heartbeat,
                        j.error_reason.clone(),
                    ]
                };
                t.add_row(row);
            }
            println!("{t}");
        }
        WdPostCmd::Reset { ids } => {
            for id in ids {
                c.wdpost_reset_job(id)
                    .await
                    .map_err(|e| anyhow!("reset wdpost job: {e}"))?;
            }
        }
        WdPostCmd::Remove { ids } => {
            for id in ids {
                c.wdpost_remove_job(id)
                    .await
                    .map_err(|e| anyhow!("remove wdpost job: {e}"))?;
            }
        }
        WdPostCmd::RemoveAll { really_do_it } => {
            if !really_do_it {
                println!("Pass --really-do-it to actually execute this action");
                return Ok(());
            }
            for b in c.wdpost_all_jobs().await.map_err(rpc)?.jobs {
                c.wdpost_remove_job(b.job.id.clone())
                    .await
                    .map_err(|e| anyhow!("remove wdpost job: {e}"))?;
                println!("wdpost job {} removed", b.job.id);
            }
        }
    }
    Ok(())
}
