//! `damocles-worker daemon -c FILE`: the sealing threads of a config, each
//! sealing sectors one after another until the process is stopped.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tracing::{error, info, warn};

use crate::config::{self, Sealing};
use crate::manager_client::{ManagerClient, RetryPolicy};
use crate::metrics::{SectorOutcomes, WorkerMetrics};
use crate::processors::Processors;
use crate::sealing::thread::{Outcome, SealingThread};
use crate::sealing::wdpost::{Turn, WdPostThread};

fn instance_name(cfg: &config::WorkerConfig) -> String {
    cfg.worker.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into())
    })
}

/// `Venus.WorkerPing` every `every`, with the threads' counts.
async fn ping(
    client: ManagerClient,
    name: String,
    admin: std::net::SocketAddr,
    ctrls: Vec<Arc<crate::sealing::ctrl::Ctrl>>,
    every: std::time::Duration,
) {
    use damocles_api::rpc::SealerApiClient;
    loop {
        let counts = crate::sealing::ctrl::summary(&ctrls);
        let info = damocles_api::WorkerInfo {
            name: name.clone(),
            dest: admin.to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: damocles_api::WorkerInfoSummary {
                threads: counts.total,
                empty: counts.idle,
                paused: counts.paused,
                running: counts.running,
                waiting: counts.waiting,
                errors: counts.with_error,
            },
        };
        if let Err(e) = client.raw().worker_ping(info).await {
            warn!(error = %e, "WorkerPing failed");
        }
        tokio::time::sleep(every).await;
    }
}

