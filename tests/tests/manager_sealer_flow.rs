//! A full sealer flow against the real manager binary over HTTP JSON-RPC, the
//! way a worker drives it, with real PC1/PC2/C1/C2 from the builtin processors
//! and the devnet verifying the proof. The manager is killed with SIGKILL in
//! the middle and restarted; a corrupted proof is refused and the sector stays
//! inactive until the real one lands. One C2 (~70 s).

use std::time::{Duration, Instant};

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::encoding::Base64Bytes;
use damocles_api::rpc::SealerApiClient;
use damocles_api::*;
use damocles_e2e::manager::{cli, init_home, ManagerProcess};
use damocles_e2e::sealing::{LocalSector, SEAL_PROOF};
use damocles_e2e::{init_logs, persist_task, proof_params};
use fil_params::ParamSet;

const MINER: u64 = 1000;

async fn poll_until_landed(
    what: &str,
    mut poll: impl AsyncFnMut() -> PollStateResp,
) -> PollStateResp {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = poll().await;
        match r.state {
            OnChainState::Pending | OnChainState::Packed => {}
            _ => return r,
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not land in 60 s: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn spec() -> AllocateSectorSpec {
    AllocateSectorSpec {
        allowed_miners: Some(vec![MINER]),
        allowed_proof_types: Some(vec![SealProof(SEAL_PROOF)]),
    }
}

fn report(prev: &str, next: &str) -> ReportStateReq {
    ReportStateReq {
        worker: WorkerIdentifier {
            instance: "test-worker".into(),
            location: "/tmp/sealing-1".into(),
        },
        state_change: SectorStateChange {
            prev: prev.into(),
            next: next.into(),
            event: format!("Ev{next}"),
        },
        failure: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sector_sealed_and_proven_through_the_manager_survives_kill9() {
    init_logs();
    proof_params(&[ParamSet::Porep2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| c);
    let store_root = home.join("store-1");

    let mut manager = ManagerProcess::start(&home);
    let token = manager.token("write");
    let c = manager.client(Some(&token));

    // Allocate and take a ticket.
    let sector = c
        .allocate_sector(spec(), None)
        .await
        .unwrap()
        .expect("a sector");
    assert_eq!(sector.id.miner, MINER);
    assert_eq!(sector.proof_type, SealProof(SEAL_PROOF));
    let id = sector.id;
    let ticket = c.assign_ticket(id).await.unwrap();
    assert_eq!(
        c.assign_ticket(id).await.unwrap(),
        ticket,
        "a ticket is assigned once"
    );
    c.report_state(id, report("Allocated", "TicketAssigned"))
        .await
        .unwrap();

    // PC1/PC2 for real, then precommit.
    let mut local = LocalSector::new(&dir.path().join("sealing"), MINER, id.number);
    let (comm_r, comm_d) = local.pre_commit(ticket.ticket.0);
    let info = PreCommitOnChainInfo {
        comm_r,
        comm_d,
        ticket,
    };
    let r = c.submit_pre_commit(sector, info, false).await.unwrap();
    assert_eq!(r.res, SubmitResult::Accepted, "{r:?}");
    let r = c.submit_pre_commit(sector, info, false).await.unwrap();
    assert_eq!(r.res, SubmitResult::DuplicateSubmit);
    let mut other = info;
    other.comm_r[0] ^= 1;
    let r = c.submit_pre_commit(sector, other, false).await.unwrap();
    assert_eq!(r.res, SubmitResult::MismatchedSubmission);
    let landed = poll_until_landed("precommit", async || {
        c.poll_pre_commit_state(id).await.unwrap()
    })
    .await;
    assert_eq!(landed.state, OnChainState::Landed, "{landed:?}");

    // Reserve a persist store, then SIGKILL the manager.
    let store = c
        .store_reserve_space(id, 2 * 2048, vec!["store-1".into()])
        .await
        .unwrap()
        .expect("store-1 has room");
    assert_eq!(store.name, "store-1");
    c.report_state(id, report("PCLanded", "Persisted"))
        .await
        .unwrap();
    let before = c.find_sector(id).await.unwrap().expect("known");
    manager.kill9();
    assert!(c.chain_head().await.is_err(), "the manager is gone");

    // Restart: the record, the reservation and the number allocator are intact.
    let manager = ManagerProcess::start(&home);
    let c = manager.client(Some(&token));
    let after = c
        .find_sector(id)
        .await
        .unwrap()
        .expect("still known after kill -9");
    assert_eq!(after, before);
    let again = c
        .store_reserve_space(id, 2 * 2048, vec!["store-1".into()])
        .await
        .unwrap();
    assert_eq!(again, Some(store.clone()), "the reservation survived");
    let listed = cli(&home, &["util", "storage", "list", "--json"]);
    assert!(
        listed.contains(&format!("\"Number\": {}", id.number)),
        "{listed}"
    );
    let next = c
        .allocate_sector(spec(), None)
        .await
        .unwrap()
        .expect("another sector");
    assert!(
        next.id.number > id.number,
        "number {} handed out again",
        next.id.number
    );
    c.report_aborted(next.id, "not needed by this test".into())
        .await
        .unwrap();

    // Persist: files missing, then copied with the builtin transfer.
    assert!(
        !c.submit_persisted_ex(id, "store-1".into(), false)
            .await
            .unwrap(),
        "nothing copied yet"
    );
    let task = persist_task(
        "store-1",
        &store_root,
        &local.sealed,
        &local.cache,
        &local.name(),
    );
    vc_processors::builtin::transfer(&task, true).expect("transfer");
    assert!(c
        .submit_persisted_ex(id, "store-1".into(), false)
        .await
        .unwrap());

    // Seed from the chain once the seed epoch passed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let seed = loop {
        let w = c.wait_seed(id, Some(SealProof(SEAL_PROOF))).await.unwrap();
        if !w.should_wait {
            break w.seed.expect("a seed when not waiting");
        }
        assert!(w.delay >= 1 && w.delay <= 10, "delay {} s", w.delay);
        assert!(Instant::now() < deadline, "no seed in 60 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // Real C1/C2.
    let proof = local.commit(ticket.ticket.0, seed.seed.0);

    // A corrupted proof is refused and changes nothing.
    let mut bad = proof.clone();
    bad[10] ^= 0xff;
    let r = c
        .submit_proof(
            id,
            ProofOnChainInfo {
                proof: Base64Bytes(bad),
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(r.res, SubmitResult::Rejected, "{r:?}");
    let desc = r.desc.unwrap();
    assert!(
        desc.contains("does not verify") || desc.contains("cannot be verified"),
        "{desc}"
    );
    let s = c.find_sector(id).await.unwrap().unwrap();
    assert!(
        s.proof.is_none() && s.proof_message.is_none(),
        "a refused proof is not recorded"
    );
    let on_chain = c
        .chain_sector_info(id)
        .await
        .unwrap()
        .expect("precommitted");
    assert_eq!(
        on_chain.state, "PreCommitted",
        "not active with a bad proof"
    );

    // The real proof lands and the sector is active on the devnet.
    let r = c
        .submit_proof(
            id,
            ProofOnChainInfo {
                proof: Base64Bytes(proof.clone()),
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(r.res, SubmitResult::Accepted, "{r:?}");
    let r = c
        .submit_proof(
            id,
            ProofOnChainInfo {
                proof: Base64Bytes(proof),
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(r.res, SubmitResult::DuplicateSubmit);
    let landed = poll_until_landed("prove-commit", async || {
        c.poll_proof_state(id).await.unwrap()
    })
    .await;
    assert_eq!(landed.state, OnChainState::Landed, "{landed:?}");
    let on_chain = c.chain_sector_info(id).await.unwrap().expect("on chain");
    assert_eq!(on_chain.state, "Active");
    assert_eq!(on_chain.comm_r, comm_r);
    assert!(on_chain.deadline.is_some() && on_chain.partition == Some(0));

    // Finalize: the sector goes offline and the worker is told so.
    c.report_finalized(id).await.unwrap();
    let resp = c
        .report_state(id, report("ProofSubmitted", "Finished"))
        .await
        .unwrap();
    assert!(resp.finalized, "{resp:?}");
    let offline = cli(
        &home,
        &["util", "sealer", "sectors", "list", "--offline", "--json"],
    );
    let offline: Vec<SectorState> = serde_json::from_str(&offline).unwrap();
    let mine = offline
        .iter()
        .find(|s| s.id == id)
        .expect("offline after finalize");
    assert!(mine.finalized && mine.persisted.as_deref() == Some("store-1"));
    let state = cli(
        &home,
        &[
            "util",
            "sealer",
            "sectors",
            "state",
            &format!("t0{MINER}-{}", id.number),
        ],
    );
    assert!(
        state.contains("Active") && state.contains("finalized"),
        "{state}"
    );
}
