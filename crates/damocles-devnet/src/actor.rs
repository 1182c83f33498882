//! The devnet's miner actor: precommit, prove-commit, window PoSt, fault
//! recoveries, deadline ends and power. Pure state transitions, no I/O: the
//! caller supplies the epoch, the chain's randomness and the proof verifiers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use damocles_chain::{
    exit_code, DeadlineInfo, DeadlineState, Epoch, MinerInfo, PartitionState, PoStPartition,
    PoStProof, PreCommitOnChain, PreCommitParams, SectorNumber, SectorOnChain,
    SubmitWindowedPoStParams,
};

/// A refusal, with a Filecoin exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorError {
    pub exit_code: i64,
    pub message: String,
}

fn refuse(exit_code: i64, message: impl Into<String>) -> ActorError {
    ActorError {
        exit_code,
        message: message.into(),
    }
}

type Sectors = BTreeSet<SectorNumber>;

/// A window PoSt partition: up to the proof's sector count of sectors,
/// proven together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub sectors: Sectors,
    /// Faulty sectors: skipped by a proof or in a partition that missed one.
    pub faults: Sectors,
    /// Faulty sectors declared recovering: the next proof must cover them.
    pub recoveries: Sectors,
}

impl Partition {
    /// Sectors that count for power: not faulty.
    pub fn active(&self) -> Sectors {
        self.sectors.difference(&self.faults).copied().collect()
    }

    /// What a proof of this partition covers: active and recovering
    /// sectors, less the ones it skips.
    pub fn to_prove(&self, skipped: &Sectors) -> Sectors {
        self.sectors
            .iter()
            .filter(|n| !self.faults.contains(n) || self.recoveries.contains(n))
            .filter(|n| !skipped.contains(n))
            .copied()
            .collect()
    }

    /// An accepted proof: skipped sectors become faulty (and stop
    /// recovering), the other recovering ones are active again. Returns the
    /// new faults and the recovered sectors.
    fn record_post(&mut self, skipped: &Sectors) -> (Sectors, Sectors) {
        let new_faults: Sectors = skipped.difference(&self.faults).copied().collect();
        let recovered: Sectors = self.recoveries.difference(skipped).copied().collect();
        self.faults.extend(&new_faults);
        self.faults.retain(|n| !recovered.contains(n));
        self.recoveries.clear();
        (new_faults, recovered)
    }

    /// A missed proof: every sector is faulty and recoveries are dropped.
    /// Returns the new faults and the dropped recoveries.
    fn record_missed_post(&mut self) -> (Sectors, Sectors) {
        let new_faults = self.active();
        self.faults = self.sectors.clone();
        (new_faults, std::mem::take(&mut self.recoveries))
    }

    fn state(&self, index: u64) -> PartitionState {
        PartitionState {
            index,
            all: self.sectors.clone(),
            live: self.sectors.clone(),
            active: self.active(),
            faulty: self.faults.clone(),
            recovering: self.recoveries.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub partitions: Vec<Partition>,
    /// Partitions with an accepted proof in the current proving period
    /// (Filecoin's PostSubmissions); cleared when the deadline closes.
    #[serde(default)]
    pub proven: BTreeSet<u64>,
}

impl Deadline {
    fn live_sectors(&self) -> usize {
        self.partitions.iter().map(|p| p.sectors.len()).sum()
    }

    fn state(&self, index: u64) -> DeadlineState {
        DeadlineState {
            index,
            partitions: self.partitions.len() as u64,
            live_sectors: self.live_sectors() as u64,
            faulty_sectors: self.partitions.iter().map(|p| p.faults.len() as u64).sum(),
            proven_partitions: self.proven.clone(),
        }
    }
}

/// What an accepted window PoSt changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoStOutcome {
    /// The partitions now proven for this period.
    pub partitions: BTreeSet<u64>,
    /// Skipped sectors that became faulty.
    pub new_faults: Sectors,
    /// Recovering sectors the proof covered: active again.
    pub recovered: Sectors,
}

/// What a deadline's end did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadlineClosed {
    /// The deadline's index.
    pub index: u64,
    /// Partitions that had sectors to prove and no accepted proof.
    pub missed_partitions: Vec<u64>,
    /// Sectors that became faulty for lack of a proof.
    pub new_faults: Sectors,
    /// Recoveries dropped because their partition was not proven.
    pub dropped_recoveries: Sectors,
}

/// A window PoSt the actor asks its verifier about.
#[derive(Debug)]
pub struct PoStToVerify<'a> {
    /// The deadline proven: its challenge epoch gives the challenge randomness.
    pub deadline: DeadlineInfo,
    /// The sectors the proof must cover, in number order.
    pub sectors: Vec<&'a SectorOnChain>,
    /// The proof.
    pub proof: &'a PoStProof,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerState {
    pub info: MinerInfo,
    pub precommits: BTreeMap<SectorNumber, PreCommitOnChain>,
    pub sectors: BTreeMap<SectorNumber, SectorOnChain>,
    pub deadlines: Vec<Deadline>,
    /// Raw byte power of active, non-faulty sectors.
    pub power: u64,
    /// Deadline closes at or before this epoch have been processed.
    #[serde(default)]
    pub cron_epoch: Epoch,
}

impl MinerState {
    pub fn new(info: MinerInfo, policy: &Policy) -> Self {
        MinerState {
            info,
            precommits: BTreeMap::new(),
            sectors: BTreeMap::new(),
            deadlines: vec![Deadline::default(); policy.deadlines_per_period as usize],
            power: 0,
            cron_epoch: 0,
        }
    }

    /// Sectors per window PoSt partition for this miner's proof type.
    pub fn partition_size(&self) -> usize {
        self.info.window_post_proof.sector_count()
    }

