//! The `Venus.Proving*` methods: the chain's view of the miner's deadlines,
//! sector checks, a window PoSt by hand and recoveries by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use damocles_api::proving::*;
use damocles_chain::{post_seed, ActorID, DeadlineInfo, Message, RecoveryDeclaration};
use jsonrpsee::core::RpcResult;
use vc_processors::tasks::WindowPoSt;

use super::prover::WindowJob;
use super::Proving;
use crate::config::ManagerConfig;
use crate::error::ApiError;

/// The proving methods' server.
#[derive(Clone)]
pub struct ProvingRpc {
    proving: Arc<Proving>,
    config: Arc<ManagerConfig>,
}

type Result<T> = std::result::Result<T, ApiError>;

fn epochs(d: &DeadlineInfo) -> DeadlineEpochs {
    DeadlineEpochs {
        index: d.index,
        open: d.open,
        close: d.close,
        challenge: d.challenge,
        fault_cutoff: d.fault_cutoff,
    }
}

impl ProvingRpc {
    pub fn new(proving: Arc<Proving>, config: ManagerConfig) -> ProvingRpc {
        ProvingRpc {
            proving,
            config: Arc::new(config),
        }
    }

    fn miner(&self, miner: Option<u64>) -> Result<ActorID> {
        match miner {
            Some(m) if self.config.miner(m).is_some() => Ok(m),
            Some(m) => Err(ApiError::Invalid(format!(
                "miner {m} is not in this manager's config"
            ))),
            None => self
                .config
                .miners
                .first()
                .map(|m| m.actor)
                .ok_or_else(|| ApiError::Invalid("no [[Miners]] configured".into())),
        }
    }

    /// Deadline `index` of the period containing the head.
    async fn deadline_epochs(&self, miner: ActorID, index: u64) -> Result<(DeadlineInfo, bool)> {
        let chain = &self.proving.chain;
        let head = chain.head().await?.epoch;
        let current = chain.deadline_info(miner, head).await?;
        let window = current.close - current.open;
        let open = current.period_start + index as i64 * window;
        let d = chain.deadline_info(miner, open).await?;
        Ok((d, d.index == current.index && d.open == current.open))
    }

    async fn rows(&self, miner: ActorID) -> Result<Vec<DeadlineRow>> {
        let mut rows = Vec::new();
        for d in self.proving.chain.deadlines(miner).await? {
            let (info, current) = self.deadline_epochs(miner, d.index).await?;
            rows.push(DeadlineRow {
                epochs: epochs(&info),
                partitions: d.partitions,
                sectors: d.live_sectors,
                faults: d.faulty_sectors,
                proven_partitions: d.proven_partitions.into_iter().collect(),
                current,
            });
        }
        Ok(rows)
    }

    async fn info(&self, miner: ActorID) -> Result<ProvingInfo> {
        let chain = &self.proving.chain;
        let head = chain.head().await?.epoch;
        let current = chain.deadline_info(miner, head).await?;
        let info = chain.miner_info(miner).await?;
        let (mut live, mut active, mut faults, mut recovering, mut deadline_sectors) =
            (0, 0, 0, 0, 0);
        let dls = chain.deadlines(miner).await?;
        for d in &dls {
            for part in chain.partitions(miner, d.index).await? {
                live += part.live.len() as u64;
                active += part.active.len() as u64;
                faults += part.faulty.len() as u64;
                recovering += part.recovering.len() as u64;
                if d.index == current.index {
                    deadline_sectors += part.live.len() as u64;
                }
            }
        }
        Ok(ProvingInfo {
            miner,
            current_epoch: head,
            proving_period: (current.close - current.open) * dls.len() as i64,
            period_start: current.period_start,
            deadline: epochs(&current),
            deadline_sectors,
            live,
            active,
            faults,
            recovering,
            power: active * info.sector_size,
        })
    }

    async fn check(&self, miner: ActorID, deadline: u64, slow: bool) -> Result<Vec<CheckRow>> {
        let chain = &self.proving.chain;
        let info = chain.miner_info(miner).await?;
        let mut rows = Vec::new();
        for part in chain.partitions(miner, deadline).await? {
            let sectors = chain.sectors(miner, &part.live).await?;
            let bad = self
                .proving
                .checker
                .bad_sectors(miner, &sectors, info.window_post_proof, slow)
                .await;
            for n in &part.live {
                rows.push(CheckRow {
                    deadline,
                    partition: part.index,
                    sector: *n,
                    good: !bad.contains_key(n),
                    reason: bad.get(n).cloned(),
                });
            }
        }
        Ok(rows)
    }

