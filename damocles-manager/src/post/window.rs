//! The window PoSt scheduler (`daemon run --poster`).
//!
//! One task per (miner, deadline), started when the head reaches the
//! deadline's challenge (the next deadline is picked up while the current
//! one is still open, as its challenge is already drawn). The task:
//!
//! 1. waits for challenge + ChallengeConfidence (gives up at close);
//! 2. declares recoveries for the deadline two ahead (before its cutoff);
//! 3. per batch of MaxPartitionsPerPoStMessage partitions: checks the
//!    sectors (a bad sector is skipped, never the partition), proves, and
//!    verifies the proof itself; a sector the prover finds faulty is skipped
//!    and the proof redone; any other failure is retried with backoff until
//!    the deadline closes;
//! 4. sends from open + SubmitConfidence, records the message so that a
//!    restarted manager never sends the same partitions again, and follows
//!    it until it has Confidence epochs on top.
//!
//! Deadlines are independent tasks: one that fails never holds up the next.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use damocles_chain::{
    post_seed, ActorID, ChainError, DeadlineInfo, Epoch, Head, Message, MessageStatus,
    PartitionState, PoStPartition, PoStProof, RecoveryDeclaration, SectorOnChain,
    SubmitWindowedPoStParams,
};
use filecoin_proofs_api::{PublicReplicaInfo, RegisteredPoStProof, SectorId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, info_span, warn, Instrument};
use vc_processors::tasks::{PoStReplicaInfo, WindowPoSt};

use super::prover::WindowJob;
use super::Proving;
use crate::config::MinerConfig;
use crate::db::{now_secs, PoStSent};

/// The most partitions one SubmitWindowedPoSt may carry: Filecoin's
/// PoStedPartitionsMax, for every proof type (its AddressedSectorsMax bound
/// is larger for all sizes). MaxPartitionsPerPoStMessage 0 means this; a
/// larger value is capped to it.
pub const DEFAULT_PARTITIONS_PER_MESSAGE: usize = 3;

/// What became of one deadline.
#[derive(Debug, PartialEq, Eq)]
pub enum DeadlineOutcome {
    /// Nothing to prove there.
    Empty,
    /// Every partition with sectors to prove has an accepted proof.
    Proven,
    /// Some partition is left without one.
    Missed(String),
}

/// Runs the scheduler until the chain's head stream ends.
pub fn spawn(proving: Arc<Proving>, miners: Vec<MinerConfig>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let miners: Vec<MinerConfig> = miners.into_iter().filter(|m| m.post.enabled).collect();
        if miners.is_empty() {
            warn!("--poster: no miner has PoSt.Enabled; nothing to prove");
            return;
        }
        info!(miners = ?miners.iter().map(|m| m.actor).collect::<Vec<_>>(), "window PoSt scheduler started");
        let mut heads = proving.chain.head_changes();
        // (miner, open) -> (task, close): kept until the deadline closed, so
        // that a finished deadline is not started again.
        let mut tasks: HashMap<(ActorID, Epoch), (JoinHandle<()>, Epoch)> = HashMap::new();
        loop {
            let head = *heads.borrow_and_update();
            for m in &miners {
                let due = match due_deadlines(&proving, m.actor, head.epoch).await {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(miner = m.actor, error = %e, "cannot read the miner's deadlines");
                        continue;
                    }
                };
                for dl in due {
                    tasks.entry((m.actor, dl.open)).or_insert_with(|| {
                        let p = Arc::clone(&proving);
                        let span = info_span!(
                            "wdpost",
                            miner = m.actor,
                            deadline = dl.index,
                            open = dl.open
                        );
                        let task = tokio::spawn(run_deadline(p, m.clone(), dl).instrument(span));
                        (task, dl.close)
                    });
                }
                proving.update_fault_gauge(m.actor).await;
            }
            tasks.retain(|_, (_, close)| *close > head.epoch);
            if heads.changed().await.is_err() {
                info!("chain head stream ended: window PoSt scheduler stops");
                return;
            }
        }
    })
}

/// The deadline current at `epoch`, and the next one once its challenge is drawn.
async fn due_deadlines(p: &Proving, miner: ActorID, epoch: Epoch) -> Result<Vec<DeadlineInfo>> {
    let current = p.chain.deadline_info(miner, epoch).await?;
    let next = p.chain.deadline_info(miner, current.close).await?;
    let mut due = vec![current];
    if epoch >= next.challenge {
        due.push(next);
    }
    Ok(due)
}