    /// PreCommitSector at `epoch`.
    pub fn pre_commit(
        &mut self,
        policy: &Policy,
        epoch: Epoch,
        params: PreCommitParams,
    ) -> Result<(), ActorError> {
        let n = params.sector_number;
        if params.seal_proof != self.info.seal_proof {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!(
                    "sector {n}: seal proof {:?} does not match the miner's {:?}",
                    params.seal_proof, self.info.seal_proof
                ),
            ));
        }
        if self.sectors.contains_key(&n) {
            return Err(refuse(
                exit_code::FORBIDDEN,
                format!("sector {n} is already proven"),
            ));
        }
        if self.precommits.contains_key(&n) {
            return Err(refuse(
                exit_code::FORBIDDEN,
                format!("sector {n} is already precommitted"),
            ));
        }
        if params.seal_rand_epoch >= epoch {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!(
                    "sector {n}: ticket epoch {} is not in the past",
                    params.seal_rand_epoch
                ),
            ));
        }
        if epoch - params.seal_rand_epoch > policy.max_ticket_age {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!(
                    "sector {n}: ticket from epoch {} is too old at epoch {epoch} (max age {})",
                    params.seal_rand_epoch, policy.max_ticket_age
                ),
            ));
        }
        self.precommits.insert(
            n,
            PreCommitOnChain {
                params,
                precommit_epoch: epoch,
            },
        );
        Ok(())
    }

    /// ProveCommitSector at `epoch`. `verify` checks the proof against the
    /// precommit (the caller runs `verify_seal` with the chain's ticket and seed).
    pub fn prove_commit(
        &mut self,
        policy: &Policy,
        epoch: Epoch,
        number: SectorNumber,
        verify: impl FnOnce(&PreCommitOnChain) -> Result<bool, String>,
    ) -> Result<&SectorOnChain, ActorError> {
        let Some(pre) = self.precommits.get(&number) else {
            return Err(refuse(
                exit_code::NOT_FOUND,
                format!("sector {number} has no precommit"),
            ));
        };
        let seed_epoch = pre.seed_epoch(policy.seed_delay);
        if epoch <= seed_epoch {
            return Err(refuse(
                exit_code::FORBIDDEN,
                format!("sector {number}: proof at epoch {epoch} before its seed epoch {seed_epoch} passed"),
            ));
        }
        if epoch > pre.precommit_epoch + policy.max_prove_commit_delay {
            return Err(refuse(
                exit_code::FORBIDDEN,
                format!(
                    "sector {number}: precommit from epoch {} expired",
                    pre.precommit_epoch
                ),
            ));
        }
        match verify(pre) {
            Ok(true) => {}
            Ok(false) => {
                return Err(refuse(
                    exit_code::ILLEGAL_ARGUMENT,
                    format!("sector {number}: invalid seal proof (verify_seal said no)"),
                ))
            }
            Err(e) => {
                return Err(refuse(
                    exit_code::ILLEGAL_ARGUMENT,
                    format!("sector {number}: seal proof could not be verified: {e}"),
                ))
            }
        }
        let pre = self.precommits.remove(&number).expect("checked above");
        let (deadline, partition) = self.assign(policy, epoch, number);
        let sector = SectorOnChain {
            number,
            seal_proof: pre.params.seal_proof,
            comm_r: pre.params.comm_r,
            comm_d: pre.params.comm_d,
            precommit_epoch: pre.precommit_epoch,
            activation: epoch,
            expiration: epoch + policy.sector_lifetime,
            deadline,
            partition,
            faulty: false,
        };
        self.sectors.insert(number, sector);
        self.refresh();
        Ok(&self.sectors[&number])
    }

    /// Makes `sector` active now, as if sealed before genesis (`lotus-seed
    /// pre-seal`): it gets a deadline and partition like a prove-committed
    /// sector and counts for power. The record's deadline, partition and
    /// fault flag are the actor's to set. Idempotent by number: a sector
    /// already active with the same commitments is left as it is.
    pub fn add_genesis_sector(
        &mut self,
        policy: &Policy,
        epoch: Epoch,
        sector: SectorOnChain,
    ) -> Result<&SectorOnChain, ActorError> {
        let n = sector.number;
        if sector.seal_proof != self.info.seal_proof {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!(
                    "sector {n}: seal proof {:?} does not match the miner's {:?}",
                    sector.seal_proof, self.info.seal_proof
                ),
            ));
        }
        if let Some(existing) = self.sectors.get(&n) {
            let same = (existing.comm_r, existing.comm_d) == (sector.comm_r, sector.comm_d);
            if !same {
                return Err(refuse(
                    exit_code::FORBIDDEN,
                    format!("sector {n} is already active with other commitments"),
                ));
            }
        } else {
            if self.precommits.contains_key(&n) {
                return Err(refuse(
                    exit_code::FORBIDDEN,
                    format!("sector {n} is precommitted"),
                ));
            }
            let (deadline, partition) = self.assign(policy, epoch, n);
            let sector = SectorOnChain {
                deadline,
                partition,
                faulty: false,
                ..sector
            };
            self.sectors.insert(n, sector);
            self.refresh();
        }
        Ok(&self.sectors[&n])
    }

    /// SubmitWindowedPoSt at `epoch`. `commit_rand` is the chain's
    /// PoStChainCommit randomness at an epoch; `verify` checks the proof
    /// (the devnet runs `verify_window_post` with the deadline's challenge).
    /// Nothing changes unless everything checks out.
    pub fn submit_windowed_post(
        &mut self,
        policy: &Policy,
        epoch: Epoch,
        params: &SubmitWindowedPoStParams,
        commit_rand: impl FnOnce(Epoch) -> [u8; 32],
        verify: impl FnOnce(&PoStToVerify<'_>) -> Result<bool, String>,
    ) -> Result<PoStOutcome, ActorError> {
        let current = self.deadline_info(policy, epoch);
        self.check_post_deadline(&current, epoch, params.deadline)?;
        check_chain_commit(&current, epoch, params, commit_rand)?;
        let proof = self.single_proof(&params.proofs)?;
        let dl = &self.deadlines[current.index as usize];
        check_partitions(dl, current.index, &params.partitions)?;
        let to_prove: Sectors = params
            .partitions
            .iter()
            .flat_map(|p| dl.partitions[p.index as usize].to_prove(&p.skipped))
            .collect();
        // Nothing left to prove (all faulty or skipped) needs no proof check,
        // as on Filecoin: that is how a miner gives up a whole partition.
        if !to_prove.is_empty() {
            let post = PoStToVerify {
                deadline: current,
                sectors: self.sector_infos(&to_prove)?,
                proof,
            };
            let d = current.index;
            match verify(&post) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(refuse(
                        exit_code::ILLEGAL_ARGUMENT,
                        format!(
                            "invalid window PoSt for deadline {d} (verify_window_post said no)"
                        ),
                    ))
                }
                Err(e) => {
                    return Err(refuse(
                        exit_code::ILLEGAL_ARGUMENT,
                        format!("window PoSt for deadline {d} could not be verified: {e}"),
                    ))
                }
            }
        }
        Ok(self.record_post(current.index, &params.partitions))
    }

    /// DeclareFaultsRecovered for one partition at `epoch`: refused after the
    /// fault cutoff of the deadline's next occurrence. Sectors that are not
    /// faulty, or already recovering, are ignored as on Filecoin. Returns the
    /// sectors now recovering.
    pub fn declare_faults_recovered(
        &mut self,
        policy: &Policy,
        epoch: Epoch,
        deadline: u64,
        partition: u64,
        sectors: &Sectors,
    ) -> Result<Sectors, ActorError> {
        if deadline >= self.deadlines.len() as u64 {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!("invalid deadline {deadline}"),
            ));
        }
        let target = self.next_deadline_info(policy, epoch, deadline);
        if target.fault_cutoff_passed(epoch) {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!(
                    "late recovery declaration at epoch {epoch}: deadline {deadline} opening at {} stopped taking them at epoch {}",
                    target.open, target.fault_cutoff
                ),
            ));
        }
        let Some(part) = self.deadlines[deadline as usize]
            .partitions
            .get_mut(partition as usize)
        else {
            return Err(refuse(
                exit_code::NOT_FOUND,
                format!("deadline {deadline} has no partition {partition}"),
            ));
        };
        if let Some(n) = sectors.difference(&part.sectors).next() {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!("sector {n} is not in partition {partition} of deadline {deadline}"),
            ));
        }
        let newly: Sectors = sectors
            .iter()
            .filter(|n| part.faults.contains(n) && !part.recoveries.contains(n))
            .copied()
            .collect();
        part.recoveries.extend(&newly);
        Ok(newly)
    }

    /// Ends every deadline that closed after the last call, up to and
    /// including `epoch`, in order.
    pub fn process_deadline_closes(
        &mut self,
        policy: &Policy,
        epoch: Epoch,
    ) -> Vec<DeadlineClosed> {
        // After a long stop, closes more than two periods back change nothing
        // the last two closes of each deadline do not redo (the first clears
        // its proofs, the second faults what is left).
        let from = self.cron_epoch.max(epoch - 2 * policy.proving_period());
        let mut closed = Vec::new();
        let mut dl = self.deadline_info(policy, from);
        while dl.close <= epoch {
            closed.push(self.close_deadline(dl.index));
            self.cron_epoch = dl.close;
            dl = self.deadline_info(policy, dl.close);
        }
        closed
    }

    /// Ends deadline `index` for this period: partitions without an accepted
    /// proof turn entirely faulty and lose their recoveries; proofs are
    /// forgotten for the next period.
    pub fn close_deadline(&mut self, index: u64) -> DeadlineClosed {
        let mut out = DeadlineClosed {
            index,
            ..DeadlineClosed::default()
        };
        // A deadline beyond the stored ones (a policy changed under an
        // existing chain) holds no sectors.
        let Some(dl) = self.deadlines.get_mut(index as usize) else {
            return out;
        };
        let proven = std::mem::take(&mut dl.proven);
        for (i, p) in dl.partitions.iter_mut().enumerate() {
            let i = i as u64;
            if proven.contains(&i) {
                continue;
            }
            if !p.to_prove(&Sectors::new()).is_empty() {
                out.missed_partitions.push(i);
            }
            let (faults, dropped) = p.record_missed_post();
            out.new_faults.extend(faults);
            out.dropped_recoveries.extend(dropped);
        }
        self.refresh();
        out
    }

    /// Every deadline's summary, in index order.
    pub fn deadline_states(&self) -> Vec<DeadlineState> {
        self.deadlines
            .iter()
            .enumerate()
            .map(|(i, d)| d.state(i as u64))
            .collect()
    }

    /// The partitions of deadline `index`, or `None` for no such deadline.
    pub fn partition_states(&self, index: u64) -> Option<Vec<PartitionState>> {
        let dl = self.deadlines.get(index as usize)?;
        Some(
            dl.partitions
                .iter()
                .enumerate()
                .map(|(i, p)| p.state(i as u64))
                .collect(),
        )
    }

    /// Puts a new sector in the deadline with the fewest live sectors, into its
    /// last partition while that has room, else a new partition. Like Filecoin,
    /// it keeps off the open deadline and the next one, whose challenge may be
    /// known and whose partitions a prover may already be proving.
    fn assign(&mut self, policy: &Policy, epoch: Epoch, number: SectorNumber) -> (u64, u64) {
        let size = self.partition_size();
        let all = 0..self.deadlines.len();
        let mutable: Vec<usize> = all
            .clone()
            .filter(|&i| self.is_mutable(policy, epoch, i as u64))
            .collect();
        // With fewer than three deadlines none may be mutable: any will do.
        let candidates = if mutable.is_empty() {
            all.collect()
        } else {
            mutable
        };
        let dl_idx = candidates
            .into_iter()
            .min_by_key(|&i| (self.deadlines[i].live_sectors(), i))
            .expect("a miner has at least one deadline");
        let dl = &mut self.deadlines[dl_idx];
        if dl.partitions.last().is_none_or(|p| p.sectors.len() >= size) {
            dl.partitions.push(Partition::default());
        }
        let p_idx = dl.partitions.len() - 1;
        dl.partitions[p_idx].sectors.insert(number);
        (dl_idx as u64, p_idx as u64)
    }

    /// Whether deadline `index` may take new sectors at `epoch`: its next
    /// opening is more than a challenge window away.
    fn is_mutable(&self, policy: &Policy, epoch: Epoch, index: u64) -> bool {
        epoch < self.next_deadline_info(policy, epoch, index).open - policy.challenge_window
    }

    /// Mirrors the partitions' faults onto the sector records and recounts
    /// power: only non-faulty sectors count.
    fn refresh(&mut self) {
        let faulty: Sectors = self
            .deadlines
            .iter()
            .flat_map(|d| &d.partitions)
            .flat_map(|p| p.faults.iter().copied())
            .collect();
        for s in self.sectors.values_mut() {
            s.faulty = faulty.contains(&s.number);
        }
        let active = self.sectors.values().filter(|s| !s.faulty).count() as u64;
        self.power = active * self.info.sector_size;
    }

    fn check_post_deadline(
        &self,
        current: &DeadlineInfo,
        epoch: Epoch,
        deadline: u64,
    ) -> Result<(), ActorError> {
        if deadline >= self.deadlines.len() as u64 {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!(
                    "invalid deadline {deadline}: a period has {}",
                    self.deadlines.len()
                ),
            ));
        }
        if deadline != current.index {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!(
                    "deadline {deadline} is not open at epoch {epoch}: deadline {} is (epochs {}..{})",
                    current.index, current.open, current.close
                ),
            ));
        }
        Ok(())
    }

    fn single_proof<'p>(&self, proofs: &'p [PoStProof]) -> Result<&'p PoStProof, ActorError> {
        let [proof] = proofs else {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!("expected exactly one proof, got {}", proofs.len()),
            ));
        };
        if proof.post_proof != self.info.window_post_proof {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!(
                    "proof type {:?} does not match the miner's {:?}",
                    proof.post_proof, self.info.window_post_proof
                ),
            ));
        }
        Ok(proof)
    }

    fn sector_infos(&self, numbers: &Sectors) -> Result<Vec<&SectorOnChain>, ActorError> {
        numbers
            .iter()
            .map(|n| {
                self.sectors.get(n).ok_or_else(|| {
                    refuse(
                        exit_code::ILLEGAL_STATE,
                        format!("sector {n} is in a partition but has no record"),
                    )
                })
            })
            .collect()
    }

    /// Applies an accepted proof of `partitions` of deadline `index`.
    fn record_post(&mut self, index: u64, partitions: &[PoStPartition]) -> PoStOutcome {
        let mut out = PoStOutcome::default();
        let dl = &mut self.deadlines[index as usize];
        for p in partitions {
            let (faults, recovered) = dl.partitions[p.index as usize].record_post(&p.skipped);
            out.new_faults.extend(faults);
            out.recovered.extend(recovered);
            dl.proven.insert(p.index);
            out.partitions.insert(p.index);
        }
        self.refresh();
        out
    }

    /// The deadline current at `epoch`.
    pub fn deadline_info(&self, policy: &Policy, epoch: Epoch) -> DeadlineInfo {
        let period = policy.proving_period();
        let start = self.info.proving_period_start;
        let period_start = start + (epoch - start).div_euclid(period) * period;
        let index = ((epoch - period_start) / policy.challenge_window) as u64;
        deadline_at(policy, period_start, index)
    }

    /// The next occurrence of deadline `index` that has not closed at `epoch`.
    pub fn next_deadline_info(&self, policy: &Policy, epoch: Epoch, index: u64) -> DeadlineInfo {
        let current = self.deadline_info(policy, epoch);
        let d = deadline_at(policy, current.period_start, index);
        if d.has_elapsed(epoch) {
            deadline_at(
                policy,
                current.period_start + policy.proving_period(),
                index,
            )
        } else {
            d
        }
    }
}

