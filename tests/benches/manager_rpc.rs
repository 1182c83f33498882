//! Manager RPC under load: 1000 concurrent clients (one HTTP connection each)
//! calling AllocateSector, then ReportState, against the real manager binary.
//! Prints throughput and latency percentiles; docs/benchmarks.md records them.
//!
//! Run: `cargo bench -p damocles-e2e --bench manager_rpc --profile dev`
//! (env CLIENTS and CALLS change the load).

use std::time::{Duration, Instant};

use damocles_api::rpc::SealerApiClient;
use damocles_api::*;
use damocles_e2e::manager::{init_home, ManagerProcess};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn summarize(what: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{what:<15} {:>7} calls in {:>6.2} s = {:>8.0} calls/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
}

fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let clients = env("CLIENTS", 1000);
    let calls = env("CALLS", 5);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| c);
    let manager = ManagerProcess::start(&home);
    let token = manager.token("write");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "manager RPC, {clients} concurrent clients, {calls} calls each, one connection per client"
    );
    rt.block_on(async {
        let conns: Vec<_> = (0..clients).map(|_| manager.client(Some(&token))).collect();
        let spec = AllocateSectorSpec {
            allowed_miners: Some(vec![1000]),
            allowed_proof_types: None,
        };

        let start = Instant::now();
        let tasks: Vec<_> = conns
            .iter()
            .cloned()
            .map(|c| {
                let spec = spec.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for _ in 0..calls {
                        let t = Instant::now();
                        let s = c
                            .allocate_sector(spec.clone(), None)
                            .await
                            .expect("AllocateSector")
                            .expect("a sector");
                        out.push((t.elapsed(), s.id));
                    }
                    out
                })
            })
            .collect();
        let mut lat = Vec::new();
        let mut ids = Vec::new();
        for t in tasks {
            for (d, id) in t.await.unwrap() {
                lat.push(d);
                ids.push(id);
            }
        }
        summarize("AllocateSector", lat, start.elapsed());
        let unique: std::collections::BTreeSet<_> = ids.iter().map(|i| i.number).collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "a sector number was handed out twice"
        );

        let req = ReportStateReq {
            worker: WorkerIdentifier {
                instance: "bench".into(),
                location: "/bench".into(),
            },
            state_change: SectorStateChange {
                prev: "A".into(),
                next: "B".into(),
                event: "Ev".into(),
            },
            failure: None,
        };
        let start = Instant::now();
        let tasks: Vec<_> = conns
            .iter()
            .cloned()
            .zip(ids.chunks(calls).map(|c| c.to_vec()))
            .map(|(c, mine)| {
                let req = req.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for id in mine {
                        let t = Instant::now();
                        c.report_state(id, req.clone()).await.expect("ReportState");
                        out.push(t.elapsed());
                    }
                    out
                })
            })
            .collect();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        summarize("ReportState", lat, start.elapsed());
    });
}
