//! The embedded devnet: a [`Chain`] whose state lives in redb.
//!
//! Height follows the wall clock from a genesis time stored at creation, so
//! the chain keeps its history across restarts (and kill -9). A message pushed
//! at epoch E executes at E+1; a background ticker executes the messages that
//! are due (proofs are verified before the write transaction opens), one redb
//! transaction per message, then ends the deadlines that closed (missed window
//! PoSts become faults), holds the epoch's block elections (a winner must
//! hand in a winning PoSt before a wall-clock cutoff) and announces the head.
//! Writes and proof checks from async callers run on blocking threads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use filecoin_proofs_api::{
    post, seal, PublicReplicaInfo, RegisteredPoStProof, RegisteredSealProof, SectorId,
};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::actor::{ActorError, DeadlineClosed, MinerState, PoStToVerify};
use crate::policy::Policy;
use crate::randomness;
use damocles_chain::*;

const META: TableDefinition<&str, &str> = TableDefinition::new("devnet_meta");
const MESSAGES: TableDefinition<u64, &str> = TableDefinition::new("devnet_messages");
const PENDING: TableDefinition<u64, ()> = TableDefinition::new("devnet_pending");
const MINERS: TableDefinition<u64, &str> = TableDefinition::new("devnet_miners");
/// `next_message`: the id the next pushed message gets; `next_election`:
/// the first epoch whose elections have not been drawn.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("devnet_counters");
/// Every election by (miner, epoch): a JSON [`BlockRecord`].
const BLOCKS: TableDefinition<(u64, i64), &str> = TableDefinition::new("devnet_blocks");
/// The elections still waiting for a proof, with their cutoff (unix ms), so
/// the cutoff sweep does not read every record ever drawn.
const OPEN_BLOCKS: TableDefinition<(u64, i64), u64> = TableDefinition::new("devnet_open_blocks");

/// A miner the devnet creates at start if it does not exist yet.
#[derive(Clone, Debug)]
pub struct DevnetMiner {
    pub actor: ActorID,
    pub sector_size: u64,
}

/// Fixed at creation.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Genesis {
    unix_ms: u64,
    block_time_ms: u64,
    network_seed: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MessageRecord {
    message: Message,
    pushed_epoch: Epoch,
    status: MessageStatus,
}

pub struct Devnet {
    db: Arc<Database>,
    policy: Policy,
    genesis: Genesis,
    /// Serializes execution; holds the last head every miner's deadline
    /// closes ran for.
    exec: Mutex<Epoch>,
    /// The head, announced once the state at it is settled.
    heads: watch::Sender<Head>,
}

fn storage<E: std::fmt::Display>(e: E) -> ChainError {
    ChainError::Storage(e.to_string())
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(storage)
}

fn from_json<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(storage)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The seal proof the devnet gives a miner of `sector_size`.
pub fn seal_proof_for(sector_size: u64) -> Result<RegisteredSealProof> {
    damocles_api::SealProof::for_sector_size(sector_size)
        .map(|p| p.0)
        .ok_or_else(|| {
            ChainError::Invalid(format!(
                "no seal proof for sector size {sector_size} bytes (2KiB, 8MiB, 512MiB, 32GiB, 64GiB)"
            ))
        })
}

/// The window PoSt proof of a miner of `sector_size` (the current, V1_2 ones).
pub fn window_post_proof_for(sector_size: u64) -> Result<RegisteredPoStProof> {
    use RegisteredPoStProof::*;
    Ok(match sector_size {
        2048 => StackedDrgWindow2KiBV1_2,
        0x80_0000 => StackedDrgWindow8MiBV1_2,
        0x2000_0000 => StackedDrgWindow512MiBV1_2,
        0x8_0000_0000 => StackedDrgWindow32GiBV1_2,
        0x10_0000_0000 => StackedDrgWindow64GiBV1_2,
        other => {
            return Err(ChainError::Invalid(format!(
                "no window PoSt proof for sector size {other}"
            )))
        }
    })
}

/// The winning PoSt proof of a miner of `sector_size`.
pub fn winning_post_proof_for(sector_size: u64) -> Result<RegisteredPoStProof> {
    use RegisteredPoStProof::*;
    Ok(match sector_size {
        2048 => StackedDrgWinning2KiBV1,
        0x80_0000 => StackedDrgWinning8MiBV1,
        0x2000_0000 => StackedDrgWinning512MiBV1,
        0x8_0000_0000 => StackedDrgWinning32GiBV1,
        0x10_0000_0000 => StackedDrgWinning64GiBV1,
        other => {
            return Err(ChainError::Invalid(format!(
                "no winning PoSt proof for sector size {other}"
            )))
        }
    })
}

/// Whether a miner with `power` of `total` wins an election at `rate`
/// percent, given the u64 its ElectionProofProduction draw starts with. The
/// draw is uniform, so it wins with probability rate% × power / total.
fn wins_election(ticket: u64, rate: u32, power: u64, total: u128) -> bool {
    if power == 0 || total == 0 {
        return false;
    }
    // rate% of 2^64, times the power share: at most 2^64 × 2^64, no overflow.
    let scaled = (u128::from(rate.min(100)) << 64) / 100;
    u128::from(ticket) < scaled * u128::from(power) / total
}

fn election_ticket(randomness: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&randomness[..8]);
    u64::from_le_bytes(first)
}

fn read_block(db: &Database, miner: ActorID, epoch: Epoch) -> Result<Option<BlockRecord>> {
    let tx = db.begin_read().map_err(storage)?;
    let blocks = tx.open_table(BLOCKS).map_err(storage)?;
    let raw = blocks.get((miner, epoch)).map_err(storage)?;
    raw.map(|r| from_json(r.value())).transpose()
}

fn cutoff_secs(c: &WinningChallenge) -> u64 {
    c.cutoff_unix_ms.saturating_sub(c.issued_unix_ms) / 1000
}

/// Refuses a proof for a block a proof already decided. A record the cutoff
/// sweep missed has seen no proof yet: a proof that arrived in time (the
/// sweep ran while it was on its way) is still judged, a late one is told so.
fn refuse_if_decided(rec: &BlockRecord) -> Result<()> {
    if rec.latency_ms.is_none() {
        return Ok(());
    }
    let c = &rec.challenge;
    let what = match &rec.outcome {
        BlockOutcome::Won => "won".to_string(),
        BlockOutcome::Missed { reason } => format!("missed ({reason})"),
        BlockOutcome::Pending => "pending".to_string(),
    };
    Err(ChainError::Invalid(format!(
        "the block of miner t0{} at epoch {} is already decided: {what}; a second winning PoSt changes nothing",
        c.miner, c.epoch
    )))
}

/// `verify_winning_post` over the challenged sectors.
fn verify_winning_post(c: &WinningChallenge, proof: &[u8]) -> std::result::Result<bool, String> {
    let replicas: BTreeMap<SectorId, PublicReplicaInfo> = c
        .sectors
        .iter()
        .map(|s| {
            let info = PublicReplicaInfo::new(c.proof_type, s.comm_r);
            (SectorId::from(s.number), info)
        })
        .collect();
    let seed = post_seed(c.randomness);
    let prover = damocles_sector::prover_id(c.miner);
    let call =
        std::panic::catch_unwind(|| post::verify_winning_post(&seed, proof, &replicas, prover));
    match call {
        Ok(r) => r.map_err(|e| format!("{e:#}")),
        Err(_) => Err("verify_winning_post panicked".into()),
    }
}

