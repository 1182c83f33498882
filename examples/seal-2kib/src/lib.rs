//! One 2KiB sector through every sealing stage, timed per stage, in one of three
//! ways: direct filecoin-proofs-api calls, the builtin processors in-process, or
//! the builtin processors behind ext-processor child processes. The `seal-2kib`
//! binary and the processor benchmark both use it. [`devnet`] runs the sector's
//! commitments through a real damocles-manager and its devnet chain.

pub mod devnet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use filecoin_proofs_api::seal::SealPreCommitPhase2Output;
use filecoin_proofs_api::{post, seal, PublicReplicaInfo};
use vc_processors::builtin::{seal_commit_phase1, BuiltinProcessor};
use vc_processors::producer::{Producer, ProducerConfig};
use vc_processors::tasks::*;
use vc_processors::{Ctx, Processor, Task};

pub const SEAL_PROOF: RegisteredSealProof = RegisteredSealProof::StackedDrg2KiBV1_1;
pub const WINDOW_PROOF: RegisteredPoStProof = RegisteredPoStProof::StackedDrgWindow2KiBV1_2;
pub const MINER: ActorID = 1000;

/// How stages are run.
pub enum Mode {
    /// Straight filecoin-proofs-api calls: the baseline.
    Direct,
    /// `BuiltinProcessor` in this process.
    Builtin,
    /// One ext-processor child per stage.
    External(Children),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Direct => "direct filecoin-proofs-api",
            Mode::Builtin => "builtin in-process",
            Mode::External(_) => "ext-processors",
        }
    }
}

/// The ext-processor children, one per stage.
pub struct Children {
    pub add_pieces: Producer,
    pub tree_d: Producer,
    pub pc1: Producer,
    pub pc2: Producer,
    pub c2: Producer,
    pub window_post: Producer,
}

impl Children {
    /// Spawns `<worker_bin> processor <stage>` for every stage.
    pub async fn spawn(worker_bin: &Path) -> Result<Children> {
        let one = |stage: &str| {
            let cfg =
                ProducerConfig::new(stage, worker_bin, vec!["processor".into(), stage.into()]);
            async move { Producer::spawn(cfg).await.map_err(anyhow::Error::from) }
        };
        Ok(Children {
            add_pieces: one(AddPieces::STAGE).await?,
            tree_d: one(TreeD::STAGE).await?,
            pc1: one(PC1::STAGE).await?,
            pc2: one(PC2::STAGE).await?,
            c2: one(C2::STAGE).await?,
            window_post: one(WindowPoSt::STAGE).await?,
        })
    }
}