    async fn simulate(
        &self,
        miner: ActorID,
        deadline: u64,
        partition: u64,
        include_faulty: bool,
    ) -> Result<SimulateResult> {
        let p = &self.proving;
        let part = p
            .chain
            .partitions(miner, deadline)
            .await?
            .into_iter()
            .find(|x| x.index == partition)
            .ok_or_else(|| {
                ApiError::Invalid(format!("deadline {deadline} has no partition {partition}"))
            })?;
        let wanted = if include_faulty {
            part.live.clone()
        } else {
            part.to_prove()
        };
        let info = p.chain.miner_info(miner).await?;
        let sectors = p.chain.sectors(miner, &wanted).await?;
        let bad = p
            .checker
            .bad_sectors(miner, &sectors, info.window_post_proof, false)
            .await;
        let mut good = BTreeMap::new();
        let mut replicas = Vec::new();
        let mut stores = Vec::new();
        for s in &sectors {
            if bad.contains_key(&s.number) {
                continue;
            }
            if let Ok((r, store)) = p.checker.locator.replica(s, miner) {
                replicas.push(r);
                stores.push(store);
                good.insert(s.number, s.clone());
            }
        }
        if replicas.is_empty() {
            return Err(ApiError::Invalid(format!(
                "no sector of deadline {deadline} partition {partition} can be proven: {bad:?}"
            )));
        }
        let (dl, _) = self.deadline_epochs(miner, deadline).await?;
        let head = p.chain.head().await?.epoch;
        // The last challenge already drawn for this deadline.
        let dl = if dl.challenge > head {
            let period = dl.close - dl.open;
            let n = p.chain.deadlines(miner).await?.len() as i64;
            p.chain
                .deadline_info(miner, dl.open - period * n)
                .await
                .unwrap_or(dl)
        } else {
            dl
        };
        let challenge = dl.challenge.max(0);
        let seed = post_seed(
            p.chain
                .randomness(
                    damocles_chain::Domain::WindowedPoStChallengeSeed,
                    challenge,
                    &damocles_chain::miner_entropy(miner),
                )
                .await?,
        );
        let mut task = WindowPoSt {
            miner_id: miner,
            proof_type: info.window_post_proof,
            replicas,
            seed,
        };
        let started = Instant::now();
        let local = super::fetch::localize_window(p, &mut task)
            .await
            .map_err(|e| ApiError::Internal(format!("fetch from plugin stores: {e:#}")))?;
        if !local.failed.is_empty() {
            return Err(ApiError::Internal(format!(
                "cannot fetch sectors from their plugin stores: {:?}",
                local.failed
            )));
        }
        // With worker-provers this is a job like any other; it is not tied
        // to a deadline's close (i64::MAX: never dropped as stale).
        let job = WindowJob {
            deadline_idx: deadline,
            partitions: vec![partition],
            close: i64::MAX,
            stores,
        };
        let out = p
            .window_prover
            .prove_window(task, job, std::time::Duration::from_secs(1800))
            .await
            .map_err(|e| ApiError::Internal(format!("window PoSt: {e:#}")))?
            .output;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let mut skipped: BTreeSet<u64> = bad.keys().copied().collect();
        skipped.extend(out.faults.iter().copied());
        let proof: Vec<u8> = out.proofs.into_iter().flat_map(|b| b.0).collect();
        let reason = if proof.is_empty() {
            Some("the prover returned no proof".to_string())
        } else if !out.faults.is_empty() {
            Some(format!("the prover found sectors {:?} faulty", out.faults))
        } else {
            match super::window::verify_window(miner, info.window_post_proof, seed, &proof, &good)
                .await
            {
                Ok(true) => None,
                Ok(false) => Some("verify_window_post rejected the proof".to_string()),
                Err(e) => Some(format!("{e:#}")),
            }
        };
        let verified = reason.is_none();
        tracing::info!(
            miner,
            deadline,
            partition,
            elapsed_ms,
            verified,
            ?reason,
            "simulated window PoSt"
        );
        Ok(SimulateResult {
            deadline,
            partition,
            challenge,
            proven: good.keys().copied().collect(),
            skipped: skipped.into_iter().collect(),
            proof_bytes: proof.len() as u64,
            elapsed_ms,
            verified,
            reason,
            prover: p.window_prover.label().into(),
        })
    }
}

