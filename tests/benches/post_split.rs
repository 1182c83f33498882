//! A split window PoSt against the single call, in one run: vanilla proofs
//! in this process (`BuiltinProcessor` on `post_vanilla`, from the sector
//! files) and the SNARK in another process (`damocles-worker processor
//! post_snark`, a child on the vc-processors producer, given only the
//! vanilla proofs), against `generate_window_post` here on the same sector
//! and challenge. Rounds are interleaved; every way runs once unmeasured
//! first (parameters loaded here and in the child). 2KiB and 8MiB sectors,
//! pre-sealed by `daemon init --pre-seal`.
//!
//! Run: `cargo bench --workspace --bench post_split --profile dev`
//! (env ROUNDS, default 5).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use damocles_e2e::post::{pre_sealed_replica, MINER};
use damocles_e2e::{proof_params, workspace_bin};
use fil_params::ParamSet;
use filecoin_proofs_api::{post, PrivateReplicaInfo, RegisteredPoStProof};
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::producer::{Producer, ProducerConfig};
use vc_processors::sector::prover_id;
use vc_processors::tasks::{PoStReplicaInfo, PoStSnark, PoStVanilla};
use vc_processors::{Ctx, Processor};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn seed(n: u8) -> [u8; 32] {
    let mut s = [n.wrapping_mul(53).wrapping_add(3); 32];
    s[31] &= 0x3f;
    s
}

fn single(proof: RegisteredPoStProof, r: &PoStReplicaInfo, n: u8) -> Duration {
    let replicas = BTreeMap::from([(
        r.sector_id,
        PrivateReplicaInfo::new(proof, r.comm_r, r.cache_dir.clone(), r.sealed_file.clone()),
    )]);
    let started = Instant::now();
    post::generate_window_post(&seed(n), &replicas, prover_id(MINER)).expect("window PoSt");
    started.elapsed()
}

/// Vanilla here, SNARK in the child: the whole time and the vanilla part.
async fn split(
    child: &Producer,
    proof: RegisteredPoStProof,
    r: &PoStReplicaInfo,
    n: u8,
) -> (Duration, Duration) {
    let started = Instant::now();
    let task = PoStVanilla {
        miner_id: MINER,
        proof_type: proof,
        replicas: vec![r.clone()],
        seed: seed(n),
    };
    let v = tokio::task::spawn_blocking(move || {
        BuiltinProcessor::default()
            .process(task, &Ctx::detached())
            .expect("vanilla proofs")
    })
    .await
    .unwrap();
    let vanilla = started.elapsed();
    let out = child
        .process(&PoStSnark {
            miner_id: MINER,
            proof_type: proof,
            seed: seed(n),
            vanilla_proofs: v.proofs,
        })
        .await
        .expect("SNARK");
    assert_eq!(out.proofs.len(), 1);
    (started.elapsed(), vanilla)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    proof_params(&[ParamSet::WindowPost2KiB, ParamSet::WindowPost8MiB]);
    fil_params::configure_process_env();
    let dir = tempfile::tempdir().unwrap();
    let worker = workspace_bin("damocles-worker", "damocles-worker");
    let child = Producer::spawn(ProducerConfig::new(
        "post_snark",
        &worker,
        vec!["processor".into(), "post_snark".into()],
    ))
    .await
    .expect("start damocles-worker processor post_snark");
    println!("| sector | single call | split: vanilla here + SNARK in a child | of which vanilla | split / single (median of {rounds}) |");
    println!("|---|---|---|---|---|");
    for size in ["2KiB", "8MiB"] {
        let (proof, _, r) = pre_sealed_replica(dir.path(), size).await;
        let on_blocking = |n: u8| {
            let r = r.clone();
            async move {
                tokio::task::spawn_blocking(move || single(proof, &r, n))
                    .await
                    .unwrap()
            }
        };
        on_blocking(0).await;
        split(&child, proof, &r, 0).await;
        let (mut one, mut two, mut van) = (vec![], vec![], vec![]);
        for n in 1..=rounds as u8 {
            one.push(on_blocking(n).await);
            let (t, v) = split(&child, proof, &r, n).await;
            two.push(t);
            van.push(v);
        }
        eprintln!(
            "{size} rounds, single / split ms: {:?}",
            one.iter()
                .zip(&two)
                .map(|(a, b)| (a.as_millis(), b.as_millis()))
                .collect::<Vec<_>>()
        );
        let (a, b, v) = (median(one), median(two), median(van));
        println!(
            "| {size} | {:.0} ms | {:.0} ms | {:.0} ms | **{:.3}** |",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            v.as_secs_f64() * 1e3,
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
}
