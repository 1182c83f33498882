//! Prometheus metrics on `[metrics] http_listen` (`GET /metrics`), when
//! `[metrics] enable = true`: how long each stage takes, what the sealing
//! threads are doing, how often ext-processors had to be restarted, and how
//! sectors ended. Every series carries the `worker_name` label.

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
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::processors::Processors;
use crate::sealing::ctrl::{Ctrl, ThreadState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
    /// `ok` or `error`.
    pub outcome: String,
}

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

type HistogramFamily = Family<StageLabels, Histogram, fn() -> Histogram>;

/// Stage timings, recorded by whoever runs a stage (the processors, C1 in the
/// sealing thread). Cheap to clone.
#[derive(Clone)]
pub struct StageMetrics {
    seconds: HistogramFamily,
}

fn stage_histogram() -> Histogram {
    // 10 ms .. ~4.4 h: a 2KiB PC1 to a 32GiB PC1.
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

impl Default for StageMetrics {
    fn default() -> Self {
        StageMetrics {
            seconds: Family::new_with_constructor(stage_histogram),
        }
    }
}

impl StageMetrics {
    pub fn observe(&self, stage: &str, ok: bool, took: Duration) {
        self.seconds
            .get_or_create(&StageLabels {
                stage: stage.to_string(),
                outcome: if ok { "ok" } else { "error" }.to_string(),
            })
            .observe(took.as_secs_f64());
    }
}

/// Everything `/metrics` shows. Thread states and restarts are read from
/// their owners at scrape time, so they are never stale.
pub struct WorkerMetrics {
    registry: Registry,
    threads: Family<StateLabels, Gauge>,
    restarts: Family<ProcessorLabels, Counter>,
    ctrls: Vec<Arc<Ctrl>>,
    processors: Arc<Processors>,
}

impl WorkerMetrics {
    pub fn new(
        worker_name: &str,
        ctrls: Vec<Arc<Ctrl>>,
        processors: Arc<Processors>,
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
            processors.stage_metrics().seconds.clone(),
        );
        registry.register(
            "threads",
            "Sealing threads by state (idle, running, paused)",
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
            processors,
        }
    }

    /// The Prometheus text format, with thread states and restarts as of now.
    pub fn render(&self) -> String {
        for state in ["idle", "running", "paused"] {
            let n = self
                .ctrls
                .iter()
                .filter(|c| state_name(&c.info().thread_state) == state)
                .count();
            self.threads
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(n as i64);
        }
        // The producers count; the counter catches up with them.
        for (stage, n) in self.processors.restarts() {
            let c = self.restarts.get_or_create(&ProcessorLabels { stage });
            c.inc_by(n.saturating_sub(c.get()));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn state_name(s: &ThreadState) -> &'static str {
    match s {
        ThreadState::Idle => "idle",
        ThreadState::Running { .. } => "running",
        ThreadState::Waiting { .. } => "waiting",
        ThreadState::Paused { .. } => "paused",
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
