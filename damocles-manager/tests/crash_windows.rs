//! The windows a kill -9 can open between the chain and the manager's own
//! record: a message sent whose id was never recorded, and a record whose
//! message was never sent. The manager must end up agreeing with the chain.

use std::sync::Arc;
use std::time::Duration;

use damocles_api::rpc::SealerApiServer;
use damocles_api::*;
use damocles_devnet::{Chain, Devnet, DevnetMiner, Message, Policy, PreCommitParams};
use damocles_manager::config::{self, InitValues};
use damocles_manager::db::Db;
use damocles_manager::metrics::Metrics;
use damocles_manager::sealer::Sealer;
use damocles_manager::stores::Stores;
use filecoin_proofs_api::RegisteredSealProof;

async fn manager(dir: &std::path::Path) -> (Sealer, Arc<Devnet>, Db) {
    let text = config::default_file(&InitValues {
        miner: 1000,
        store: dir,
        listen: "127.0.0.1:0",
        block_time: "100ms",
        seed_delay: 2,
    });
    let cfg = config::parse(&text).unwrap().config;
    let db = Db::create(&dir.join("m.redb")).unwrap();
    let policy = Policy {
        seed_delay: 2,
        ..Policy::default()
    };
    let devnet = Arc::new(
        Devnet::open(
            db.raw(),
            Duration::from_millis(100),
            policy,
            &[DevnetMiner {
                actor: 1000,
                sector_size: 2048,
            }],
        )
        .unwrap(),
    );
    devnet.spawn_ticker();
    let sealer = Sealer::new(
        cfg,
        db.clone(),
        devnet.clone(),
        Stores::default(),
        Arc::new(Metrics::new()),
    );
    (sealer, devnet, db)
}

async fn landed(s: &Sealer, id: SectorID) -> PollStateResp {
    for _ in 0..100 {
        let r = s.poll_pre_commit_state(id).await.unwrap();
        if !matches!(r.state, OnChainState::Pending | OnChainState::Packed) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never landed");
}

/// A new sector with its ticket (drawn a few epochs in), and a precommit for it.
async fn allocated_with_ticket(s: &Sealer) -> (AllocatedSector, PreCommitOnChainInfo) {
    let spec = AllocateSectorSpec {
        allowed_miners: Some(vec![1000]),
        allowed_proof_types: None,
    };
    let sector = s.allocate_sector(spec, None).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let ticket = s.assign_ticket(sector.id).await.unwrap();
    let info = PreCommitOnChainInfo {
        comm_r: [1; 32],
        comm_d: [2; 32],
        ticket,
    };
    (sector, info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precommit_sent_but_not_recorded_is_adopted_from_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (s, devnet, db) = manager(dir.path()).await;
    let (sector, info) = allocated_with_ticket(&s).await;
    let ticket = info.ticket;

    // A previous SubmitPreCommit sent this message, then the manager died
    // before recording it.
    devnet
        .push_message(Message::PreCommitSector {
            miner: 1000,
            params: PreCommitParams {
                sector_number: sector.id.number,
                seal_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
                comm_r: info.comm_r,
                comm_d: info.comm_d,
                seal_rand_epoch: ticket.epoch,
            },
        })
        .await
        .unwrap();
    while devnet
        .precommit(1000, sector.id.number)
        .await
        .unwrap()
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The worker retries: the manager finds it on chain and does not send again.
    let r = s.submit_pre_commit(sector, info, false).await.unwrap();
    assert_eq!(r.res, SubmitResult::DuplicateSubmit, "{r:?}");
    assert_eq!(db.online(sector.id).unwrap().unwrap().pre, Some(info));
    assert_eq!(landed(&s, sector.id).await.state, OnChainState::Landed);
    // A different precommit for the same sector is refused: the chain has one.
    let other = PreCommitOnChainInfo {
        comm_r: [3; 32],
        ..info
    };
    assert_eq!(
        s.submit_pre_commit(sector, other, true).await.unwrap().res,
        SubmitResult::Rejected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precommit_recorded_but_not_sent_is_sent_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _devnet, db) = manager(dir.path()).await;
    let (sector, info) = allocated_with_ticket(&s).await;
    // The record was written, then the manager died before sending.
    db.update(sector.id, move |st| {
        st.pre = Some(info);
        Ok::<_, damocles_manager::db::DbError>(())
    })
    .unwrap();
    let r = s.submit_pre_commit(sector, info, false).await.unwrap();
    assert_eq!(r.res, SubmitResult::Accepted, "sent now: {r:?}");
    assert!(db.online(sector.id).unwrap().unwrap().pre_message.is_some());
    assert_eq!(landed(&s, sector.id).await.state, OnChainState::Landed);
}
