//! The worker daemon end to end with real binaries: a manager with its devnet,
//! and `damocles-worker daemon` whose sealing thread takes a sector from Empty
//! to active on chain, with pc1 and pc2 in the worker's own `processor
//! <stage>` children, c2 in the verified-c2 example ext-processor, the other
//! stages builtin. The devnet verifies the proof. One C2 (~70 s).

use std::time::Duration;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::SectorID;
use damocles_e2e::manager::{init_home, ManagerProcess};
use damocles_e2e::proof_params;
use damocles_e2e::worker::{kill_group, spawn, wait_for, write_config};
use fil_params::ParamSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_seals_a_sector_to_active_through_ext_processors() {
    proof_params(&[ParamSet::Porep2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    // One sector only: the manager stops allocating after number 1.
    init_home(&home, |c| {
        c.replace("# MaxNumber = 1000000", "MaxNumber = 1")
    });
    let m = ManagerProcess::start(&home);
    let cfg = write_config(dir.path(), &m, &m.token("write"));
    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);

    let id = SectorID {
        miner: 1000,
        number: 1,
    };
    let finished = wait_for(&m, &mut worker, &log, id, Duration::from_secs(400), |s| {
        s.finalized
    })
    .await;
    kill_group(&mut worker);

    assert_eq!(finished.persisted.as_deref(), Some("store-1"));
    let state = finished
        .latest_state
        .expect("the worker reported its states");
    assert_eq!(state.worker.instance, "test-worker");
    let admin = m.client(Some(&m.token("admin")));
    let chain = admin
        .chain_sector_info(id)
        .await
        .unwrap()
        .expect("on chain");
    assert_eq!(chain.state, "Active", "the devnet verified the proof");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("sector finished"), "{log}");
    assert!(
        !dir.path().join("sealing-1/data/sealed/s-t01000-1").exists(),
        "local files wiped after the proof landed"
    );
    assert!(home.join("store-1/sealed/s-t01000-1").exists());
}
