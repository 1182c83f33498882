//! Winning PoSt end to end: `daemon run --poster --miner --warmup true` on a
//! devnet that elects the miner often (`ElectionRatePercent`), with one
//! pre-sealed genesis sector and one sector sealed by a real
//! `damocles-worker daemon` (this file's one C2). The devnet verifies every
//! winning PoSt with `verify_winning_post` and records the block as won or
//! missed: every election once the sealed sector is active is won, and both
//! sectors are proven in won blocks.

use std::collections::BTreeSet;
use std::time::Duration;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::proving::{BlockRow, ProvingApiClient};
use damocles_api::SectorID;
use damocles_e2e::manager::{cli, ManagerProcess};
use damocles_e2e::post::{all_logs, init_post_home, log_lines, metric, set_key, wait_until, MINER};
use damocles_e2e::proof_params;
use damocles_e2e::worker::{kill_group, spawn, wait_for, write_config};
use fil_params::ParamSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elected_epochs_are_won_with_genesis_and_worker_sealed_sectors() {
    proof_params(&[
        ParamSet::Porep2KiB,
        ParamSet::WindowPost2KiB,
        ParamSet::WinningPost2KiB,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 2 s blocks, an election about every 20 s (10% of epochs, all the
    // power is this miner's), each proof 6-8 s of the 25 s cutoff. Proofs
    // run one at a time: at one election per 10 s (CI failed at 20%) a
    // burst of three elections queued the last past its cutoff.
    // One genesis sector (number 1); the worker seals number 2 and no more.
    init_post_home(
        &home,
        "2s",
        1,
        &["DeadlinesPerPeriod=4", "ElectionRatePercent=10"],
        |t| set_key(&t, "[Miners.Sector]", "MaxNumber", "2"),
    );
    // The poster too: unproven sectors turn faulty and faulty sectors are
    // never challenged.
    let m = ManagerProcess::start_with(&home, &["--poster", "--miner", "--warmup", "true"]);
    assert!(
        !log_lines(&home, &["winning PoSt warmed up"]).is_empty(),
        "the warmup proves the genesis sector before serving:\n{}",
        all_logs(&home)
    );
    let c = m.client(Some(&m.token("read")));

    let cfg = write_config(dir.path(), &m, &m.token("write"));
    let log = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &log);
    let sealed = SectorID::new(MINER, 2);
    wait_for(
        &m,
        &mut worker,
        &log,
        sealed,
        Duration::from_secs(600),
        |s| s.finalized,
    )
    .await;
    kill_group(&mut worker);
    let active_at = c
        .chain_sector_info(sealed)
        .await
        .unwrap()
        .expect("on chain")
        .activation
        .expect("active");

    // Elections after the sector is active prove one of the two sectors
    // each: wait until both have been proven in won blocks.
    let blocks: Vec<BlockRow> = wait_until(
        &m,
        // ~18 elections in 360 s; each challenges one of the two sectors.
        Duration::from_secs(360),
        "both sectors proven in won blocks",
        || {
            let c = c.clone();
            async move {
                let blocks = c.proving_blocks(None, 1000).await.unwrap();
                let proven: BTreeSet<u64> = blocks
                    .iter()
                    .filter(|b| b.outcome == "Won" && b.epoch > active_at)
                    .flat_map(|b| b.sectors.iter().copied())
                    .collect();
                (proven.contains(&1) && proven.contains(&2)).then_some(blocks)
            }
        },
    )
    .await;

    // Every election after the activation was answered in time and verified.
    let after: Vec<&BlockRow> = blocks
        .iter()
        .filter(|b| b.epoch > active_at && b.outcome != "Pending")
        .collect();
    assert!(after.len() >= 2, "{after:#?}");
    for b in &after {
        assert_eq!(b.outcome, "Won", "{b:?}\n{}", all_logs(&home));
        assert!(b.latency_ms.is_some(), "{b:?}");
        assert_eq!(b.sectors.len(), 1, "one challenged sector at 2KiB: {b:?}");
    }
    let won = metric(&m, "damocles_manager_blocks_total", &["outcome=\"won\""]);
    assert!(won >= after.len() as f64, "{won}");
    assert!(
        metric(
            &m,
            "damocles_manager_winning_post_latency_seconds_count",
            &[]
        ) >= won,
        "every won block's latency is measured"
    );
    let table = cli(&home, &["util", "sealer", "proving", "blocks"]);
    assert!(table.contains("Won"), "{table}");
    // The window PoSt side kept both sectors live meanwhile.
    let info = c.proving_info(None).await.unwrap();
    assert_eq!((info.faults, info.power), (0, 2 * 2048), "{info:?}");
}
