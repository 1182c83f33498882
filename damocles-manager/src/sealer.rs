//! The `Venus.*` methods: what workers and operators ask of the manager.
//!
//! Each method checks its input against the stored sector first and changes
//! state only once everything is known to be right; a refused call leaves the
//! database as it was. Writes go through [`Db`] on blocking threads (redb
//! commits fsync).

use std::sync::Arc;

use async_trait::async_trait;
use damocles_api::cli::ManagerCliApiServer;
use damocles_api::limits::{self, TooLong};
use damocles_api::rpc::SealerApiServer;
use damocles_api::*;
use damocles_chain::{miner_entropy, Chain, Domain, Message, MessageStatus, PreCommitParams};
use filecoin_proofs_api::SectorId;
use jsonrpsee::core::RpcResult;
use rand::seq::SliceRandom;
use tracing::{debug, info, warn};

use crate::config::ManagerConfig;
use crate::db::{Db, NumberPolicy};
use crate::error::ApiError;
use crate::metrics::{MethodLabels, Metrics, MinerLabels};
use crate::stores::Stores;

pub struct Manager {
    pub config: ManagerConfig,
    pub db: Db,
    pub chain: Arc<dyn Chain>,
    pub stores: Stores,
    pub metrics: Arc<Metrics>,
    /// Serializes message submission so one sector never sends twice.
    submit: tokio::sync::Mutex<()>,
}

/// The RPC handle (cheap to clone).
#[derive(Clone)]
pub struct Sealer(Arc<Manager>);

type Result<T> = std::result::Result<T, ApiError>;

impl Sealer {
    pub fn new(
        config: ManagerConfig,
        db: Db,
        chain: Arc<dyn Chain>,
        stores: Stores,
        metrics: Arc<Metrics>,
    ) -> Sealer {
        Sealer(Arc::new(Manager {
            config,
            db,
            chain,
            stores,
            metrics,
            submit: tokio::sync::Mutex::new(()),
        }))
    }

    /// Runs a database call on a blocking thread.
    async fn db<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> std::result::Result<T, E> + Send + 'static,
    ) -> Result<T> {
        let db = self.0.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| ApiError::Internal(format!("database task: {e}")))?
            .map_err(Into::into)
    }

    async fn online(&self, id: SectorID) -> Result<SectorState> {
        self.db(move |db| db.online(id)?.ok_or_else(|| db.not_online(id)))
            .await
    }

    async fn update<T: Send + 'static>(
        &self,
        id: SectorID,
        f: impl FnOnce(&mut SectorState) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.db(move |db| db.update(id, f)).await
    }

    async fn sector_size(&self, miner: u64) -> Result<u64> {
        Ok(self.0.chain.miner_info(miner).await?.sector_size)
    }

    async fn push(&self, msg: Message) -> Result<String> {
        let method = msg.method();
        let id = self.0.chain.push_message(msg).await?;
        self.0
            .metrics
            .messages_pushed
            .get_or_create(&MethodLabels {
                method: method.into(),
            })
            .inc();
        Ok(id)
    }

    /// Maps a message's chain status to what the worker polls for.
    async fn poll_message(
        &self,
        what: &str,
        message: Option<String>,
        landed_check: bool,
        id: SectorID,
    ) -> Result<PollStateResp> {
        let Some(msg) = message else {
            return Ok(PollStateResp {
                state: OnChainState::NotFound,
                desc: Some(format!("no {what} submitted for {}", id)),
            });
        };
        let confidence = self
            .0
            .config
            .miner(id.miner)
            .map(|m| m.commitment.confidence)
            .unwrap_or(0);
        let head = self.0.chain.head().await?.epoch;
        Ok(match self.0.chain.message_status(&msg).await? {
            MessageStatus::Pending => PollStateResp {
                state: OnChainState::Pending,
                desc: Some(format!("{what} message {msg} waits in the message pool")),
            },
            MessageStatus::Executed { epoch, exit_code: 0, .. } if head < epoch + confidence => PollStateResp {
                state: OnChainState::Packed,
                desc: Some(format!("{what} message {msg} executed at epoch {epoch}, waiting for {confidence} confirmations")),
            },
            MessageStatus::Executed { exit_code: 0, .. } => {
                if landed_check && self.0.chain.sector(id.miner, id.number).await?.is_none() {
                    return Err(ApiError::Internal(format!("{what} message {msg} succeeded but the chain has no sector {}", id)));
                }
                PollStateResp {
                    state: OnChainState::Landed,
                    desc: None,
                }
            }
            MessageStatus::Executed { epoch, exit_code, error } => PollStateResp {
                state: OnChainState::PermFailed,
                desc: Some(format!(
                    "{what} message {msg} failed at epoch {epoch} with exit code {exit_code}: {}",
                    error.unwrap_or_default()
                )),
            },
        })
    }

    /// The CommR the chain holds for the sector (precommitted or proven), and
    /// whether it is proven. The chain is the truth a crash cannot undo: a
    /// message whose id the manager lost is still found here.
    async fn on_chain(&self, id: SectorID) -> Result<Option<([u8; 32], bool)>> {
        if let Some(s) = self.0.chain.sector(id.miner, id.number).await? {
            return Ok(Some((s.comm_r, true)));
        }
        Ok(self
            .0
            .chain
            .precommit(id.miner, id.number)
            .await?
            .map(|p| (p.params.comm_r, false)))
    }

    async fn message_ok(&self, msg: &Option<String>) -> Result<bool> {
        Ok(match msg {
            None => false,
            Some(m) => !matches!(
                self.0.chain.message_status(m).await?,
                MessageStatus::Executed { exit_code, .. } if exit_code != 0
            ),
        })
    }
}