/// Deadline `index` of the period starting at `period_start`.
fn deadline_at(policy: &Policy, period_start: Epoch, index: u64) -> DeadlineInfo {
    let open = period_start + index as Epoch * policy.challenge_window;
    DeadlineInfo {
        period_start,
        index,
        open,
        close: open + policy.challenge_window,
        challenge: open - policy.challenge_lookback,
        fault_cutoff: open - policy.fault_declaration_cutoff,
    }
}

/// The chain commit must be drawn at or after the deadline's challenge,
/// before now, and be the chain's randomness at that epoch.
fn check_chain_commit(
    current: &DeadlineInfo,
    epoch: Epoch,
    params: &SubmitWindowedPoStParams,
    commit_rand: impl FnOnce(Epoch) -> [u8; 32],
) -> Result<(), ActorError> {
    let at = params.chain_commit_epoch;
    if at < current.challenge {
        return Err(refuse(
            exit_code::ILLEGAL_ARGUMENT,
            format!(
                "chain commit epoch {at} is before deadline {}'s challenge epoch {}",
                current.index, current.challenge
            ),
        ));
    }
    if at >= epoch {
        return Err(refuse(
            exit_code::ILLEGAL_ARGUMENT,
            format!("chain commit epoch {at} is not before the current epoch {epoch}"),
        ));
    }
    if commit_rand(at) != params.chain_commit_rand {
        return Err(refuse(
            exit_code::ILLEGAL_ARGUMENT,
            format!("chain commit randomness does not match the chain's at epoch {at}"),
        ));
    }
    Ok(())
}