#[async_trait]
impl ProvingApiServer for ProvingRpc {
    async fn proving_info(&self, miner: Option<u64>) -> RpcResult<ProvingInfo> {
        let miner = self.miner(miner)?;
        Ok(self.info(miner).await?)
    }

    async fn proving_deadlines(&self, miner: Option<u64>) -> RpcResult<Vec<DeadlineRow>> {
        let miner = self.miner(miner)?;
        Ok(self.rows(miner).await?)
    }

    async fn proving_deadline(&self, miner: Option<u64>, index: u64) -> RpcResult<DeadlineDetail> {
        let miner = self.miner(miner)?;
        let row = self
            .rows(miner)
            .await?
            .into_iter()
            .find(|r| r.epochs.index == index)
            .ok_or_else(|| ApiError::Invalid(format!("no deadline {index}")))?;
        let partitions = self
            .proving
            .chain
            .partitions(miner, index)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|p| PartitionRow {
                index: p.index,
                all: p.all.into_iter().collect(),
                live: p.live.into_iter().collect(),
                active: p.active.into_iter().collect(),
                faulty: p.faulty.into_iter().collect(),
                recovering: p.recovering.into_iter().collect(),
            })
            .collect();
        Ok(DeadlineDetail { row, partitions })
    }

    async fn proving_faults(&self, miner: Option<u64>) -> RpcResult<Vec<FaultRow>> {
        let miner = self.miner(miner)?;
        let chain = &self.proving.chain;
        let mut rows = Vec::new();
        for d in chain.deadlines(miner).await.map_err(ApiError::from)? {
            for p in chain
                .partitions(miner, d.index)
                .await
                .map_err(ApiError::from)?
            {
                for n in &p.faulty {
                    rows.push(FaultRow {
                        deadline: d.index,
                        partition: p.index,
                        sector: *n,
                        recovering: p.recovering.contains(n),
                    });
                }
            }
        }
        Ok(rows)
    }

    async fn check_provable(
        &self,
        miner: Option<u64>,
        deadline: u64,
        slow: bool,
    ) -> RpcResult<Vec<CheckRow>> {
        let miner = self.miner(miner)?;
        Ok(self.check(miner, deadline, slow).await?)
    }

    async fn simulate_wdpost(
        &self,
        miner: Option<u64>,
        deadline: u64,
        partition: u64,
        include_faulty: bool,
    ) -> RpcResult<SimulateResult> {
        let miner = self.miner(miner)?;
        Ok(self
            .simulate(miner, deadline, partition, include_faulty)
            .await?)
    }

    async fn proving_recover_faults(&self, miner: Option<u64>, deadline: u64) -> RpcResult<String> {
        let miner = self.miner(miner)?;
        let chain = &self.proving.chain;
        let recoveries: Vec<RecoveryDeclaration> = chain
            .partitions(miner, deadline)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .filter(|p| !p.faulty.is_empty())
            .map(|p| RecoveryDeclaration {
                deadline,
                partition: p.index,
                sectors: p.faulty.difference(&p.recovering).copied().collect(),
            })
            .filter(|r| !r.sectors.is_empty())
            .collect();
        if recoveries.is_empty() {
            return Err(ApiError::Invalid(format!(
                "deadline {deadline} has no faulty sector that is not already recovering"
            ))
            .into());
        }
        let id = chain
            .push_message(Message::DeclareFaultsRecovered { miner, recoveries })
            .await
            .map_err(ApiError::from)?;
        tracing::info!(miner, deadline, message = %id, "recoveries declared by hand");
        Ok(id)
    }

    async fn proving_blocks(&self, miner: Option<u64>, limit: u64) -> RpcResult<Vec<BlockRow>> {
        let miner = self.miner(miner)?;
        let recs = self
            .proving
            .chain
            .blocks(miner, limit.clamp(1, 10_000) as usize)
            .await
            .map_err(ApiError::from)?;
        Ok(recs
            .into_iter()
            .map(|r| {
                let (outcome, reason) = match r.outcome {
                    damocles_chain::BlockOutcome::Pending => ("Pending", None),
                    damocles_chain::BlockOutcome::Won => ("Won", None),
                    damocles_chain::BlockOutcome::Missed { reason } => ("Missed", Some(reason)),
                };
                BlockRow {
                    epoch: r.challenge.epoch,
                    outcome: outcome.into(),
                    reason,
                    latency_ms: r.latency_ms,
                    sectors: r.challenge.sectors.iter().map(|s| s.number).collect(),
                }
            })
            .collect())
    }
}