/// Judges the winning PoSt for `miner`'s election at `epoch` that arrived at
/// `arrival` (unix ms), and records the outcome. Blocking (verification and
/// a redb commit).
fn judge_winning_post(
    db: &Database,
    miner: ActorID,
    epoch: Epoch,
    proof: &[u8],
    arrival: u64,
) -> Result<BlockRecord> {
    let rec = read_block(db, miner, epoch)?.ok_or_else(|| {
        ChainError::Invalid(format!(
            "miner t0{miner} was not elected at epoch {epoch}: no winning PoSt is due"
        ))
    })?;
    refuse_if_decided(&rec)?;
    let c = &rec.challenge;
    let outcome = if arrival > c.cutoff_unix_ms {
        BlockOutcome::Missed {
            reason: format!(
                "winning PoSt arrived {} ms after the cutoff ({} s)",
                arrival - c.cutoff_unix_ms,
                cutoff_secs(c)
            ),
        }
    } else {
        match verify_winning_post(c, proof) {
            Ok(true) => BlockOutcome::Won,
            Ok(false) => BlockOutcome::Missed {
                reason: "invalid winning PoSt: verify_winning_post said no".into(),
            },
            Err(e) => BlockOutcome::Missed {
                reason: format!("invalid winning PoSt: {e}"),
            },
        }
    };
    let latency_ms = arrival.saturating_sub(c.issued_unix_ms);
    let tx = db.begin_write().map_err(storage)?;
    let decided = {
        let mut blocks = tx.open_table(BLOCKS).map_err(storage)?;
        let current: BlockRecord = {
            let raw = blocks.get((miner, epoch)).map_err(storage)?;
            let raw = raw
                .ok_or_else(|| ChainError::Storage(format!("block ({miner}, {epoch}) vanished")))?;
            from_json(raw.value())?
        };
        // Another proof may have decided it while this one was verified.
        refuse_if_decided(&current)?;
        let decided = BlockRecord {
            challenge: current.challenge,
            outcome,
            latency_ms: Some(latency_ms),
        };
        blocks
            .insert((miner, epoch), to_json(&decided)?.as_str())
            .map_err(storage)?;
        tx.open_table(OPEN_BLOCKS)
            .map_err(storage)?
            .remove((miner, epoch))
            .map_err(storage)?;
        decided
    };
    tx.commit().map_err(storage)?;
    match &decided.outcome {
        BlockOutcome::Won => info!(miner, epoch, latency_ms, "devnet: block won"),
        BlockOutcome::Missed { reason } => {
            warn!(miner, epoch, latency_ms, reason = %reason, "devnet: block missed")
        }
        BlockOutcome::Pending => {}
    }
    Ok(decided)
}

impl Devnet {
    /// Opens the devnet in `db`, creating its genesis (at the current time,
    /// with `block_time`) and the listed miners if they do not exist yet.
    pub fn open(
        db: Arc<Database>,
        block_time: Duration,
        policy: Policy,
        miners: &[DevnetMiner],
    ) -> Result<Devnet> {
        policy.validate().map_err(ChainError::Invalid)?;
        let block_time_ms = block_time.as_millis() as u64;
        if block_time_ms == 0 {
            return Err(ChainError::Invalid(
                "block time must be at least 1ms".into(),
            ));
        }
        let tx = db.begin_write().map_err(storage)?;
        let genesis = {
            let mut meta = tx.open_table(META).map_err(storage)?;
            tx.open_table(MESSAGES).map_err(storage)?;
            tx.open_table(PENDING).map_err(storage)?;
            tx.open_table(MINERS).map_err(storage)?;
            tx.open_table(COUNTERS).map_err(storage)?;
            tx.open_table(BLOCKS).map_err(storage)?;
            tx.open_table(OPEN_BLOCKS).map_err(storage)?;
            let existing = meta
                .get("genesis")
                .map_err(storage)?
                .map(|g| g.value().to_string());
            match existing {
                Some(g) => {
                    let g: Genesis = from_json(&g)?;
                    if g.block_time_ms != block_time_ms {
                        warn!(
                            stored_ms = g.block_time_ms,
                            configured_ms = block_time_ms,
                            "devnet block time differs from the one this chain was created with; keeping the chain's"
                        );
                    }
                    g
                }
                None => {
                    let g = Genesis {
                        unix_ms: now_ms(),
                        block_time_ms,
                        network_seed: format!("damocles-devnet-{}", now_ms()),
                    };
                    meta.insert("genesis", to_json(&g)?.as_str())
                        .map_err(storage)?;
                    info!(block_time_ms, "devnet genesis created");
                    g
                }
            }
        };
        tx.commit().map_err(storage)?;
        let first = current_head(&genesis);
        let devnet = Devnet {
            db,
            policy,
            genesis,
            exec: Mutex::new(Epoch::MIN),
            heads: watch::Sender::new(first),
        };
        for m in miners {
            devnet.ensure_miner(m)?;
        }
        Ok(devnet)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    fn ensure_miner(&self, m: &DevnetMiner) -> Result<()> {
        let seal_proof = seal_proof_for(m.sector_size)?;
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut miners = tx.open_table(MINERS).map_err(storage)?;
            let existing = miners
                .get(m.actor)
                .map_err(storage)?
                .map(|v| v.value().to_string());
            if let Some(existing) = existing {
                let state: MinerState = from_json(&existing)?;
                if state.info.sector_size != m.sector_size {
                    return Err(ChainError::Invalid(format!(
                        "miner t0{} exists on the devnet with sector size {}, not {}",
                        m.actor, state.info.sector_size, m.sector_size
                    )));
                }
                return Ok(());
            }
            // Spread miners' proving periods so their deadlines do not all open at once.
            let period = self.policy.proving_period();
            let offset = (m.actor % period as u64) as Epoch;
            let info = MinerInfo {
                actor: m.actor,
                sector_size: m.sector_size,
                seal_proof,
                window_post_proof: window_post_proof_for(m.sector_size)?,
                proving_period_start: offset,
            };
            let state = MinerState::new(info, &self.policy);
            miners
                .insert(m.actor, to_json(&state)?.as_str())
                .map_err(storage)?;
            info!(
                miner = m.actor,
                sector_size = m.sector_size,
                "devnet miner created"
            );
        }
        tx.commit().map_err(storage)
    }

    /// The current head, from the wall clock.
    pub fn head_now(&self) -> Head {
        current_head(self.genesis())
    }

    fn draw(&self, domain: Domain, epoch: Epoch, entropy: &[u8]) -> [u8; 32] {
        randomness::draw(
            self.genesis().network_seed.as_bytes(),
            domain,
            epoch,
            entropy,
        )
    }

    pub fn miner_state(&self, miner: ActorID) -> Result<MinerState> {
        let tx = self.db.begin_read().map_err(storage)?;
        let miners = tx.open_table(MINERS).map_err(storage)?;
        let raw = miners
            .get(miner)
            .map_err(storage)?
            .ok_or(ChainError::UnknownMiner(miner))?;
        from_json(raw.value())
    }

    fn miner_ids(&self) -> Result<Vec<ActorID>> {
        let tx = self.db.begin_read().map_err(storage)?;
        let miners = tx.open_table(MINERS).map_err(storage)?;
        let mut ids = Vec::new();
        for entry in miners.iter().map_err(storage)? {
            ids.push(entry.map_err(storage)?.0.value());
        }
        Ok(ids)
    }

    fn store_miner(&self, state: &MinerState) -> Result<()> {
        let tx = self.db.begin_write().map_err(storage)?;
        tx.open_table(MINERS)
            .map_err(storage)?
            .insert(state.info.actor, to_json(state)?.as_str())
            .map_err(storage)?;
        tx.commit().map_err(storage)
    }

    /// Makes `sectors` active on `miner` now, as if sealed before genesis
    /// (`lotus-seed pre-seal`): each gets a deadline and partition like a
    /// prove-committed sector and counts for power. Idempotent by number: a
    /// sector already active with the same commitments is kept as it is;
    /// any refusal adds none of them. Returns the sectors as the chain holds
    /// them. Blocking (a redb commit).
    pub fn add_genesis_sectors(
        &self,
        miner: ActorID,
        sectors: Vec<SectorOnChain>,
    ) -> Result<Vec<SectorOnChain>> {
        let _exec = self.exec.lock().expect("exec lock");
        let epoch = self.head_now().epoch;
        let mut state = self.miner_state(miner)?;
        // Settle past deadlines first, so none of them faults the new sectors.
        self.run_cron(&mut state, epoch);
        let mut added = Vec::with_capacity(sectors.len());
        for sector in sectors {
            let n = sector.number;
            let s = state
                .add_genesis_sector(&self.policy, epoch, sector)
                .map_err(|e| ChainError::Invalid(format!("genesis sector {n}: {}", e.message)))?;
            added.push(s.clone());
        }
        self.store_miner(&state)?;
        info!(
            miner,
            sectors = added.len(),
            power = state.power,
            "devnet genesis sectors active"
        );
        Ok(added)
    }