fn rejected(desc: String) -> SubmitResp {
    SubmitResp {
        res: SubmitResult::Rejected,
        desc: Some(desc),
    }
}

fn submit(res: SubmitResult) -> SubmitResp {
    SubmitResp { res, desc: None }
}

/// A field over its cap: invalid params (-32602), naming the field and the cap.
fn invalid(e: TooLong) -> ApiError {
    ApiError::Invalid(e.to_string())
}

#[async_trait]
impl SealerApiServer for Sealer {
    async fn allocate_sector(
        &self,
        spec: AllocateSectorSpec,
        niporep: Option<bool>,
    ) -> RpcResult<Option<AllocatedSector>> {
        if niporep == Some(true) {
            return Err(ApiError::Invalid(
                "non-interactive PoRep sectors are not supported by this manager".into(),
            )
            .into());
        }
        let allowed = spec.allowed_miners.clone().unwrap_or_default();
        let mut miners: Vec<_> = self
            .0
            .config
            .miners
            .iter()
            .filter(|m| allowed.is_empty() || allowed.contains(&m.actor))
            .collect();
        if miners.is_empty() {
            // As damocles answers: no sector for this worker, not an error
            // (a worker may be shared by managers of different miners).
            let managed: Vec<u64> = self.0.config.miners.iter().map(|m| m.actor).collect();
            debug!(
                ?allowed,
                ?managed,
                "AllocateSector: none of the allowed miners is managed here"
            );
            return Ok(None);
        }
        miners.retain(|m| m.sector.enabled);
        miners.shuffle(&mut rand::thread_rng());
        let proof_types = spec.allowed_proof_types.clone().unwrap_or_default();
        for m in miners {
            let info = self
                .0
                .chain
                .miner_info(m.actor)
                .await
                .map_err(ApiError::from)?;
            let proof = SealProof(info.seal_proof);
            if !proof_types.is_empty() && !proof_types.contains(&proof) {
                continue;
            }
            let policy = NumberPolicy {
                init_number: m.sector.init_number,
                min_number: m.sector.min_number,
                max_number: m.sector.max_number,
            };
            let actor = m.actor;
            if let Some(state) = self.db(move |db| db.allocate(actor, proof, policy)).await? {
                info!(sector = %state.id, "sector allocated");
                self.0
                    .metrics
                    .sectors_allocated
                    .get_or_create(&MinerLabels {
                        miner: actor.to_string(),
                    })
                    .inc();
                return Ok(Some(AllocatedSector {
                    id: state.id,
                    proof_type: proof,
                }));
            }
            warn!(
                miner = actor,
                "sector numbers used up (Miners.Sector.MaxNumber)"
            );
        }
        Ok(None)
    }

