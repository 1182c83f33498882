//! Window PoSt on worker-provers: `damocles-manager daemon run --poster
//! --worker-prover` queues each deadline's proof as a job; real
//! `damocles-worker daemon` processes with a `plan = "wdpost"` thread take,
//! heartbeat, prove (from the manager's store directory, attached by name)
//! and finish it; the devnet verifies every proof.
//!
//! Worker A's `window_post` processor is the test double told to hang: A
//! takes the first job and is SIGKILLed while it runs. Its heartbeats stop,
//! the manager fails the job ("heartbeat timeout") and hands it out again;
//! worker B proves it and the deadline is proven in time.
//!
//! Two honest workers prove every deadline with sectors over two proving
//! periods: no fault, no miss, every job succeeded at its first try. Worker B
//! mounts the store at another path and attaches another store before it;
//! it resolves the job's store name ("store-1") against its own
//! `[[attached]]` names.

use std::time::Duration;

use damocles_api::proving::ProvingApiClient;
use damocles_api::wdpost::{JobState, WdPoStApiClient};
use damocles_e2e::manager::{cli, ManagerProcess};
use damocles_e2e::post::{
    all_logs, deadlines, init_post_home, log_lines, metric, set_key, wait_until, wdpost_worker,
    wdpost_worker_with,
};
use damocles_e2e::proof_params;
use damocles_e2e::worker::kill_group;
use fil_params::ParamSet;

