//! The worker daemon end to end with real binaries: a manager with its devnet,
//! and `damocles-worker daemon` with two sealing threads that take four
//! sectors from Empty to active on chain, with pc1 and pc2 in the worker's own
//! `processor <stage>` children, c2 in the verified-c2 example ext-processor
//! (one at a time: `limitation.concurrent.c2 = 1`), tree-d from a precomputed
//! CC file (`static_tree_d`), the other stages builtin.
//! The devnet verifies every proof; the worker's `/metrics` counts every stage.
//! Four C2s (~70 s each), one after another.

use std::collections::BTreeSet;
use std::time::Duration;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::SectorID;
use damocles_e2e::manager::http;
use damocles_e2e::manager::{init_home, ManagerProcess};
use damocles_e2e::proof_params;
use damocles_e2e::worker::{
    free_port, generate_static_tree_d, kill_group, sample, spawn, wait_for, write_config_with,
    Setup,
};
use fil_params::ParamSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sealing_threads_seal_four_sectors_to_active_through_ext_processors() {
    proof_params(&[ParamSet::Porep2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    // Four sectors: the manager stops allocating after number 4.
    init_home(&home, |c| {
        c.replace("# MaxNumber = 1000000", "MaxNumber = 4")
    });
    let m = ManagerProcess::start(&home);
    let mut setup = Setup {
        threads: 2,
        ..Setup::default()
    };
    let metrics = format!("127.0.0.1:{}", free_port());
    // tree-d from a precomputed CC file: four proofs the devnet verifies
    // show the file is right.
    let static_tree_d = generate_static_tree_d(&dir.path().join("static"));
    setup.processors += &format!(
        "\n[processors.limitation.concurrent]\nc2 = 1\n\n[processors.static_tree_d]\n2KiB = \"{}\"\n\n[metrics]\nenable = true\nhttp_listen = \"{metrics}\"\n",
        static_tree_d.display()
    );
    let cfg = write_config_with(dir.path(), &m, &m.token("write"), &setup);
    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);

    let admin = m.client(Some(&m.token("admin")));
    let mut locations = BTreeSet::new();
    for number in 1..=4 {
        let id = SectorID {
            miner: 1000,
            number,
        };
        let finished = wait_for(&m, &mut worker, &log, id, Duration::from_secs(900), |s| {
            s.finalized
        })
        .await;
        assert_eq!(finished.persisted.as_deref(), Some("store-1"));
        let state = finished
            .latest_state
            .expect("the worker reported its states");
        assert_eq!(state.worker.instance, "test-worker");
        locations.insert(state.worker.location);
        let chain = admin
            .chain_sector_info(id)
            .await
            .unwrap()
            .expect("on chain");
        assert_eq!(
            chain.state, "Active",
            "the devnet verified the proof of {id:?}"
        );
        assert!(home
            .join(format!("store-1/sealed/s-t01000-{number}"))
            .exists());
    }
    // The thread logs and wipes right after the manager has the sector finalized.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&log)
        .unwrap()
        .matches("sector finished")
        .count()
        < 4
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, text) = http(&metrics, "GET", "/metrics", &[], "");
    kill_group(&mut worker);

    assert_eq!(status, 200, "{text}");
    for stage in ["add_pieces", "pc1", "pc2", "c1", "c2", "transfer"] {
        let labels = [
            &format!("stage=\"{stage}\"") as &str,
            "outcome=\"ok\"",
            "worker_name=\"test-worker\"",
        ];
        assert_eq!(
            sample(&text, "damocles_worker_stage_seconds_count", &labels),
            Some(4.0),
            "{stage} ran once per sector:\n{text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "damocles_worker_sectors_total",
            &["outcome=\"finished\""]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "damocles_worker_stage_seconds_count",
            &["stage=\"tree_d\""]
        ),
        None,
        "tree-d came from the static file:\n{text}"
    );
    let threads: f64 = ["idle", "running", "paused"]
        .iter()
        .filter_map(|s| {
            sample(
                &text,
                "damocles_worker_threads",
                &[&format!("state=\"{s}\"")],
            )
        })
        .sum();
    assert_eq!(threads, 2.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "damocles_worker_processor_restarts_total",
            &["stage=\"c2\""]
        ),
        Some(0.0),
        "{text}"
    );

    assert_eq!(locations.len(), 2, "both threads sealed: {locations:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("sector finished").count(), 4, "{log}");
    for thread in 1..=2 {
        let sealed = dir.path().join(format!("sealing-{thread}/data/sealed"));
        let left: Vec<_> = std::fs::read_dir(&sealed)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "local files wiped after the proofs landed: {left:?}"
        );
    }
}
