//! PoSt through the manager against the direct filecoin-proofs-api calls, in
//! one run, 2KiB, warm (every way runs once unmeasured first).
//!
//! 1. Window PoSt of one partition (one pre-sealed sector): `SimulateWdPoSt`
//!    on a real manager (sector check, proof, verification, RPC round trip)
//!    with the builtin prover and with an ext-prover (`[[WdPost]]` with no
//!    Bin: `damocles-worker processor window_post`), against
//!    `generate_window_post` on the same sector in this process. Rounds are
//!    interleaved (direct, builtin, ext) so noise hits all alike.
//! 2. Window PoSt through a worker-prover (`--worker-prover` and a
//!    `plan = "wdpost"` worker polling every 100 ms): `SimulateWdPoSt` queues
//!    a job and waits for the worker's proof, against the direct call.
//! 3. Winning PoSt from election to proof: a manager with `--miner` on a
//!    devnet of 8 s blocks electing it every epoch (so proofs never overlap);
//!    the devnet's latency from announcing the election to receiving the
//!    proof, against `generate_winning_post_sector_challenge` +
//!    `generate_winning_post` here, measured once the manager has stopped
//!    (never while it proves, on this 2-core machine).
//!
//! Run: `cargo bench -p damocles-e2e --bench post --profile dev`
//! (env ROUNDS, default 5: window rounds and elections).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::proving::ProvingApiClient;
use damocles_api::wdpost::WdPoStApiClient;
use damocles_api::SectorID;
use damocles_e2e::manager::ManagerProcess;
use damocles_e2e::post::{init_post_home, wdpost_worker, MINER};
use damocles_e2e::proof_params;
use fil_params::ParamSet;
use filecoin_proofs_api::{post, PrivateReplicaInfo, RegisteredPoStProof, SectorId};
use jsonrpsee::http_client::HttpClient;
use vc_processors::sector::{objects, prover_id};

const WINDOW: RegisteredPoStProof = RegisteredPoStProof::StackedDrgWindow2KiBV1_2;
const WINNING: RegisteredPoStProof = RegisteredPoStProof::StackedDrgWinning2KiBV1;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// The one pre-sealed sector of `home` as a replica of `proof` for a direct call.
async fn replica(
    c: &HttpClient,
    home: &Path,
    proof: RegisteredPoStProof,
) -> BTreeMap<SectorId, PrivateReplicaInfo> {
    let id = SectorID::new(MINER, 1);
    let on_chain = c.chain_sector_info(id).await.unwrap().expect("on chain");
    let store = home.join("store-1");
    BTreeMap::from([(
        SectorId::from(1),
        PrivateReplicaInfo::new(
            proof,
            on_chain.comm_r,
            store.join(objects::cache_dir(id)),
            store.join(objects::sealed(id)),
        ),
    )])
}

fn seed(n: u8) -> [u8; 32] {
    let mut s = [n; 32];
    s[31] &= 0x3f;
    s
}

fn direct_window(replicas: &BTreeMap<SectorId, PrivateReplicaInfo>, n: u8) -> Duration {
    let started = Instant::now();
    post::generate_window_post(&seed(n), replicas, prover_id(MINER)).expect("window PoSt");
    started.elapsed()
}

fn direct_winning(replicas: &BTreeMap<SectorId, PrivateReplicaInfo>, n: u8) -> Duration {
    let started = Instant::now();
    let challenged =
        post::generate_winning_post_sector_challenge(WINNING, &seed(n), 1, prover_id(MINER))
            .expect("challenge");
    assert_eq!(challenged, vec![0], "one sector, index 0");
    post::generate_winning_post(&seed(n), replicas, prover_id(MINER)).expect("winning PoSt");
    started.elapsed()
}

