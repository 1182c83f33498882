//! The embedded devnet: a [`Chain`] whose state lives in redb.
//!
//! Height follows the wall clock from a genesis time stored at creation, so
//! the chain keeps its history across restarts (and kill -9). A message pushed
//! at epoch E executes at E+1; a background ticker executes the messages that
//! are due (proofs are verified before the write transaction opens), one redb
//! transaction per message, then ends the deadlines that closed (missed window
//! PoSts become faults) and announces the head. Writes from async callers run
//! on blocking threads.

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
/// `next_message`: the id the next pushed message gets.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("devnet_counters");

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
        let mut cron_head = self.exec.lock().expect("exec lock");
        let n = self.execute_due(head.epoch)?;
        if *cron_head < head.epoch {
            self.close_deadlines(head.epoch)?;
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

    /// Ends, for every miner, the deadlines that closed by `epoch`.
    fn close_deadlines(&self, epoch: Epoch) -> Result<()> {
        for actor in self.miner_ids()? {
            let mut state = self.miner_state(actor)?;
            if !self.run_cron(&mut state, epoch).is_empty() {
                self.store_miner(&state)?;
            }
        }
        Ok(())
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
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("chain.redb")).unwrap());
        let miner = DevnetMiner {
            actor: 1000,
            sector_size: 2048,
        };
        let d = Devnet::open(db, Duration::from_secs(3600), policy(), &[miner]).unwrap();
        (dir, d)
    }

    use crate::actor::tests::{partitions, sector};

    /// Six genesis sectors: deadline 2 holds {1, 3} {5}, deadline 3 {2, 4} {6}.
    fn proving() -> (tempfile::TempDir, Devnet) {
        let (dir, d) = devnet();
        d.add_genesis_sectors(1000, (1..=6).map(sector).collect())
            .unwrap();
        (dir, d)
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
}
