//! PoSt from object storage by ranged reads, in one run, 2KiB and 8MiB:
//!
//! 1. What a window PoSt of one sector fetches from S3 (moto, through the S3
//!    store plugin): bytes and requests, against the sealed file's size and
//!    against the formula (the cache files, plus one 16KiB segment per
//!    distinct challenged segment; the whole file at 2KiB).
//! 2. Window PoSt from S3 (fetch by ranged reads, then prove from the
//!    fetched copy) against from a local directory (prove), same sector,
//!    same challenge, rounds interleaved: the ratio.
//!
//! The sectors are pre-sealed by `daemon init --pre-seal` into a directory
//! store, then copied to S3 with the plugin; the direct calls run here.
//!
//! Run: `cargo bench --workspace --bench post_fetch --profile dev`
//! (env ROUNDS, default 5).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use damocles_api::SectorID;
use damocles_e2e::post::{pre_sealed_replica, MINER};
use damocles_e2e::proof_params;
use damocles_e2e::s3::{s3_plugin, S3Server};
use damocles_objstore::plugin::Plugin;
use damocles_objstore::{ObjectPath, Store};
use fil_params::ParamSet;
use filecoin_proofs_api::{post, PrivateReplicaInfo, RegisteredPoStProof, SectorId};
use vc_processors::sector::{objects, prover_id};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn seed(n: u8) -> [u8; 32] {
    let mut s = [n.wrapping_mul(37).wrapping_add(11); 32];
    s[31] &= 0x3f;
    s
}

struct Sector {
    proof: RegisteredPoStProof,
    size: u64,
    comm_r: [u8; 32],
    local: BTreeMap<SectorId, PrivateReplicaInfo>,
    s3: Arc<dyn Store>,
}

/// One pre-sealed sector of `size_name` (`2KiB`, `8MiB`) in a directory
/// store under `dir`, its objects copied to `s3`'s bucket `bucket`.
async fn sector(dir: &Path, s3: &S3Server, size_name: &str, bucket: &str) -> Sector {
    let (proof, size, replica) = pre_sealed_replica(dir, size_name).await;
    let local = BTreeMap::from([(
        replica.sector_id,
        PrivateReplicaInfo::new(
            proof,
            replica.comm_r,
            replica.cache_dir.clone(),
            replica.sealed_file.clone(),
        ),
    )]);
    s3.create_bucket(bucket);
    let store: Arc<dyn Store> = Arc::new(
        Plugin::load(&s3_plugin())
            .unwrap()
            .open(s3.store_config("bench", bucket))
            .unwrap(),
    );
    // sealed/<sector> under the store root.
    let root = replica.sealed_file.parent().unwrap().parent().unwrap();
    for object in objects::persisted(SectorID::new(MINER, 1), size) {
        let mut f = std::fs::File::open(root.join(&object)).unwrap();
        store
            .put(&ObjectPath::new(&object).unwrap(), &mut f)
            .unwrap();
    }
    Sector {
        proof,
        size,
        comm_r: replica.comm_r,
        local,
        s3: store,
    }
}

/// A window PoSt of the sector from its local files.
fn from_local(s: &Sector, n: u8) -> Duration {
    let started = Instant::now();
    post::generate_window_post(&seed(n), &s.local, prover_id(MINER)).expect("window PoSt");
    started.elapsed()
}

/// A window PoSt of the sector fetched from S3 by ranged reads: the time,
/// the bytes and the requests.
fn from_s3(s: &Sector, n: u8, root: &Path) -> (Duration, u64, u64) {
    let started = Instant::now();
    let stores = BTreeMap::from([(1u64, Arc::clone(&s.s3))]);
    let fetched =
        damocles_post_fetch::fetch_task(root, MINER, s.proof, &seed(n), &[1], &stores).unwrap();
    assert!(fetched.failed.is_empty(), "{:?}", fetched.failed);
    let f = &fetched.sectors[&1];
    let replicas = BTreeMap::from([(
        SectorId::from(1),
        PrivateReplicaInfo::new(
            s.proof,
            s.comm_r,
            f.cache_dir.clone(),
            f.sealed_file.clone(),
        ),
    )]);
    post::generate_window_post(&seed(n), &replicas, prover_id(MINER)).expect("window PoSt");
    (started.elapsed(), f.bytes, f.requests)
}

/// What the formula says a window PoSt fetches of one sector with seed `n`.
fn expected_bytes(s: &Sector, n: u8, cache: u64) -> u64 {
    let ch = damocles_post_fetch::sector_challenges(s.proof, &seed(n), &[1], MINER).unwrap();
    let sealed: u64 = damocles_post_fetch::challenged_ranges(s.size, &ch[&1])
        .iter()
        .map(|(_, len)| len)
        .sum();
    cache + sealed
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
    let s3 = S3Server::start();
    let root = dir.path().join("fetch");
    println!("| sector | sealed file | cache files | fetched per sector (median) | of the sealed file | requests | formula | from S3 / local (median of {rounds}) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, bucket) in [("2KiB", "b2k"), ("8MiB", "b8m")] {
        let s = sector(dir.path(), &s3, name, bucket).await;
        let id = SectorID::new(MINER, 1);
        let cache: u64 = damocles_sector_cache_sizes(&s, id);
        // Warm: parameters loaded, both paths run once.
        from_local(&s, 0);
        from_s3(&s, 0, &root);
        let (mut local, mut remote, mut bytes, mut reqs) = (vec![], vec![], vec![], vec![]);
        for r in 1..=rounds as u8 {
            local.push(from_local(&s, r));
            let (t, b, q) = from_s3(&s, r, &root);
            assert_eq!(b, expected_bytes(&s, r, cache), "round {r}: the formula");
            remote.push(t);
            bytes.push(b);
            reqs.push(q);
        }
        bytes.sort();
        reqs.sort();
        let (lm, rm) = (median(local), median(remote));
        let b = bytes[bytes.len() / 2];
        println!(
            "| {name} | {} | {cache} | {b} | {:.2}% | {} | cache + 16KiB × distinct segments (≤ 10) | {:.3} ({:.0} ms / {:.0} ms) |",
            s.size,
            b as f64 * 100.0 / s.size as f64,
            reqs[reqs.len() / 2],
            rm.as_secs_f64() / lm.as_secs_f64(),
            rm.as_secs_f64() * 1e3,
            lm.as_secs_f64() * 1e3,
        );
    }
}

/// The sizes of the sector's persisted cache files in S3.
fn damocles_sector_cache_sizes(s: &Sector, id: SectorID) -> u64 {
    objects::persisted(id, s.size)
        .iter()
        .filter(|o| o.starts_with("cache/"))
        .map(|o| s.s3.stat(&ObjectPath::new(o).unwrap()).unwrap())
        .sum()
}