/// `SimulateWdPoSt` of the partition holding sector 1: the round trip, and
/// the manager's own time for the proof alone.
async fn through_manager(c: &HttpClient, dl: u64) -> (Duration, Duration) {
    let started = Instant::now();
    let r = c
        .simulate_wdpost(None, dl, 0, false)
        .await
        .expect("simulate");
    let round_trip = started.elapsed();
    assert!(r.verified, "{r:?}");
    (round_trip, Duration::from_millis(r.elapsed_ms))
}

async fn window(rounds: usize, dir: &Path) {
    let builtin_home = dir.join("builtin");
    let ext_home = dir.join("ext");
    for home in [&builtin_home, &ext_home] {
        init_post_home(home, "2s", 1, &["DeadlinesPerPeriod=4"], |t| t);
    }
    // No Bin: `damocles-worker processor window_post` beside the manager.
    std::fs::write(ext_home.join("ext-prover.cfg"), "[[WdPost]]\n").unwrap();
    let builtin = ManagerProcess::start_with(&builtin_home, &[]);
    let ext = ManagerProcess::start_with(&ext_home, &["--ext-prover"]);
    let (bc, ec) = (
        builtin.client(Some(&builtin.token("admin"))),
        ext.client(Some(&ext.token("admin"))),
    );
    let dl_of = |c: HttpClient| async move {
        c.chain_sector_info(SectorID::new(MINER, 1))
            .await
            .unwrap()
            .unwrap()
            .deadline
            .unwrap()
    };
    let (bdl, edl) = (dl_of(bc.clone()).await, dl_of(ec.clone()).await);
    let replicas = replica(&bc, &builtin_home, WINDOW).await;
    let on_blocking = |n: u8| {
        let r = replicas.clone();
        async move {
            tokio::task::spawn_blocking(move || direct_window(&r, n))
                .await
                .unwrap()
        }
    };

    // Warm: parameters loaded in this process, the manager and the child.
    on_blocking(0).await;
    through_manager(&bc, bdl).await;
    through_manager(&ec, edl).await;

    let (mut d, mut b, mut bp, mut e, mut ep) = (vec![], vec![], vec![], vec![], vec![]);
    for n in 1..=rounds {
        d.push(on_blocking(n as u8).await);
        let (rt, proof) = through_manager(&bc, bdl).await;
        b.push(rt);
        bp.push(proof);
        let (rt, proof) = through_manager(&ec, edl).await;
        e.push(rt);
        ep.push(proof);
        println!(
            "window round {n}: direct {}  builtin {} (prover {})  ext {} (prover {})",
            ms(d[n - 1]),
            ms(b[n - 1]),
            ms(bp[n - 1]),
            ms(e[n - 1]),
            ms(ep[n - 1])
        );
    }
    let (d, b, e) = (median(d), median(b), median(e));
    println!(
        "window PoSt, one 2KiB partition, median of {rounds}: direct {}, through the manager builtin {} (ratio {:.3}), ext-prover {} (ratio {:.3}); prover alone: builtin {}, ext {}",
        ms(d),
        ms(b),
        b.as_secs_f64() / d.as_secs_f64(),
        ms(e),
        e.as_secs_f64() / d.as_secs_f64(),
        ms(median(bp)),
        ms(median(ep)),
    );
}

