//! A 2KiB sector sealed stage by stage through spawned ext-processor binaries
//! (`damocles-worker processor <stage>` and the `verified-c2` example), then
//! proven with window and winning PoSt, unsealed, updated with a snap deal and
//! transferred, every proof checked with the filecoin-proofs-api verify functions.
//! Costs one C2 (~70 s on 2 cores) and one snap proof (~30 s).
//!
//! With `UPDATE_GOLDEN=1` it also rewrites the golden wire files from the real
//! tasks and outputs of this run.

use std::collections::BTreeMap;
use std::path::Path;

use damocles_e2e::{init_logs, persist_task, proof_params, update_golden, workspace_bin};
use fil_params::ParamSet;
use filecoin_proofs_api::{post, seal, PublicReplicaInfo};
use vc_processors::builtin::seal_commit_phase1;
use vc_processors::producer::{Producer, ProducerConfig};
use vc_processors::tasks::*;
use vc_processors::Task;

async fn worker_processor(stage: &str) -> Producer {
    let bin = workspace_bin("damocles-worker", "damocles-worker");
    Producer::spawn(ProducerConfig::new(
        stage,
        bin,
        vec!["processor".into(), stage.into()],
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn run<T: Task + Clone>(p: &Producer, name: &str, task: T) -> T::Output {
    update_golden(&format!("{name}.task.json"), &task);
    let out = p
        .process(&task)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    update_golden(&format!("{name}.output.json"), &out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn seal_and_prove_a_2kib_sector_through_ext_processors() {
    init_logs();
    proof_params(&[
        ParamSet::Porep2KiB,
        ParamSet::WindowPost2KiB,
        ParamSet::WinningPost2KiB,
        ParamSet::SnapUpdate2KiB,
    ]);

    let dir = tempfile::tempdir().unwrap();
    let (staged, cache, sealed) = (
        dir.path().join("staged"),
        dir.path().join("cache"),
        dir.path().join("sealed"),
    );
    std::fs::create_dir_all(&cache).unwrap();
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
    let piece_path = dir.path().join("piece");
    std::fs::write(&piece_path, &payload).unwrap();

    let proof = RegisteredSealProof::StackedDrg2KiBV1_1;
    let miner = 1000;
    let prover = prover_id(miner);
    let sector = SectorId::from(7);
    let ticket = [7u8; 32];
    let seed = [9u8; 32];

    // add_pieces → tree_d → pc1 → pc2, each through its own child process.
    let pieces = run(
        &worker_processor("add_pieces").await,
        "add_pieces",
        AddPieces {
            seal_proof_type: proof,
            pieces: vec![Piece {
                piece_file: PieceFile::Local(piece_path.clone()),
                payload_size: payload.len() as u64,
                piece_size: UnpaddedBytesAmount(2032),
            }],
            staged_filepath: staged.clone(),
        },
    )
    .await;
    assert_eq!(pieces.len(), 1);

    let tree_d = TreeD {
        registered_proof: proof,
        staged_file: staged.clone(),
        cache_dir: cache.clone(),
    };
    assert!(run(&worker_processor("tree_d").await, "tree_d", tree_d).await);
    assert!(cache.join("sc-02-data-tree-d.dat").exists());

    let pc1 = PC1 {
        registered_proof: proof,
        cache_path: cache.clone(),
        in_path: staged.clone(),
        out_path: sealed.clone(),
        prover_id: prover,
        sector_id: sector,
        ticket,
        piece_infos: pieces.clone(),
    };
    let pc1out = run(&worker_processor("pc1").await, "pc1", pc1).await;
    let pc2 = PC2 {
        pc1out,
        cache_dir: cache.clone(),
        sealed_file: sealed.clone(),
    };
    let pc2out = run(&worker_processor("pc2").await, "pc2", pc2).await;

    // C1 runs in-process, as in the worker; C2 through the example ext-processor.
    let c1out = seal_commit_phase1(
        &cache,
        &sealed,
        prover,
        sector,
        ticket,
        seed,
        pc2out.clone(),
        &pieces,
    )
    .unwrap();
    let verified_c2 = workspace_bin("example-verified-c2", "verified-c2");
    let c2 = Producer::spawn(ProducerConfig::new("c2", verified_c2, vec![]))
        .await
        .unwrap();
    let c2out = run(
        &c2,
        "c2",
        C2 {
            c1out,
            prover_id: prover,
            sector_id: sector,
            miner_id: miner,
        },
    )
    .await;

    assert!(seal::verify_seal(
        proof,
        pc2out.comm_r,
        pc2out.comm_d,
        prover,
        sector,
        ticket,
        seed,
        &c2out.proof
    )
    .unwrap());
    let mut forged = c2out.proof.clone();
    forged[10] ^= 0xff;
    let forged_ok = seal::verify_seal(
        proof,
        pc2out.comm_r,
        pc2out.comm_d,
        prover,
        sector,
        ticket,
        seed,
        &forged,
    );
    assert!(
        !forged_ok.unwrap_or(false),
        "a corrupted proof must not verify"
    );
    let wrong_seed = seal::verify_seal(
        proof,
        pc2out.comm_r,
        pc2out.comm_d,
        prover,
        sector,
        ticket,
        [1; 32],
        &c2out.proof,
    );
    assert!(
        !wrong_seed.unwrap_or(false),
        "a proof must not verify against another seed"
    );

    // Window PoSt: one good sector, and a second whose files are gone → a fault.
    let mut post_seed = [5u8; 32];
    post_seed[31] &= 0x3f;
    let replica = PoStReplicaInfo {
        sector_id: sector,
        comm_r: pc2out.comm_r,
        cache_dir: cache.clone(),
        sealed_file: sealed.clone(),
    };
    let window_type = RegisteredPoStProof::StackedDrgWindow2KiBV1_2;
    let window = worker_processor("window_post").await;
    let wout = run(
        &window,
        "window_post",
        WindowPoSt {
            miner_id: miner,
            proof_type: window_type,
            replicas: vec![replica.clone()],
            seed: post_seed,
        },
    )
    .await;
    assert!(wout.faults.is_empty());
    assert_eq!(wout.proofs.len(), 1);
    let public = BTreeMap::from([(sector, PublicReplicaInfo::new(window_type, pc2out.comm_r))]);
    assert!(post::verify_window_post(
        &post_seed,
        &[(window_type, &wout.proofs[0].0[..])],
        &public,
        prover
    )
    .unwrap());

    let missing = PoStReplicaInfo {
        sector_id: SectorId::from(8),
        comm_r: pc2out.comm_r,
        cache_dir: dir.path().join("no-such-cache"),
        sealed_file: dir.path().join("no-such-sealed"),
    };
    let faulty = WindowPoSt {
        miner_id: miner,
        proof_type: window_type,
        replicas: vec![replica.clone(), missing],
        seed: post_seed,
    };
    let fout = window.process(&faulty).await.unwrap();
    assert_eq!(fout.faults, vec![8]);
    assert!(fout.proofs.is_empty());

    // Winning PoSt.
    let winning_type = RegisteredPoStProof::StackedDrgWinning2KiBV1;
    let win = run(
        &worker_processor("winning_post").await,
        "winning_post",
        WinningPoSt {
            miner_id: miner,
            proof_type: winning_type,
            replicas: vec![replica.clone()],
            seed: post_seed,
        },
    )
    .await;
    let public = BTreeMap::from([(sector, PublicReplicaInfo::new(winning_type, pc2out.comm_r))]);
    assert!(post::verify_winning_post(&post_seed, &win.proofs[0].0, &public, prover).unwrap());

    // Missing parameters: an error that says how to get them; the child keeps serving.
    let mut cfg = ProducerConfig::new(
        "winning_post",
        workspace_bin("damocles-worker", "damocles-worker"),
        vec!["processor".into(), "winning_post".into()],
    );
    cfg.envs.insert(
        "FIL_PROOFS_PARAMETER_CACHE".into(),
        dir.path().join("no-params").display().to_string(),
    );
    let no_params = Producer::spawn(cfg).await.unwrap();
    let task = WinningPoSt {
        miner_id: miner,
        proof_type: winning_type,
        replicas: vec![replica.clone()],
        seed: post_seed,
    };
    let err = no_params.process(&task).await.unwrap_err();
    assert!(err.to_string().contains("fil-params generate"), "{err}");
    assert_eq!(err.kind(), vc_processors::protocol::ErrorKind::Resource);
    assert_eq!(no_params.status().restarts, 0);

    // Unseal gives back the piece's bytes.
    let unsealed = dir.path().join("unsealed");
    let n = run(
        &worker_processor("unseal").await,
        "unseal",
        Unseal {
            registered_proof: proof,
            prover_id: prover,
            sector_id: sector,
            comm_d: pc2out.comm_d,
            ticket,
            cache_dir: cache.clone(),
            sealed_file: sealed.clone(),
            unsealed_output: unsealed.clone(),
            offset: UnpaddedByteIndex(0),
            num_bytes: UnpaddedBytesAmount(2032),
        },
    )
    .await;
    assert_eq!(u64::from(n), 2032);
    let back = std::fs::read(&unsealed).unwrap();
    assert_eq!(&back[..payload.len()], &payload[..]);
    assert!(back[payload.len()..].iter().all(|b| *b == 0));

    // Snap deal: encode new data into the sealed sector, prove the update.
    let update_proof = RegisteredUpdateProof::StackedDrg2KiBV1;
    let new_data: Vec<u8> = (0..2032u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(dir.path().join("new-piece"), &new_data).unwrap();
    let snap_staged = dir.path().join("snap-staged");
    let new_pieces = worker_processor("add_pieces")
        .await
        .process(&AddPieces {
            seal_proof_type: proof,
            pieces: vec![Piece {
                piece_file: PieceFile::Local(dir.path().join("new-piece")),
                payload_size: new_data.len() as u64,
                piece_size: UnpaddedBytesAmount(2032),
            }],
            staged_filepath: snap_staged.clone(),
        })
        .await
        .unwrap();
    let (new_replica, new_cache) = (dir.path().join("update"), dir.path().join("update-cache"));
    let encoded = run(
        &worker_processor("snap_encode").await,
        "snap_encode",
        SnapEncode {
            registered_proof: update_proof,
            new_replica_path: new_replica.clone(),
            new_cache_path: new_cache.clone(),
            sector_path: sealed.clone(),
            sector_cache_path: cache.clone(),
            staged_data_path: snap_staged,
            piece_infos: new_pieces,
        },
    )
    .await;
    let vanilla = filecoin_proofs_api::update::generate_partition_proofs(
        update_proof,
        pc2out.comm_r,
        encoded.comm_r_new,
        encoded.comm_d_new,
        &sealed,
        &cache,
        &new_replica,
        &new_cache,
    )
    .unwrap();
    let snap_proof = run(
        &worker_processor("snap_prove").await,
        "snap_prove",
        SnapProve {
            registered_proof: update_proof,
            vannilla_proofs: vanilla.into_iter().map(|p| p.0).collect(),
            comm_r_old: pc2out.comm_r,
            comm_r_new: encoded.comm_r_new,
            comm_d_new: encoded.comm_d_new,
        },
    )
    .await;
    assert!(
        filecoin_proofs_api::update::verify_empty_sector_update_proof(
            update_proof,
            &snap_proof,
            pc2out.comm_r,
            encoded.comm_r_new,
            encoded.comm_d_new,
        )
        .unwrap()
    );

    // Transfer the sealed sector out, as persisting does.
    let store = dir.path().join("store");
    let transfer = persist_task("store-a", &store, &sealed, &cache, "s-t01000-7");
    assert!(run(&worker_processor("transfer").await, "transfer", transfer).await);
    assert_eq!(
        std::fs::read(store.join("sealed/s-t01000-7")).unwrap(),
        std::fs::read(&sealed).unwrap()
    );
    assert!(Path::new(&store.join("cache/s-t01000-7/p_aux")).exists());
}

#[tokio::test]
async fn processors_answer_bad_input_with_errors_and_keep_serving() {
    init_logs();
    fil_params::configure_process_env();
    let dir = tempfile::tempdir().unwrap();
    let p = worker_processor("tree_d").await;
    let missing = TreeD {
        registered_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
        staged_file: dir.path().join("missing-staged"),
        cache_dir: dir.path().join("cache"),
    };
    let err = p.process(&missing).await.unwrap_err().to_string();
    assert!(err.contains("missing-staged"), "names the file: {err}");

    // A task of the wrong shape for the stage.
    let raw =
        serde_json::value::to_raw_value(&serde_json::json!({"registered_proof": "NoSuchProof"}))
            .unwrap();
    let err = p.process_raw(&raw).await.unwrap_err().to_string();
    assert!(err.contains("cannot decode tree_d task"), "{err}");

    // Still serving: a good task works on the same child.
    let staged = dir.path().join("staged");
    std::fs::write(&staged, vec![0u8; 2048]).unwrap();
    let ok = TreeD {
        registered_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
        staged_file: staged,
        cache_dir: dir.path().join("cache"),
    };
    assert!(p.process(&ok).await.unwrap());
    assert_eq!(p.status().restarts, 0);

    // An unknown stage is refused by the binary with a clear message.
    let bin = workspace_bin("damocles-worker", "damocles-worker");
    let out = std::process::Command::new(bin)
        .args(["processor", "pc9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pc9"));
}
