//! Prometheus metrics on `/metrics`. Every RPC method is counted and timed the
//! same way (by the RPC guard); the sealer and chain add their own counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub method: String,
    /// `ok`, `error` or `denied`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MinerLabels {
    pub miner: String,
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub rpc_calls: Family<CallLabels, Counter>,
    pub rpc_seconds: HistogramFamily,
    pub sectors_allocated: Family<MinerLabels, Counter>,
    pub messages_pushed: Family<MethodLabels, Counter>,
    pub chain_head: Gauge,
}

fn latency_histogram() -> Histogram {
    // 50µs .. ~3s
    Histogram::new(exponential_buckets(0.00005, 3.0, 11))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("damocles_manager");
        let rpc_calls = Family::<CallLabels, Counter>::default();
        let rpc_seconds: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let sectors_allocated = Family::<MinerLabels, Counter>::default();
        let messages_pushed = Family::<MethodLabels, Counter>::default();
        let chain_head = Gauge::default();
        registry.register(
            "rpc_calls",
            "JSON-RPC calls by method and outcome",
            rpc_calls.clone(),
        );
        registry.register(
            "rpc_seconds",
            "JSON-RPC call latency by method",
            rpc_seconds.clone(),
        );
        registry.register(
            "sectors_allocated",
            "Sector numbers handed out, by miner",
            sectors_allocated.clone(),
        );
        registry.register(
            "chain_messages_pushed",
            "Messages sent to the chain, by actor method",
            messages_pushed.clone(),
        );
        registry.register(
            "chain_head_epoch",
            "Height of the chain head",
            chain_head.clone(),
        );
        Metrics {
            registry,
            rpc_calls,
            rpc_seconds,
            sectors_allocated,
            messages_pushed,
            chain_head,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
