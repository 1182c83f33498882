//! `daemon init --pre-seal 3`: three CC sectors sealed at init (no C1/C2)
//! are active with power at the devnet's genesis, finalized in the manager
//! with their files in the persist store, the allocator hands out 4 next,
//! and a window PoSt over the persisted files generates and verifies.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::{SectorID, SectorState};
use damocles_devnet::{Devnet, Policy};
use damocles_e2e::manager::{allocate_one, init_home_with, ManagerProcess};
use damocles_e2e::proof_params;
use damocles_manager::db::Db;
use damocles_manager::home::Home;
use fil_params::ParamSet;
use filecoin_proofs_api::{post, PrivateReplicaInfo, PublicReplicaInfo, RegisteredPoStProof};
use vc_processors::sector::{objects, persisted_cache_files, prover_id};

const MINER: u64 = 1000;
const WINDOW_PROOF: RegisteredPoStProof = RegisteredPoStProof::StackedDrgWindow2KiBV1_2;

/// The devnet's miner as init left it (read before the daemon holds the database).
fn genesis_power(home: &Path) -> (u64, usize) {
    let db = Db::open(&Home::new(home).database()).expect("open the database");
    let devnet =
        Devnet::open(db.raw(), Duration::from_secs(1), Policy::default(), &[]).expect("devnet");
    let state = devnet.miner_state(MINER).expect("miner state");
    let active = state.sectors.values().filter(|s| !s.faulty).count();
    (state.power, active)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_sealed_sectors_are_active_finalized_persisted_and_provable() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 1 s blocks: the sectors' first deadline closes 40 s or more after init.
    let out = init_home_with(&home, "1s", &["--pre-seal", "3"]);
    assert!(out.contains("pre-sealed:  3 sector(s)"), "{out}");
    assert!(!home.join("pre-seal").exists(), "scratch dir removed");
    assert_eq!(genesis_power(&home), (3 * 2048, 3));

    let m = ManagerProcess::start(&home);
    let c = m.client(Some(&m.token("admin")));

    let listed: Vec<SectorState> = serde_json::from_str(
        &m.cli(&["util", "sealer", "sectors", "list", "--all", "--json"])
            .unwrap(),
    )
    .expect("sectors list --json");
    assert_eq!(listed.len(), 3, "{listed:?}");
    let store = home.join("store-1");
    for (s, n) in listed.iter().zip(1..) {
        let id = SectorID::new(MINER, n);
        assert_eq!(s.id, id);
        assert_eq!(s.phase(), "finalized", "{s:?}");
        assert_eq!(s.persisted.as_deref(), Some("store-1"));
        let pre = s.pre.as_ref().expect("precommit info");
        assert_eq!(s.ticket.as_ref(), Some(&pre.ticket));

        let chain = c.chain_sector_info(id).await.unwrap().expect("on chain");
        assert_eq!(chain.state, "Active", "{chain:?}");
        assert_eq!(chain.comm_r, pre.comm_r);

        for object in objects::persisted(id, 2048) {
            let len = std::fs::metadata(store.join(&object))
                .unwrap_or_else(|e| panic!("{object}: {e}"))
                .len();
            assert!(len > 0, "{object} is empty");
        }
        let sealed_len = std::fs::metadata(store.join(objects::sealed(id)))
            .unwrap()
            .len();
        assert_eq!(sealed_len, 2048);
        let cache: Vec<_> = std::fs::read_dir(store.join(objects::cache_dir(id)))
            .unwrap()
            .collect();
        assert_eq!(
            cache.len(),
            persisted_cache_files(2048).len(),
            "only the files PoSt needs"
        );
    }

    let next = allocate_one(&c, MINER).await.expect("a sector");
    assert_eq!(next.id, SectorID::new(MINER, 4));

    // The point of pre-sealing: the persisted sectors prove.
    proof_params(&[ParamSet::WindowPost2KiB]);
    let mut private = BTreeMap::new();
    let mut public = BTreeMap::new();
    for s in &listed {
        let comm_r = s.pre.as_ref().unwrap().comm_r;
        let number = s.id.number.into();
        private.insert(
            number,
            PrivateReplicaInfo::new(
                WINDOW_PROOF,
                comm_r,
                store.join(objects::cache_dir(s.id)),
                store.join(objects::sealed(s.id)),
            ),
        );
        public.insert(number, PublicReplicaInfo::new(WINDOW_PROOF, comm_r));
    }
    let mut seed = [7u8; 32];
    seed[31] &= 0x3f;
    let proofs = tokio::task::spawn_blocking(move || {
        post::generate_window_post(&seed, &private, prover_id(MINER))
    })
    .await
    .unwrap()
    .expect("window PoSt over the pre-sealed sectors");
    let proofs: Vec<_> = proofs.iter().map(|(t, p)| (*t, &p[..])).collect();
    assert!(
        post::verify_window_post(&seed, &proofs, &public, prover_id(MINER)).unwrap(),
        "the window PoSt does not verify"
    );
}
