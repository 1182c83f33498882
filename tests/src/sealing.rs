//! One real 2KiB CC sector sealed step by step in this process with the
//! builtin processors, the way a worker's sealing thread does it, so a test
//! can put manager calls between the steps.

use std::path::{Path, PathBuf};

use filecoin_proofs_api::seal::{self, SealPreCommitPhase2Output};
use filecoin_proofs_api::{PieceInfo, RegisteredSealProof, SectorId, UnpaddedBytesAmount};
use vc_processors::builtin::{add_pieces, seal_commit_phase1, tree_d};
use vc_processors::tasks::{prover_id, AddPieces, Piece, PieceFile, TreeD};

pub const SEAL_PROOF: RegisteredSealProof = RegisteredSealProof::StackedDrg2KiBV1_1;

pub struct LocalSector {
    pub miner: u64,
    pub number: u64,
    pub staged: PathBuf,
    pub cache: PathBuf,
    pub sealed: PathBuf,
    pub pieces: Vec<PieceInfo>,
    pub pc2: Option<SealPreCommitPhase2Output>,
}

impl LocalSector {
    pub fn new(dir: &Path, miner: u64, number: u64) -> LocalSector {
        let cache = dir.join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        LocalSector {
            miner,
            number,
            staged: dir.join("staged"),
            cache,
            sealed: dir.join("sealed"),
            pieces: vec![],
            pc2: None,
        }
    }

    /// add_pieces (pledge), tree_d, PC1 with `ticket`, PC2: returns (CommR, CommD).
    pub fn pre_commit(&mut self, ticket: [u8; 32]) -> ([u8; 32], [u8; 32]) {
        self.pieces = add_pieces(&AddPieces {
            seal_proof_type: SEAL_PROOF,
            pieces: vec![Piece {
                piece_file: PieceFile::Pledge,
                payload_size: 0,
                piece_size: UnpaddedBytesAmount(2032),
            }],
            staged_filepath: self.staged.clone(),
        })
        .expect("add_pieces");
        tree_d(&TreeD {
            registered_proof: SEAL_PROOF,
            staged_file: self.staged.clone(),
            cache_dir: self.cache.clone(),
        })
        .expect("tree_d");
        std::fs::File::create(&self.sealed).unwrap();
        let pc1 = seal::seal_pre_commit_phase1(
            SEAL_PROOF,
            &self.cache,
            &self.staged,
            &self.sealed,
            prover_id(self.miner),
            SectorId::from(self.number),
            ticket,
            &self.pieces,
        )
        .expect("pc1");
        let pc2 = seal::seal_pre_commit_phase2(pc1, &self.cache, &self.sealed).expect("pc2");
        let out = (pc2.comm_r, pc2.comm_d);
        self.pc2 = Some(pc2);
        out
    }

    /// C1 and C2 with `ticket` and `seed`: the seal proof (about 70 s).
    pub fn commit(&self, ticket: [u8; 32], seed: [u8; 32]) -> Vec<u8> {
        let c1 = seal_commit_phase1(
            &self.cache,
            &self.sealed,
            prover_id(self.miner),
            SectorId::from(self.number),
            ticket,
            seed,
            self.pc2.clone().expect("pre_commit first"),
            &self.pieces,
        )
        .expect("c1");
        seal::seal_commit_phase2(c1, prover_id(self.miner), SectorId::from(self.number))
            .expect("c2")
            .proof
    }

    /// `s-t01000-7`
    pub fn name(&self) -> String {
        format!("s-t0{}-{}", self.miner, self.number)
    }
}