/// Waits until the head reaches `epoch`; false if it reached `close` first
/// (or the chain went away).
async fn wait_for(heads: &mut watch::Receiver<Head>, epoch: Epoch, close: Epoch) -> bool {
    loop {
        let h = heads.borrow_and_update().epoch;
        if h >= close {
            return false;
        }
        if h >= epoch {
            return true;
        }
        if heads.changed().await.is_err() {
            return false;
        }
    }
}

async fn run_deadline(p: Arc<Proving>, m: MinerConfig, dl: DeadlineInfo) {
    let mut heads = p.chain.head_changes();
    let start = dl.challenge + m.post.start_after() as Epoch;
    if !wait_for(&mut heads, start, dl.close).await {
        return;
    }
    {
        let (p, m) = (Arc::clone(&p), m.clone());
        tokio::spawn(
            async move {
                if let Err(e) = declare_recoveries(&p, &m, dl).await {
                    warn!(error = %format!("{e:#}"), "recovery declaration failed; proving goes on");
                }
            }
            .in_current_span(),
        );
    }
    let outcome = match prove_deadline(&p, &m, dl).await {
        Ok(o) => o,
        Err(e) => DeadlineOutcome::Missed(format!("{e:#}")),
    };
    let miner = m.actor.to_string();
    match &outcome {
        DeadlineOutcome::Empty => debug!("no sector to prove in this deadline"),
        DeadlineOutcome::Proven => {
            p.metrics.post_deadline(&miner, "proven");
            info!("deadline proven");
        }
        DeadlineOutcome::Missed(why) => {
            p.metrics.post_deadline(&miner, "missed");
            error!(reason = %why, "deadline missed: its unproven sectors turn faulty");
        }
    }
    if let Err(e) = p.db.prune_post_sent(m.actor, dl.open) {
        debug!(error = %e, "old window PoSt records not pruned");
    }
}

async fn prove_deadline(p: &Proving, m: &MinerConfig, dl: DeadlineInfo) -> Result<DeadlineOutcome> {
    let miner = m.actor;
    let partitions = p.chain.partitions(miner, dl.index).await?;
    let done = already_sent(p, miner, dl).await?;
    let todo: Vec<PartitionState> = partitions
        .into_iter()
        .filter(|part| !part.to_prove().is_empty() && !done.contains(&part.index))
        .collect();
    if todo.is_empty() {
        return Ok(if done.is_empty() {
            DeadlineOutcome::Empty
        } else {
            info!(partitions = ?done, "partitions already proven or sent before a restart");
            DeadlineOutcome::Proven
        });
    }
    let per_message = match m.post.max_partitions_per_po_st_message {
        0 => DEFAULT_PARTITIONS_PER_MESSAGE,
        n => (n as usize).min(DEFAULT_PARTITIONS_PER_MESSAGE),
    };
    let batches: Vec<Vec<PartitionState>> = todo.chunks(per_message).map(<[_]>::to_vec).collect();
    info!(
        partitions = todo.len(),
        batches = batches.len(),
        "proving deadline"
    );
    let results: Vec<Result<()>> = if m.post.parallel {
        futures::future::join_all(batches.iter().map(|b| prove_batch(p, m, dl, b))).await
    } else {
        let mut out = Vec::new();
        for b in &batches {
            out.push(prove_batch(p, m, dl, b).await);
        }
        out
    };
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !failed.is_empty() {
        return Ok(DeadlineOutcome::Missed(failed.join("; ")));
    }
    // A partition none of whose sectors could be proven was left out of its
    // message: the chain turns its sectors faulty at close, as for a miss.
    let proven = already_sent(p, miner, dl).await?;
    let left_out: Vec<u64> = todo
        .iter()
        .map(|part| part.index)
        .filter(|i| !proven.contains(i))
        .collect();
    if left_out.is_empty() {
        Ok(DeadlineOutcome::Proven)
    } else {
        Ok(DeadlineOutcome::Missed(format!(
            "partitions {left_out:?} unproven: none of their sectors could be proven"
        )))
    }
}

