//! Processor benchmarks. Run: `cargo bench -p damocles-e2e --bench processors --profile dev`
//! (the dev profile builds every dependency at opt-level 3; see docs/benchmarks.md).
//!
//! 1. Round trip of a trivial task through a child (the `sqr` example), v1 and
//!    v2, one at a time and pipelined: requests per second, p50/p99 latency.
//! 2. One 2KiB seal + window PoSt three ways in one run: direct
//!    filecoin-proofs-api calls, builtin processors in-process, ext-processors.
//!    Each way runs once unmeasured first so every process has its parameters
//!    loaded. Ratios are against the direct calls.
//!
//! `BENCH_SKIP_SEAL=1` runs only part 1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use damocles_e2e::{proof_params, workspace_bin};
use example_seal_2kib::{run_dir, seal_and_prove, Children, Mode, NoChain, Report};
use fil_params::ParamSet;
use serde::{Deserialize, Serialize};
use vc_processors::producer::{Producer, ProducerConfig, ProtocolChoice};
use vc_processors::Task;

#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct Sqr(u64);
impl Task for Sqr {
    const STAGE: &'static str = "sqr";
    type Output = u64;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn round_trips(protocol: ProtocolChoice) {
    let bin = workspace_bin("example-sqr-processor", "sqr-processor");
    let mut cfg = ProducerConfig::new("sqr", bin, vec![]);
    cfg.protocol = protocol;
    let p = Producer::spawn(cfg).await.expect("spawn sqr-processor");
    for i in 0..1000u64 {
        p.process(&Sqr(i)).await.unwrap();
    }

    let n = 5_000;
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n as u64 {
        let t = Instant::now();
        assert_eq!(p.process(&Sqr(i)).await.unwrap(), i * i);
        lat.push(t.elapsed());
    }
    let total = started.elapsed();
    lat.sort();
    println!(
        "  {:<8} one at a time : {:>8.0} req/s   p50 {:>9.1?}   p99 {:>9.1?}",
        format!("{protocol:?}"),
        n as f64 / total.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    let n = 50_000;
    let in_flight = 256;
    let sem = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let p = p.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            assert_eq!(p.process(&Sqr(i)).await.unwrap(), i * i);
            drop(permit);
            t.elapsed()
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for h in handles {
        lat.push(h.await.unwrap());
    }
    let total = started.elapsed();
    lat.sort();
    println!(
        "  {:<8} {in_flight} in flight: {:>8.0} req/s   p50 {:>9.1?}   p99 {:>9.1?}",
        format!("{protocol:?}"),
        n as f64 / total.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

async fn seal(mode: &Mode, label: &str, base: &std::path::Path, sector: u64) -> Report {
    let dir = run_dir(base, label).unwrap();
    seal_and_prove(mode, &dir, sector, &mut NoChain(sector), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{label}: {e:#}"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    println!("round trip of a trivial task (sqr) through a child process");
    round_trips(ProtocolChoice::V1Only).await;
    round_trips(ProtocolChoice::Negotiate).await;

    if std::env::var_os("BENCH_SKIP_SEAL").is_some() {
        return;
    }
    proof_params(&[ParamSet::Porep2KiB, ParamSet::WindowPost2KiB]);
    let base = tempfile_dir();
    let worker = workspace_bin("damocles-worker", "damocles-worker");
    let external = Mode::External(Children::spawn(&worker).await.unwrap());
    println!("\n2KiB seal + window PoSt (warming up: one unmeasured run per way)");
    seal(&external, "warm-ext", &base, 1).await;
    seal(&Mode::Direct, "warm-direct", &base, 1).await;

    let direct = seal(&Mode::Direct, "direct", &base, 2).await;
    let builtin = seal(&Mode::Builtin, "builtin", &base, 3).await;
    let ext = seal(&external, "ext", &base, 4).await;

    println!(
        "  {:<12} {:>12} {:>12} {:>12} {:>8} {:>8}",
        "stage", "direct", "builtin", "ext-proc", "builtin/d", "ext/d"
    );
    for (i, (stage, d)) in direct.timings.iter().enumerate() {
        let b = builtin.timings[i].1;
        let e = ext.timings[i].1;
        println!(
            "  {stage:<12} {:>12.2?} {:>12.2?} {:>12.2?} {:>8.3} {:>8.3}",
            d,
            b,
            e,
            b.as_secs_f64() / d.as_secs_f64(),
            e.as_secs_f64() / d.as_secs_f64()
        );
    }
    let (d, b, e) = (direct.total(), builtin.total(), ext.total());
    println!(
        "  {:<12} {:>12.2?} {:>12.2?} {:>12.2?} {:>8.3} {:>8.3}",
        "total",
        d,
        b,
        e,
        b.as_secs_f64() / d.as_secs_f64(),
        e.as_secs_f64() / d.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&base);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