    /// Executes every message that is due at the current head, ends the
    /// deadlines that closed and announces the head. Returns how many
    /// messages ran.
    pub fn advance(&self) -> Result<usize> {
        self.advance_to(self.head_now())
    }

    fn advance_to(&self, head: Head) -> Result<usize> {
        self.advance_at(head, now_ms())
    }

    /// [`Devnet::advance_to`] with the wall clock at `now` (unix ms), which
    /// elections are issued at and cutoffs are checked against.
    fn advance_at(&self, head: Head, now: u64) -> Result<usize> {
        let mut cron_head = self.exec.lock().expect("exec lock");
        let n = self.execute_due(head.epoch)?;
        self.sweep_blocks(now)?;
        if *cron_head < head.epoch {
            let states = self.close_deadlines(head.epoch)?;
            // Right after opening, the epochs since the last draw passed
            // while the devnet was down: only the newest is drawn.
            let from = if *cron_head == Epoch::MIN {
                head.epoch
            } else {
                *cron_head + 1
            };
            self.hold_elections(from, head.epoch, &states, now)?;
            *cron_head = head.epoch;
        }
        self.heads.send_if_modified(|h| {
            let newer = h.epoch < head.epoch;
            if newer {
                *h = head;
            }
            newer
        });
        Ok(n)
    }

    /// Ends, for every miner, the deadlines that closed by `epoch`. Returns
    /// every miner's state after that.
    fn close_deadlines(&self, epoch: Epoch) -> Result<Vec<MinerState>> {
        let mut states = Vec::new();
        for actor in self.miner_ids()? {
            let mut state = self.miner_state(actor)?;
            if !self.run_cron(&mut state, epoch).is_empty() {
                self.store_miner(&state)?;
            }
            states.push(state);
        }
        Ok(states)
    }

