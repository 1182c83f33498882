//! A worker killed with SIGKILL, ext-processors and all, in the middle of C2,
//! then started again: the sealing thread resumes from its saved state (it
//! does not seal again from scratch) and the sector still ends active on chain
//! with a proof the devnet verified. Two C2 runs, one after the other.

use std::time::Duration;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::SectorID;
use damocles_e2e::manager::{init_home, ManagerProcess};
use damocles_e2e::proof_params;
use damocles_e2e::worker::{kill_group, spawn, wait_for, write_config};
use fil_params::ParamSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_c2_resumes_and_the_sector_lands() {
    proof_params(&[ParamSet::Porep2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| {
        c.replace("# MaxNumber = 1000000", "MaxNumber = 1")
    });
    let m = ManagerProcess::start(&home);
    let cfg = write_config(dir.path(), &m, &m.token("write"));
    let id = SectorID {
        miner: 1000,
        number: 1,
    };

    let log1 = dir.path().join("worker-1.log");
    let mut worker = spawn(&cfg, &log1);
    let at_c2 = |s: &damocles_api::SectorState| {
        s.latest_state
            .as_ref()
            .is_some_and(|l| l.state_change.next == "C1Done")
    };
    wait_for(&m, &mut worker, &log1, id, Duration::from_secs(120), at_c2).await;
    // C2 takes about a minute: a few seconds in, it is surely running.
    tokio::time::sleep(Duration::from_secs(5)).await;
    kill_group(&mut worker);

    let log2 = dir.path().join("worker-2.log");
    let mut worker = spawn(&cfg, &log2);
    let finished = wait_for(&m, &mut worker, &log2, id, Duration::from_secs(300), |s| {
        s.finalized
    })
    .await;
    kill_group(&mut worker);

    let admin = m.client(Some(&m.token("admin")));
    assert_eq!(
        admin
            .chain_sector_info(id)
            .await
            .unwrap()
            .expect("on chain")
            .state,
        "Active"
    );
    assert!(finished.persisted.is_some());
    let second = std::fs::read_to_string(&log2).unwrap();
    assert!(
        second.contains("from=C1Done to=C2Done"),
        "resumed at C2:\n{second}"
    );
    assert!(
        !second.contains("to=PC1Done"),
        "did not seal again:\n{second}"
    );
}