    async fn acquire_deals(
        &self,
        sector: SectorID,
        _spec: AcquireDealsSpec,
    ) -> RpcResult<Option<Vec<SectorPiece>>> {
        self.online(sector).await?;
        // No market is connected: every sector is committed capacity.
        Ok(None)
    }

    async fn assign_ticket(&self, sector: SectorID) -> RpcResult<Ticket> {
        let state = self.online(sector).await?;
        if let Some(t) = state.ticket {
            return Ok(t);
        }
        let head = self.0.chain.head().await.map_err(ApiError::from)?.epoch;
        let epoch = (head - self.0.chain.ticket_lookback()).max(0);
        let bytes = self
            .0
            .chain
            .randomness(Domain::SealRandomness, epoch, &miner_entropy(sector.miner))
            .await
            .map_err(ApiError::from)?;
        let fresh = Ticket {
            ticket: encoding::Bytes32(bytes),
            epoch,
        };
        // Another call may have won the race: the stored ticket wins.
        let t = self
            .update(sector, move |s| Ok(*s.ticket.get_or_insert(fresh)))
            .await?;
        Ok(t)
    }

    async fn submit_pre_commit(
        &self,
        sector: AllocatedSector,
        info: PreCommitOnChainInfo,
        reset: bool,
    ) -> RpcResult<SubmitResp> {
        let id = sector.id;
        let _one_at_a_time = self.0.submit.lock().await;
        let state = self.online(id).await?;
        if sector.proof_type != state.sector_type {
            return Ok(rejected(format!(
                "{}: proof type {} does not match the allocated {}",
                id,
                sector.proof_type.code(),
                state.sector_type.code()
            )));
        }
        if state.ticket != Some(info.ticket) {
            return Ok(rejected(format!(
                "{}: the ticket is not the one AssignTicket gave",
                id
            )));
        }
        // The chain first: a precommit already there is final.
        if let Some((comm_r, _)) = self.on_chain(id).await? {
            if comm_r != info.comm_r {
                return Ok(rejected(format!(
                    "{}: the chain already holds a different precommit for this sector",
                    id
                )));
            }
            if state.pre != Some(info) {
                self.update(id, move |s| {
                    s.pre = Some(info);
                    Ok(())
                })
                .await?;
            }
            return Ok(submit(SubmitResult::DuplicateSubmit));
        }
        if let Some(pre) = &state.pre {
            // A recorded precommit without a message id was interrupted
            // before it was sent: send it now.
            let sent = state.pre_message.is_some();
            let alive = self.message_ok(&state.pre_message).await?;
            if *pre == info && sent && (alive || !reset) {
                return Ok(submit(SubmitResult::DuplicateSubmit));
            }
            if *pre != info && !reset {
                return Ok(SubmitResp {
                    res: SubmitResult::MismatchedSubmission,
                    desc: Some(format!(
                        "{}: a different precommit was submitted before; resubmit with reset",
                        id
                    )),
                });
            }
        }
        // Record, send, record the message: a crash in between is repaired by
        // the next submit (above) and by polling the chain's state.
        self.update(id, move |s| {
            s.pre = Some(info);
            s.pre_message = None;
            Ok(())
        })
        .await?;
        let msg = Message::PreCommitSector {
            miner: id.miner,
            params: PreCommitParams {
                sector_number: id.number,
                seal_proof: state.sector_type.0,
                comm_r: info.comm_r,
                comm_d: info.comm_d,
                seal_rand_epoch: info.ticket.epoch,
            },
        };
        let msg_id = self.push(msg).await?;
        info!(sector = %id, message = %msg_id, "precommit sent");
        self.update(id, move |s| {
            s.pre_message = Some(msg_id);
            Ok(())
        })
        .await?;
        Ok(submit(SubmitResult::Accepted))
    }

