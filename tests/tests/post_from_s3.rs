//! PoSt of sectors kept only in S3 (moto, a real S3 server, through the S3
//! store plugin): `daemon init --config` pre-seals genesis sectors straight
//! into the S3 persist store, nothing of them stays on local disk, and
//! `daemon run --poster --miner` proves them by ranged reads: the cache
//! files and the challenged segments of each sealed file are fetched, the
//! devnet verifies every window and winning PoSt, and `/metrics` reports the
//! bytes and requests per sector.
//!
//! The proofs are split (`ext-prover.cfg` with only `[[PostSnark]]`): the
//! manager computes the vanilla proofs from the fetched copies, and a
//! `damocles-worker processor post_snark` child, which reads no sector
//! file, makes the SNARKs. (The 8MiB test proves from S3 with the builtin
//! prover, `worker_prover_s3` on a worker.)

use std::time::Duration;

use damocles_api::proving::ProvingApiClient;
use damocles_e2e::manager::ManagerProcess;
use damocles_e2e::post::{all_logs, deadlines, init_from_config, log_lines, metric, wait_until};
use damocles_e2e::proof_params;
use damocles_e2e::s3::{manager_config_on_s3, s3_plugin, S3Server};
use damocles_e2e::worker::children_of;
use damocles_objstore::plugin::Plugin;
use damocles_objstore::{ObjectPath, Store};
use fil_params::ParamSet;

const SECTORS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_and_winning_post_of_sectors_only_in_s3() {
    proof_params(&[ParamSet::WindowPost2KiB, ParamSet::WinningPost2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let cfg = manager_config_on_s3(dir.path(), &s3, "1s", "2KiB");
    let lib = s3_plugin();

    // 3 genesis sectors sealed into S3; 4 deadlines of 20 one-second
    // epochs; an election about every 30 s (6 s per winning proof).
    let home = dir.path().join("home");
    init_from_config(
        &home,
        &cfg,
        SECTORS,
        &["DeadlinesPerPeriod=4", "ElectionRatePercent=3"],
    );
    // Nothing of the sectors on local disk: only the objects in S3.
    assert!(!home.join("store-1").exists());
    assert!(!home.join("pre-seal").exists());
    let store = Plugin::load(&lib)
        .unwrap()
        .open(s3.store_config("store-1", "sectors"))
        .unwrap();
    let objects = store.list(None).unwrap();
    assert_eq!(
        objects.iter().filter(|o| o.starts_with("sealed/")).count() as u64,
        SECTORS,
        "{objects:?}"
    );
    // What one PoSt of a 2KiB sector fetches: the cache files (p_aux,
    // t_aux, tree-r-last) and the sealed file (one segment is the whole
    // 2KiB file at this size).
    let size = |o: &str| store.stat(&ObjectPath::new(o).unwrap()).unwrap();
    let per_sector = size("cache/s-t01000-1/p_aux")
        + size("cache/s-t01000-1/t_aux")
        + size("cache/s-t01000-1/sc-02-data-tree-r-last.dat")
        + size("sealed/s-t01000-1");

    std::fs::write(home.join("ext-prover.cfg"), "[[PostSnark]]\n").unwrap();
    let m = ManagerProcess::start_with(
        &home,
        &["--poster", "--miner", "--warmup", "true", "--ext-prover"],
    );
    let snark_children = children_of(m.pid().unwrap(), &["processor", "post_snark"]);
    assert_eq!(snark_children.len(), 1, "one [[PostSnark]] child");
    assert!(
        !log_lines(&home, &["winning PoSt warmed up", "prover=\"split\""]).is_empty(),
        "the warmup proves a sector fetched from S3, split:\n{}",
        all_logs(&home)
    );
    let c = m.client(Some(&m.token("read")));
    let rows = c.proving_deadlines(None).await.unwrap();
    let with_sectors = rows.iter().filter(|r| r.sectors > 0).count() as f64;
    assert!(with_sectors >= 1.0, "{rows:?}");

    // A whole period: every deadline with sectors proven, and a block won.
    wait_until(
        &m,
        Duration::from_secs(240),
        "every deadline with sectors proven and a block won",
        || {
            let c = c.clone();
            let m = &m;
            async move {
                let info = c.proving_info(None).await.unwrap();
                assert_eq!(info.faults, 0, "{info:?}\n{}", all_logs(&m.home));
                assert_eq!(deadlines(m, "missed"), 0.0, "{}", all_logs(&m.home));
                let won = metric(m, "damocles_manager_blocks_total", &["outcome=\"won\""]);
                (deadlines(m, "proven") >= with_sectors && won >= 1.0).then_some(())
            }
        },
    )
    .await;
    assert!(
        log_lines(&home, &["without a window PoSt"]).is_empty(),
        "{}",
        all_logs(&home)
    );
    assert_eq!(
        metric(&m, "damocles_manager_blocks_total", &["outcome=\"missed\""]),
        0.0,
        "{}",
        all_logs(&home)
    );

    // Bytes and requests per sector, by kind, in /metrics: exactly that, in
    // one request per object (three cache files, a stat of the sealed file,
    // one ranged read of it).
    for kind in ["window", "winning"] {
        let labels = [format!("kind=\"{kind}\""), "store=\"store-1\"".to_string()];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let sectors = metric(&m, "damocles_manager_post_fetch_sectors_total", &labels);
        let bytes = metric(&m, "damocles_manager_post_fetch_bytes_total", &labels);
        let requests = metric(&m, "damocles_manager_post_fetch_requests_total", &labels);
        assert!(sectors >= 1.0, "{kind}: no sector fetched");
        assert_eq!(bytes / sectors, per_sector as f64, "{kind}");
        assert_eq!(requests / sectors, 5.0, "{kind}");
    }
    assert!(!log_lines(&home, &["fetched from plugin stores by ranged reads"]).is_empty());
    // Both kinds went through the split, with the same child all along.
    for kind in ["window", "winning"] {
        let labels = [format!("kind=\"{kind}\""), "prover=\"split\"".to_string()];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert!(
            metric(&m, "damocles_manager_post_proof_seconds_count", &labels) >= 1.0,
            "{kind} PoSt went through the split prover"
        );
    }
    assert_eq!(
        children_of(m.pid().unwrap(), &["processor", "post_snark"]),
        snark_children
    );
    // The fetched copies go once their proofs are done.
    wait_until(&m, Duration::from_secs(30), "the fetch dir emptied", || {
        let left = std::fs::read_dir(home.join("post-fetch"))
            .map(|d| d.count())
            .unwrap_or(0);
        async move { (left == 0).then_some(()) }
    })
    .await;
}
