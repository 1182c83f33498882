//! Prometheus metrics on `[metrics] http_listen` (`GET /metrics`), when
//! `[metrics] enable = true`: how long each stage takes, what the sealing
//! threads are doing, how often ext-processors had to be restarted, and how
//! sectors ended. Every series carries the `worker_name` label.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

/// `GET /metrics`; other paths 404.
struct MetricsRoute(Arc<WorkerMetrics>);

impl damocles_gate::Routes for MetricsRoute {
    fn route(
        &self,
        req: &http::request::Parts,
        _: &damocles_gate::Granted,
    ) -> Option<damocles_gate::BoxFuture<jsonrpsee::server::HttpResponse>> {
        let (status, body) = match req.uri.path() {
            "/metrics" => (200, self.0.render()),
            other => (
                404,
                format!("no such path {other:?}; metrics are at /metrics\n"),
            ),
        };
        let resp = http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(jsonrpsee::server::HttpBody::from(body))
            .expect("a valid response");
        Some(Box::pin(async move { resp }))
    }
}

/// Serves `GET /metrics` on `addr` through the gate (its limits and
/// timeouts; no token needed) until the handle is dropped or stopped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<WorkerMetrics>,
    tokens: Arc<damocles_gate::Tokens>,
) -> Result<(SocketAddr, jsonrpsee::server::ServerHandle)> {
    let listener = damocles_gate::bind("metrics (key metrics.http_listen)", addr).await?;
    let endpoint = damocles_gate::Endpoint {
        name: "worker metrics",
        access: damocles_gate::Access {
            tokens,
            anonymous: vec![],
            open_on_loopback: false,
        },
        limits: damocles_gate::Limits {
            max_connections: 64,
            max_untrusted: 64,
            ..Default::default()
        },
        routes: Arc::new(MetricsRoute(metrics)),
        rpc: None,
    };
    damocles_gate::start(listener, endpoint)
}
