//! Processor benchmarks. Run: `cargo bench -p damocles-e2e --bench processors --profile dev`
//! (the dev profile builds every dependency at opt-level 3; see docs/benchmarks.md).
//!
//! 1. Round trip of a trivial task (`sqr`, squares a number) through a child
//!    process, ours (the `sqr` example behind our `Producer`, v1 and v2) against
//!    the anchor: the original damocles vc-processors 0.2.1, its own producer
//!    and consumer, the same task (this binary re-runs itself as that child).
//!    One at a time and 256 in flight, in interleaved rounds so that machine
//!    noise hits both alike; prints requests per second, p50/p99 latency, and
//!    the ratio of the one-at-a-time p50s, ours / original. Ours one at a time
//!    is awaited in a task, as the worker does, and (`block_on`) on the main
//!    thread, outside the runtime's workers.
//! 2. One 2KiB seal + window PoSt three ways in one run: direct
//!    filecoin-proofs-api calls, builtin processors in-process, ext-processors.
//!    Each way runs once unmeasured first so every process has its parameters
//!    loaded. Ratios are against the direct calls.
//!
//! `BENCH_SKIP_SEAL=1` runs only part 1; `ROUNDS` sets its rounds (default 3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use damocles_e2e::{proof_params, workspace_bin};
use example_seal_2kib::{run_dir, seal_and_prove, Children, Mode, NoChain, Report};
use fil_params::ParamSet;
use serde::{Deserialize, Serialize};
use vc_processors::producer::{Producer, ProducerConfig, ProtocolChoice};
use vc_processors::Task;
use vc_processors_orig::core::ext::{BoxedFinalizeHook, BoxedPrepareHook, ProducerBuilder};
use vc_processors_orig::core::Processor as _;

#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct Sqr(u64);
impl Task for Sqr {
    const STAGE: &'static str = "sqr";
    type Output = u64;
}

/// The same task for the original crate, whose traits want `Debug` and a
/// `Copy + Default` processor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct OrigSqr(u64);
impl vc_processors_orig::core::Task for OrigSqr {
    const STAGE: &'static str = "sqr";
    type Output = u64;
}

#[derive(Clone, Copy, Default)]
struct OrigSqrProc;
impl vc_processors_orig::core::Processor<OrigSqr> for OrigSqrProc {
    fn process(&self, OrigSqr(n): OrigSqr) -> anyhow::Result<u64> {
        n.checked_mul(n)
            .ok_or_else(|| anyhow::anyhow!("{n} squared overflows a u64"))
    }
}

type OrigProducer = vc_processors_orig::core::ext::Producer<
    OrigSqr,
    BoxedPrepareHook<OrigSqr>,
    BoxedFinalizeHook<OrigSqr>,
>;

/// The argument by which this binary runs as the original's `sqr` child.
const ORIG_CHILD_ARG: &str = "--orig-sqr-child";

const ONE_AT_A_TIME: usize = 5_000;
const PIPELINED: usize = 50_000;
const ORIG_PIPELINED: usize = 10_000;
const IN_FLIGHT: usize = 256;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One measurement: throughput and latency percentiles.
#[derive(Clone, Copy)]
struct Stats {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn new(mut lat: Vec<Duration>, total: Duration) -> Stats {
        lat.sort();
        Stats {
            rps: lat.len() as f64 / total.as_secs_f64(),
            p50: percentile(&lat, 0.5),
            p99: percentile(&lat, 0.99),
        }
    }

    fn print(&self, who: &str, mode: &str) {
        println!(
            "    {who:<12} {mode:<14} {:>9.0} req/s   p50 {:>9.1?}   p99 {:>9.1?}",
            self.rps, self.p50, self.p99
        );
    }
}

async fn ours(protocol: ProtocolChoice) -> Producer {
    let bin = workspace_bin("example-sqr-processor", "sqr-processor");
    let mut cfg = ProducerConfig::new("sqr", bin, vec![]);
    cfg.protocol = protocol;
    let p = Producer::spawn(cfg).await.expect("spawn sqr-processor");
    for i in 0..1000u64 {
        assert_eq!(p.process(&Sqr(i)).await.unwrap(), i * i);
    }
    p
}

/// Ours, one request at a time, from a task on the runtime (as the worker calls it).
async fn ours_one_at_a_time(p: &Producer) -> Stats {
    let p = p.clone();
    tokio::spawn(async move { ours_in_a_row(&p).await })
        .await
        .unwrap()
}

/// Ours, one request at a time, from wherever it is awaited.
async fn ours_in_a_row(p: &Producer) -> Stats {
    let mut lat = Vec::with_capacity(ONE_AT_A_TIME);
    let started = Instant::now();
    for i in 0..ONE_AT_A_TIME as u64 {
        let t = Instant::now();
        assert_eq!(p.process(&Sqr(i)).await.unwrap(), i * i);
        lat.push(t.elapsed());
    }
    Stats::new(lat, started.elapsed())
}

/// Ours, `IN_FLIGHT` requests in flight at all times.
async fn ours_pipelined(p: &Producer) -> Stats {
    let sem = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(PIPELINED);
    for i in 0..PIPELINED as u64 {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let p = p.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            assert_eq!(p.process(&Sqr(i)).await.unwrap(), i * i);
            drop(permit);
            t.elapsed()
        }));
    }
    let mut lat = Vec::with_capacity(PIPELINED);
    for h in handles {
        lat.push(h.await.unwrap());
    }
    Stats::new(lat, started.elapsed())
}

