//! The two halves of a split PoSt, `post_vanilla` and `post_snark`, run
//! directly on a pre-sealed sector: the proof they make verifies, a missing
//! file is a fault of the vanilla half, and their tasks and outputs are the
//! golden files of the two stages (`UPDATE_GOLDEN=1`). The split through
//! the manager and a `[[PostSnark]]` child, accepted by the devnet, is in
//! `post_from_s3`.

use std::collections::BTreeMap;

use damocles_e2e::post::{pre_sealed_replica, MINER};
use damocles_e2e::{proof_params, update_golden};
use fil_params::ParamSet;
use filecoin_proofs_api::{post, PublicReplicaInfo, SectorId};
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::tasks::{PoStSnark, PoStVanilla};
use vc_processors::{Ctx, Processor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_halves_make_a_proof_that_verifies() {
    proof_params(&[ParamSet::WindowPost2KiB]);
    let dir = tempfile::tempdir().unwrap();
    let (proof_type, _, replica) = pre_sealed_replica(dir.path(), "2KiB").await;
    fil_params::configure_process_env();
    let comm_r = replica.comm_r;
    let mut seed = [5u8; 32];
    seed[31] &= 0x3f;
    let vanilla = PoStVanilla {
        miner_id: MINER,
        proof_type,
        replicas: vec![replica.clone()],
        seed,
    };
    update_golden("post_vanilla.task.json", &vanilla);
    let p = BuiltinProcessor::default();
    let v = p.process(vanilla, &Ctx::detached()).unwrap();
    assert!(v.faults.is_empty(), "{v:?}");
    assert_eq!(v.proofs.len(), 1);
    update_golden("post_vanilla.output.json", &v);
    let snark = PoStSnark {
        miner_id: MINER,
        proof_type,
        seed,
        vanilla_proofs: v.proofs,
    };
    update_golden("post_snark.task.json", &snark);
    let out = p.process(snark, &Ctx::detached()).unwrap();
    update_golden("post_snark.output.json", &out);
    let proof: Vec<u8> = out.proofs.into_iter().flat_map(|b| b.0).collect();
    let replicas = BTreeMap::from([(
        SectorId::from(1),
        PublicReplicaInfo::new(proof_type, comm_r),
    )]);
    assert!(
        post::verify_window_post(
            &seed,
            &[(proof_type, proof.as_slice())],
            &replicas,
            vc_processors::tasks::prover_id(MINER)
        )
        .unwrap(),
        "the split proof verifies"
    );

    // A sector whose files are gone is a fault of the vanilla half.
    std::fs::remove_file(&replica.sealed_file).unwrap();
    let gone = PoStVanilla {
        miner_id: MINER,
        proof_type,
        replicas: vec![replica],
        seed,
    };
    let v = p.process(gone, &Ctx::detached()).unwrap();
    assert_eq!((v.proofs.len(), v.faults), (0, vec![1]));
}
