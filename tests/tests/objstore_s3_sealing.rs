//! Sealed sectors persisted into S3 through the store plugin, end to end:
//! the manager (devnet) and the worker both load the same S3 plugin file
//! from their plugins dir. Two 2KiB sectors are sealed; the worker writes
//! their sealed and cache files through the plugin into a real S3 server
//! (moto), the manager confirms them through the plugin (SubmitPersistedEx),
//! and the devnet verifies the proofs. No local persist directory is
//! written. Two C2s (~70 s each), one at a time.

use std::time::Duration;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::SectorID;
use damocles_e2e::manager::{init_home, ManagerProcess};
use damocles_e2e::proof_params;
use damocles_e2e::s3::{s3_plugin, S3Server};
use damocles_e2e::worker::{kill_group, spawn, wait_for, write_config_with, Setup};
use damocles_objstore::plugin::Plugin;
use damocles_objstore::{ObjectPath, Store};
use fil_params::ParamSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sectors_are_persisted_into_s3_through_one_plugin_file_for_both_daemons() {
    proof_params(&[ParamSet::Porep2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    s3.create_bucket("sectors");
    // One plugins dir, one library file, for both daemons.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let lib = s3_plugin();
    std::fs::copy(&lib, plugins.join(lib.file_name().unwrap())).unwrap();

    let home = dir.path().join("manager");
    init_home(&home, |c| {
        let local = c
            .lines()
            .find(|l| l.starts_with("Path = "))
            .expect("the template's store-1 Path")
            .to_string();
        c.replace("# MaxNumber = 1000000", "MaxNumber = 2")
            .replace(
                "# Dir = \"/opt/damocles/plugins\"",
                &format!("Dir = {:?}", plugins.display().to_string()),
            )
            .replace(
                &local,
                &format!(
                    "Path = \"sectors\"\nPluginName = \"s3\"\nMeta = {}",
                    s3.meta_toml()
                ),
            )
    });
    let m = ManagerProcess::start(&home);
    let setup = Setup {
        threads: 2,
        stores: Some(format!(
            "[plugins]\ndir = {:?}\n\n[[attached]]\nname = \"store-1\"\nlocation = \"sectors\"\nplugin_name = \"s3\"\nmeta = {}\n",
            plugins.display().to_string(),
            s3.meta_toml()
        )),
        ..Setup::default()
    };
    let mut setup = setup;
    setup.processors += "\n[processors.limitation.concurrent]\nc2 = 1\n";
    let cfg = write_config_with(dir.path(), &m, &m.token("write"), &setup);
    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);

    let admin = m.client(Some(&m.token("admin")));
    for number in 1..=2 {
        let id = SectorID {
            miner: 1000,
            number,
        };
        let done = wait_for(&m, &mut worker, &log, id, Duration::from_secs(600), |s| {
            s.finalized
        })
        .await;
        assert_eq!(done.persisted.as_deref(), Some("store-1"));
        let chain = admin
            .chain_sector_info(id)
            .await
            .unwrap()
            .expect("on chain");
        assert_eq!(chain.state, "Active", "the devnet verified {id:?}");
    }
    kill_group(&mut worker);
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        log.matches("persisted through the store plugin").count(),
        2,
        "{log}"
    );

    // The objects are in the bucket, whole; nothing went to a local store.
    let store = Plugin::load(&lib)
        .unwrap()
        .open(s3.store_config("store-1", "sectors"))
        .unwrap();
    let sealed = store
        .list(Some(&ObjectPath::new("sealed").unwrap()))
        .unwrap();
    assert_eq!(sealed, vec!["sealed/s-t01000-1", "sealed/s-t01000-2"]);
    for s in &sealed {
        assert_eq!(store.stat(&ObjectPath::new(s).unwrap()).unwrap(), 2048);
    }
    let cache = store
        .list(Some(&ObjectPath::new("cache/s-t01000-2").unwrap()))
        .unwrap();
    let mut expected: Vec<String> = vc_processors::sector::persisted_cache_files(2048)
        .iter()
        .map(|f| format!("cache/s-t01000-2/{f}"))
        .collect();
    expected.sort();
    assert_eq!(cache, expected);
    let local = home.join("store-1");
    let written: Vec<_> = walk(&local);
    assert!(written.is_empty(), "local store written: {written:?}");

    // The manager's check goes through the plugin and names what is
    // missing: with one cache object gone from the bucket, the same
    // PersistStores entry no longer confirms the sector.
    let cfg = damocles_manager::config::load(&home.join("sector-manager.cfg"))
        .unwrap()
        .config;
    let registry = damocles_manager::stores::load_plugins(&cfg).unwrap();
    let stores =
        damocles_manager::stores::Stores::open(&cfg.common.persist_stores, &registry).unwrap();
    let persisted = stores.get("store-1").expect("the S3 store opened");
    let id = SectorID {
        miner: 1000,
        number: 2,
    };
    persisted.check_persisted(id, 2048).unwrap();
    store.del(&ObjectPath::new(&expected[0]).unwrap()).unwrap();
    let missing = persisted.check_persisted(id, 2048).unwrap_err().to_string();
    assert!(
        missing.contains(&format!("s3://sectors/cluster-a/{}", expected[0]))
            && missing.contains("missing from store store-1"),
        "{missing}"
    );
}

/// Every file under `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