    async fn poll_pre_commit_state(&self, sector: SectorID) -> RpcResult<PollStateResp> {
        let state = self.online(sector).await?;
        let by_message = self
            .poll_message("precommit", state.pre_message.clone(), false, sector)
            .await?;
        if matches!(
            by_message.state,
            OnChainState::NotFound | OnChainState::PermFailed
        ) {
            // The message is unknown or failed, yet the chain may hold this very
            // precommit (sent by a call whose answer a crash lost).
            if let (Some(pre), Some((comm_r, _))) = (&state.pre, self.on_chain(sector).await?) {
                if pre.comm_r == comm_r {
                    return Ok(PollStateResp {
                        state: OnChainState::Landed,
                        desc: None,
                    });
                }
            }
        }
        Ok(by_message)
    }

    async fn submit_persisted(&self, sector: SectorID, instance: String) -> RpcResult<bool> {
        self.submit_persisted_ex(sector, instance, false).await
    }

    async fn submit_persisted_ex(
        &self,
        sector: SectorID,
        instance: String,
        is_upgrade: bool,
    ) -> RpcResult<bool> {
        self.online(sector).await?;
        if is_upgrade {
            return Err(ApiError::Invalid(
                "snap-up (upgrade) sectors are not supported by this manager yet".into(),
            )
            .into());
        }
        let Some(store) = self.0.stores.get(&instance).cloned() else {
            let known: Vec<String> = self.0.stores.all().iter().map(|s| s.name()).collect();
            return Err(ApiError::Invalid(format!(
                "unknown persist store {instance:?} (known: {known:?})"
            ))
            .into());
        };
        let size = self.sector_size(sector.miner).await?;
        let check = tokio::task::spawn_blocking(move || store.check_persisted(sector, size))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        match check {
            Ok(()) => {}
            Err(crate::stores::Unpersisted::Missing(missing)) => {
                warn!(sector = %sector, store = %instance, %missing, "persisted files incomplete");
                return Ok(false);
            }
            Err(crate::stores::Unpersisted::Unreachable(why)) => {
                warn!(sector = %sector, store = %instance, %why, "persist store did not answer");
                return Err(ApiError::NotReady(format!(
                    "cannot check the persisted files now: {why}"
                ))
                .into());
            }
        }
        self.update(sector, move |s| {
            s.persisted = Some(instance);
            Ok(())
        })
        .await?;
        Ok(true)
    }

    async fn wait_seed(
        &self,
        sector: SectorID,
        _proof_type: Option<SealProof>,
    ) -> RpcResult<WaitSeedResp> {
        let state = self.online(sector).await?;
        if let Some(seed) = state.seed {
            return Ok(WaitSeedResp {
                should_wait: false,
                delay: 0,
                seed: Some(seed),
            });
        }
        let chain = &self.0.chain;
        let block = chain.block_time().as_secs_f64();
        let Some(pre) = chain
            .precommit(sector.miner, sector.number)
            .await
            .map_err(ApiError::from)?
        else {
            // Not on chain (yet): say why.
            let poll = self
                .poll_message("precommit", state.pre_message, false, sector)
                .await?;
            return match poll.state {
                OnChainState::Pending | OnChainState::Packed => Ok(WaitSeedResp {
                    should_wait: true,
                    delay: block.ceil().max(1.0) as u64,
                    seed: None,
                }),
                _ => Err(ApiError::NotReady(format!(
                    "{}: no landed precommit to draw a seed for ({})",
                    sector,
                    poll.desc.unwrap_or_default()
                ))
                .into()),
            };
        };
        let seed_epoch = pre.seed_epoch(chain.seed_delay());
        let head = chain.head().await.map_err(ApiError::from)?.epoch;
        if head < seed_epoch {
            let delay = ((seed_epoch - head) as f64 * block).ceil().max(1.0) as u64;
            return Ok(WaitSeedResp {
                should_wait: true,
                delay,
                seed: None,
            });
        }
        let bytes = chain
            .randomness(
                Domain::InteractiveSealChallengeSeed,
                seed_epoch,
                &miner_entropy(sector.miner),
            )
            .await
            .map_err(ApiError::from)?;
        let seed = Seed {
            seed: encoding::Bytes32(bytes),
            epoch: seed_epoch,
        };
        self.update(sector, move |s| {
            s.seed = Some(seed);
            Ok(())
        })
        .await?;
        Ok(WaitSeedResp {
            should_wait: false,
            delay: 0,
            seed: Some(seed),
        })
    }