fn orig() -> Arc<OrigProducer> {
    let exe = std::env::current_exe().expect("this bench's path");
    let p = ProducerBuilder::<BoxedPrepareHook<OrigSqr>, BoxedFinalizeHook<OrigSqr>>::new(
        exe,
        vec![ORIG_CHILD_ARG.to_string()],
    )
    .stable_timeout(Duration::from_secs(5))
    .spawn::<OrigSqr>()
    .expect("spawn the original's child");
    for i in 0..1000u64 {
        assert_eq!(p.process(OrigSqr(i)).unwrap(), i * i);
    }
    Arc::new(p)
}

/// The original, one request at a time, from a thread (its producer blocks).
async fn orig_one_at_a_time(p: &Arc<OrigProducer>) -> Stats {
    let p = p.clone();
    tokio::task::spawn_blocking(move || {
        let mut lat = Vec::with_capacity(ONE_AT_A_TIME);
        let started = Instant::now();
        for i in 0..ONE_AT_A_TIME as u64 {
            let t = Instant::now();
            assert_eq!(p.process(OrigSqr(i)).unwrap(), i * i);
            lat.push(t.elapsed());
        }
        Stats::new(lat, started.elapsed())
    })
    .await
    .unwrap()
}

/// The original, `IN_FLIGHT` threads each with one request in flight at all times.
async fn orig_pipelined(p: &Arc<OrigProducer>) -> Stats {
    let p = p.clone();
    tokio::task::spawn_blocking(move || {
        let next = AtomicU64::new(0);
        let start = std::sync::Barrier::new(IN_FLIGHT + 1);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..IN_FLIGHT)
                .map(|_| {
                    s.spawn(|| {
                        let mut lat = Vec::new();
                        start.wait();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= ORIG_PIPELINED as u64 {
                                return lat;
                            }
                            let t = Instant::now();
                            assert_eq!(p.process(OrigSqr(i)).unwrap(), i * i);
                            lat.push(t.elapsed());
                        }
                    })
                })
                .collect();
            start.wait();
            let started = Instant::now();
            let lat: Vec<Duration> = workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect();
            Stats::new(lat, started.elapsed())
        })
    })
    .await
    .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn round_trips() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let v1 = ours(ProtocolChoice::V1Only).await;
    let v2 = ours(ProtocolChoice::Negotiate).await;
    let orig = orig();
    println!(
        "round trip of a trivial task (sqr) through a child process: ours against the \
         original vc-processors 0.2.1, {rounds} interleaved rounds"
    );
    // Taken before: the original's 256 threads in flight raise it themselves.
    println!("  load average (1, 5, 15 min) before: {}", load_average());
    let (mut r1, mut r2, mut r3, mut pipe1, mut pipe2) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=rounds {
        println!("  round {round}");
        let a = ours_one_at_a_time(&v1).await;
        let b = ours_one_at_a_time(&v2).await;
        // The main thread blocks on the runtime outside its workers: the
        // answer then needs one more thread wake-up (the old way of this bench).
        let c = ours_in_a_row(&v1).await;
        let o = orig_one_at_a_time(&orig).await;
        a.print("ours v1", "one at a time");
        b.print("ours v2", "one at a time");
        c.print("ours v1", "block_on");
        o.print("original", "one at a time");
        let pa = ours_pipelined(&v1).await;
        let pb = ours_pipelined(&v2).await;
        let po = orig_pipelined(&orig).await;
        let in_flight = format!("{IN_FLIGHT} in flight");
        pa.print("ours v1", &in_flight);
        pb.print("ours v2", &in_flight);
        po.print("original", &in_flight);
        let ratio = |x: Stats| x.p50.as_secs_f64() / o.p50.as_secs_f64();
        let speed = |x: Stats| x.rps / po.rps;
        println!(
            "    one at a time, p50 ours/original: v1 {:.2}, v2 {:.2} (block_on {:.2}); \
             {IN_FLIGHT} in flight, req/s ours/original: v1 {:.1}, v2 {:.1}",
            ratio(a),
            ratio(b),
            ratio(c),
            speed(pa),
            speed(pb)
        );
        r1.push(ratio(a));
        r2.push(ratio(b));
        r3.push(ratio(c));
        pipe1.push(speed(pa));
        pipe2.push(speed(pb));
    }
    println!(
        "  median of {rounds} rounds: one at a time, p50 ours/original: v1 {:.2}, v2 {:.2} \
         (block_on {:.2}); {IN_FLIGHT} in flight, req/s ours/original: v1 {:.1}, v2 {:.1}",
        median(r1),
        median(r2),
        median(r3),
        median(pipe1),
        median(pipe2)
    );
}

/// The 1, 5 and 15 minute load averages, to say how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn seal(mode: &Mode, label: &str, base: &std::path::Path, sector: u64) -> Report {
    let dir = run_dir(base, label).unwrap();
    seal_and_prove(mode, &dir, sector, &mut NoChain(sector), &mut |_| {})
        .await
        .unwrap_or_else(|e| panic!("{label}: {e:#}"))
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(ORIG_CHILD_ARG) {
        // The anchor's child: the original consumer, thread per request.
        // It returns an error at the end of its input, which is how it stops.
        let _ = vc_processors_orig::core::ext::run_consumer::<OrigSqr, OrigSqrProc>();
        return;
    }
    // A multi-thread runtime, as the worker daemon runs.
    tokio::runtime::Runtime::new()
        .expect("tokio runtime")
        .block_on(bench());
}

async fn bench() {
    round_trips().await;

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