/// What a run produced.
pub struct Report {
    pub timings: Vec<(&'static str, Duration)>,
    pub comm_r: Commitment,
    pub proof_len: usize,
}

impl Report {
    pub fn total(&self) -> Duration {
        self.timings.iter().map(|(_, d)| *d).sum()
    }
}

async fn step<T>(
    mode: &Mode,
    p: impl Fn(&Children) -> &Producer,
    task: T,
    direct: impl FnOnce(T) -> Result<T::Output>,
) -> Result<T::Output>
where
    T: Task + Clone,
    BuiltinProcessor: Processor<T>,
{
    match mode {
        Mode::Direct => direct(task),
        Mode::Builtin => BuiltinProcessor::default().process(task, &Ctx::detached()),
        Mode::External(children) => Ok(p(children).process(&task).await?),
    }
}

/// Where a sector's randomness comes from and where its commitments go.
#[async_trait::async_trait]
pub trait Commitments: Send {
    /// The ticket for PC1.
    async fn ticket(&mut self) -> Result<Ticket>;
    /// After PC2: make the precommit land (and the sealed files persist) and
    /// return the interactive seed for C1.
    async fn seed(
        &mut self,
        pc2: &SealPreCommitPhase2Output,
        sealed: &Path,
        cache: &Path,
    ) -> Result<Ticket>;
    /// After C2: get the proof accepted.
    async fn prove(&mut self, proof: &[u8]) -> Result<()>;
}

/// Fixed randomness and no chain: for measuring the stages alone.
pub struct NoChain(pub u64);

#[async_trait::async_trait]
impl Commitments for NoChain {
    async fn ticket(&mut self) -> Result<Ticket> {
        Ok([self.0 as u8; 32])
    }
    async fn seed(&mut self, _: &SealPreCommitPhase2Output, _: &Path, _: &Path) -> Result<Ticket> {
        Ok([self.0 as u8 ^ 0x55; 32])
    }
    async fn prove(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// Seals sector `sector_num` in `dir`, verifies the proof and runs a window PoSt
/// over it, timing each stage. Ticket and seed come from `chain`, which also
/// takes the precommit and the proof. `progress` is told each stage as it starts.
pub async fn seal_and_prove(
    mode: &Mode,
    dir: &Path,
    sector_num: u64,
    chain: &mut dyn Commitments,
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    let (staged, cache, sealed) = (dir.join("staged"), dir.join("cache"), dir.join("sealed"));
    std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    let prover = prover_id(MINER);
    let sector = SectorId::from(sector_num);
    progress("ticket");
    let ticket = chain.ticket().await?;
    let mut timings = Vec::new();
    let mut clock = |name: &'static str, started: Instant| timings.push((name, started.elapsed()));

    progress("add_pieces");
    let t = Instant::now();
    let add = AddPieces {
        seal_proof_type: SEAL_PROOF,
        pieces: vec![Piece {
            piece_file: PieceFile::Pledge,
            payload_size: 0,
            piece_size: UnpaddedBytesAmount(2032),
        }],
        staged_filepath: staged.clone(),
    };
    let pieces = step(
        mode,
        |c| &c.add_pieces,
        add,
        |t| vc_processors::builtin::add_pieces(&t),
    )
    .await?;
    clock("add_pieces", t);

    progress("tree_d");
    let t = Instant::now();
    let td = TreeD {
        registered_proof: SEAL_PROOF,
        staged_file: staged.clone(),
        cache_dir: cache.clone(),
    };
    step(
        mode,
        |c| &c.tree_d,
        td,
        |t| vc_processors::builtin::tree_d(&t).map(|_| true),
    )
    .await?;
    clock("tree_d", t);

    progress("pc1");
    let t = Instant::now();
    std::fs::File::create(&sealed).with_context(|| format!("create {}", sealed.display()))?;
    let pc1 = PC1 {
        registered_proof: SEAL_PROOF,
        cache_path: cache.clone(),
        in_path: staged.clone(),
        out_path: sealed.clone(),
        prover_id: prover,
        sector_id: sector,
        ticket,
        piece_infos: pieces.clone(),
    };
    let pc1out = step(
        mode,
        |c| &c.pc1,
        pc1,
        |t| {
            seal::seal_pre_commit_phase1(
                t.registered_proof,
                &t.cache_path,
                &t.in_path,
                &t.out_path,
                t.prover_id,
                t.sector_id,
                t.ticket,
                &t.piece_infos,
            )
        },
    )
    .await?;
    clock("pc1", t);

    progress("pc2");
    let t = Instant::now();
    let pc2 = PC2 {
        pc1out,
        cache_dir: cache.clone(),
        sealed_file: sealed.clone(),
    };
    let pc2out = step(
        mode,
        |c| &c.pc2,
        pc2,
        |t| seal::seal_pre_commit_phase2(t.pc1out, &t.cache_dir, &t.sealed_file),
    )
    .await?;
    clock("pc2", t);

    progress("precommit + seed");
    let seed = chain.seed(&pc2out, &sealed, &cache).await?;

    progress("c1");
    let t = Instant::now();
    let c1out = seal_commit_phase1(
        &cache,
        &sealed,
        prover,
        sector,
        ticket,
        seed,
        pc2out.clone(),
        &pieces,
    )?;
    clock("c1", t);

    progress("c2");
    let t = Instant::now();
    let c2 = C2 {
        c1out,
        prover_id: prover,
        sector_id: sector,
        miner_id: MINER,
    };
    let c2out = step(
        mode,
        |c| &c.c2,
        c2,
        |t| seal::seal_commit_phase2(t.c1out, t.prover_id, t.sector_id),
    )
    .await?;
    clock("c2", t);

    progress("verify");
    let ok = seal::verify_seal(
        SEAL_PROOF,
        pc2out.comm_r,
        pc2out.comm_d,
        prover,
        sector,
        ticket,
        seed,
        &c2out.proof,
    )?;
    ensure!(ok, "the seal proof of sector {sector_num} does not verify");
    progress("prove-commit");
    chain.prove(&c2out.proof).await?;

    progress("window_post");
    let t = Instant::now();
    let mut post_seed = [sector_num as u8; 32];
    post_seed[31] &= 0x3f;
    let replica = PoStReplicaInfo {
        sector_id: sector,
        comm_r: pc2out.comm_r,
        cache_dir: cache.clone(),
        sealed_file: sealed.clone(),
    };
    let wp = WindowPoSt {
        miner_id: MINER,
        proof_type: WINDOW_PROOF,
        replicas: vec![replica],
        seed: post_seed,
    };
    let wout = step(
        mode,
        |c| &c.window_post,
        wp,
        |t| {
            let replicas = BTreeMap::from([(
                sector,
                filecoin_proofs_api::PrivateReplicaInfo::new(
                    t.proof_type,
                    pc2out.comm_r,
                    cache.clone(),
                    sealed.clone(),
                ),
            )]);
            let proofs = post::generate_window_post(&t.seed, &replicas, prover)?;
            Ok(WindowPoStOutput {
                proofs: proofs.into_iter().map(|(_, p)| B64Bytes(p)).collect(),
                faults: vec![],
            })
        },
    )
    .await?;
    clock("window_post", t);
    ensure!(
        wout.faults.is_empty(),
        "window post reported faults {:?}",
        wout.faults
    );
    let public = BTreeMap::from([(sector, PublicReplicaInfo::new(WINDOW_PROOF, pc2out.comm_r))]);
    ensure!(
        post::verify_window_post(
            &post_seed,
            &[(WINDOW_PROOF, &wout.proofs[0].0[..])],
            &public,
            prover
        )?,
        "the window PoSt proof does not verify"
    );

    Ok(Report {
        timings,
        comm_r: pc2out.comm_r,
        proof_len: c2out.proof.len(),
    })
}

/// A fresh working directory under `base` for one run.
pub fn run_dir(base: &Path, label: &str) -> Result<PathBuf> {
    let dir = base.join(label);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clean {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}