pub async fn run(config_path: &Path) -> Result<()> {
    let loaded = config::load(config_path)?;
    for key in &loaded.unknown_keys {
        warn!(key = %key, file = %config_path.display(), "unknown config key ignored");
    }
    for key in loaded.config.unsupported() {
        warn!(key = %key, "accepted but not used by this release");
    }
    let cfg = loaded.config;
    cfg.check_paths_logged()?;
    let client = ManagerClient::new(&cfg.sector_manager, RetryPolicy::default())?;
    let exe = std::env::current_exe().context("locate this executable")?;
    let processors = Arc::new(Processors::start(&cfg.processors, &exe).await?);
    let instance = instance_name(&cfg);
    let attached = crate::stores::open(&cfg)?;
    let is_wdpost = |t: &crate::config::SealingThread| t.plan.as_deref() == Some("wdpost");
    let sealers = cfg.sealing_thread.iter().filter(|t| !is_wdpost(t)).count();
    if sealers > 0 && !attached.iter().any(|a| a.writable()) {
        anyhow::bail!(
            "key attached: no writable [[attached]] store could be used; sealed sectors are persisted to one"
        );
    }
    // Every thread opened and every listener bound before any work starts:
    // a taken port stops the daemon before it has touched a sector.
    let mut threads = Vec::new();
    let mut provers = Vec::new();
    for (i, t) in cfg.sealing_thread.iter().enumerate() {
        let sealing = Sealing::resolve(
            &cfg.sealing,
            &t.sealing,
            &format!("sealing_thread[{i}].sealing"),
        )?;
        if is_wdpost(t) {
            provers.push(WdPostThread::new(
                i,
                t.location.clone(),
                sealing,
                instance.clone(),
                client.clone(),
                Arc::clone(&processors),
                attached.clone(),
            )?);
            continue;
        }
        let thread = SealingThread::open(
            i,
            t.location.clone(),
            sealing.clone(),
            instance.clone(),
            client.clone(),
            Arc::clone(&processors),
            attached.clone(),
        )?;
        threads.push((thread, sealing));
    }
    let mut ctrls: Vec<_> = threads.iter().map(|(t, _)| Arc::clone(&t.ctrl)).collect();
    ctrls.extend(provers.iter().map(|p| Arc::clone(&p.ctrl)));
    ctrls.sort_by_key(|c| c.index);
    let host = cfg
        .worker
        .rpc_server
        .host
        .clone()
        .unwrap_or_else(|| "127.0.0.1".into());
    let listen: std::net::SocketAddr = format!("{host}:{}", cfg.worker.rpc_server.port)
        .parse()
        .with_context(|| {
            format!(
                "key worker.rpc_server: {host}:{} is not an address",
                cfg.worker.rpc_server.port
            )
        })?;
    let tokens = crate::admin::AdminFiles::of(config_path).prepare()?;
    let listener = damocles_gate::bind("worker admin RPC (key worker.rpc_server)", listen).await?;
    let (admin_addr, _admin) = crate::admin::serve(
        listener,
        Arc::clone(&tokens),
        crate::admin::Admin {
            threads: ctrls.clone(),
            env: processors.env_overrides().clone(),
        },
    )?;
    let outcomes = SectorOutcomes::default();
    // Held for the life of the daemon: dropping it stops the server.
    let _metrics_server = if let Some(addr) = cfg.metrics.listen()? {
        let restarts = Arc::clone(&processors);
        let metrics = WorkerMetrics::new(
            &instance,
            ctrls.clone(),
            processors.stage_seconds(),
            Box::new(move || restarts.restarts()),
            outcomes.clone(),
        );
        let (bound, server) =
            crate::metrics::serve(addr, Arc::new(metrics), Arc::clone(&tokens)).await?;
        info!(addr = %bound, "metrics on /metrics");
        Some(server)
    } else {
        None
    };
    let count = threads.len() + provers.len();
    for mut prover in provers {
        tokio::spawn(async move {
            loop {
                // `worker pause`: between jobs, never in the middle of one
                // (its heartbeats would stop and the manager fail it).
                if prover.ctrl.pause_requested() {
                    info!(thread = prover.ctrl.index, "wdpost thread paused");
                    prover.ctrl.wait_while_paused(None).await;
                    info!(thread = prover.ctrl.index, "wdpost thread resumed");
                }
                let wait = prover.idle_wait();
                match prover.turn().await {
                    Ok(Turn::Done) => {}
                    Ok(Turn::Idle) => tokio::time::sleep(wait).await,
                    Err(e) => {
                        error!(thread = prover.ctrl.index, error = %format!("{e:#}"), "wdpost thread failed");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });
    }
    for (i, (mut thread, sealing)) in threads.into_iter().enumerate() {
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            loop {
                match thread.run_sector().await {
                    Ok(Outcome::Finished(id)) => {
                        outcomes.count("finished");
                        info!(thread = i, sector = %id, "sector finished");
                        tokio::time::sleep(sealing.seal_interval).await;
                    }
                    Ok(Outcome::Aborted(id, reason)) => {
                        outcomes.count("aborted");
                        warn!(thread = i, sector = %id, %reason, "sector aborted");
                    }
                    Ok(Outcome::Idle) => tokio::time::sleep(sealing.recover_interval).await,
                    Ok(Outcome::Paused(why)) => {
                        error!(thread = i, %why, "sealing thread paused; resume it with `damocles-worker worker resume --index {i}`");
                        if let Err(e) = thread.pause(Some(why)).await {
                            error!(thread = i, error = %format!("{e:#}"), "resuming failed");
                        }
                    }
                    Err(e) => {
                        error!(thread = i, error = %format!("{e:#}"), "sealing thread failed");
                        tokio::time::sleep(sealing.recover_interval).await;
                    }
                }
            }
        });
    }
    tokio::spawn(ping(
        client.clone(),
        instance.clone(),
        admin_addr,
        ctrls,
        cfg.worker.ping_interval,
    ));
    info!(threads = count, manager = %client.url(), %instance, admin = %admin_addr, "damocles-worker sealing");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupted, stopping"),
        _ = term.recv() => info!("terminated, stopping"),
    }
    Ok(())
}