/// Each partition named once, existing, not proven yet this period, and
/// skipping only its own sectors.
fn check_partitions(dl: &Deadline, index: u64, parts: &[PoStPartition]) -> Result<(), ActorError> {
    if parts.is_empty() {
        return Err(refuse(
            exit_code::ILLEGAL_ARGUMENT,
            "a window PoSt must name at least one partition",
        ));
    }
    let mut seen = BTreeSet::new();
    for p in parts {
        let i = p.index;
        let Some(part) = dl.partitions.get(i as usize) else {
            return Err(refuse(
                exit_code::NOT_FOUND,
                format!("deadline {index} has no partition {i}"),
            ));
        };
        if !seen.insert(i) {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!("partition {i} is named twice"),
            ));
        }
        if dl.proven.contains(&i) {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!("partition {i} of deadline {index} is already proven in this period"),
            ));
        }
        if let Some(n) = p.skipped.difference(&part.sectors).next() {
            return Err(refuse(
                exit_code::ILLEGAL_ARGUMENT,
                format!("skipped sector {n} is not in partition {i} of deadline {index}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof};

    fn miner_at(policy: &Policy, proving_period_start: Epoch) -> MinerState {
        MinerState::new(
            MinerInfo {
                actor: 1000,
                sector_size: 2048,
                seal_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
                window_post_proof: RegisteredPoStProof::StackedDrgWindow2KiBV1_2,
                proving_period_start,
            },
            policy,
        )
    }

    fn miner(policy: &Policy) -> MinerState {
        miner_at(policy, 7)
    }

    fn params(n: SectorNumber) -> PreCommitParams {
        PreCommitParams {
            sector_number: n,
            seal_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
            comm_r: [1; 32],
            comm_d: [2; 32],
            seal_rand_epoch: 3,
        }
    }

    fn set(v: &[SectorNumber]) -> Sectors {
        v.iter().copied().collect()
    }

    fn code<T: std::fmt::Debug>(r: Result<T, ActorError>) -> i64 {
        r.unwrap_err().exit_code
    }

    /// 4 deadlines of 10 epochs: deadline d opens at 10d (+40 per period),
    /// is challenged at 10d − 5 and takes recoveries until 10d − 8.
    fn post_policy() -> Policy {
        Policy {
            challenge_window: 10,
            deadlines_per_period: 4,
            challenge_lookback: 5,
            fault_declaration_cutoff: 8,
            ..Policy::default()
        }
    }

    /// Partitions of a submission: (index, sectors skipped in it).
    pub(crate) fn partitions(parts: &[(u64, &[SectorNumber])]) -> Vec<PoStPartition> {
        parts
            .iter()
            .map(|&(index, skipped)| PoStPartition {
                index,
                skipped: set(skipped),
            })
            .collect()
    }

    /// A 2KiB sector with made-up commitments (`comm_r` from its number), for
    /// tests that never verify a proof over it.
    pub(crate) fn sector(n: SectorNumber) -> SectorOnChain {
        SectorOnChain {
            number: n,
            seal_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
            comm_r: [n as u8; 32],
            comm_d: [2; 32],
            precommit_epoch: 0,
            activation: 0,
            expiration: 1_000_000,
            deadline: 0,
            partition: 0,
            faulty: false,
        }
    }

    /// Six genesis sectors at epoch 0, period starting at 0: deadlines 0 and
    /// 1 are too close, so deadline 2 gets {1, 3} {5} and deadline 3 {2, 4} {6}.
    fn proving_miner() -> (Policy, MinerState) {
        let policy = post_policy();
        let mut m = miner_at(&policy, 0);
        for n in 1..=6 {
            m.add_genesis_sector(&policy, 0, sector(n)).unwrap();
        }
        (policy, m)
    }

    const FULL: u64 = 6 * 2048;

    /// The chain's commit randomness in these tests.
    fn chain_rand(epoch: Epoch) -> [u8; 32] {
        [epoch as u8; 32]
    }

    /// A proof of `parts` (index, skipped) of `deadline` in period `period`,
    /// committing to the deadline's challenge epoch.
    fn post(
        period: Epoch,
        deadline: u64,
        parts: &[(u64, &[SectorNumber])],
    ) -> SubmitWindowedPoStParams {
        let challenge = period * 40 + deadline as Epoch * 10 - 5;
        SubmitWindowedPoStParams {
            deadline,
            partitions: partitions(parts),
            proofs: vec![PoStProof {
                post_proof: RegisteredPoStProof::StackedDrgWindow2KiBV1_2,
                proof_bytes: vec![7; 192],
            }],
            chain_commit_epoch: challenge,
            chain_commit_rand: chain_rand(challenge),
        }
    }

    /// Submits with a verifier that takes any proof.
    fn submit(
        m: &mut MinerState,
        policy: &Policy,
        epoch: Epoch,
        params: &SubmitWindowedPoStParams,
    ) -> Result<PoStOutcome, ActorError> {
        m.submit_windowed_post(policy, epoch, params, chain_rand, |_| Ok(true))
    }

    fn never_verified(_: &PoStToVerify<'_>) -> Result<bool, String> {
        panic!("a refused submission is never verified")
    }

    #[test]
    fn precommit_then_prove_after_seed_assigns_deadline_and_power() {
        let policy = Policy::default();
        let mut m = miner(&policy);
        m.pre_commit(&policy, 10, params(1)).unwrap();
        let twice = m.pre_commit(&policy, 11, params(1)).unwrap_err();
        assert_eq!(twice.exit_code, exit_code::FORBIDDEN);

        let early = m.prove_commit(&policy, 10 + policy.seed_delay, 1, |_| Ok(true));
        assert_eq!(early.unwrap_err().exit_code, exit_code::FORBIDDEN);
        let bad = m.prove_commit(&policy, 20, 1, |_| Ok(false)).unwrap_err();
        assert_eq!(bad.exit_code, exit_code::ILLEGAL_ARGUMENT);
        assert!(
            m.sectors.is_empty() && m.power == 0,
            "a bad proof changes nothing"
        );

        let s = m
            .prove_commit(&policy, 20, 1, |_| Ok(true))
            .unwrap()
            .clone();
        // Deadline 0 is open at epoch 20 and deadline 1 is next: 2 is the first that may change.
        assert_eq!((s.activation, s.deadline, s.partition), (20, 2, 0));
        assert!(!s.faulty);
        assert_eq!(m.power, 2048);
        assert!(m.precommits.is_empty());
        let again = m.pre_commit(&policy, 21, params(1)).unwrap_err();
        assert_eq!(again.exit_code, exit_code::FORBIDDEN);
    }

    #[test]
    fn refuses_wrong_proof_type_and_bad_tickets() {
        let policy = Policy::default();
        let mut m = miner(&policy);
        let mut p = params(1);
        p.seal_proof = RegisteredSealProof::StackedDrg8MiBV1_1;
        assert_eq!(
            m.pre_commit(&policy, 10, p).unwrap_err().exit_code,
            exit_code::ILLEGAL_ARGUMENT
        );
        let mut p = params(1);
        p.seal_rand_epoch = 10;
        assert!(
            m.pre_commit(&policy, 10, p).is_err(),
            "ticket from the future"
        );
        let p = params(1);
        assert!(
            m.pre_commit(&policy, 3 + policy.max_ticket_age + 1, p)
                .is_err(),
            "too old"
        );
        assert!(
            m.prove_commit(&policy, 50, 9, |_| Ok(true)).is_err(),
            "no precommit"
        );
    }

    #[test]
    fn sectors_spread_over_deadlines_then_fill_partitions() {
        // With two deadlines both are too close to change: any will do.
        let policy = Policy {
            deadlines_per_period: 2,
            ..Policy::default()
        };
        let mut m = miner(&policy);
        for n in 0..6 {
            m.pre_commit(&policy, 10, params(n)).unwrap();
            m.prove_commit(&policy, 20, n, |_| Ok(true)).unwrap();
        }
        // 2KiB window PoSt partitions hold 2 sectors.
        let shape: Vec<Vec<usize>> = m
            .deadlines
            .iter()
            .map(|d| d.partitions.iter().map(|p| p.sectors.len()).collect())
            .collect();
        assert_eq!(shape, vec![vec![2, 1], vec![2, 1]]);
    }

    #[test]
    fn new_sectors_keep_off_the_open_and_the_next_deadline() {
        let policy = post_policy();
        let mut m = miner_at(&policy, 0);
        // Epoch 21: deadline 2 is open, 3 opens next; 0 and 1 reopen at 40 and 50.
        for n in 1..=3 {
            m.pre_commit(&policy, 10, params(n)).unwrap();
            m.prove_commit(&policy, 21, n, |_| Ok(true)).unwrap();
        }
        let at: Vec<(u64, u64)> = (1..=3)
            .map(|n| (m.sectors[&n].deadline, m.sectors[&n].partition))
            .collect();
        assert_eq!(at, vec![(0, 0), (1, 0), (0, 0)]);
        assert!(m.deadlines[2].partitions.is_empty() && m.deadlines[3].partitions.is_empty());
    }

    #[test]
    fn genesis_sectors_are_active_with_power_and_idempotent() {
        let (policy, mut m) = proving_miner();
        assert_eq!(m.power, FULL);
        let placed: Vec<(u64, u64)> = (1..=6)
            .map(|n| (m.sectors[&n].deadline, m.sectors[&n].partition))
            .collect();
        assert_eq!(placed, vec![(2, 0), (3, 0), (2, 0), (3, 0), (2, 1), (3, 1)]);
        assert!(m.sectors.values().all(|s| !s.faulty && s.activation == 0));
        let dl = &m.deadline_states()[2];
        assert_eq!(
            (dl.partitions, dl.live_sectors, dl.faulty_sectors),
            (2, 3, 0)
        );

        let before = m.clone();
        let again = m.add_genesis_sector(&policy, 5, sector(1)).unwrap();
        assert_eq!((again.deadline, again.partition), (2, 0));
        assert_eq!(m, before, "adding the same sector twice changes nothing");

        let mut other = sector(1);
        other.comm_r = [9; 32];
        assert_eq!(
            code(m.add_genesis_sector(&policy, 5, other)),
            exit_code::FORBIDDEN
        );
        let mut wrong = sector(7);
        wrong.seal_proof = RegisteredSealProof::StackedDrg8MiBV1_1;
        assert_eq!(
            code(m.add_genesis_sector(&policy, 5, wrong)),
            exit_code::ILLEGAL_ARGUMENT
        );
        m.pre_commit(&policy, 10, params(8)).unwrap();
        assert_eq!(
            code(m.add_genesis_sector(&policy, 11, sector(8))),
            exit_code::FORBIDDEN
        );
        assert_eq!(m.power, FULL);
    }

    #[test]
    fn a_proof_is_taken_only_for_the_open_deadline() {
        let (policy, mut m) = proving_miner();
        let before = m.clone();
        let p = post(0, 2, &[(0, &[])]);
        for epoch in [19, 30] {
            let r = m.submit_windowed_post(&policy, epoch, &p, chain_rand, never_verified);
            assert_eq!(code(r), exit_code::ILLEGAL_ARGUMENT, "epoch {epoch}");
        }
        let mut other = post(0, 3, &[(0, &[])]);
        other.chain_commit_epoch = 15;
        other.chain_commit_rand = chain_rand(15);
        let r = m.submit_windowed_post(&policy, 25, &other, chain_rand, never_verified);
        assert_eq!(code(r), exit_code::ILLEGAL_ARGUMENT);
        let mut beyond = p.clone();
        beyond.deadline = 9;
        let r = m.submit_windowed_post(&policy, 25, &beyond, chain_rand, never_verified);
        let e = r.unwrap_err();
        assert_eq!(e.exit_code, exit_code::ILLEGAL_ARGUMENT);
        assert!(e.message.contains("invalid deadline 9"), "{}", e.message);
        assert_eq!(m, before);

        assert_eq!(
            submit(&mut m, &policy, 29, &p).unwrap().partitions,
            set(&[0])
        );
    }

    #[test]
    fn the_chain_commit_must_be_the_chains_from_the_challenge_on() {
        let (policy, mut m) = proving_miner();
        let before = m.clone();
        let with = |epoch: Epoch, rand: [u8; 32]| SubmitWindowedPoStParams {
            chain_commit_epoch: epoch,
            chain_commit_rand: rand,
            ..post(0, 2, &[(0, &[])])
        };
        for (why, p) in [
            ("before the challenge", with(14, chain_rand(14))),
            ("not before now", with(25, chain_rand(25))),
            ("not the chain's", with(16, chain_rand(15))),
        ] {
            let r = m.submit_windowed_post(&policy, 25, &p, chain_rand, never_verified);
            assert_eq!(code(r), exit_code::ILLEGAL_ARGUMENT, "{why}");
        }
        assert_eq!(m, before);
        submit(&mut m, &policy, 25, &with(24, chain_rand(24))).unwrap();
    }

    #[test]
    fn malformed_submissions_are_refused_and_change_nothing() {
        let (policy, mut m) = proving_miner();
        let before = m.clone();
        let mut no_parts = post(0, 2, &[]);
        no_parts.partitions.clear();
        let mut no_proof = post(0, 2, &[(0, &[])]);
        no_proof.proofs.clear();
        let mut two_proofs = post(0, 2, &[(0, &[])]);
        two_proofs.proofs.push(two_proofs.proofs[0].clone());
        let mut wrong_type = post(0, 2, &[(0, &[])]);
        wrong_type.proofs[0].post_proof = RegisteredPoStProof::StackedDrgWindow8MiBV1_2;
        let cases = [
            ("no partitions", no_parts, exit_code::ILLEGAL_ARGUMENT),
            (
                "no such partition",
                post(0, 2, &[(7, &[])]),
                exit_code::NOT_FOUND,
            ),
            (
                "named twice",
                post(0, 2, &[(0, &[]), (0, &[])]),
                exit_code::ILLEGAL_ARGUMENT,
            ),
            (
                "skips another's sector",
                post(0, 2, &[(0, &[2])]),
                exit_code::ILLEGAL_ARGUMENT,
            ),
            ("no proof", no_proof, exit_code::ILLEGAL_ARGUMENT),
            ("two proofs", two_proofs, exit_code::ILLEGAL_ARGUMENT),
            ("wrong proof type", wrong_type, exit_code::ILLEGAL_ARGUMENT),
        ];
        for (why, p, want) in cases {
            let r = m.submit_windowed_post(&policy, 25, &p, chain_rand, never_verified);
            assert_eq!(code(r), want, "{why}");
        }
        assert_eq!(m, before);
    }

    #[test]
    fn a_partition_is_proven_once_per_period() {
        let (policy, mut m) = proving_miner();
        submit(&mut m, &policy, 21, &post(0, 2, &[(0, &[])])).unwrap();
        let twice = submit(&mut m, &policy, 22, &post(0, 2, &[(0, &[])])).unwrap_err();
        assert_eq!(twice.exit_code, exit_code::ILLEGAL_ARGUMENT);
        assert!(
            twice.message.contains("already proven"),
            "{}",
            twice.message
        );
        let both = submit(&mut m, &policy, 22, &post(0, 2, &[(1, &[]), (0, &[])]));
        assert_eq!(
            code(both),
            exit_code::ILLEGAL_ARGUMENT,
            "one of them is proven"
        );
        submit(&mut m, &policy, 22, &post(0, 2, &[(1, &[])])).unwrap();
        assert_eq!(m.deadline_states()[2].proven_partitions, set(&[0, 1]));

        let closed = m.process_deadline_closes(&policy, 30);
        assert!(closed.iter().all(|c| c.missed_partitions.is_empty()));
        assert!(
            m.deadline_states()[2].proven_partitions.is_empty(),
            "reset for the next period"
        );
        assert_eq!(m.power, FULL);
        submit(&mut m, &policy, 61, &post(1, 2, &[(0, &[])])).unwrap();
    }

    #[test]
    fn the_verifier_sees_the_proven_sectors_and_the_deadline() {
        let (policy, mut m) = proving_miner();
        let p = post(0, 2, &[(0, &[3]), (1, &[])]);
        let before = m.clone();
        let r = m.submit_windowed_post(&policy, 21, &p, chain_rand, |_| Ok(false));
        assert_eq!(code(r), exit_code::ILLEGAL_ARGUMENT);
        let r = m.submit_windowed_post(&policy, 21, &p, chain_rand, |_| Err("no params".into()));
        let e = r.unwrap_err();
        assert_eq!(e.exit_code, exit_code::ILLEGAL_ARGUMENT);
        assert!(e.message.contains("no params"), "{}", e.message);
        assert_eq!(m, before, "a refused proof changes nothing");

        let mut seen = None;
        m.submit_windowed_post(&policy, 21, &p, chain_rand, |v| {
            let numbers: Vec<SectorNumber> = v.sectors.iter().map(|s| s.number).collect();
            seen = Some((
                numbers,
                v.deadline.index,
                v.deadline.challenge,
                v.proof.proof_bytes.len(),
            ));
            Ok(true)
        })
        .unwrap();
        assert_eq!(
            seen,
            Some((vec![1, 5], 2, 15, 192)),
            "skipped sector 3 is left out"
        );
    }

    #[test]
    fn skipped_sectors_become_faulty_and_lose_power() {
        let (policy, mut m) = proving_miner();
        let out = submit(&mut m, &policy, 21, &post(0, 2, &[(0, &[3]), (1, &[])])).unwrap();
        assert_eq!(out.new_faults, set(&[3]));
        assert!(m.sectors[&3].faulty && !m.sectors[&1].faulty);
        let p0 = &m.partition_states(2).unwrap()[0];
        assert_eq!(
            (p0.faulty.clone(), p0.active.clone()),
            (set(&[3]), set(&[1]))
        );
        assert_eq!(p0.live, set(&[1, 3]));
        assert_eq!(m.power, FULL - 2048);
        assert_eq!(m.deadline_states()[2].faulty_sectors, 1);
    }

    #[test]
    fn a_partition_given_up_whole_needs_no_proof_check() {
        let (policy, mut m) = proving_miner();
        let out = m
            .submit_windowed_post(
                &policy,
                21,
                &post(0, 2, &[(1, &[5])]),
                chain_rand,
                never_verified,
            )
            .unwrap();
        assert_eq!(out.new_faults, set(&[5]));
        assert_eq!(m.deadline_states()[2].proven_partitions, set(&[1]));
        assert_eq!(m.power, FULL - 2048);
    }

    #[test]
    fn proven_recoveries_are_active_again() {
        let (policy, mut m) = proving_miner();
        submit(&mut m, &policy, 21, &post(0, 2, &[(0, &[3]), (1, &[])])).unwrap();
        m.process_deadline_closes(&policy, 31);
        let recovering = m
            .declare_faults_recovered(&policy, 31, 2, 0, &set(&[3]))
            .unwrap();
        assert_eq!(recovering, set(&[3]));
        let p0 = &m.partition_states(2).unwrap()[0];
        assert_eq!(
            (p0.recovering.clone(), p0.faulty.clone()),
            (set(&[3]), set(&[3]))
        );
        assert_eq!(m.power, FULL - 2048, "recovering is still faulty");
        submit(&mut m, &policy, 31, &post(0, 3, &[(0, &[]), (1, &[])])).unwrap();
        m.process_deadline_closes(&policy, 61);

        let mut proven = vec![];
        let out = m
            .submit_windowed_post(
                &policy,
                61,
                &post(1, 2, &[(0, &[]), (1, &[])]),
                chain_rand,
                |v| {
                    proven = v.sectors.iter().map(|s| s.number).collect();
                    Ok(true)
                },
            )
            .unwrap();
        assert_eq!(proven, vec![1, 3, 5], "the recovering sector is proven");
        assert_eq!(out.recovered, set(&[3]));
        assert!(!m.sectors[&3].faulty);
        let p0 = &m.partition_states(2).unwrap()[0];
        assert!(p0.faulty.is_empty() && p0.recovering.is_empty());
        assert_eq!(m.power, FULL);
    }

    #[test]
    fn a_skipped_recovery_stays_faulty() {
        let (policy, mut m) = proving_miner();
        submit(&mut m, &policy, 21, &post(0, 2, &[(0, &[3])])).unwrap();
        m.process_deadline_closes(&policy, 31);
        m.declare_faults_recovered(&policy, 31, 2, 0, &set(&[3]))
            .unwrap();
        m.process_deadline_closes(&policy, 61);
        let out = submit(&mut m, &policy, 61, &post(1, 2, &[(0, &[3])])).unwrap();
        assert!(out.recovered.is_empty() && out.new_faults.is_empty());
        let p0 = &m.partition_states(2).unwrap()[0];
        assert_eq!(
            (p0.faulty.clone(), p0.recovering.clone()),
            (set(&[3]), set(&[]))
        );
    }

    #[test]
    fn recoveries_are_refused_after_the_fault_cutoff() {
        let (policy, mut m) = proving_miner();
        submit(&mut m, &policy, 21, &post(0, 2, &[(0, &[3])])).unwrap();
        // Deadline 2 is open at 25: its cutoff (12) has passed.
        let late = m.declare_faults_recovered(&policy, 25, 2, 0, &set(&[3]));
        let e = late.unwrap_err();
        assert_eq!(e.exit_code, exit_code::ILLEGAL_ARGUMENT);
        assert!(e.message.contains("late recovery"), "{}", e.message);
        // Once it closed, the next opening (60) takes them until 52.
        let late = m.declare_faults_recovered(&policy, 52, 2, 0, &set(&[3]));
        assert_eq!(code(late), exit_code::ILLEGAL_ARGUMENT);
        assert!(m.partition_states(2).unwrap()[0].recovering.is_empty());
        assert_eq!(
            m.declare_faults_recovered(&policy, 51, 2, 0, &set(&[3]))
                .unwrap(),
            set(&[3])
        );
        assert_eq!(m.deadline_info(&policy, 51).index, 1);
    }

    #[test]
    fn only_faulty_sectors_of_the_partition_can_recover() {
        let (policy, mut m) = proving_miner();
        submit(&mut m, &policy, 21, &post(0, 2, &[(0, &[3])])).unwrap();
        let before = m.clone();
        let r = m.declare_faults_recovered(&policy, 31, 2, 5, &set(&[3]));
        assert_eq!(code(r), exit_code::NOT_FOUND);
        let r = m.declare_faults_recovered(&policy, 31, 2, 0, &set(&[2, 3]));
        assert_eq!(
            code(r),
            exit_code::ILLEGAL_ARGUMENT,
            "sector 2 is in deadline 3"
        );
        let r = m.declare_faults_recovered(&policy, 31, 9, 0, &set(&[3]));
        assert_eq!(code(r), exit_code::ILLEGAL_ARGUMENT);
        assert_eq!(m, before);
        // A sector that is not faulty is ignored, as on Filecoin.
        let newly = m
            .declare_faults_recovered(&policy, 31, 2, 0, &set(&[1, 3]))
            .unwrap();
        assert_eq!(newly, set(&[3]));
        assert_eq!(m.partition_states(2).unwrap()[0].recovering, set(&[3]));
        let again = m
            .declare_faults_recovered(&policy, 32, 2, 0, &set(&[3]))
            .unwrap();
        assert!(again.is_empty(), "already recovering");
    }

    #[test]
    fn unproven_partitions_turn_faulty_at_close_and_drop_recoveries() {
        let (policy, mut m) = proving_miner();
        submit(&mut m, &policy, 21, &post(0, 2, &[(0, &[])])).unwrap();
        let closed = m.process_deadline_closes(&policy, 30);
        let dl2 = closed.iter().find(|c| c.index == 2).unwrap();
        assert_eq!(dl2.missed_partitions, vec![1]);
        assert_eq!(dl2.new_faults, set(&[5]));
        assert!(m.sectors[&5].faulty && !m.sectors[&1].faulty);
        assert_eq!(m.power, FULL - 2048);

        m.declare_faults_recovered(&policy, 31, 2, 1, &set(&[5]))
            .unwrap();
        // Deadline 3 (2, 4, 6) closes at 40 unproven too.
        let closed = m.process_deadline_closes(&policy, 40);
        assert_eq!(closed.last().unwrap().new_faults, set(&[2, 4, 6]));
        assert_eq!(m.power, 2 * 2048);

        // Period 1: nothing proves deadline 2.
        let closed = m.process_deadline_closes(&policy, 70);
        let dl2 = closed.iter().find(|c| c.index == 2).unwrap();
        assert_eq!(dl2.missed_partitions, vec![0, 1]);
        assert_eq!(dl2.new_faults, set(&[1, 3]));
        assert_eq!(dl2.dropped_recoveries, set(&[5]));
        assert!(m.partition_states(2).unwrap()[1].recovering.is_empty());
        assert_eq!(m.power, 0);
        assert!(m.sectors.values().all(|s| s.faulty));
    }

    #[test]
    fn closes_run_once_in_order_and_catch_up_after_a_stop() {
        let (policy, mut m) = proving_miner();
        let indexes = |c: &[DeadlineClosed]| c.iter().map(|c| c.index).collect::<Vec<_>>();
        assert_eq!(indexes(&m.process_deadline_closes(&policy, 25)), vec![0, 1]);
        assert_eq!(m.cron_epoch, 20);
        assert!(
            m.process_deadline_closes(&policy, 25).is_empty(),
            "each close once"
        );
        assert!(m.process_deadline_closes(&policy, 29).is_empty());
        assert_eq!(indexes(&m.process_deadline_closes(&policy, 30)), vec![2]);

        // Deadline 3 is proven, then the chain stops for ten periods: its
        // proof counts for one close only.
        submit(&mut m, &policy, 31, &post(0, 3, &[(0, &[]), (1, &[])])).unwrap();
        let closed = m.process_deadline_closes(&policy, 31 + 400);
        assert_eq!(
            indexes(&closed),
            vec![3, 0, 1, 2, 3, 0, 1, 2],
            "two periods suffice"
        );
        assert_eq!(m.cron_epoch, 430);
        assert!(m.sectors.values().all(|s| s.faulty));
        assert_eq!(m.power, 0);
    }

    #[test]
    fn deadlines_cycle_through_the_period() {
        let policy = Policy {
            challenge_window: 10,
            challenge_lookback: 2,
            fault_declaration_cutoff: 5,
            ..Policy::default()
        };
        let m = miner(&policy);
        let d = m.deadline_info(&policy, 7);
        assert_eq!((d.index, d.open, d.close, d.period_start), (0, 7, 17, 7));
        assert_eq!((d.challenge, d.fault_cutoff), (5, 2));
        let d = m.deadline_info(&policy, 7 + 10 * 3 + 4);
        assert_eq!((d.index, d.open), (3, 37));
        let period = policy.proving_period();
        let d = m.deadline_info(&policy, 7 + period);
        assert_eq!((d.index, d.period_start), (0, 7 + period));
        let d = m.deadline_info(&policy, 0);
        assert_eq!(d.period_start, 7 - period, "epochs before the first period");

        // At 20 deadline 1 is open: 0 next opens a period on, 1 and 2 this one.
        assert_eq!(m.next_deadline_info(&policy, 20, 0).open, 7 + period);
        assert_eq!(m.next_deadline_info(&policy, 20, 1).open, 17);
        assert_eq!(m.next_deadline_info(&policy, 20, 2).open, 27);
    }
}