/// Partitions the chain has accepted for this deadline, and those of
/// messages sent before a restart that are pending or went through.
async fn already_sent(p: &Proving, miner: ActorID, dl: DeadlineInfo) -> Result<BTreeSet<u64>> {
    let mut done: BTreeSet<u64> = p
        .chain
        .deadlines(miner)
        .await?
        .into_iter()
        .find(|d| d.index == dl.index)
        .map(|d| d.proven_partitions)
        .unwrap_or_default();
    for sent in p.db.post_sent(miner, dl.open)? {
        match p.chain.message_status(&sent.message).await {
            Ok(MessageStatus::Pending) => {
                info!(message = %sent.message, partitions = ?sent.partitions, "a window PoSt sent before a restart is pending: not sent again");
                done.extend(&sent.partitions);
            }
            Ok(MessageStatus::Executed { exit_code: 0, .. }) => done.extend(&sent.partitions),
            Ok(MessageStatus::Executed { .. }) => {}
            Err(ChainError::UnknownMessage(_)) => {
                warn!(message = %sent.message, partitions = ?sent.partitions, "a window PoSt sent before a restart is not known to the chain: proven again");
            }
            // A status not read is not a refusal: the message may still
            // land, and a second one could only be refused then.
            Err(e) => {
                warn!(message = %sent.message, partitions = ?sent.partitions, error = %e, "status of a sent window PoSt unknown: counted as pending, not sent again");
                done.extend(&sent.partitions);
            }
        }
    }
    Ok(done)
}

/// A proof ready to send.
struct Proven {
    partitions: Vec<PoStPartition>,
    proof: PoStProof,
}

async fn prove_batch(
    p: &Proving,
    m: &MinerConfig,
    dl: DeadlineInfo,
    batch: &[PartitionState],
) -> Result<()> {
    let miner = m.actor;
    let indexes: Vec<u64> = batch.iter().map(|b| b.index).collect();
    let mut heads = p.chain.head_changes();
    let info = p.chain.miner_info(miner).await?;
    // Sectors the prover found faulty: skipped in later attempts.
    let mut skipped_by_prover: BTreeSet<u64> = BTreeSet::new();
    let mut failures = 0u32;
    loop {
        if heads.borrow().epoch >= dl.close {
            bail!("partitions {indexes:?}: the deadline closed before a proof was accepted");
        }
        let attempt = match attempt_proof(
            p,
            m,
            dl,
            batch,
            info.window_post_proof,
            &skipped_by_prover,
        )
        .await
        {
            // Faults that name no new sector of this batch would repeat
            // the same attempt at once: an error, retried with backoff.
            Ok(Attempt::Faults(faults)) => {
                let new: Vec<u64> = faults
                    .iter()
                    .copied()
                    .filter(|n| {
                        !skipped_by_prover.contains(n)
                            && batch.iter().any(|part| part.all.contains(n))
                    })
                    .collect();
                if new.is_empty() {
                    Err(anyhow!("the prover reported faulty sectors {faults:?}, none of them a sector still proven in this batch"))
                } else {
                    Ok(Attempt::Faults(new))
                }
            }
            other => other,
        };
        let proven = match attempt {
            Ok(Attempt::Proven(proven)) => proven,
            Ok(Attempt::Faults(faults)) => {
                warn!(partitions = ?indexes, sectors = ?faults, "the prover found sectors faulty: proving again without them");
                skipped_by_prover.extend(faults);
                continue;
            }
            Ok(Attempt::NothingGood) => {
                bail!("partitions {indexes:?}: no sector can be proven (all failed their checks)")
            }
            Err(e) => {
                failures += 1;
                let wait = backoff(failures).min(p.time_left(dl.close));
                warn!(partitions = ?indexes, attempt = failures, error = %format!("{e:#}"), retry_in = ?wait, "window PoSt failed; retrying until the deadline closes");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wait_for(&mut heads, Epoch::MAX, dl.close) => {}
                }
                continue;
            }
        };
        let submit_at = dl.open + m.post.submit_after() as Epoch;
        if !wait_for(&mut heads, submit_at, dl.close).await {
            bail!("partitions {indexes:?}: the deadline closed before the submit epoch");
        }
        match submit(p, m, dl, proven, &mut heads).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                failures += 1;
                // The chain may hold what failed here (a message that landed
                // while its status could not be read): never prove it twice.
                let open = heads.borrow().epoch < dl.close;
                if let (true, Ok(done)) = (open, already_sent(p, miner, dl).await) {
                    if indexes.iter().all(|i| done.contains(i)) {
                        info!(partitions = ?indexes, "the partitions are proven or pending on chain: not sent again");
                        return Ok(());
                    }
                }
                let wait = backoff(failures).min(p.time_left(dl.close));
                warn!(partitions = ?indexes, error = %format!("{e:#}"), retry_in = ?wait, "window PoSt message failed; proving again while the deadline is open");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wait_for(&mut heads, Epoch::MAX, dl.close) => {}
                }
            }
        }
    }
}

