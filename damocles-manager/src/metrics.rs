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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub miner: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoStLabels {
    /// `window` or `winning`.
    pub kind: String,
    /// `builtin` or `ext`.
    pub prover: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// `window` or `winning`.
    pub kind: String,
    /// The persist store read from.
    pub store: String,
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub rpc_calls: Family<CallLabels, Counter>,
    pub rpc_seconds: HistogramFamily,
    pub sectors_allocated: Family<MinerLabels, Counter>,
    pub messages_pushed: Family<MethodLabels, Counter>,
    pub chain_head: Gauge,
    pub post_deadlines: Family<OutcomeLabels, Counter>,
    pub post_faulty_sectors: Family<MinerLabels, Gauge>,
    pub post_seconds: Family<PoStLabels, Histogram, fn() -> Histogram>,
    pub winning_latency_seconds: Histogram,
    pub blocks: Family<OutcomeLabels, Counter>,
    pub post_fetch_sectors: Family<FetchLabels, Counter>,
    pub post_fetch_bytes: Family<FetchLabels, Counter>,
    pub post_fetch_requests: Family<FetchLabels, Counter>,
}

fn proof_histogram() -> Histogram {
    // 0.1 s .. ~10 min
    Histogram::new(exponential_buckets(0.1, 2.0, 14))
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
        let post_deadlines = Family::<OutcomeLabels, Counter>::default();
        let post_faulty_sectors = Family::<MinerLabels, Gauge>::default();
        let post_seconds: Family<PoStLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(proof_histogram);
        let winning_latency_seconds = proof_histogram();
        let blocks = Family::<OutcomeLabels, Counter>::default();
        let post_fetch_sectors = Family::<FetchLabels, Counter>::default();
        let post_fetch_bytes = Family::<FetchLabels, Counter>::default();
        let post_fetch_requests = Family::<FetchLabels, Counter>::default();
        registry.register(
            "post_fetch_sectors",
            "Sectors whose PoSt files were fetched by ranged reads from a plugin store, by kind and store",
            post_fetch_sectors.clone(),
        );
        registry.register(
            "post_fetch_bytes",
            "Bytes read from plugin stores for PoSt (divide by post_fetch_sectors for bytes per sector)",
            post_fetch_bytes.clone(),
        );
        registry.register(
            "post_fetch_requests",
            "Store requests (stat, ranged get) made for PoSt, by kind and store",
            post_fetch_requests.clone(),
        );
        registry.register(
            "post_deadlines",
            "Window PoSt deadlines with sectors, by miner and outcome (proven, missed)",
            post_deadlines.clone(),
        );
        registry.register(
            "post_faulty_sectors",
            "Sectors the chain holds faulty, by miner",
            post_faulty_sectors.clone(),
        );
        registry.register(
            "post_proof_seconds",
            "Time to generate a PoSt, by kind (window, winning) and prover (builtin, ext)",
            post_seconds.clone(),
        );
        registry.register(
            "winning_post_latency_seconds",
            "Time from an election's announcement to its proof reaching the chain",
            winning_latency_seconds.clone(),
        );
        registry.register(
            "blocks",
            "Elections answered, by miner and outcome (won, missed)",
            blocks.clone(),
        );
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
            post_deadlines,
            post_faulty_sectors,
            post_seconds,
            winning_latency_seconds,
            blocks,
            post_fetch_sectors,
            post_fetch_bytes,
            post_fetch_requests,
        }
    }

    /// One sector's PoSt files fetched from `store`.
    pub fn post_fetch(&self, kind: &str, store: &str, bytes: u64, requests: u64) {
        let labels = FetchLabels {
            kind: kind.into(),
            store: store.into(),
        };
        self.post_fetch_sectors.get_or_create(&labels).inc();
        self.post_fetch_bytes.get_or_create(&labels).inc_by(bytes);
        self.post_fetch_requests
            .get_or_create(&labels)
            .inc_by(requests);
    }

    pub fn post_deadline(&self, miner: &str, outcome: &str) {
        self.post_deadlines
            .get_or_create(&OutcomeLabels {
                miner: miner.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn post_seconds(&self, kind: &str, prover: &str, secs: f64) {
        self.post_seconds
            .get_or_create(&PoStLabels {
                kind: kind.into(),
                prover: prover.into(),
            })
            .observe(secs);
    }

    pub fn set_faulty_sectors(&self, miner: &str, n: u64) {
        self.post_faulty_sectors
            .get_or_create(&MinerLabels {
                miner: miner.into(),
            })
            .set(n as i64);
    }

    pub fn winning_latency(&self, secs: f64) {
        self.winning_latency_seconds.observe(secs);
    }

    pub fn block(&self, miner: &str, outcome: &str) {
        self.blocks
            .get_or_create(&OutcomeLabels {
                miner: miner.into(),
                outcome: outcome.into(),
            })
            .inc();
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
