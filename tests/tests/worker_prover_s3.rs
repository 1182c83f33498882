//! A worker-prover proving sectors kept only in S3: the manager
//! (`--poster --worker-prover`) queues each deadline's window PoSt as a job
//! naming the S3 persist store; a `plan = "wdpost"` worker whose
//! `[[attached]]` store of that name is served by the S3 plugin fetches the
//! cache files and the challenged segments by ranged reads, proves, and
//! finishes the job; the devnet verifies every proof. `worker pause` then
//! stops the thread between jobs, and `worker resume` lets it go on.

use std::time::Duration;

use damocles_api::proving::ProvingApiClient;
use damocles_e2e::manager::ManagerProcess;
use damocles_e2e::post::{
    all_logs, deadlines, init_from_config, log_lines, wait_until, wdpost_worker_with,
};
use damocles_e2e::proof_params;
use damocles_e2e::s3::{manager_config_on_s3, S3Server};
use damocles_e2e::worker::{kill_group, list_threads, worker_cli};
use fil_params::ParamSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wdpost_worker_proves_sectors_from_s3_by_ranged_reads() {
    proof_params(&[ParamSet::WindowPost2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let cfg = manager_config_on_s3(dir.path(), &s3, "500ms", "2KiB");
    let home = dir.path().join("home");
    init_from_config(&home, &cfg, 2, &["DeadlinesPerPeriod=4"]);
    let m = ManagerProcess::start_with(&home, &["--poster", "--worker-prover"]);
    let stores = format!(
        "[plugins]\ndir = {:?}\n\n[[attached]]\nname = \"store-1\"\nlocation = \"sectors\"\nplugin_name = \"s3\"\nreadonly = true\nmeta = {}\n",
        dir.path().join("plugins").display().to_string(),
        s3.meta_toml()
    );
    let (mut worker, log) = wdpost_worker_with(dir.path(), &m, "worker-s3", "", "1s", &stores);

    let c = m.client(Some(&m.token("read")));
    let rows = c.proving_deadlines(None).await.unwrap();
    let with_sectors = rows.iter().filter(|r| r.sectors > 0).count() as f64;
    wait_until(
        &m,
        Duration::from_secs(150),
        "every deadline with sectors proven by the worker",
        || {
            let c = c.clone();
            let (m, log) = (&m, &log);
            async move {
                let info = c.proving_info(None).await.unwrap();
                assert_eq!(
                    info.faults,
                    0,
                    "{info:?}\n{}\nworker:\n{}",
                    all_logs(&m.home),
                    std::fs::read_to_string(log).unwrap_or_default()
                );
                assert_eq!(deadlines(m, "missed"), 0.0, "{}", all_logs(&m.home));
                (deadlines(m, "proven") >= with_sectors).then_some(())
            }
        },
    )
    .await;

    // `worker pause` stops the wdpost thread between jobs; `resume` lets it go on.
    let cfg = dir.path().join("worker-s3.toml");
    let table = worker_cli(&cfg, &["list"]).unwrap();
    assert!(table.contains("wdpost"), "{table}");
    worker_cli(&cfg, &["pause", "--index", "0"]).unwrap();
    wait_until(
        &m,
        Duration::from_secs(60),
        "the wdpost thread paused",
        || {
            let state = list_threads(&cfg)[0]["thread_state"]["state"].clone();
            async move { (state == "Paused").then_some(()) }
        },
    )
    .await;
    worker_cli(&cfg, &["resume", "--index", "0"]).unwrap();
    wait_until(
        &m,
        Duration::from_secs(30),
        "the wdpost thread resumed",
        || {
            let state = list_threads(&cfg)[0]["thread_state"]["state"].clone();
            async move { (state != "Paused").then_some(()) }
        },
    )
    .await;
    kill_group(&mut worker);
    let worker_log = std::fs::read_to_string(&log).unwrap();
    let fetched: Vec<&str> = worker_log
        .lines()
        .filter(|l| l.contains("PoSt files fetched from plugin stores by ranged reads"))
        .collect();
    assert!(!fetched.is_empty(), "{worker_log}");
    // 2KiB: the three cache files and the whole 2KiB sealed file.
    assert!(
        fetched.iter().all(|l| l.contains("bytes_per_sector=2584")),
        "{fetched:#?}"
    );
    // The manager proved nothing itself: every proof came from the worker.
    assert!(
        log_lines(&home, &["fetched from plugin stores"]).is_empty(),
        "{}",
        all_logs(&home)
    );
    assert!(!log_lines(&home, &["prover=\"worker\""]).is_empty());
}
