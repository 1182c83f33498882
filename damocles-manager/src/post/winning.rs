//! Winning PoSt (`daemon run --miner`): the chain announces an election the
//! miner won (as venus-gateway's `ComputeProof` event does); the manager
//! proves the challenged sectors and hands the proof in before the cutoff.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use damocles_chain::{post_seed, ActorID, BlockOutcome, Epoch, WinningChallenge};
use filecoin_proofs_api::{PublicReplicaInfo, SectorId};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::{error, info, info_span, warn, Instrument};
use vc_processors::tasks::WinningPoSt;

use super::Proving;

/// Answers the elections of `miners` until the head stream ends.
pub fn spawn(p: Arc<Proving>, miners: Vec<ActorID>) -> JoinHandle<()> {
    tokio::spawn(async move {
        if miners.is_empty() {
            warn!("--miner: no miner has Proof.Enabled; no election will be answered");
            return;
        }
        info!(miners = ?miners, "winning PoSt: answering elections");
        let mut heads = p.chain.head_changes();
        let mut seen: HashSet<(ActorID, Epoch)> = HashSet::new();
        // One proof at a time per miner: elections that come faster than
        // proofs (short devnet blocks, a C2 sharing the cores) would
        // otherwise all run at once and all miss their cutoffs.
        let turns: HashMap<ActorID, Arc<Mutex<()>>> = miners
            .iter()
            .map(|m| (*m, Arc::new(Mutex::new(()))))
            .collect();
        loop {
            let head = heads.borrow_and_update().epoch;
            for &miner in &miners {
                let open = match p.chain.open_winning_challenges(miner).await {
                    Ok(o) => o,
                    Err(e) => {
                        warn!(miner, error = %e, "cannot read elections");
                        continue;
                    }
                };
                for c in open {
                    if seen.insert((miner, c.epoch)) {
                        let span = info_span!("winning", miner, epoch = c.epoch);
                        let turn = Arc::clone(&turns[&miner]);
                        tokio::spawn(answer(Arc::clone(&p), c, turn).instrument(span));
                    }
                }
            }
            seen.retain(|(_, e)| *e + 10_000 > head);
            if heads.changed().await.is_err() {
                return;
            }
        }
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn answer(p: Arc<Proving>, c: WinningChallenge, turn: Arc<Mutex<()>>) {
    let (miner, epoch) = (c.miner, c.epoch);
    let _turn = turn.lock().await;
    let now_ms = unix_ms();
    if now_ms >= c.cutoff_unix_ms {
        // Waited behind earlier proofs past the cutoff: a proof now could
        // only be refused, and would delay the next election's.
        p.metrics.block(&miner.to_string(), "missed");
        error!(
            late_ms = now_ms - c.cutoff_unix_ms,
            "winning PoSt not started: the cutoff passed while an earlier election of this miner was proven; the block is lost"
        );
        return;
    }
    info!(sectors = ?c.sectors.iter().map(|s| s.number).collect::<Vec<_>>(), "elected: proving");
    let proof = match prove(&p, &c).await {
        Ok(proof) => proof,
        Err(e) => {
            p.metrics.block(&miner.to_string(), "missed");
            error!(error = %format!("{e:#}"), "winning PoSt failed: the block is lost");
            return;
        }
    };
    match p.chain.submit_winning_post(miner, epoch, proof).await {
        Ok(rec) => {
            if let Some(ms) = rec.latency_ms {
                p.metrics.winning_latency(ms as f64 / 1000.0);
            }
            match rec.outcome {
                BlockOutcome::Won => {
                    p.metrics.block(&miner.to_string(), "won");
                    info!(latency_ms = rec.latency_ms, "block won");
                }
                BlockOutcome::Missed { reason } => {
                    p.metrics.block(&miner.to_string(), "missed");
                    error!(reason = %reason, latency_ms = rec.latency_ms, "block missed");
                }
                BlockOutcome::Pending => warn!("the chain left the block pending"),
            }
        }
        Err(e) => {
            p.metrics.block(&miner.to_string(), "missed");
            error!(error = %e, "the chain refused the winning PoSt");
        }
    }
}

async fn prove(p: &Proving, c: &WinningChallenge) -> Result<Vec<u8>> {
    p.checker
        .locator
        .resolve(c.miner, c.sectors.iter().map(|s| s.number))
        .await;
    let replicas = c
        .sectors
        .iter()
        .map(|s| p.checker.locator.replica(s, c.miner).map(|(r, _)| r))
        .collect::<std::result::Result<Vec<_>, String>>()
        .map_err(|e| anyhow!(e))?;
    let left =
        std::time::Duration::from_millis(c.cutoff_unix_ms.saturating_sub(unix_ms()).max(1000));
    let mut task = WinningPoSt {
        miner_id: c.miner,
        proof_type: c.proof_type,
        replicas,
        seed: post_seed(c.randomness),
    };
    let started = Instant::now();
    let local = super::fetch::localize(
        p,
        "winning",
        c.miner,
        c.proof_type,
        task.seed,
        &mut task.replicas,
    )
    .await?;
    if let Some((n, why)) = local.failed.iter().next() {
        bail!("sector {n}: {why}");
    }
    let out = p.winning_prover.prove(task, left).await.context("prover")?;
    p.metrics.post_seconds(
        "winning",
        p.winning_prover.label(),
        started.elapsed().as_secs_f64(),
    );
    if out.proofs.is_empty() {
        bail!("the prover returned no proof");
    }
    Ok(out.proofs.into_iter().flat_map(|b| b.0).collect())
}

/// Proves one active sector of the first miner that has one, with a fixed
/// challenge, and verifies it: loads the winning parameters (and an
/// ext-prover's) before the first election. Nothing to prove yet is not a
/// failure; a proof that fails or does not verify is.
pub async fn warmup(p: &Proving, miners: &[ActorID]) -> Result<()> {
    for &miner in miners {
        let info = p.chain.miner_info(miner).await?;
        let Some(sector) = first_active(p, miner).await? else {
            continue;
        };
        let proof_type = damocles_devnet::devnet::winning_post_proof_for(info.sector_size)
            .map_err(|e| anyhow!("{e}"))?;
        let seed = post_seed([7u8; 32]);
        p.checker.locator.resolve(miner, [sector.number]).await;
        let (replica, _) = p
            .checker
            .locator
            .replica(&sector, miner)
            .map_err(|e| anyhow!(e))?;
        let started = Instant::now();
        let mut task = WinningPoSt {
            miner_id: miner,
            proof_type,
            replicas: vec![replica],
            seed,
        };
        let local =
            super::fetch::localize(p, "winning", miner, proof_type, seed, &mut task.replicas)
                .await?;
        if let Some((n, why)) = local.failed.iter().next() {
            bail!("warmup proof over sector {n} of miner {miner}: {why}");
        }
        let out = p
            .winning_prover
            .prove(task, std::time::Duration::from_secs(600))
            .await
            .with_context(|| {
                format!(
                    "warmup proof over sector {} of miner {miner}",
                    sector.number
                )
            })?;
        let proof: Vec<u8> = out.proofs.into_iter().flat_map(|b| b.0).collect();
        let replicas = [(
            SectorId::from(sector.number),
            PublicReplicaInfo::new(proof_type, sector.comm_r),
        )]
        .into_iter()
        .collect();
        let ok = tokio::task::spawn_blocking(move || {
            filecoin_proofs_api::post::verify_winning_post(
                &seed,
                &proof,
                &replicas,
                damocles_sector::prover_id(miner),
            )
        })
        .await?
        .map_err(|e| anyhow!("warmup proof verification: {e:#}"))?;
        if !ok {
            bail!(
                "warmup proof over sector {} of miner {miner} does not verify",
                sector.number
            );
        }
        info!(miner, sector = sector.number, elapsed = ?started.elapsed(), prover = p.winning_prover.label(), "winning PoSt warmed up");
        return Ok(());
    }
    warn!("winning PoSt warmup skipped: no active sector to prove yet (the first election loads the parameters)");
    Ok(())
}

async fn first_active(
    p: &Proving,
    miner: ActorID,
) -> Result<Option<damocles_chain::SectorOnChain>> {
    for dl in p.chain.deadlines(miner).await? {
        for part in p.chain.partitions(miner, dl.index).await? {
            if let Some(n) = part.active.iter().next() {
                let set = [*n].into_iter().collect();
                return Ok(p.chain.sectors(miner, &set).await?.into_iter().next());
            }
        }
    }
    Ok(None)
}