/// How long one proof attempt may take with `left` until the deadline
/// closes: half of it when that is 10 s or more, so a hung prover leaves
/// time for a second attempt on another (or a restarted) child.
pub fn attempt_limit(left: Duration) -> Duration {
    if left / 2 >= Duration::from_secs(10) {
        left / 2
    } else {
        left
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(failures.min(5)).min(30))
}

enum Attempt {
    Proven(Proven),
    Faults(Vec<u64>),
    NothingGood,
}

async fn attempt_proof(
    p: &Proving,
    m: &MinerConfig,
    dl: DeadlineInfo,
    batch: &[PartitionState],
    proof_type: RegisteredPoStProof,
    skipped_by_prover: &BTreeSet<u64>,
) -> Result<Attempt> {
    let miner = m.actor;
    let mut partitions = Vec::new();
    let mut replicas: Vec<PoStReplicaInfo> = Vec::new();
    let mut stores: Vec<String> = Vec::new();
    let mut proven_sectors: BTreeMap<u64, SectorOnChain> = BTreeMap::new();
    for part in batch {
        let to_prove = part.to_prove();
        let infos = p.chain.sectors(miner, &to_prove).await?;
        let bad = p
            .checker
            .bad_sectors(miner, &infos, proof_type, m.post.strict_check)
            .await;
        let mut good: BTreeMap<u64, (PoStReplicaInfo, String)> = BTreeMap::new();
        for s in &infos {
            if bad.contains_key(&s.number) || skipped_by_prover.contains(&s.number) {
                continue;
            }
            match p.checker.locator.replica(s, miner) {
                Ok(r) => {
                    good.insert(s.number, r);
                    proven_sectors.insert(s.number, s.clone());
                }
                Err(e) => warn!(sector = s.number, error = %e, "sector skipped"),
            }
        }
        let skipped: BTreeSet<u64> = to_prove
            .iter()
            .filter(|n| !good.contains_key(n))
            .copied()
            .collect();
        let Some(first) = good.values().next().cloned() else {
            warn!(
                partition = part.index,
                "no sector of this partition can be proven: left out"
            );
            continue;
        };
        info!(partition = part.index, checked = to_prove.len(), good = good.len(), skipped = ?skipped, "sectors checked");
        // damocles' shape: every sector of the partition in order, the
        // first good one standing in for each that is not proven.
        for n in &part.all {
            let (replica, store) = good.get(n).cloned().unwrap_or_else(|| first.clone());
            replicas.push(replica);
            stores.push(store);
        }
        partitions.push(PoStPartition {
            index: part.index,
            skipped,
        });
    }
    if partitions.is_empty() {
        return Ok(Attempt::NothingGood);
    }
    let randomness = p.chain.window_post_randomness(miner, &dl).await?;
    let seed = post_seed(randomness);
    let mut task = WindowPoSt {
        miner_id: miner,
        proof_type,
        replicas,
        seed,
    };
    let started = Instant::now();
    // Sectors in plugin stores: fetched here for this process's provers.
    let _local = super::fetch::localize_window(p, &mut task).await?;
    if !_local.failed.is_empty() {
        return Ok(Attempt::Faults(_local.failed.keys().copied().collect()));
    }
    let left = p.time_left(dl.close);
    let limit = if p.window_prover.keeps_jobs() {
        left
    } else {
        attempt_limit(left)
    };
    let job = WindowJob {
        deadline_idx: dl.index,
        partitions: partitions.iter().map(|p| p.index).collect(),
        close: dl.close,
        stores,
    };
    let proved = p
        .window_prover
        .prove_window(task, job, limit)
        .await
        .context("prover")?;
    let out = proved.output;
    if !out.faults.is_empty() {
        return Ok(Attempt::Faults(out.faults));
    }
    if out.proofs.is_empty() {
        p.window_prover.discard(proved.job.as_deref());
        bail!("the prover returned no proof and no faulty sector");
    }
    let elapsed = started.elapsed();
    // The challenge must not have changed meanwhile (a reorg past it).
    if p.chain.window_post_randomness(miner, &dl).await? != randomness {
        bail!("the deadline's challenge changed while proving");
    }
    let proof_bytes: Vec<u8> = out.proofs.into_iter().flat_map(|b| b.0).collect();
    // A corrupt proof may fail to parse (an error) or to verify (false).
    let wrong = match verify_window(miner, proof_type, seed, &proof_bytes, &proven_sectors).await {
        Ok(true) => None,
        Ok(false) => Some(String::new()),
        Err(e) => Some(format!(" ({e:#})")),
    };
    if let Some(why) = wrong {
        // A worker's job with a wrong proof would answer the retry again.
        p.window_prover.discard(proved.job.as_deref());
        bail!("the prover's proof does not verify{why}; it is not sent");
    }
    // Only proofs that verify count: a corrupt one is an error, not a duration.
    p.metrics
        .post_seconds("window", p.window_prover.label(), elapsed.as_secs_f64());
    info!(partitions = ?partitions.iter().map(|p| p.index).collect::<Vec<_>>(), sectors = proven_sectors.len(), prover = p.window_prover.label(), elapsed = ?elapsed, "window PoSt generated and verified");
    Ok(Attempt::Proven(Proven {
        partitions,
        proof: PoStProof {
            post_proof: proof_type,
            proof_bytes,
        },
    }))
}

