//! Window PoSt of 8MiB sectors kept only in S3 (moto, through the S3 store
//! plugin): genesis sectors sealed with PC1/PC2 straight into S3, every
//! deadline holding them proven and accepted by the devnet, and the bytes
//! read per sector a small fraction of the sealed file: the cache files
//! plus at most one 16KiB segment per challenge (10 per sector).

use std::time::Duration;

use damocles_api::proving::ProvingApiClient;
use damocles_e2e::manager::ManagerProcess;
use damocles_e2e::post::{all_logs, deadlines, init_from_config, log_lines, metric, wait_until};
use damocles_e2e::proof_params;
use damocles_e2e::s3::{manager_config_on_s3, s3_plugin, S3Server};
use damocles_objstore::plugin::Plugin;
use damocles_objstore::{ObjectPath, Store};
use fil_params::ParamSet;

const SECTOR: u64 = 8 << 20;
/// Window PoSt challenges per sector, and the sealed-file segment each reads.
const CHALLENGES: u64 = 10;
const SEGMENT: u64 = 512 * 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_post_of_8mib_sectors_in_s3_reads_a_small_fraction() {
    proof_params(&[ParamSet::WindowPost8MiB]);
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let cfg = manager_config_on_s3(dir.path(), &s3, "500ms", "8MiB");
    let home = dir.path().join("home");
    init_from_config(&home, &cfg, 2, &["DeadlinesPerPeriod=4"]);
    let store = Plugin::load(&s3_plugin())
        .unwrap()
        .open(s3.store_config("store-1", "sectors"))
        .unwrap();
    let size = |o: &str| store.stat(&ObjectPath::new(o).unwrap()).unwrap();
    assert_eq!(size("sealed/s-t01000-1"), SECTOR);
    let cache: u64 = ["p_aux", "t_aux", "sc-02-data-tree-r-last.dat"]
        .iter()
        .map(|f| size(&format!("cache/s-t01000-1/{f}")))
        .sum();

    let m = ManagerProcess::start_with(&home, &["--poster"]);
    let c = m.client(Some(&m.token("read")));
    let rows = c.proving_deadlines(None).await.unwrap();
    let with_sectors = rows.iter().filter(|r| r.sectors > 0).count() as f64;
    assert_eq!(rows.iter().map(|r| r.sectors).sum::<u64>(), 2, "{rows:?}");
    wait_until(
        &m,
        Duration::from_secs(180),
        "every deadline with 8MiB sectors proven",
        || {
            let c = c.clone();
            let m = &m;
            async move {
                let info = c.proving_info(None).await.unwrap();
                assert_eq!(
                    (info.faults, info.power),
                    (0, 2 * SECTOR),
                    "{info:?}\n{}",
                    all_logs(&m.home)
                );
                assert_eq!(deadlines(m, "missed"), 0.0, "{}", all_logs(&m.home));
                (deadlines(m, "proven") >= with_sectors).then_some(())
            }
        },
    )
    .await;
    assert!(
        log_lines(&home, &["without a window PoSt"]).is_empty(),
        "{}",
        all_logs(&home)
    );

    let labels = ["kind=\"window\"", "store=\"store-1\""];
    let sectors = metric(&m, "damocles_manager_post_fetch_sectors_total", &labels);
    let bytes = metric(&m, "damocles_manager_post_fetch_bytes_total", &labels);
    let requests = metric(&m, "damocles_manager_post_fetch_requests_total", &labels);
    assert!(sectors >= 2.0, "{sectors}");
    let per_sector = bytes / sectors;
    // Of the sealed files: whole segments, per sector at least one and at
    // most one per challenge.
    let sealed_total = bytes - sectors * cache as f64;
    assert_eq!(sealed_total % SEGMENT as f64, 0.0, "{sealed_total}");
    let sealed_read = sealed_total / sectors;
    assert!(
        sealed_read >= SEGMENT as f64 && sealed_read <= (CHALLENGES * SEGMENT) as f64,
        "{sealed_read} bytes of the sealed file per sector"
    );
    assert!(
        per_sector < SECTOR as f64 / 20.0,
        "{per_sector} bytes per sector of {SECTOR}"
    );
    // 3 cache files, a stat, at most one ranged read per challenge.
    let req = requests / sectors;
    assert!((5.0..=(4 + CHALLENGES) as f64).contains(&req), "{req}");
    eprintln!(
        "8MiB window PoSt from S3: {per_sector:.0} bytes per sector ({:.2}% of the sealed file; \
         cache files {cache}, sealed file {sealed_read:.0}), {req:.1} requests",
        per_sector * 100.0 / SECTOR as f64
    );
}