/// Window PoSt through a worker-prover: `SimulateWdPoSt` on a manager with
/// `--worker-prover` queues a job, a `plan = "wdpost"` worker polling every
/// 100 ms takes, proves and finishes it; the job is removed after each round
/// so the next one is proven again (the same challenge gives the same job).
async fn worker_round_trip(rounds: usize, dir: &Path) {
    let home = dir.join("worker-prover");
    init_post_home(&home, "2s", 1, &["DeadlinesPerPeriod=4"], |t| t);
    let m = ManagerProcess::start_with(&home, &["--worker-prover"]);
    let (mut worker, _) = wdpost_worker(dir, &m, "bench-worker", "", "100ms");
    let c = m.client(Some(&m.token("admin")));
    let dl = c
        .chain_sector_info(SectorID::new(MINER, 1))
        .await
        .unwrap()
        .unwrap()
        .deadline
        .unwrap();
    let replicas = replica(&c, &home, WINDOW).await;
    let direct = |n: u8| {
        let r = replicas.clone();
        async move {
            tokio::task::spawn_blocking(move || direct_window(&r, n))
                .await
                .unwrap()
        }
    };
    let through_worker = || async {
        let started = Instant::now();
        let r = c
            .simulate_wdpost(None, dl, 0, true)
            .await
            .expect("simulate");
        let took = started.elapsed();
        assert!(r.verified, "{r:?}");
        for j in c.wdpost_all_jobs().await.unwrap().jobs {
            c.wdpost_remove_job(j.job.id).await.unwrap();
        }
        took
    };
    direct(0).await;
    through_worker().await;
    let (mut d, mut w) = (vec![], vec![]);
    for n in 1..=rounds {
        d.push(direct(n as u8).await);
        w.push(through_worker().await);
        println!(
            "worker-prover round {n}: direct {}  job queued -> proof back {}",
            ms(d[n - 1]),
            ms(w[n - 1])
        );
    }
    let (d, w) = (median(d), median(w));
    println!(
        "window PoSt through a worker-prover, median of {rounds}: direct {}, job round trip {} (ratio {:.3})",
        ms(d),
        ms(w),
        w.as_secs_f64() / d.as_secs_f64()
    );
    damocles_e2e::worker::kill_group(&mut worker);
}

async fn winning(rounds: usize, dir: &Path) {
    let home = dir.join("winning");
    init_post_home(
        &home,
        "8s",
        1,
        &["DeadlinesPerPeriod=4", "ElectionRatePercent=100"],
        |t| t,
    );
    let m = ManagerProcess::start_with(&home, &["--miner", "--warmup", "true"]);
    let c = m.client(Some(&m.token("read")));
    let replicas = replica(&c, &home, WINNING).await;
    let direct = |n: u8| {
        let r = replicas.clone();
        async move {
            tokio::task::spawn_blocking(move || direct_winning(&r, n))
                .await
                .unwrap()
        }
    };
    let start = c.chain_head().await.unwrap().height;
    // Elections from the next epoch on; the first one unmeasured (warm).
    let latencies: Vec<Duration> = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let blocks = c.proving_blocks(None, 1000).await.unwrap();
        let done: Vec<_> = blocks
            .iter()
            .filter(|b| b.epoch > start + 1 && b.outcome != "Pending")
            .collect();
        if done.len() > rounds {
            let mut v = Vec::new();
            for b in done.iter().skip(1).take(rounds) {
                assert_eq!(b.outcome, "Won", "{b:?}\n{}", m.log_text());
                v.push(Duration::from_millis(b.latency_ms.unwrap()));
            }
            break v;
        }
    };
    drop(m);
    // Direct, warm, with the manager gone (both cores free, as it had them).
    direct(0).await;
    let mut d = Vec::new();
    for n in 1..=rounds {
        d.push(direct(n as u8).await);
    }
    println!(
        "winning PoSt elections (latency, announcement to proof): {}",
        latencies
            .iter()
            .map(|l| ms(*l))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "winning PoSt direct: {}",
        d.iter().map(|l| ms(*l)).collect::<Vec<_>>().join(", ")
    );
    let (l, d) = (median(latencies), median(d));
    println!(
        "winning PoSt, 2KiB, median of {rounds}: direct {}, election to proof through the manager {} (ratio {:.3})",
        ms(d),
        ms(l),
        l.as_secs_f64() / d.as_secs_f64()
    );
}

fn main() {
    proof_params(&[ParamSet::WindowPost2KiB, ParamSet::WinningPost2KiB]);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        window(rounds, dir.path()).await;
        worker_round_trip(rounds, dir.path()).await;
        winning(rounds, dir.path()).await;
    });
}
