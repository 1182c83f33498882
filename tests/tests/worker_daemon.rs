//! The worker daemon end to end with real binaries: a manager with its devnet,
//! and `damocles-worker daemon` whose sealing thread takes a sector from Empty
//! to active on chain, with pc1 and pc2 in the worker's own `processor
//! <stage>` children, c2 in the verified-c2 example ext-processor, the other
//! stages builtin. The devnet verifies the proof. One C2 (~70 s).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::SectorID;
use damocles_e2e::manager::{init_home, ManagerProcess};
use damocles_e2e::{proof_params, workspace_bin};
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
    let token = m.token("write");
    let admin = m.client(Some(&m.token("admin")));

    let worker_bin = workspace_bin("damocles-worker", "damocles-worker");
    let c2_bin = workspace_bin("example-verified-c2", "verified-c2");
    let cfg = dir.path().join("worker.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[worker]
name = "test-worker"

[sector_manager]
rpc_client.addr = "{addr}"
token = "{token}"

[sealing]
allowed_miners = [1000]
seal_interval = "1s"
recover_interval = "1s"
rpc_polling_interval = "300ms"
max_retries = 3

[[sealing_thread]]
location = "{loc}"

[[attached]]
name = "store-1"
location = "{store}"

[[processors.pc1]]
[[processors.pc2]]

[[processors.c2]]
bin = "{c2}"
args = []
"#,
            addr = m.url.trim_end_matches("/rpc/v0"),
            loc = dir.path().join("sealing-1").display(),
            store = home.join("store-1").display(),
            c2 = c2_bin.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("worker.log");
    let mut worker = Command::new(&worker_bin)
        .args(["daemon", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let id = SectorID {
        miner: 1000,
        number: 1,
    };
    let deadline = Instant::now() + Duration::from_secs(400);
    let finished = loop {
        if let Some(s) = admin.find_sector(id).await.unwrap() {
            if s.finalized {
                break s;
            }
        }
        if let Some(status) = worker.try_wait().unwrap() {
            panic!(
                "the worker exited with {status}:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "sector not finished in time:\nworker:\n{}\nmanager:\n{}",
            std::fs::read_to_string(&log).unwrap(),
            m.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = worker.kill();
    let _ = worker.wait();

    assert_eq!(finished.persisted.as_deref(), Some("store-1"));
    let state = finished
        .latest_state
        .expect("the worker reported its states");
    assert_eq!(state.worker.instance, "test-worker");
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