const DOUBLE: &str = env!("CARGO_BIN_EXE_test-double-processor");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_prover_s_job_is_proven_by_another_in_time() {
    proof_params(&[ParamSet::WindowPost2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 1 s blocks: a job is queued 10 epochs before its deadline opens and
    // must be proven before it closes 20 after; a silent worker is found
    // out within 5 s plus a 10 s sweep.
    init_post_home(&home, "1s", 1, &["DeadlinesPerPeriod=4"], |t| {
        set_key(
            &t,
            "[Common.Proving.WorkerProver]",
            "HeartbeatTimeout",
            "\"5s\"",
        )
    });
    let m = ManagerProcess::start_with(&home, &["--poster", "--worker-prover"]);
    let jobs = m.client(Some(&m.token("read")));

    let hang = format!(
        "[[processors.window_post]]\nbin = \"{DOUBLE}\"\nargs = [\"post\", \"window_post\"]\nenvs = {{ TEST_DOUBLE_POST_PLAN = \"hang\" }}\n"
    );
    let (mut a, a_log) = wdpost_worker(dir.path(), &m, "worker-a", &hang, "1s");
    let first = wait_until(
        &m,
        Duration::from_secs(90),
        "worker A running a job",
        || {
            let jobs = jobs.clone();
            async move {
                let all = jobs.wdpost_all_jobs().await.unwrap();
                all.jobs
                    .into_iter()
                    .find(|j| j.job.state == JobState::Running && j.job.worker_name == "worker-a")
            }
        },
    )
    .await;
    kill_group(&mut a);
    let a_text = std::fs::read_to_string(&a_log).unwrap();
    assert!(a_text.contains("wdpost job allocated"), "{a_text}");

    // B: the real builtin window PoSt.
    let (mut b, b_log) = wdpost_worker(dir.path(), &m, "worker-b", "", "1s");
    let done = wait_until(
        &m,
        Duration::from_secs(90),
        "the job proven by worker B",
        || {
            let jobs = jobs.clone();
            let id = first.job.id.clone();
            async move {
                let all = jobs.wdpost_all_jobs().await.unwrap();
                all.jobs.into_iter().find(|j| {
                    j.job.id == id
                        && j.job.state == JobState::Finished
                        && j.job.error_reason.is_empty()
                })
            }
        },
    )
    .await;
    assert_eq!(
        (done.job.worker_name.as_str(), done.job.try_num),
        ("worker-b", 2),
        "{done:?}"
    );
    assert!(
        !log_lines(&home, &["wdpost job heartbeat timeout", "worker-a"]).is_empty(),
        "{}",
        all_logs(&home)
    );
    wait_until(
        &m,
        Duration::from_secs(60),
        "the deadline proven",
        || async {
            let proven = deadlines(&m, "proven");
            (proven >= 1.0).then_some(())
        },
    )
    .await;
    let c = m.client(Some(&m.token("read")));
    let info = c.proving_info(None).await.unwrap();
    assert_eq!(
        (info.faults, info.power),
        (0, 2048),
        "{info:?}\n{}",
        all_logs(&home)
    );
    assert_eq!(deadlines(&m, "missed"), 0.0, "{}", all_logs(&home));
    assert!(
        metric(
            &m,
            "damocles_manager_post_proof_seconds_count",
            &["prover=\"worker\""]
        ) >= 1.0
    );
    let b_text = std::fs::read_to_string(&b_log).unwrap();
    assert!(b_text.contains("wdpost job proven"), "{b_text}");
    kill_group(&mut b);

    // The operator's view: succeeded jobs only with --all.
    let listed = cli(&home, &["util", "worker", "wdpost", "list", "--all"]);
    let row = listed
        .lines()
        .find(|l| l.contains(&first.job.id))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        row.contains("Succeed") && row.contains("worker-b") && row.contains("2(Max)"),
        "{row}"
    );
    let open = cli(&home, &["util", "worker", "wdpost", "list"]);
    assert!(!open.contains(&first.job.id), "{open}");
    let refused = cli(&home, &["util", "worker", "wdpost", "remove-all"]);
    assert!(refused.contains("--really-do-it"), "{refused}");
    let removed = cli(
        &home,
        &["util", "worker", "wdpost", "remove-all", "--really-do-it"],
    );
    assert!(
        removed.contains(&format!("wdpost job {} removed", first.job.id)),
        "{removed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_provers_prove_every_deadline_over_two_periods() {
    proof_params(&[ParamSet::WindowPost2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 4 deadlines of 20 epochs at 500 ms (a 40 s period), 2 sectors in two
    // deadlines: 4 jobs in two periods.
    init_post_home(&home, "500ms", 2, &["DeadlinesPerPeriod=4"], |t| t);
    let m = ManagerProcess::start_with(&home, &["--poster", "--worker-prover"]);
    // Worker B mounts the same store elsewhere (a symlink) and attaches
    // another store first: jobs name the manager's store ("store-1"), and
    // each worker resolves that name against its own `[[attached]]`, not
    // by position or path.
    let scratch = dir.path().join("scratch-b");
    std::fs::create_dir(&scratch).unwrap();
    let mount = dir.path().join("mnt-b");
    std::os::unix::fs::symlink(home.join("store-1"), &mount).unwrap();
    let b_stores = format!(
        "[[attached]]\nname = \"scratch-b\"\nlocation = \"{}\"\nreadonly = true\n\n\
         [[attached]]\nname = \"store-1\"\nlocation = \"{}\"\nreadonly = true\n",
        scratch.display(),
        mount.display()
    );
    let (mut b, _) = wdpost_worker_with(dir.path(), &m, "worker-b", "", "1s", &b_stores);
    let c = m.client(Some(&m.token("read")));
    // B alone until it has proven a job, so that it surely takes one.
    wait_until(&m, Duration::from_secs(60), "worker B proved a job", || {
        let c = c.clone();
        async move {
            let all = c.wdpost_all_jobs().await.unwrap();
            all.jobs
                .iter()
                .any(|j| {
                    j.job.worker_name == "worker-b"
                        && j.job.state == JobState::Finished
                        && j.job.error_reason.is_empty()
                })
                .then_some(())
        }
    })
    .await;
    let (mut a, _) = wdpost_worker(dir.path(), &m, "worker-a", "", "1s");
    let with_sectors = c
        .proving_deadlines(None)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.sectors > 0)
        .count();
    assert_eq!(with_sectors, 2);
    wait_until(
        &m,
        Duration::from_secs(150),
        "two periods proven by workers",
        || {
            let c = c.clone();
            let m = &m;
            async move {
                let info = c.proving_info(None).await.unwrap();
                assert_eq!(
                    (info.faults, info.power),
                    (0, 2 * 2048),
                    "{info:?}\n{}",
                    all_logs(&m.home)
                );
                let missed = deadlines(m, "missed");
                assert_eq!(missed, 0.0, "{}", all_logs(&m.home));
                let proven = deadlines(m, "proven");
                (proven >= 4.0).then_some(())
            }
        },
    )
    .await;
    let all = c.wdpost_all_jobs().await.unwrap();
    let done: Vec<_> = all
        .jobs
        .iter()
        .filter(|j| j.job.state == JobState::Finished && j.job.error_reason.is_empty())
        .collect();
    assert!(done.len() >= 4, "{all:#?}");
    for j in &done {
        assert!(
            ["worker-a", "worker-b"].contains(&j.job.worker_name.as_str()) && j.job.try_num == 1,
            "{j:?}"
        );
    }
    assert!(
        metric(
            &m,
            "damocles_manager_post_proof_seconds_count",
            &["prover=\"worker\""]
        ) >= 4.0
    );
    kill_group(&mut a);
    kill_group(&mut b);
}