/// Checks a window PoSt the way the chain will, off the async runtime.
pub async fn verify_window(
    miner: ActorID,
    proof_type: RegisteredPoStProof,
    seed: [u8; 32],
    proof: &[u8],
    sectors: &BTreeMap<u64, SectorOnChain>,
) -> Result<bool> {
    let replicas: BTreeMap<SectorId, PublicReplicaInfo> = sectors
        .values()
        .map(|s| {
            (
                SectorId::from(s.number),
                PublicReplicaInfo::new(proof_type, s.comm_r),
            )
        })
        .collect();
    let proof = proof.to_vec();
    tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(|| {
            filecoin_proofs_api::post::verify_window_post(
                &seed,
                &[(proof_type, proof.as_slice())],
                &replicas,
                damocles_sector::prover_id(miner),
            )
        })
        .map_err(|_| anyhow!("verify_window_post panicked"))?
        .map_err(|e| anyhow!("verify_window_post: {e:#}"))
    })
    .await?
}

async fn submit(
    p: &Proving,
    m: &MinerConfig,
    dl: DeadlineInfo,
    proven: Proven,
    heads: &mut watch::Receiver<Head>,
) -> Result<()> {
    let miner = m.actor;
    let indexes: Vec<u64> = proven.partitions.iter().map(|x| x.index).collect();
    let chain_commit_epoch = dl.challenge;
    let chain_commit_rand = p.chain.post_commit_randomness(chain_commit_epoch).await?;
    let msg = Message::SubmitWindowedPoSt {
        miner,
        params: SubmitWindowedPoStParams {
            deadline: dl.index,
            partitions: proven.partitions,
            proofs: vec![proven.proof],
            chain_commit_epoch,
            chain_commit_rand,
        },
    };
    let id = p.chain.push_message(msg).await?;
    p.metrics
        .messages_pushed
        .get_or_create(&crate::metrics::MethodLabels {
            method: "SubmitWindowedPoSt".into(),
        })
        .inc();
    let sent = PoStSent {
        partitions: indexes.clone(),
        message: id.clone(),
        sent_at: now_secs(),
    };
    if let Err(e) = p.db.record_post_sent(miner, dl.open, &sent) {
        // The message is out; only a restart before it lands could repeat it.
        error!(message = %id, error = %e, "window PoSt message not recorded");
    }
    info!(message = %id, partitions = ?indexes, "window PoSt sent");
    let landed = follow_message(p, &id, heads, Some(dl.close)).await?;
    info!(message = %id, partitions = ?indexes, epoch = landed, "window PoSt accepted by the chain");
    let confidence = m.post.confidence as Epoch;
    let id2 = id.clone();
    let mut heads2 = heads.clone();
    tokio::spawn(
        async move {
            if wait_for(&mut heads2, landed.saturating_add(confidence), Epoch::MAX).await {
                debug!(message = %id2, confidence, "window PoSt message has its confidence");
            }
        }
        .in_current_span(),
    );
    Ok(())
}

