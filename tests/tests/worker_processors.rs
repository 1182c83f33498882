//! The worker's processor table against real children: stages with entries go
//! to ext-processors (the worker's own `processor <stage>`), the others run
//! builtin; entries that cannot start fail the start naming the entry.

use std::path::Path;

use damocles_e2e::workspace_bin;
use damocles_worker::config;
use damocles_worker::processors::Processors;
use filecoin_proofs_api::UnpaddedBytesAmount;
use vc_processors::tasks::*;

const SEAL: RegisteredSealProof = RegisteredSealProof::StackedDrg2KiBV1_1;

fn processors_cfg(toml: &str) -> config::Processors {
    let text = format!("[sector_manager]\nrpc_client.addr = \"/ip4/127.0.0.1/tcp/1789\"\n[[sealing_thread]]\nlocation = \"/tmp/x\"\n{toml}");
    config::parse(&text).unwrap().config.processors
}

fn pledge(staged: &Path) -> AddPieces {
    AddPieces {
        seal_proof_type: SEAL,
        pieces: vec![Piece {
            piece_file: PieceFile::Pledge,
            payload_size: 0,
            piece_size: UnpaddedBytesAmount(2032),
        }],
        staged_filepath: staged.to_path_buf(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_run_in_their_configured_processors() {
    let worker = workspace_bin("damocles-worker", "damocles-worker");
    let cfg = processors_cfg("[[processors.tree_d]]\nconcurrent = 1\n[[processors.tree_d]]\nconcurrent = 1\n[processors.limitation.concurrent]\ntree_d = 2\n");
    let p = Processors::start(&cfg, &worker).await.unwrap();
    assert!(p.is_external("tree_d") && !p.is_external("add_pieces"));

    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    for i in 0..4 {
        let d = dir.path().join(format!("s{i}"));
        std::fs::create_dir_all(d.join("cache")).unwrap();
        // Builtin, in this process.
        let pieces = p.run(pledge(&d.join("staged"))).await.unwrap();
        assert_eq!(pieces.len(), 1);
        jobs.push(TreeD {
            registered_proof: SEAL,
            staged_file: d.join("staged"),
            cache_dir: d.join("cache"),
        });
    }
    // Four tree-d builds at once over two children of one slot each.
    let p = std::sync::Arc::new(p);
    let runs: Vec<_> = jobs
        .into_iter()
        .map(|t| {
            let p = p.clone();
            tokio::spawn(async move { p.run(t).await })
        })
        .collect();
    for r in runs {
        assert!(r.await.unwrap().unwrap());
    }
    for i in 0..4 {
        assert!(dir
            .path()
            .join(format!("s{i}/cache/sc-02-data-tree-d.dat"))
            .exists());
    }
    assert_eq!(p.restarts()["tree_d"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_cannot_start_are_named() {
    let worker = workspace_bin("damocles-worker", "damocles-worker");
    let missing = processors_cfg("[[processors.pc1]]\nbin = \"/nonexistent/pc1-processor\"\n");
    let e = format!(
        "{:#}",
        Processors::start(&missing, &worker).await.err().unwrap()
    );
    assert!(
        e.contains("processors.pc1[0]") && e.contains("/nonexistent/pc1-processor"),
        "{e}"
    );

    // A child serving another stage opens with the wrong ready line.
    let wrong = processors_cfg("[[processors.pc2]]\nargs = [\"processor\", \"tree_d\"]\n");
    let e = format!(
        "{:#}",
        Processors::start(&wrong, &worker).await.err().unwrap()
    );
    assert!(
        e.contains("processors.pc2[0]") && e.contains("tree_d"),
        "{e}"
    );
}
