//! Pipeline throughput of the worker daemon against the limit of this machine.
//! Run: `cargo bench -p damocles-e2e --bench worker_pipeline --profile dev`
//! (`THREADS`, default 2; `SECTORS`, default 4).
//!
//! 1. The limit: one 2KiB CC sector sealed with direct filecoin-proofs-api
//!    calls in this process (add piece, tree-d, PC1, PC2, C1, C2), its CPU
//!    seconds measured with getrusage. A machine with `cores` cores can do
//!    at most `3600 / (cpu_seconds / cores)` such sectors an hour.
//! 2. The pipeline: a devnet manager and `damocles-worker daemon` with
//!    `THREADS` sealing threads (pc1/pc2 in the worker's own children, c2 in
//!    the verified-c2 example) sealing `SECTORS` sectors to active on chain;
//!    wall time from the worker's start to the last sector finalized.
//!
//! Prints sectors per hour for both and the ratio. Part 1 runs first so the
//! two never share the cores.

use std::time::{Duration, Instant};

use damocles_api::SectorID;
use damocles_e2e::manager::{init_home, ManagerProcess};
use damocles_e2e::proof_params;
use damocles_e2e::sealing::LocalSector;
use damocles_e2e::worker::{kill_group, spawn, wait_for, write_config_with, Setup};
use fil_params::ParamSet;

/// User + system CPU time of this process (all its threads) so far.
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain integers; all zeros is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass, which outlives the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let threads = env_or("THREADS", 2) as usize;
    let sectors = env_or("SECTORS", 4);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    proof_params(&[ParamSet::Porep2KiB]);

    // 1. Direct calls: the CPU one sector costs.
    let dir = tempfile::tempdir().unwrap();
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let mut s = LocalSector::new(&dir.path().join("direct"), 1000, 1);
    s.pre_commit([7; 32]);
    let proof = s.commit([7; 32], [9; 32]);
    assert!(!proof.is_empty());
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    let limit = 3600.0 / (cpu.as_secs_f64() / cores as f64);
    println!(
        "direct calls: one sector {wall:.1?} wall, {cpu:.1?} CPU on {cores} cores -> limit {limit:.1} sectors/hour"
    );

    // 2. The worker daemon with `threads` threads.
    let home = dir.path().join("manager");
    init_home(&home, |c| {
        c.replace("# MaxNumber = 1000000", &format!("MaxNumber = {sectors}"))
    });
    let m = ManagerProcess::start(&home);
    let setup = Setup {
        threads,
        ..Setup::default()
    };
    let cfg = write_config_with(dir.path(), &m, &m.token("write"), &setup);
    let log = dir.path().join("worker.log");
    let started = Instant::now();
    let mut worker = spawn(&cfg, &log);
    for number in 1..=sectors {
        let id = SectorID {
            miner: 1000,
            number,
        };
        wait_for(&m, &mut worker, &log, id, Duration::from_secs(3600), |s| {
            s.finalized
        })
        .await;
    }
    let took = started.elapsed();
    kill_group(&mut worker);
    let rate = sectors as f64 * 3600.0 / took.as_secs_f64();
    println!(
        "worker daemon: {sectors} sectors with {threads} threads in {took:.1?} -> {rate:.1} sectors/hour"
    );
    println!("ratio to the limit: {:.2}", rate / limit);
}