    async fn submit_proof(
        &self,
        sector: SectorID,
        proof: ProofOnChainInfo,
        reset: bool,
    ) -> RpcResult<SubmitResp> {
        limits::check_len("Proof", &proof.proof.0, limits::MAX_PROOF_BYTES).map_err(invalid)?;
        let _one_at_a_time = self.0.submit.lock().await;
        let state = self.online(sector).await?;
        let (Some(pre), Some(seed)) = (state.pre, state.seed) else {
            return Ok(rejected(format!(
                "{}: no precommit and seed yet (call WaitSeed first)",
                sector
            )));
        };
        // Proven on chain already (say the manager died before recording the
        // message): nothing to send.
        if let Some((_, true)) = self.on_chain(sector).await? {
            if state.proof.is_none() {
                self.update(sector, move |s| {
                    s.proof = Some(proof.proof);
                    Ok(())
                })
                .await?;
            }
            return Ok(submit(SubmitResult::DuplicateSubmit));
        }
        if let Some(existing) = &state.proof {
            let sent = state.proof_message.is_some();
            let alive = self.message_ok(&state.proof_message).await?;
            if *existing == proof.proof && sent && (alive || !reset) {
                return Ok(submit(SubmitResult::DuplicateSubmit));
            }
            if *existing != proof.proof && !reset {
                return Ok(SubmitResp {
                    res: SubmitResult::MismatchedSubmission,
                    desc: Some(format!(
                        "{}: a different proof was submitted before; resubmit with reset",
                        sector
                    )),
                });
            }
        }
        // Check before sending, as the chain will: a bad proof costs a message
        // and the worker learns sooner.
        let bytes = proof.proof.0.clone();
        let seal_proof = state.sector_type.0;
        let verified = tokio::task::spawn_blocking(move || {
            filecoin_proofs_api::seal::verify_seal(
                seal_proof,
                pre.comm_r,
                pre.comm_d,
                damocles_sector::prover_id(sector.miner),
                SectorId::from(sector.number),
                pre.ticket.ticket.0,
                seed.seed.0,
                &bytes,
            )
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        match verified {
            Ok(true) => {}
            Ok(false) => {
                warn!(sector = %sector, "proof refused: does not verify");
                return Ok(rejected(format!(
                    "{}: the proof does not verify against the precommit (CommR, ticket epoch {}, seed epoch {})",
                    sector,
                    pre.ticket.epoch,
                    seed.epoch
                )));
            }
            Err(e) => {
                warn!(sector = %sector, error = %e, "proof refused: cannot be verified");
                return Ok(rejected(format!(
                    "{}: the proof cannot be verified: {e:#}",
                    sector
                )));
            }
        }
        let msg = Message::ProveCommitSector {
            miner: sector.miner,
            sector_number: sector.number,
            proof: proof.proof.0.clone(),
        };
        // Record, send, record the message (see submit_pre_commit).
        self.update(sector, move |s| {
            s.proof = Some(proof.proof);
            s.proof_message = None;
            Ok(())
        })
        .await?;
        let msg_id = self.push(msg).await?;
        info!(sector = %sector, message = %msg_id, "prove-commit sent");
        self.update(sector, move |s| {
            s.proof_message = Some(msg_id);
            Ok(())
        })
        .await?;
        Ok(submit(SubmitResult::Accepted))
    }

    async fn poll_proof_state(&self, sector: SectorID) -> RpcResult<PollStateResp> {
        let state = self.online(sector).await?;
        let by_message = self
            .poll_message("prove-commit", state.proof_message.clone(), true, sector)
            .await?;
        if matches!(
            by_message.state,
            OnChainState::NotFound | OnChainState::PermFailed
        ) && state.proof.is_some()
            && matches!(self.on_chain(sector).await?, Some((_, true)))
        {
            return Ok(PollStateResp {
                state: OnChainState::Landed,
                desc: None,
            });
        }
        Ok(by_message)
    }

    async fn report_state(
        &self,
        sector: SectorID,
        mut req: ReportStateReq,
    ) -> RpcResult<SectorStateResp> {
        limits::fit_report(&mut req).map_err(invalid)?;
        let offline = self.db(move |db| db.report(sector, req)).await?;
        Ok(match offline {
            None => SectorStateResp {
                id: sector,
                finalized: false,
                abort_reason: None,
            },
            // Finalized or aborted here: the worker drops the sector.
            Some(s) => SectorStateResp {
                id: sector,
                finalized: true,
                abort_reason: s.aborted.then_some(s.abort_reason),
            },
        })
    }

    async fn report_finalized(&self, sector: SectorID) -> RpcResult<()> {
        self.finish(sector, None).await
    }

    async fn report_aborted(&self, sector: SectorID, mut reason: String) -> RpcResult<()> {
        limits::truncate_text(&mut reason, limits::MAX_TEXT_BYTES);
        self.finish(sector, Some(reason)).await
    }

    async fn worker_ping(&self, info: WorkerInfo) -> RpcResult<()> {
        limits::check_worker_info(&info).map_err(invalid)?;
        Ok(self.db(move |db| db.record_ping(info)).await?)
    }

    async fn store_reserve_space(
        &self,
        sector: SectorID,
        size: u64,
        candidates: Vec<String>,
    ) -> RpcResult<Option<StoreBasicInfo>> {
        self.online(sector).await?;
        let unknown: Vec<&String> = candidates
            .iter()
            .filter(|c| self.0.stores.get(c).is_none())
            .collect();
        if !unknown.is_empty() {
            warn!(sector = %sector, ?unknown, "worker offered stores this manager does not know");
        }
        let stores = self.0.stores.clone();
        let r = self
            .db(move |db| {
                let usable = |name: &str| {
                    stores
                        .get(name)
                        .is_some_and(|s| !s.config.read_only && s.allows(sector.miner))
                        && (candidates.is_empty() || candidates.iter().any(|c| c == name))
                };
                db.reserve(sector, size, usable, |reserved| {
                    stores.pick(sector.miner, size, &candidates, reserved, |s| s.space())
                })
            })
            .await?;
        Ok(r.and_then(|r| self.0.stores.get(&r.store).map(|s| s.basic_info())))
    }

    async fn store_basic_info(&self, instance: String) -> RpcResult<Option<StoreBasicInfo>> {
        Ok(self.0.stores.get(&instance).map(|s| s.basic_info()))
    }
}

impl Sealer {
    /// Bytes of records one ListSectors answer holds: the default cap, or
    /// less when the configured response cap is lower (a fifth of it is left
    /// for the envelope and the commas between records).
    fn list_bytes(&self) -> usize {
        let max_response = self.0.config.common.api.limits.max_response_bytes as usize;
        limits::LIST_SECTORS_MAX_BYTES.min(max_response / 5 * 4)
    }

    /// ReportFinalized / ReportAborted: the sector goes offline. Repeating it
    /// for a sector already offline is fine.
    async fn finish(&self, sector: SectorID, abort: Option<String>) -> RpcResult<()> {
        let r = self
            .db(move |db| {
                db.finish(sector, |s| match abort {
                    Some(reason) => {
                        s.aborted = true;
                        s.abort_reason = reason;
                    }
                    None => s.finalized = true,
                })
            })
            .await;
        Ok(r?)
    }
}

#[async_trait]
impl ManagerCliApiServer for Sealer {
    async fn list_sectors(
        &self,
        kind: SectorListKind,
        after: Option<SectorID>,
        limit: Option<u64>,
    ) -> RpcResult<Vec<SectorState>> {
        let paged = after.is_some() || limit.is_some();
        // The old call shape (`[kind]`) gets no count limit: every answer that
        // fit in one response before is answered whole as before. Only the
        // byte cap applies, so a table too big for one response gives its
        // first 8 MiB of records instead of "Response is too big" (the
        // response cap is the server's, the same for every method).
        let count = match limit {
            Some(0) => return Err(ApiError::Invalid("limit must be at least 1".into()).into()),
            Some(n) => n.min(limits::LIST_SECTORS_MAX_LIMIT),
            None if paged => limits::LIST_SECTORS_DEFAULT_LIMIT,
            None => u64::MAX,
        };
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let bytes = self.list_bytes();
        let page = self
            .db(move |db| db.list_page(kind, after, count, bytes))
            .await?;
        if page.cut_by_bytes && !paged {
            warn!(
                sent = page.sectors.len(),
                "ListSectors without paging params: answered only the first {bytes} bytes of records; page with [kind, after, limit]"
            );
        }
        Ok(page.sectors)
    }

    async fn find_sector(&self, sector: SectorID) -> RpcResult<Option<SectorState>> {
        Ok(self.db(move |db| db.find(sector)).await?.map(|(s, _)| s))
    }

    async fn abort_sector(&self, sector: SectorID, mut reason: String) -> RpcResult<()> {
        limits::truncate_text(&mut reason, limits::MAX_TEXT_BYTES);
        info!(sector = %sector, %reason, "sector aborted by the operator");
        Ok(self
            .db(move |db| {
                db.move_offline(sector, |s| {
                    s.aborted = true;
                    s.abort_reason = reason;
                })
            })
            .await?)
    }

    async fn finalize_sector(&self, sector: SectorID) -> RpcResult<()> {
        info!(sector = %sector, "sector finalized by the operator");
        Ok(self
            .db(move |db| db.move_offline(sector, |s| s.finalized = true))
            .await?)
    }

    async fn restore_sector(&self, sector: SectorID) -> RpcResult<()> {
        info!(sector = %sector, "sector restored by the operator");
        Ok(self.db(move |db| db.restore(sector)).await?)
    }

    async fn store_list(&self) -> RpcResult<Vec<StoreDetail>> {
        let reservations = self.db(|db| db.reservations()).await?;
        Ok(self
            .0
            .stores
            .all()
            .iter()
            .map(|s| {
                let space = s.space();
                let mine: Vec<_> = reservations
                    .iter()
                    .filter(|(_, r)| r.store == s.name())
                    .collect();
                StoreDetail {
                    info: s.basic_info(),
                    store_type: if s.config.plugin_name.is_empty() {
                        "embed-fs".into()
                    } else {
                        "plugin-fs".into()
                    },
                    total: space.total,
                    free: space.free,
                    reserved: mine.iter().map(|(_, r)| r.size).sum(),
                    reserved_sectors: mine.iter().map(|(id, _)| *id).collect(),
                }
            })
            .collect())
    }

    async fn chain_head(&self) -> RpcResult<ChainHeadInfo> {
        let head = self.0.chain.head().await.map_err(ApiError::from)?;
        Ok(ChainHeadInfo {
            network: self.0.chain.network(),
            height: head.epoch,
            timestamp: head.timestamp,
            block_time_secs: self.0.chain.block_time().as_secs_f64(),
        })
    }

    async fn chain_sector_info(&self, sector: SectorID) -> RpcResult<Option<ChainSectorInfo>> {
        let chain = &self.0.chain;
        if let Some(s) = chain
            .sector(sector.miner, sector.number)
            .await
            .map_err(ApiError::from)?
        {
            return Ok(Some(ChainSectorInfo {
                state: if s.faulty { "Faulty" } else { "Active" }.into(),
                pre_commit_epoch: s.precommit_epoch,
                activation: Some(s.activation),
                expiration: Some(s.expiration),
                deadline: Some(s.deadline),
                partition: Some(s.partition),
                comm_r: s.comm_r,
            }));
        }
        Ok(chain
            .precommit(sector.miner, sector.number)
            .await
            .map_err(ApiError::from)?
            .map(|p| ChainSectorInfo {
                state: "PreCommitted".into(),
                pre_commit_epoch: p.precommit_epoch,
                activation: None,
                expiration: None,
                deadline: None,
                partition: None,
                comm_r: p.params.comm_r,
            }))
    }
}