/// Waits for a message to execute; its epoch, or why it failed. With
/// `until`, gives up when the head reaches it first.
pub async fn follow_message(
    p: &Proving,
    id: &str,
    heads: &mut watch::Receiver<Head>,
    until: Option<Epoch>,
) -> Result<Epoch> {
    loop {
        match p.chain.message_status(id).await {
            Ok(MessageStatus::Executed {
                epoch,
                exit_code: 0,
                ..
            }) => return Ok(epoch),
            Ok(MessageStatus::Executed {
                exit_code, error, ..
            }) => bail!(
                "message {id} failed with exit code {exit_code}: {}",
                error.unwrap_or_default()
            ),
            Ok(MessageStatus::Pending) => {}
            Err(ChainError::UnknownMessage(_)) => {
                bail!("message {id} is not known to the chain (lost)")
            }
            // A status not read (a dropped link to the sealing manager) says
            // nothing of the message: it is followed until it lands or `until`.
            Err(e) => warn!(message = %id, error = %e, "message status not read; following it"),
        }
        if heads.changed().await.is_err() {
            bail!("the chain went away while message {id} was pending");
        }
        if until.is_some_and(|u| heads.borrow().epoch > u) {
            bail!("message {id} still pending when the deadline closed");
        }
    }
}

/// Declares recovered the faulty sectors of the deadline two ahead that
/// pass their checks, before that deadline's fault cutoff.
async fn declare_recoveries(p: &Proving, m: &MinerConfig, dl: DeadlineInfo) -> Result<()> {
    let miner = m.actor;
    let count = p.chain.deadlines(miner).await?.len() as u64;
    if count == 0 {
        return Ok(());
    }
    let window = dl.close - dl.open;
    let target = p.chain.deadline_info(miner, dl.open + 2 * window).await?;
    let head = p.chain.head().await?.epoch;
    if target.fault_cutoff_passed(head) {
        debug!(
            deadline = target.index,
            "past the fault cutoff of the deadline two ahead"
        );
        return Ok(());
    }
    let info = p.chain.miner_info(miner).await?;
    let mut allowance = match m.post.max_recover_sector_limit {
        0 => u64::MAX,
        n => n,
    };
    let mut declarations = Vec::new();
    for part in p.chain.partitions(miner, target.index).await? {
        if allowance == 0 {
            break;
        }
        let unrecovered: BTreeSet<u64> =
            part.faulty.difference(&part.recovering).copied().collect();
        if unrecovered.is_empty() {
            continue;
        }
        let infos = p.chain.sectors(miner, &unrecovered).await?;
        let bad = p
            .checker
            .bad_sectors(miner, &infos, info.window_post_proof, m.post.strict_check)
            .await;
        let recovered: BTreeSet<u64> = unrecovered
            .iter()
            .filter(|n| !bad.contains_key(n))
            .take(allowance.min(usize::MAX as u64) as usize)
            .copied()
            .collect();
        if recovered.is_empty() {
            continue;
        }
        allowance -= recovered.len() as u64;
        declarations.push(RecoveryDeclaration {
            deadline: target.index,
            partition: part.index,
            sectors: recovered,
        });
    }
    if declarations.is_empty() {
        return Ok(());
    }
    let per_message = match m.post.max_partitions_per_recovery_message {
        0 => declarations.len(),
        n => n as usize,
    };
    let mut heads = p.chain.head_changes();
    for chunk in declarations.chunks(per_message) {
        let sectors: Vec<u64> = chunk
            .iter()
            .flat_map(|d| d.sectors.iter().copied())
            .collect();
        let id = p
            .chain
            .push_message(Message::DeclareFaultsRecovered {
                miner,
                recoveries: chunk.to_vec(),
            })
            .await?;
        p.metrics
            .messages_pushed
            .get_or_create(&crate::metrics::MethodLabels {
                method: "DeclareFaultsRecovered".into(),
            })
            .inc();
        info!(deadline = target.index, message = %id, sectors = ?sectors, "faulty sectors declared recovered");
        match follow_message(p, &id, &mut heads, Some(target.fault_cutoff)).await {
            Ok(epoch) => info!(message = %id, epoch, "recovery declaration accepted"),
            Err(e) => {
                warn!(message = %id, error = %format!("{e:#}"), "recovery declaration failed")
            }
        }
    }
    Ok(())
}