    /// Draws the elections of the epochs `from..=to` not drawn before, with
    /// the miners' power in `states`. Epochs that started more than the
    /// cutoff before `now` are skipped (a block for them could no longer
    /// make it, and a stalled devnet must not announce a flood); `to`, the
    /// newest, is always drawn. The epochs and the last one drawn are stored
    /// in one transaction, so no epoch is drawn twice, across restarts too.
    fn hold_elections(
        &self,
        from: Epoch,
        to: Epoch,
        states: &[MinerState],
        now: u64,
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut counters = tx.open_table(COUNTERS).map_err(storage)?;
            let next = counters
                .get("next_election")
                .map_err(storage)?
                .map(|v| v.value())
                .unwrap_or(0);
            let next = Epoch::try_from(next).unwrap_or(Epoch::MAX);
            if to < next {
                return Ok(());
            }
            let g = self.genesis();
            let cutoff_ms = self.policy.winning_post_cutoff_secs * 1000;
            let stale = now.saturating_sub(cutoff_ms).saturating_sub(g.unix_ms);
            let fresh = stale.div_ceil(g.block_time_ms) as Epoch;
            let first = from.max(next).max(fresh).min(to);
            let total: u128 = states.iter().map(|s| u128::from(s.power)).sum();
            let mut blocks = tx.open_table(BLOCKS).map_err(storage)?;
            let mut open = tx.open_table(OPEN_BLOCKS).map_err(storage)?;
            for epoch in first..=to {
                for state in states {
                    let Some(rec) = self.elect(state, epoch, total, now) else {
                        continue;
                    };
                    let c = &rec.challenge;
                    blocks
                        .insert((c.miner, epoch), to_json(&rec)?.as_str())
                        .map_err(storage)?;
                    open.insert((c.miner, epoch), c.cutoff_unix_ms)
                        .map_err(storage)?;
                    let sectors: Vec<SectorNumber> = c.sectors.iter().map(|s| s.number).collect();
                    info!(
                        miner = c.miner,
                        epoch,
                        sectors = ?sectors,
                        cutoff_secs = self.policy.winning_post_cutoff_secs,
                        "devnet: miner elected, waiting for its winning PoSt"
                    );
                }
            }
            counters
                .insert("next_election", (to + 1).max(0) as u64)
                .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    /// `state`'s election at `epoch` out of `total` power: the challenge
    /// when it wins.
    fn elect(
        &self,
        state: &MinerState,
        epoch: Epoch,
        total: u128,
        now: u64,
    ) -> Option<BlockRecord> {
        let miner = state.info.actor;
        let entropy = miner_entropy(miner);
        let ticket = self.draw(Domain::ElectionProofProduction, epoch, &entropy);
        let rate = self.policy.election_rate_percent;
        if !wins_election(election_ticket(&ticket), rate, state.power, total) {
            return None;
        }
        let randomness = self.draw(Domain::WinningPoStChallengeSeed, epoch, &entropy);
        let active: Vec<&SectorOnChain> = state.sectors.values().filter(|s| !s.faulty).collect();
        let challenged = winning_post_proof_for(state.info.sector_size).and_then(|proof_type| {
            let call = std::panic::catch_unwind(|| {
                post::generate_winning_post_sector_challenge(
                    proof_type,
                    &post_seed(randomness),
                    active.len() as u64,
                    damocles_sector::prover_id(miner),
                )
            });
            let indexes = match call {
                Ok(r) => r.map_err(|e| ChainError::Invalid(format!("{e:#}")))?,
                Err(_) => return Err(ChainError::Invalid("it panicked".into())),
            };
            let sectors = indexes
                .iter()
                .map(|&i| {
                    active.get(i as usize).map(|s| (*s).clone()).ok_or_else(|| {
                        ChainError::Invalid(format!("index {i} of {} active sectors", active.len()))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((proof_type, sectors))
        });
        let (proof_type, sectors) = match challenged {
            Ok(c) => c,
            Err(e) => {
                warn!(miner, epoch, error = %e, "devnet: miner elected but its winning PoSt sectors could not be drawn; no block");
                return None;
            }
        };
        let challenge = WinningChallenge {
            miner,
            epoch,
            randomness,
            proof_type,
            sectors,
            issued_unix_ms: now,
            cutoff_unix_ms: now + self.policy.winning_post_cutoff_secs * 1000,
        };
        Some(BlockRecord {
            challenge,
            outcome: BlockOutcome::Pending,
            latency_ms: None,
        })
    }

    /// Elections still waiting for a proof whose cutoff passed by `now`
    /// (unix ms) are missed.
    fn sweep_blocks(&self, now: u64) -> Result<()> {
        let expired: Vec<(u64, i64)> = {
            let tx = self.db.begin_read().map_err(storage)?;
            let open = tx.open_table(OPEN_BLOCKS).map_err(storage)?;
            let mut expired = Vec::new();
            for entry in open.iter().map_err(storage)? {
                let (key, cutoff) = entry.map_err(storage)?;
                if now > cutoff.value() {
                    expired.push(key.value());
                }
            }
            expired
        };
        if expired.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut blocks = tx.open_table(BLOCKS).map_err(storage)?;
            let mut open = tx.open_table(OPEN_BLOCKS).map_err(storage)?;
            for key in expired {
                let raw = blocks
                    .get(key)
                    .map_err(storage)?
                    .map(|r| r.value().to_string());
                open.remove(key).map_err(storage)?;
                let Some(raw) = raw else { continue };
                let mut rec: BlockRecord = from_json(&raw)?;
                if rec.outcome != BlockOutcome::Pending {
                    continue;
                }
                let reason = format!(
                    "no winning PoSt before the cutoff ({} s)",
                    cutoff_secs(&rec.challenge)
                );
                warn!(miner = key.0, epoch = key.1, reason = %reason, "devnet: block missed");
                rec.outcome = BlockOutcome::Missed { reason };
                blocks
                    .insert(key, to_json(&rec)?.as_str())
                    .map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)
    }

    fn ensure_known(&self, miner: ActorID) -> Result<()> {
        let tx = self.db.begin_read().map_err(storage)?;
        let miners = tx.open_table(MINERS).map_err(storage)?;
        match miners.get(miner).map_err(storage)? {
            Some(_) => Ok(()),
            None => Err(ChainError::UnknownMiner(miner)),
        }
    }

    /// [`Chain::open_winning_challenges`] with the wall clock at `now`.
    fn open_challenges_at(&self, miner: ActorID, now: u64) -> Result<Vec<WinningChallenge>> {
        self.ensure_known(miner)?;
        let tx = self.db.begin_read().map_err(storage)?;
        let open = tx.open_table(OPEN_BLOCKS).map_err(storage)?;
        let blocks = tx.open_table(BLOCKS).map_err(storage)?;
        let mut out = Vec::new();
        for entry in open
            .range((miner, Epoch::MIN)..=(miner, Epoch::MAX))
            .map_err(storage)?
        {
            let (key, cutoff) = entry.map_err(storage)?;
            if now > cutoff.value() {
                continue;
            }
            let Some(raw) = blocks.get(key.value()).map_err(storage)? else {
                continue;
            };
            let rec: BlockRecord = from_json(raw.value())?;
            if rec.outcome == BlockOutcome::Pending {
                out.push(rec.challenge);
            }
        }
        Ok(out)
    }

    /// [`Chain::submit_winning_post`] for a proof that arrived at `arrival`
    /// (unix ms).
    async fn submit_winning_post_at(
        &self,
        miner: ActorID,
        epoch: Epoch,
        proof: Vec<u8>,
        arrival: u64,
    ) -> Result<BlockRecord> {
        let db = Arc::clone(&self.db);
        // Verification is CPU work: keep it off the reactor.
        tokio::task::spawn_blocking(move || judge_winning_post(&db, miner, epoch, &proof, arrival))
            .await
            .map_err(|e| ChainError::Storage(format!("winning PoSt verifier: {e}")))?
    }

    fn block_records(&self, miner: ActorID, limit: usize) -> Result<Vec<BlockRecord>> {
        self.ensure_known(miner)?;
        let tx = self.db.begin_read().map_err(storage)?;
        let blocks = tx.open_table(BLOCKS).map_err(storage)?;
        let mut out = Vec::new();
        for entry in blocks
            .range((miner, Epoch::MIN)..=(miner, Epoch::MAX))
            .map_err(storage)?
            .rev()
            .take(limit)
        {
            out.push(from_json(entry.map_err(storage)?.1.value())?);
        }
        Ok(out)
    }

    /// Ends `state`'s deadlines that closed by `epoch`, and logs the misses.
    fn run_cron(&self, state: &mut MinerState, epoch: Epoch) -> Vec<DeadlineClosed> {
        let closed = state.process_deadline_closes(&self.policy, epoch);
        for c in closed.iter().filter(|c| !c.missed_partitions.is_empty()) {
            warn!(
                miner = state.info.actor,
                deadline = c.index,
                partitions = ?c.missed_partitions,
                new_faults = c.new_faults.len(),
                dropped_recoveries = c.dropped_recoveries.len(),
                power = state.power,
                "devnet deadline closed without a window PoSt: its sectors are faulty"
            );
        }
        closed
    }

    fn execute_due(&self, head: Epoch) -> Result<usize> {
        let due: Vec<(u64, MessageRecord)> = {
            let tx = self.db.begin_read().map_err(storage)?;
            let pending = tx.open_table(PENDING).map_err(storage)?;
            let messages = tx.open_table(MESSAGES).map_err(storage)?;
            let mut due = Vec::new();
            for entry in pending.iter().map_err(storage)? {
                let id = entry.map_err(storage)?.0.value();
                let raw = messages.get(id).map_err(storage)?.ok_or_else(|| {
                    ChainError::Storage(format!("pending message {id} has no record"))
                })?;
                let rec: MessageRecord = from_json(raw.value())?;
                // Ids grow with push time: the first message not due ends the scan.
                if rec.pushed_epoch + 1 > head {
                    break;
                }
                due.push((id, rec));
            }
            due
        };
        let n = due.len();
        for (id, rec) in due {
            self.execute(id, rec)?;
        }
        Ok(n)
    }

    fn execute(&self, id: u64, mut rec: MessageRecord) -> Result<()> {
        let mut epoch = rec.pushed_epoch + 1;
        let miner_id = rec.message.miner();
        // Apply to a copy first (verification included), so the write
        // transaction is held only for the store itself. Only this executor
        // (under `exec`) changes miner state, so the copy cannot go stale.
        let (outcome, new_state) = match self.miner_state(miner_id) {
            Err(ChainError::UnknownMiner(_)) => (
                Err(ActorError {
                    exit_code: exit_code::NOT_FOUND,
                    message: format!("miner t0{miner_id} does not exist"),
                }),
                None,
            ),
            Err(e) => return Err(e),
            Ok(mut state) => {
                // Deadlines that closed by now end first, and a message is
                // never executed before a close already processed.
                epoch = epoch.max(state.cron_epoch);
                self.run_cron(&mut state, epoch);
                let mut next = state.clone();
                let r = self.apply(&mut next, epoch, &rec.message);
                let kept = if r.is_ok() { next } else { state };
                (r, Some(kept))
            }
        };
        rec.status = match outcome {
            Ok(()) => MessageStatus::Executed {
                epoch,
                exit_code: exit_code::OK,
                error: None,
            },
            Err(e) => {
                warn!(message = id, method = rec.message.method(), exit_code = e.exit_code, error = %e.message, "devnet message failed");
                MessageStatus::Executed {
                    epoch,
                    exit_code: e.exit_code,
                    error: Some(e.message),
                }
            }
        };
        debug!(
            message = id,
            method = rec.message.method(),
            epoch,
            "devnet message executed"
        );
        let tx = self.db.begin_write().map_err(storage)?;
        {
            if let Some(state) = new_state {
                let mut miners = tx.open_table(MINERS).map_err(storage)?;
                miners
                    .insert(miner_id, to_json(&state)?.as_str())
                    .map_err(storage)?;
            }
            let mut messages = tx.open_table(MESSAGES).map_err(storage)?;
            messages
                .insert(id, to_json(&rec)?.as_str())
                .map_err(storage)?;
            let mut pending = tx.open_table(PENDING).map_err(storage)?;
            pending.remove(id).map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    fn apply(
        &self,
        state: &mut MinerState,
        epoch: Epoch,
        msg: &Message,
    ) -> std::result::Result<(), ActorError> {
        match msg {
            Message::PreCommitSector { params, .. } => {
                state.pre_commit(&self.policy, epoch, params.clone())
            }
            Message::ProveCommitSector {
                miner,
                sector_number,
                proof,
            } => {
                let entropy = miner_entropy(*miner);
                let seed_delay = self.policy.seed_delay;
                let verify = |pre: &PreCommitOnChain| -> std::result::Result<bool, String> {
                    let ticket =
                        self.draw(Domain::SealRandomness, pre.params.seal_rand_epoch, &entropy);
                    let seed = self.draw(
                        Domain::InteractiveSealChallengeSeed,
                        pre.seed_epoch(seed_delay),
                        &entropy,
                    );
                    let call = std::panic::catch_unwind(|| {
                        seal::verify_seal(
                            pre.params.seal_proof,
                            pre.params.comm_r,
                            pre.params.comm_d,
                            damocles_sector::prover_id(*miner),
                            SectorId::from(*sector_number),
                            ticket,
                            seed,
                            proof,
                        )
                    });
                    match call {
                        Ok(r) => r.map_err(|e| format!("{e:#}")),
                        Err(_) => Err("verify_seal panicked".into()),
                    }
                };
                let sector = state.prove_commit(&self.policy, epoch, *sector_number, verify)?;
                info!(
                    miner,
                    sector = sector_number,
                    deadline = sector.deadline,
                    partition = sector.partition,
                    "devnet sector active"
                );
                Ok(())
            }
            Message::SubmitWindowedPoSt { miner, params } => {
                let commit_rand = |at| self.draw(Domain::PoStChainCommit, at, &[]);
                let verify = |asked: &PoStToVerify<'_>| self.verify_window_post(*miner, asked);
                let out =
                    state.submit_windowed_post(&self.policy, epoch, params, commit_rand, verify)?;
                info!(
                    miner,
                    deadline = params.deadline,
                    partitions = ?out.partitions,
                    new_faults = out.new_faults.len(),
                    recovered = out.recovered.len(),
                    power = state.power,
                    "devnet window PoSt accepted"
                );
                Ok(())
            }
            Message::DeclareFaultsRecovered { miner, recoveries } => {
                for r in recoveries {
                    let newly = state.declare_faults_recovered(
                        &self.policy,
                        epoch,
                        r.deadline,
                        r.partition,
                        &r.sectors,
                    )?;
                    info!(
                        miner,
                        deadline = r.deadline,
                        partition = r.partition,
                        recovering = newly.len(),
                        "devnet recoveries declared"
                    );
                }
                Ok(())
            }
        }
    }

    /// `verify_window_post` over the sectors the actor names, challenged with
    /// the deadline's WindowedPoStChallengeSeed randomness.
    fn verify_window_post(
        &self,
        miner: ActorID,
        asked: &PoStToVerify<'_>,
    ) -> std::result::Result<bool, String> {
        let rand = self.draw(
            Domain::WindowedPoStChallengeSeed,
            asked.deadline.challenge,
            &miner_entropy(miner),
        );
        let seed = post_seed(rand);
        let proof_type = asked.proof.post_proof;
        let replicas: BTreeMap<SectorId, PublicReplicaInfo> = asked
            .sectors
            .iter()
            .map(|s| {
                let info = PublicReplicaInfo::new(proof_type, s.comm_r);
                (SectorId::from(s.number), info)
            })
            .collect();
        let proofs = [(proof_type, asked.proof.proof_bytes.as_slice())];
        let call = std::panic::catch_unwind(|| {
            post::verify_window_post(&seed, &proofs, &replicas, damocles_sector::prover_id(miner))
        });
        match call {
            Ok(r) => r.map_err(|e| format!("{e:#}")),
            Err(_) => Err("verify_window_post panicked".into()),
        }
    }

    /// Runs [`Devnet::advance`] every half block until the runtime stops.
    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        let every = Duration::from_millis((me.genesis().block_time_ms / 2).clamp(10, 1000));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let m = Arc::clone(&me);
                match tokio::task::spawn_blocking(move || m.advance()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(error = %e, "devnet: executing messages failed"),
                    Err(e) => warn!(error = %e, "devnet: executor task failed"),
                }
            }
        })
    }

    /// Records a new pending message; the id counter moves in the same
    /// transaction, so an id is never given twice, also across kill -9.
    fn store_message(db: &Database, message: Message, pushed_epoch: Epoch) -> Result<String> {
        let tx = db.begin_write().map_err(storage)?;
        let id = {
            let mut counters = tx.open_table(COUNTERS).map_err(storage)?;
            let id = counters
                .get("next_message")
                .map_err(storage)?
                .map(|v| v.value())
                .unwrap_or(1);
            counters.insert("next_message", id + 1).map_err(storage)?;
            let rec = MessageRecord {
                message,
                pushed_epoch,
                status: MessageStatus::Pending,
            };
            tx.open_table(MESSAGES)
                .map_err(storage)?
                .insert(id, to_json(&rec)?.as_str())
                .map_err(storage)?;
            tx.open_table(PENDING)
                .map_err(storage)?
                .insert(id, ())
                .map_err(storage)?;
            id
        };
        tx.commit().map_err(storage)?;
        Ok(format!("devnet-{id}"))
    }

    fn message_id(id: &str) -> Result<u64> {
        id.strip_prefix("devnet-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ChainError::UnknownMessage(id.to_string()))
    }
}

#[async_trait]
impl Chain for Devnet {
    fn network(&self) -> String {
        "devnet".into()
    }

    fn block_time(&self) -> Duration {
        Duration::from_millis(self.genesis().block_time_ms)
    }

    fn seed_delay(&self) -> Epoch {
        self.policy.seed_delay
    }

    fn ticket_lookback(&self) -> Epoch {
        self.policy.ticket_lookback
    }

    async fn head(&self) -> Result<Head> {
        Ok(self.head_now())
    }

    async fn miner_info(&self, miner: ActorID) -> Result<MinerInfo> {
        Ok(self.miner_state(miner)?.info)
    }

    async fn randomness(&self, domain: Domain, epoch: Epoch, entropy: &[u8]) -> Result<[u8; 32]> {
        let head = self.head_now().epoch;
        if epoch > head {
            return Err(ChainError::FutureEpoch { epoch, head });
        }
        Ok(self.draw(domain, epoch, entropy))
    }

    async fn push_message(&self, message: Message) -> Result<String> {
        let pushed_epoch = self.head_now().epoch;
        let db = Arc::clone(&self.db);
        // A write waits for other writers and fsyncs: keep it off the reactor.
        tokio::task::spawn_blocking(move || Devnet::store_message(&db, message, pushed_epoch))
            .await
            .map_err(|e| ChainError::Storage(format!("message writer: {e}")))?
    }

    async fn message_status(&self, id: &str) -> Result<MessageStatus> {
        let n = Self::message_id(id)?;
        let tx = self.db.begin_read().map_err(storage)?;
        let messages = tx.open_table(MESSAGES).map_err(storage)?;
        let raw = messages
            .get(n)
            .map_err(storage)?
            .ok_or_else(|| ChainError::UnknownMessage(id.into()))?;
        Ok(from_json::<MessageRecord>(raw.value())?.status)
    }

    async fn precommit(
        &self,
        miner: ActorID,
        number: SectorNumber,
    ) -> Result<Option<PreCommitOnChain>> {
        Ok(self.miner_state(miner)?.precommits.get(&number).cloned())
    }

    async fn sector(&self, miner: ActorID, number: SectorNumber) -> Result<Option<SectorOnChain>> {
        Ok(self.miner_state(miner)?.sectors.get(&number).cloned())
    }

    async fn deadline_info(&self, miner: ActorID, epoch: Epoch) -> Result<DeadlineInfo> {
        Ok(self.miner_state(miner)?.deadline_info(&self.policy, epoch))
    }

    async fn deadlines(&self, miner: ActorID) -> Result<Vec<DeadlineState>> {
        Ok(self.miner_state(miner)?.deadline_states())
    }

    async fn partitions(&self, miner: ActorID, deadline: u64) -> Result<Vec<PartitionState>> {
        self.miner_state(miner)?
            .partition_states(deadline)
            .ok_or_else(|| {
                ChainError::Invalid(format!("miner t0{miner} has no deadline {deadline}"))
            })
    }

    async fn sectors(
        &self,
        miner: ActorID,
        numbers: &BTreeSet<SectorNumber>,
    ) -> Result<Vec<SectorOnChain>> {
        let state = self.miner_state(miner)?;
        Ok(numbers
            .iter()
            .filter_map(|n| state.sectors.get(n).cloned())
            .collect())
    }

    fn head_changes(&self) -> watch::Receiver<Head> {
        self.heads.subscribe()
    }

    async fn open_winning_challenges(&self, miner: ActorID) -> Result<Vec<WinningChallenge>> {
        self.open_challenges_at(miner, now_ms())
    }

    async fn submit_winning_post(
        &self,
        miner: ActorID,
        epoch: Epoch,
        proof: Vec<u8>,
    ) -> Result<BlockRecord> {
        self.submit_winning_post_at(miner, epoch, proof, now_ms())
            .await
    }

    async fn blocks(&self, miner: ActorID, limit: usize) -> Result<Vec<BlockRecord>> {
        self.block_records(miner, limit)
    }
}

/// The head by the wall clock.
fn current_head(g: &Genesis) -> Head {
    let elapsed = now_ms().saturating_sub(g.unix_ms);
    head_at(g, (elapsed / g.block_time_ms) as Epoch)
}

/// The head at `epoch`: its start time is genesis plus `epoch` blocks.
fn head_at(g: &Genesis, epoch: Epoch) -> Head {
    Head {
        epoch,
        timestamp: (g.unix_ms + epoch as u64 * g.block_time_ms) / 1000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 deadlines of 10 epochs; miner 1000's period starts at 0 (1000 % 40):
    /// deadline d opens at 10d, is challenged at 10d − 5, cut off at 10d − 8.
    fn policy() -> Policy {
        Policy {
            challenge_window: 10,
            deadlines_per_period: 4,
            challenge_lookback: 5,
            fault_declaration_cutoff: 8,
            ..Policy::default()
        }
    }

    /// A devnet whose wall clock stays at epoch 0 (hour-long blocks): the
    /// tests move it with `advance_to`.
    fn devnet() -> (tempfile::TempDir, Devnet) {
        devnet_with(policy())
    }

    fn devnet_with(policy: Policy) -> (tempfile::TempDir, Devnet) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("chain.redb")).unwrap());
        (dir, open_frozen(db, policy))
    }

    fn open_frozen(db: Arc<Database>, policy: Policy) -> Devnet {
        let miner = DevnetMiner {
            actor: 1000,
            sector_size: 2048,
        };
        Devnet::open(db, Duration::from_secs(3600), policy, &[miner]).unwrap()
    }

    /// The same chain opened again, as after a restart.
    fn reopen(d: Devnet) -> Devnet {
        let (db, policy) = (Arc::clone(&d.db), d.policy.clone());
        drop(d);
        open_frozen(db, policy)
    }

    use crate::actor::tests::{partitions, sector};

    /// Six genesis sectors: deadline 2 holds {1, 3} {5}, deadline 3 {2, 4} {6}.
    fn proving() -> (tempfile::TempDir, Devnet) {
        proving_with(policy())
    }

    fn proving_with(policy: Policy) -> (tempfile::TempDir, Devnet) {
        let (dir, d) = devnet_with(policy);
        d.add_genesis_sectors(1000, (1..=6).map(sector).collect())
            .unwrap();
        (dir, d)
    }

    /// A lone miner with power wins every epoch.
    fn electing() -> Policy {
        Policy {
            election_rate_percent: 100,
            ..policy()
        }
    }

    fn set(v: &[SectorNumber]) -> BTreeSet<SectorNumber> {
        v.iter().copied().collect()
    }

    fn advance_to(d: &Devnet, epoch: Epoch) {
        d.advance_to(head_at(d.genesis(), epoch)).unwrap();
    }

    /// Pushes `message` at `epoch`, lets it execute at `epoch + 1`, and
    /// returns its exit code.
    async fn run(d: &Devnet, epoch: Epoch, message: Message) -> i64 {
        let id = Devnet::store_message(&d.db, message, epoch).unwrap();
        advance_to(d, epoch + 1);
        match d.message_status(&id).await.unwrap() {
            MessageStatus::Executed { exit_code, .. } => exit_code,
            MessageStatus::Pending => panic!("message {id} did not execute"),
        }
    }

    /// SubmitWindowedPoSt of deadline 2 in period 0, committing to its challenge.
    fn post(d: &Devnet, parts: &[(u64, &[SectorNumber])]) -> Message {
        Message::SubmitWindowedPoSt {
            miner: 1000,
            params: SubmitWindowedPoStParams {
                deadline: 2,
                partitions: partitions(parts),
                proofs: vec![PoStProof {
                    post_proof: RegisteredPoStProof::StackedDrgWindow2KiBV1_2,
                    proof_bytes: vec![0x5a; 192],
                }],
                chain_commit_epoch: 15,
                chain_commit_rand: d.draw(Domain::PoStChainCommit, 15, &[]),
            },
        }
    }

    fn recover(deadline: u64, partition: u64, sectors: &[SectorNumber]) -> RecoveryDeclaration {
        RecoveryDeclaration {
            deadline,
            partition,
            sectors: set(sectors),
        }
    }

    fn power(d: &Devnet) -> u64 {
        d.miner_state(1000).unwrap().power
    }

    #[tokio::test]
    async fn genesis_sectors_are_active_once_by_number() {
        let (_dir, d) = devnet();
        let added = d
            .add_genesis_sectors(1000, (1..=3).map(sector).collect())
            .unwrap();
        let placed: Vec<(u64, u64)> = added.iter().map(|s| (s.deadline, s.partition)).collect();
        assert_eq!(placed, vec![(2, 0), (3, 0), (2, 0)]);
        assert_eq!(power(&d), 3 * 2048);

        let again = d
            .add_genesis_sectors(1000, (1..=4).map(sector).collect())
            .unwrap();
        assert_eq!(again.len(), 4);
        assert_eq!(again[..3], added[..], "known sectors are kept as they are");
        assert_eq!(power(&d), 4 * 2048);

        let mut conflicting = sector(1);
        conflicting.comm_r = [9; 32];
        let e = d
            .add_genesis_sectors(1000, vec![sector(5), conflicting])
            .unwrap_err();
        assert!(
            matches!(&e, ChainError::Invalid(m) if m.contains("genesis sector 1")),
            "{e}"
        );
        assert_eq!(d.sector(1000, 5).await.unwrap(), None, "all or none");
        assert!(matches!(
            d.add_genesis_sectors(7, vec![sector(1)]),
            Err(ChainError::UnknownMiner(7))
        ));
        let found = d.sectors(1000, &set(&[1, 4, 99])).await.unwrap();
        assert_eq!(
            found.iter().map(|s| s.number).collect::<Vec<_>>(),
            vec![1, 4]
        );
    }

    #[tokio::test]
    async fn a_window_post_message_is_checked_like_the_actor_does() {
        let (_dir, d) = proving();
        advance_to(&d, 21);
        let before = d.miner_state(1000).unwrap();
        let Message::SubmitWindowedPoSt { params, .. } = post(&d, &[(0, &[])]) else {
            unreachable!()
        };
        let wrong_deadline = Message::SubmitWindowedPoSt {
            miner: 1000,
            params: SubmitWindowedPoStParams {
                deadline: 3,
                ..params.clone()
            },
        };
        assert_eq!(
            run(&d, 21, wrong_deadline).await,
            exit_code::ILLEGAL_ARGUMENT
        );
        let wrong_commit = Message::SubmitWindowedPoSt {
            miner: 1000,
            params: SubmitWindowedPoStParams {
                chain_commit_rand: d.draw(Domain::PoStChainCommit, 16, &[]),
                ..params.clone()
            },
        };
        assert_eq!(run(&d, 21, wrong_commit).await, exit_code::ILLEGAL_ARGUMENT);
        // Not a proof of these sectors: verify_window_post refuses it (or
        // cannot run without parameters), either way the chain says no.
        assert_eq!(
            run(&d, 21, post(&d, &[(0, &[])])).await,
            exit_code::ILLEGAL_ARGUMENT
        );
        assert_eq!(
            d.miner_state(1000).unwrap(),
            before,
            "refusals change nothing"
        );
        let unknown = Message::SubmitWindowedPoSt { miner: 7, params };
        assert_eq!(run(&d, 21, unknown).await, exit_code::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_partition_given_up_is_proven_and_its_sectors_faulty() {
        let (_dir, d) = proving();
        assert_eq!(run(&d, 21, post(&d, &[(1, &[5])])).await, exit_code::OK);
        assert!(d.sector(1000, 5).await.unwrap().unwrap().faulty);
        assert_eq!(power(&d), 5 * 2048);
        let parts = d.partitions(1000, 2).await.unwrap();
        assert_eq!(
            (parts[1].faulty.clone(), parts[1].active.clone()),
            (set(&[5]), set(&[]))
        );
        let dls = d.deadlines(1000).await.unwrap();
        assert_eq!(dls[2].proven_partitions, set(&[1]));
        assert_eq!((dls[2].live_sectors, dls[2].faulty_sectors), (3, 1));
        // Proven once per period.
        assert_eq!(
            run(&d, 22, post(&d, &[(1, &[5])])).await,
            exit_code::ILLEGAL_ARGUMENT
        );
    }

    #[tokio::test]
    async fn recoveries_are_declared_all_or_none_before_the_cutoff() {
        let (_dir, d) = proving();
        assert_eq!(run(&d, 21, post(&d, &[(1, &[5])])).await, exit_code::OK);
        let declare = |recoveries| Message::DeclareFaultsRecovered {
            miner: 1000,
            recoveries,
        };
        // Deadline 2 is open: its cutoff has passed.
        assert_eq!(
            run(&d, 24, declare(vec![recover(2, 1, &[5])])).await,
            exit_code::ILLEGAL_ARGUMENT
        );
        // A bad declaration fails the message: the good one is not kept.
        assert_eq!(
            run(
                &d,
                31,
                declare(vec![recover(2, 1, &[5]), recover(2, 9, &[1])])
            )
            .await,
            exit_code::NOT_FOUND
        );
        assert!(d.partitions(1000, 2).await.unwrap()[1]
            .recovering
            .is_empty());
        assert_eq!(
            run(&d, 32, declare(vec![recover(2, 1, &[5])])).await,
            exit_code::OK
        );
        let p1 = &d.partitions(1000, 2).await.unwrap()[1];
        assert_eq!(
            (p1.recovering.clone(), p1.faulty.clone()),
            (set(&[5]), set(&[5]))
        );
        assert_eq!(p1.to_prove(), set(&[5]));
    }

    #[tokio::test]
    async fn deadlines_without_proofs_fault_their_sectors_as_epochs_pass() {
        let (_dir, d) = proving();
        let mut heads = d.head_changes();
        advance_to(&d, 29);
        assert_eq!(heads.borrow_and_update().epoch, 29);
        assert_eq!(power(&d), 6 * 2048);

        advance_to(&d, 30);
        assert!(heads.has_changed().unwrap());
        let dl2 = &d.deadlines(1000).await.unwrap()[2];
        assert_eq!(dl2.faulty_sectors, 3);
        assert!(d.sector(1000, 1).await.unwrap().unwrap().faulty);
        assert_eq!(power(&d), 3 * 2048);

        advance_to(&d, 40);
        assert_eq!(power(&d), 0);
        assert_eq!(d.miner_state(1000).unwrap().cron_epoch, 40);
    }

    #[tokio::test]
    async fn a_message_sees_the_closes_before_its_epoch() {
        let (_dir, d) = proving();
        // Lands at 29, inside deadline 2: partition 1 is proven, 0 is not.
        assert_eq!(run(&d, 28, post(&d, &[(1, &[5])])).await, exit_code::OK);
        advance_to(&d, 30);
        let parts = d.partitions(1000, 2).await.unwrap();
        assert_eq!(parts[0].faulty, set(&[1, 3]), "unproven");
        assert!(d.deadlines(1000).await.unwrap()[2]
            .proven_partitions
            .is_empty());

        // Lands at 30: deadline 2 has closed, so it is refused.
        let (_dir, d) = proving();
        assert_eq!(
            run(&d, 29, post(&d, &[(1, &[5])])).await,
            exit_code::ILLEGAL_ARGUMENT
        );
        let parts = d.partitions(1000, 2).await.unwrap();
        assert_eq!(parts[1].faulty, set(&[5]), "closed before the message ran");
    }

    #[tokio::test]
    async fn head_changes_are_announced_once_and_never_backwards() {
        let (_dir, d) = devnet();
        let mut heads = d.head_changes();
        heads.borrow_and_update();
        advance_to(&d, 5);
        assert!(heads.has_changed().unwrap());
        assert_eq!(heads.borrow_and_update().epoch, 5);
        advance_to(&d, 5);
        advance_to(&d, 3);
        assert!(!heads.has_changed().unwrap());
        assert_eq!(d.head_changes().borrow().epoch, 5);
    }

    #[tokio::test]
    async fn read_api_serves_deadlines_and_post_randomness() {
        let (_dir, d) = proving();
        let info = d.deadline_info(1000, 25).await.unwrap();
        assert_eq!(
            (
                info.index,
                info.open,
                info.close,
                info.challenge,
                info.fault_cutoff
            ),
            (2, 20, 30, 15, 12)
        );
        assert!(matches!(
            d.partitions(1000, 4).await,
            Err(ChainError::Invalid(_))
        ));
        let parts = d.partitions(1000, 3).await.unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].index, parts[0].all.clone()), (0, set(&[2, 4])));
        assert_eq!(parts[0].live, parts[0].active);

        // The trait's PoSt randomness is the chain's own draws (what the
        // actor checks against), at epochs the head has reached.
        let first = d.deadline_info(1000, 0).await.unwrap();
        assert_eq!(
            d.window_post_randomness(1000, &first).await.unwrap(),
            d.draw(
                Domain::WindowedPoStChallengeSeed,
                first.challenge,
                &miner_entropy(1000)
            )
        );
        assert_eq!(
            d.post_commit_randomness(0).await.unwrap(),
            d.draw(Domain::PoStChainCommit, 0, &[])
        );
        assert_ne!(
            d.draw(Domain::WindowedPoStChallengeSeed, 0, &[]),
            d.draw(Domain::PoStChainCommit, 0, &[])
        );
    }

    /// The epochs `miner` was elected at, newest first.
    fn elected(d: &Devnet, miner: ActorID) -> Vec<Epoch> {
        let blocks = d.block_records(miner, usize::MAX).unwrap();
        blocks.iter().map(|b| b.challenge.epoch).collect()
    }

    fn missed_reason(rec: &BlockRecord) -> &str {
        match &rec.outcome {
            BlockOutcome::Missed { reason } => reason,
            other => panic!("not missed: {other:?}"),
        }
    }

    fn invalid(e: ChainError) -> String {
        match e {
            ChainError::Invalid(m) => m,
            other => panic!("not Invalid: {other}"),
        }
    }

    #[tokio::test]
    async fn elections_are_drawn_once_per_epoch_also_across_a_reopen() {
        let (_dir, d) = proving_with(electing());
        for epoch in 1..=3 {
            advance_to(&d, epoch);
        }
        assert_eq!(elected(&d, 1000), vec![3, 2, 1], "newest first");
        let open = d.open_winning_challenges(1000).await.unwrap();
        assert_eq!(
            open.iter().map(|c| c.epoch).collect::<Vec<_>>(),
            vec![1, 2, 3],
            "oldest first"
        );
        let c = &open[0];
        assert_eq!(c.miner, 1000);
        assert_eq!(c.proof_type, RegisteredPoStProof::StackedDrgWinning2KiBV1);
        assert_eq!(
            c.randomness,
            d.draw(Domain::WinningPoStChallengeSeed, 1, &miner_entropy(1000))
        );
        assert_eq!(c.sectors.len(), 1, "a 2KiB winning PoSt proves one sector");
        assert!((1..=6).contains(&c.sectors[0].number));
        assert_eq!(c.cutoff_unix_ms - c.issued_unix_ms, 25_000);
        let first = d.block_records(1000, 1).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].outcome.clone(), first[0].latency_ms),
            (BlockOutcome::Pending, None)
        );

        // Epochs passed while running are all drawn, none twice.
        advance_to(&d, 3);
        advance_to(&d, 2);
        advance_to(&d, 5);
        assert_eq!(elected(&d, 1000), vec![5, 4, 3, 2, 1]);

        // After a restart: nothing drawn again, and the downtime not back-filled.
        let d = reopen(d);
        advance_to(&d, 5);
        assert_eq!(elected(&d, 1000), vec![5, 4, 3, 2, 1]);
        let d = reopen(d);
        advance_to(&d, 9);
        assert_eq!(elected(&d, 1000), vec![9, 5, 4, 3, 2, 1]);

        // A stall longer than the cutoff is not back-filled either.
        let now = now_ms();
        let late = now + 12 * 3_600_000;
        d.advance_at(head_at(d.genesis(), 12), late).unwrap();
        assert_eq!(elected(&d, 1000)[..2], [12, 9]);
        assert!(
            d.open_challenges_at(1000, late)
                .unwrap()
                .iter()
                .map(|c| c.epoch)
                .eq([12]),
            "the others' cutoffs passed"
        );

        // A manager woken by the head change already finds its challenge.
        let mut heads = d.head_changes();
        heads.borrow_and_update();
        std::thread::scope(|s| {
            let seen = s.spawn(|| {
                while !heads.has_changed().unwrap() {
                    std::thread::yield_now();
                }
                let head = heads.borrow_and_update().epoch;
                let open = d.open_challenges_at(1000, late).unwrap();
                (head, open.last().map(|c| c.epoch))
            });
            d.advance_at(head_at(d.genesis(), 13), late).unwrap();
            assert_eq!(seen.join().unwrap(), (13, Some(13)));
        });
        assert!(matches!(
            d.open_winning_challenges(7).await,
            Err(ChainError::UnknownMiner(7))
        ));
    }

    #[tokio::test]
    async fn no_elections_without_rate_or_power() {
        let (_dir, d) = proving_with(Policy {
            election_rate_percent: 0,
            ..policy()
        });
        for epoch in 1..=5 {
            advance_to(&d, epoch);
        }
        assert!(elected(&d, 1000).is_empty());

        // Miner 1000 has no sectors, 1001 has them all: only 1001 is elected.
        let (_dir, d) = devnet_with(electing());
        d.ensure_miner(&DevnetMiner {
            actor: 1001,
            sector_size: 2048,
        })
        .unwrap();
        advance_to(&d, 1);
        assert!(elected(&d, 1000).is_empty());
        d.add_genesis_sectors(1001, (1..=2).map(sector).collect())
            .unwrap();
        advance_to(&d, 2);
        assert!(elected(&d, 1000).is_empty());
        assert_eq!(elected(&d, 1001), vec![2]);

        // Power lost to faults wins nothing: by 40 every sector is faulty.
        let (_dir, d) = proving_with(electing());
        advance_to(&d, 1);
        advance_to(&d, 40);
        assert_eq!(power(&d), 0);
        assert_eq!(elected(&d, 1000), vec![1]);
    }

    #[test]
    fn a_miner_wins_with_the_rate_times_its_power_share() {
        assert!(wins_election(u64::MAX, 100, 5, 5));
        assert!(!wins_election(0, 0, 5, 5));
        assert!(!wins_election(0, 100, 0, 5));
        // 50 % × half the power: a quarter of the draws.
        assert!(wins_election((1 << 62) - 1, 50, 1, 2));
        assert!(!wins_election(1 << 62, 50, 1, 2));
        assert!(wins_election(
            u64::MAX / 2,
            100,
            u64::MAX,
            2 * u128::from(u64::MAX)
        ));
        let won = (0..2000)
            .filter(|&e| {
                let r = randomness::draw(b"net", Domain::ElectionProofProduction, e, &[1]);
                wins_election(election_ticket(&r), 50, 1, 1)
            })
            .count();
        assert!((850..1150).contains(&won), "{won} of 2000 at 50 %");
    }

    #[tokio::test]
    async fn an_election_without_a_proof_is_missed_at_the_cutoff() {
        let (_dir, d) = proving_with(electing());
        let now = now_ms();
        d.advance_at(head_at(d.genesis(), 1), now).unwrap();
        d.advance_at(head_at(d.genesis(), 1), now + 25_000).unwrap();
        assert_eq!(d.open_challenges_at(1000, now + 25_000).unwrap().len(), 1);
        d.advance_at(head_at(d.genesis(), 1), now + 25_001).unwrap();
        let rec = &d.block_records(1000, 1).unwrap()[0];
        assert_eq!(
            missed_reason(rec),
            "no winning PoSt before the cutoff (25 s)"
        );
        assert_eq!(rec.latency_ms, None);
        assert!(d.open_winning_challenges(1000).await.unwrap().is_empty());

        // A proof after the sweep is told how late it was, once.
        let rec = d
            .submit_winning_post_at(1000, 1, vec![1; 192], now + 26_000)
            .await
            .unwrap();
        assert_eq!(
            missed_reason(&rec),
            "winning PoSt arrived 1000 ms after the cutoff (25 s)"
        );
        assert_eq!(rec.latency_ms, Some(26_000));
        let again = d.submit_winning_post(1000, 1, vec![1; 192]).await;
        assert!(invalid(again.unwrap_err()).contains("already decided: missed"));
    }

    #[tokio::test]
    async fn late_and_invalid_proofs_miss_the_block_and_decide_it() {
        let (_dir, d) = proving_with(electing());
        advance_to(&d, 1);
        advance_to(&d, 2);
        let c = d.open_winning_challenges(1000).await.unwrap()[0].clone();
        let late = c.cutoff_unix_ms + 1500;
        let rec = d
            .submit_winning_post_at(1000, 1, vec![0x5a; 192], late)
            .await
            .unwrap();
        assert_eq!(
            missed_reason(&rec),
            "winning PoSt arrived 1500 ms after the cutoff (25 s)"
        );
        assert_eq!(rec.latency_ms, Some(26_500));

        // Not a proof of the challenged sector (or no parameters to check
        // it with): either way the block is missed.
        let rec = d
            .submit_winning_post(1000, 2, vec![0x5a; 192])
            .await
            .unwrap();
        assert!(
            missed_reason(&rec).starts_with("invalid winning PoSt"),
            "{rec:?}"
        );
        assert!(rec.latency_ms.is_some());
        assert_eq!(d.block_records(1000, 1).unwrap(), vec![rec]);
        assert!(d.open_winning_challenges(1000).await.unwrap().is_empty());

        let e = invalid(d.submit_winning_post(1000, 2, vec![]).await.unwrap_err());
        assert!(
            e.contains("already decided: missed (invalid winning PoSt"),
            "{e}"
        );
        let e = invalid(d.submit_winning_post(1000, 99, vec![]).await.unwrap_err());
        assert!(e.contains("t01000") && e.contains("epoch 99"), "{e}");
        let e = invalid(d.submit_winning_post(7, 1, vec![]).await.unwrap_err());
        assert!(e.contains("t07"), "{e}");
    }

    /// Seals a 2KiB CC sector into `dir`: (comm_r, comm_d, cache, sealed).
    fn seal_cc_sector(
        dir: &std::path::Path,
        miner: ActorID,
        number: SectorNumber,
    ) -> ([u8; 32], [u8; 32], std::path::PathBuf, std::path::PathBuf) {
        use std::io::Read;
        let proof = RegisteredSealProof::StackedDrg2KiBV1_1;
        let (staged, sealed, cache) = (dir.join("staged"), dir.join("sealed"), dir.join("cache"));
        std::fs::create_dir_all(&cache).unwrap();
        let target = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staged)
            .unwrap();
        let size = filecoin_proofs_api::UnpaddedBytesAmount(2032);
        let (piece, _) = seal::add_piece(proof, std::io::repeat(0).take(2032), target, size, &[])
            .expect("add_piece");
        std::fs::File::create(&sealed).unwrap();
        let pc1 = seal::seal_pre_commit_phase1(
            proof,
            &cache,
            &staged,
            &sealed,
            damocles_sector::prover_id(miner),
            SectorId::from(number),
            [7; 32],
            &[piece],
        )
        .expect("pc1");
        let pc2 = seal::seal_pre_commit_phase2(pc1, &cache, &sealed).expect("pc2");
        (pc2.comm_r, pc2.comm_d, cache, sealed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_winning_post_wins_the_block_once() {
        fil_params::configure_process_env();
        fil_params::ensure(
            &[fil_params::ParamSet::WinningPost2KiB],
            &mut fil_params::Quiet,
        )
        .expect("winning PoSt parameters");
        let (dir, d) = devnet_with(electing());
        let files = dir.path().join("sector");
        let (comm_r, comm_d, cache, sealed) =
            tokio::task::spawn_blocking(move || seal_cc_sector(&files, 1000, 1))
                .await
                .unwrap();
        let on_chain = SectorOnChain {
            comm_r,
            comm_d,
            ..sector(1)
        };
        d.add_genesis_sectors(1000, vec![on_chain]).unwrap();
        advance_to(&d, 1);
        advance_to(&d, 2);
        let open = d.open_winning_challenges(1000).await.unwrap();
        assert_eq!(open.len(), 2);
        let c = open[0].clone();
        assert_eq!(
            c.sectors.iter().map(|s| s.number).collect::<Vec<_>>(),
            vec![1]
        );

        let replicas = BTreeMap::from([(
            SectorId::from(1),
            filecoin_proofs_api::PrivateReplicaInfo::new(c.proof_type, comm_r, cache, sealed),
        )]);
        let seed = post_seed(c.randomness);
        let proof = tokio::task::spawn_blocking(move || {
            post::generate_winning_post(&seed, &replicas, damocles_sector::prover_id(1000))
        })
        .await
        .unwrap()
        .expect("winning PoSt");
        let proof = proof[0].1.clone();

        // Epoch 2's challenge has other randomness: epoch 1's proof misses it.
        let other = d.submit_winning_post(1000, 2, proof.clone()).await.unwrap();
        assert!(
            missed_reason(&other).starts_with("invalid winning PoSt"),
            "{other:?}"
        );

        let rec = d.submit_winning_post(1000, 1, proof.clone()).await.unwrap();
        assert_eq!(rec.outcome, BlockOutcome::Won, "{rec:?}");
        assert!(rec.latency_ms.unwrap() > 0);
        assert_eq!(rec.challenge, c);
        let e = invalid(d.submit_winning_post(1000, 1, proof).await.unwrap_err());
        assert!(e.contains("already decided: won"), "{e}");
        let blocks = d.blocks(1000, 10).await.unwrap();
        assert_eq!(
            blocks.iter().map(|b| b.challenge.epoch).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(blocks[1], rec);
    }
}
