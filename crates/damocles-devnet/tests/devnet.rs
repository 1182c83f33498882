//! The devnet on a real redb file: messages execute one epoch after they are
//! pushed, a prove-commit whose proof does not verify fails and leaves the
//! sector inactive, and everything survives reopening the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use damocles_devnet::*;
use filecoin_proofs_api::RegisteredSealProof;

const BLOCK: Duration = Duration::from_millis(100);

fn policy() -> Policy {
    Policy {
        seed_delay: 2,
        ..Policy::default()
    }
}

fn open(path: &std::path::Path) -> Arc<Devnet> {
    let db = Arc::new(redb::Database::create(path).unwrap());
    Arc::new(
        Devnet::open(
            db,
            BLOCK,
            policy(),
            &[DevnetMiner {
                actor: 1000,
                sector_size: 2048,
            }],
        )
        .unwrap(),
    )
}

async fn executed(devnet: &Devnet, id: &str) -> MessageStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        devnet.advance().unwrap();
        let s = devnet.message_status(id).await.unwrap();
        if s != MessageStatus::Pending {
            return s;
        }
        assert!(Instant::now() < deadline, "message {id} never executed");
        tokio::time::sleep(BLOCK / 2).await;
    }
}

async fn wait_for_epoch(devnet: &Devnet, epoch: Epoch) {
    while devnet.head().await.unwrap().epoch < epoch {
        tokio::time::sleep(BLOCK / 2).await;
    }
}

#[tokio::test]
async fn a_bad_proof_is_refused_and_state_survives_reopening() {
    fil_params::configure_process_env();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.redb");
    let devnet = open(&path);
    assert_eq!(
        devnet.miner_info(1000).await.unwrap().seal_proof,
        RegisteredSealProof::StackedDrg2KiBV1_1
    );
    assert!(matches!(
        devnet.miner_info(7).await,
        Err(ChainError::UnknownMiner(7))
    ));

    wait_for_epoch(&devnet, 2).await;
    let head = devnet.head().await.unwrap().epoch;
    let t1 = devnet
        .randomness(Domain::SealRandomness, head - 1, &miner_entropy(1000))
        .await
        .unwrap();
    assert_eq!(
        t1,
        devnet
            .randomness(Domain::SealRandomness, head - 1, &miner_entropy(1000))
            .await
            .unwrap()
    );
    assert!(matches!(
        devnet
            .randomness(Domain::SealRandomness, head + 100, &[])
            .await,
        Err(ChainError::FutureEpoch { .. })
    ));

    let pre = devnet
        .push_message(Message::PreCommitSector {
            miner: 1000,
            params: PreCommitParams {
                sector_number: 1,
                seal_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
                comm_r: [1; 32],
                comm_d: [2; 32],
                seal_rand_epoch: head - 1,
            },
        })
        .await
        .unwrap();
    let MessageStatus::Executed {
        epoch,
        exit_code: 0,
        ..
    } = executed(&devnet, &pre).await
    else {
        panic!("precommit failed");
    };
    let on_chain = devnet
        .precommit(1000, 1)
        .await
        .unwrap()
        .expect("precommitted");
    assert_eq!(on_chain.precommit_epoch, epoch);

    // A second precommit of the same number fails on chain.
    let dup = devnet
        .push_message(Message::PreCommitSector {
            miner: 1000,
            params: on_chain.params.clone(),
        })
        .await
        .unwrap();
    let MessageStatus::Executed {
        exit_code, error, ..
    } = executed(&devnet, &dup).await
    else {
        unreachable!()
    };
    assert_eq!(exit_code, exit_code::FORBIDDEN, "{error:?}");

    // After the seed epoch, a proof that is not a proof of this sector.
    wait_for_epoch(&devnet, on_chain.seed_epoch(2) + 1).await;
    let prove = devnet
        .push_message(Message::ProveCommitSector {
            miner: 1000,
            sector_number: 1,
            proof: vec![0x5a; 192],
        })
        .await
        .unwrap();
    let MessageStatus::Executed {
        exit_code, error, ..
    } = executed(&devnet, &prove).await
    else {
        unreachable!()
    };
    assert_eq!(exit_code, exit_code::ILLEGAL_ARGUMENT);
    assert!(error.unwrap().contains("sector 1"));
    assert_eq!(devnet.sector(1000, 1).await.unwrap(), None, "not active");
    assert!(
        devnet.precommit(1000, 1).await.unwrap().is_some(),
        "still precommitted"
    );
    assert_eq!(devnet.miner_state(1000).unwrap().power, 0);

    // Reopen the same file: height keeps counting, history is kept.
    let height = devnet.head().await.unwrap().epoch;
    drop(devnet);
    let devnet = open(&path);
    assert!(devnet.head().await.unwrap().epoch >= height);
    assert!(devnet.precommit(1000, 1).await.unwrap().is_some());
    assert!(matches!(
        devnet.message_status(&prove).await.unwrap(),
        MessageStatus::Executed { exit_code: 16, .. }
    ));
    let next = devnet
        .push_message(Message::ProveCommitSector {
            miner: 1000,
            sector_number: 9,
            proof: vec![],
        })
        .await
        .unwrap();
    assert_ne!(next, prove, "message ids are not reused after reopening");
    let MessageStatus::Executed { exit_code, .. } = executed(&devnet, &next).await else {
        unreachable!()
    };
    assert_eq!(exit_code, exit_code::NOT_FOUND);
    assert!(matches!(
        devnet.message_status("devnet-999").await,
        Err(ChainError::UnknownMessage(_))
    ));
}
