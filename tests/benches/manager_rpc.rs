//! Manager RPC under load: 1000 concurrent clients (one HTTP connection each)
//! calling AllocateSector, then ReportState, against the real manager binary;
//! then ChainHead from the same clients, first alone and then while an
//! attacker without a token holds 5000 slow-body connections (finding H1).
//! Prints throughput and latency percentiles; docs/benchmarks.md records them.
//!
//! Run: `cargo bench -p damocles-e2e --bench manager_rpc --profile dev`
//! (env CLIENTS, CALLS, SLOW and SECONDS change the load).

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

        let seconds = env("SECONDS", 10) as u64;
        let heads = |conns: Vec<jsonrpsee::http_client::HttpClient>| async move {
            let until = Instant::now() + Duration::from_secs(seconds);
            let tasks: Vec<_> = conns
                .into_iter()
                .map(|c| {
                    tokio::spawn(async move {
                        use damocles_api::cli::ManagerCliApiClient;
                        let mut out = Vec::new();
                        while Instant::now() < until {
                            let t = Instant::now();
                            c.chain_head().await.expect("ChainHead with a token");
                            out.push(t.elapsed());
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        out
                    })
                })
                .collect();
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await.unwrap());
            }
            lat
        };
        let start = Instant::now();
        let lat = heads(conns.clone()).await;
        summarize("ChainHead", lat, start.elapsed());

        let slow = env("SLOW", 5000);
        let authority = manager.authority();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attacker = {
            let stop = std::sync::Arc::clone(&stop);
            tokio::spawn(async move { hold_slow_bodies(&authority, slow, &stop).await })
        };
        // Let the attacker fill its connections first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let start = Instant::now();
        let lat = heads(conns.clone()).await;
        summarize("ChainHead+slow", lat, start.elapsed());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (opened, held) = attacker.await.unwrap();
        println!("attacker: {opened} slow-body connections opened, {held} still open at the end");
    });
}

/// Keeps `n` connections that sent headers without a token and one byte of
/// a 1000-byte body, re-opening each one the server closes, until `stop`.
/// Returns (connections opened, still open at the end).
async fn hold_slow_bodies(
    authority: &str,
    n: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> (usize, usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req =
        format!("POST /rpc/v0 HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 1000\r\n\r\n{{");
    let mut opened = 0;
    let mut held: Vec<tokio::net::TcpStream> = Vec::with_capacity(n);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Drop what the server closed, top up to n.
        let mut open = Vec::with_capacity(n);
        for mut s in held.drain(..) {
            let mut buf = [0u8; 256];
            // Still silent (no EOF, no answer): still held.
            let read = tokio::time::timeout(Duration::from_micros(10), s.read(&mut buf)).await;
            if read.is_err() {
                open.push(s);
            }
        }
        held = open;
        while held.len() < n && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(mut s) = tokio::net::TcpStream::connect(authority).await else {
                break;
            };
            opened += 1;
            if s.write_all(req.as_bytes()).await.is_ok() {
                held.push(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (opened, held.len())
}
