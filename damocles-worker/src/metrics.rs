//! Prometheus metrics on `[metrics] http_listen` (`GET /metrics`), when
//! `[metrics] enable = true`: how long each stage takes, what the sealing
//! threads are doing, how often ext-processors had to be restarted, and how
//! sectors ended. Every series carries the `worker_name` label.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::processors::StageSeconds;
use crate::sealing::ctrl::{self, Ctrl, ThreadState};

/// Restarts of each stage's ext-processors so far, read at scrape time.
pub type RestartCounts = Box<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessorLabels {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `finished` or `aborted`.
    outcome: String,
}

/// How sectors left the sealing threads: kept by the threads' loop, shown
/// on `/metrics`. Cheap to clone.
#[derive(Clone, Default)]
pub struct SectorOutcomes(Family<OutcomeLabels, Counter>);

impl SectorOutcomes {
    pub fn count(&self, outcome: &str) {
        self.0
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// Everything `/metrics` shows. Thread states and restarts are read from
/// their owners at scrape time, so they are never stale.
pub struct WorkerMetrics {
    registry: Registry,
    threads: Family<StateLabels, Gauge>,
    restarts: Family<ProcessorLabels, Counter>,
    ctrls: Vec<Arc<Ctrl>>,
    restart_counts: RestartCounts,
}

impl WorkerMetrics {
    pub fn new(
        worker_name: &str,
        ctrls: Vec<Arc<Ctrl>>,
        stage_seconds: StageSeconds,
        restart_counts: RestartCounts,
        sectors: SectorOutcomes,
    ) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "damocles_worker",
            [("worker_name".into(), worker_name.to_string().into())].into_iter(),
        );
        let threads = Family::<StateLabels, Gauge>::default();
        let restarts = Family::<ProcessorLabels, Counter>::default();
        registry.register(
            "stage_seconds",
            "Time spent in each sealing stage, by outcome",
            stage_seconds,
        );
        registry.register(
            "threads",
            "Sealing threads by state (idle, running, waiting, paused)",
            threads.clone(),
        );
        registry.register(
            "processor_restarts",
            "Restarts of each stage's ext-processors since the worker started",
            restarts.clone(),
        );
        registry.register(
            "sectors",
            "Sectors that left a sealing thread, by outcome",
            sectors.0,
        );
        WorkerMetrics {
            registry,
            threads,
            restarts,
            ctrls,
            restart_counts,
        }
    }

    /// The Prometheus text format, with thread states and restarts as of now.
    pub fn render(&self) -> String {
        let counts = ctrl::summary(&self.ctrls);
        for state in ThreadState::NAMES {
            self.threads
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(counts.get(state) as i64);
        }
        // The producers count; the counter catches up with them.
        for (stage, n) in (self.restart_counts)() {
            let c = self.restarts.get_or_create(&ProcessorLabels { stage });
            c.inc_by(n.saturating_sub(c.get()));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` on `addr`; other paths get 404. Returns the bound
/// address (for port 0).
pub async fn serve(addr: SocketAddr, metrics: Arc<WorkerMetrics>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("key metrics.http_listen: listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = Arc::clone(&metrics);
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move {
                    let (status, body) = match req.uri().path() {
                        "/metrics" => (200, metrics.render()),
                        other => (
                            404,
                            format!("no such path {other:?}; metrics are at /metrics\n"),
                        ),
                    };
                    hyper::Response::builder()
                        .status(status)
                        .header("content-type", "text/plain; version=0.0.4")
                        .body(Full::new(Bytes::from(body)))
                }
            });
            tokio::spawn(async move {
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    warn!(error = %e, "metrics: connection failed");
                }
            });
        }
    });
    Ok(bound)
}
