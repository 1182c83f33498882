//! The embedded devnet: a [`Chain`] whose state lives in redb.
//!
//! Height follows the wall clock from a genesis time stored at creation, so
//! the chain keeps its history across restarts (and kill -9). A message pushed
//! at epoch E executes at E+1; a background ticker executes the messages that
//! are due (proofs are verified before the write transaction opens), one redb
//! transaction per message. Writes from async callers run on blocking threads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use filecoin_proofs_api::{seal, RegisteredPoStProof, RegisteredSealProof, SectorId};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::actor::MinerState;
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
    /// Serializes message execution.
    exec: Mutex<()>,
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
        let devnet = Devnet {
            db,
            policy,
            genesis,
            exec: Mutex::new(()),
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
        let g = self.genesis();
        let elapsed = now_ms().saturating_sub(g.unix_ms);
        let epoch = (elapsed / g.block_time_ms) as Epoch;
        Head {
            epoch,
            timestamp: (g.unix_ms + epoch as u64 * g.block_time_ms) / 1000,
        }
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

    /// Executes every message that is due at the current head. Returns how
    /// many ran.
    pub fn advance(&self) -> Result<usize> {
        let _exec = self.exec.lock().expect("exec lock");
        let head = self.head_now().epoch;
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
        let epoch = rec.pushed_epoch + 1;
        let miner_id = match &rec.message {
            Message::PreCommitSector { miner, .. } | Message::ProveCommitSector { miner, .. } => {
                *miner
            }
        };
        // Apply to a copy first (verification included), so the write
        // transaction is held only for the store itself. Only this executor
        // (under `exec`) changes miner state, so the copy cannot go stale.
        let (outcome, new_state) = match self.miner_state(miner_id) {
            Err(ChainError::UnknownMiner(_)) => (
                Err(crate::actor::ActorError {
                    exit_code: exit_code::NOT_FOUND,
                    message: format!("miner t0{miner_id} does not exist"),
                }),
                None,
            ),
            Err(e) => return Err(e),
            Ok(mut state) => {
                let r = self.apply(&mut state, epoch, &rec.message);
                let changed = r.is_ok().then_some(state);
                (r, changed)
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
    ) -> std::result::Result<(), crate::actor::ActorError> {
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
}
