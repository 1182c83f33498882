//! The devnet's miner actor: precommit, prove-commit, deadlines, partitions
//! and power. Pure state transitions, no I/O: the caller supplies the epoch,
//! the chain's ticket and seed, and the proof verifier.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use damocles_chain::{
    exit_code, DeadlineInfo, Epoch, MinerInfo, PreCommitOnChain, PreCommitParams, SectorNumber,
    SectorOnChain,
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

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub sectors: BTreeSet<SectorNumber>,
    /// Declared or detected faulty (window PoSt).
    pub faults: BTreeSet<SectorNumber>,
    /// Faulty sectors declared recovering (window PoSt).
    pub recoveries: BTreeSet<SectorNumber>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub partitions: Vec<Partition>,
}

impl Deadline {
    fn live_sectors(&self) -> usize {
        self.partitions.iter().map(|p| p.sectors.len()).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerState {
    pub info: MinerInfo,
    pub precommits: BTreeMap<SectorNumber, PreCommitOnChain>,
    pub sectors: BTreeMap<SectorNumber, SectorOnChain>,
    pub deadlines: Vec<Deadline>,
    /// Raw byte power of active, non-faulty sectors.
    pub power: u64,
}

impl MinerState {
    pub fn new(info: MinerInfo, policy: &Policy) -> Self {
        MinerState {
            info,
            precommits: BTreeMap::new(),
            sectors: BTreeMap::new(),
            deadlines: vec![Deadline::default(); policy.deadlines_per_period as usize],
            power: 0,
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
        let (deadline, partition) = self.assign(number);
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
        self.power += self.info.sector_size;
        self.sectors.insert(number, sector);
        Ok(&self.sectors[&number])
    }

    /// Puts a new sector in the deadline with the fewest live sectors, into its
    /// last partition while that has room, else a new partition.
    fn assign(&mut self, number: SectorNumber) -> (u64, u64) {
        let size = self.partition_size();
        let (dl_idx, dl) = self
            .deadlines
            .iter_mut()
            .enumerate()
            .min_by_key(|(i, d)| (d.live_sectors(), *i))
            .expect("a miner has at least one deadline");
        if dl.partitions.last().is_none_or(|p| p.sectors.len() >= size) {
            dl.partitions.push(Partition::default());
        }
        let p_idx = dl.partitions.len() - 1;
        dl.partitions[p_idx].sectors.insert(number);
        (dl_idx as u64, p_idx as u64)
    }

    /// The deadline current at `epoch`.
    pub fn deadline_info(&self, policy: &Policy, epoch: Epoch) -> DeadlineInfo {
        let period = policy.proving_period();
        let start = self.info.proving_period_start;
        let since = epoch - start;
        let period_start = start + since.div_euclid(period) * period;
        let index = ((epoch - period_start) / policy.challenge_window) as u64;
        let open = period_start + index as Epoch * policy.challenge_window;
        DeadlineInfo {
            period_start,
            index,
            open,
            close: open + policy.challenge_window,
            challenge: open - policy.challenge_lookback,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filecoin_proofs_api::RegisteredSealProof;

    fn miner(policy: &Policy) -> MinerState {
        MinerState::new(
            MinerInfo {
                actor: 1000,
                sector_size: 2048,
                seal_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
                window_post_proof:
                    filecoin_proofs_api::RegisteredPoStProof::StackedDrgWindow2KiBV1_2,
                proving_period_start: 7,
            },
            policy,
        )
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
        assert_eq!((s.activation, s.deadline, s.partition), (20, 0, 0));
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
    fn deadlines_cycle_through_the_period() {
        let policy = Policy::default();
        let m = miner(&policy);
        let d = m.deadline_info(&policy, 7);
        assert_eq!((d.index, d.open, d.close, d.period_start), (0, 7, 17, 7));
        assert_eq!(d.challenge, 5);
        let d = m.deadline_info(&policy, 7 + 10 * 3 + 4);
        assert_eq!((d.index, d.open), (3, 37));
        let period = policy.proving_period();
        let d = m.deadline_info(&policy, 7 + period);
        assert_eq!((d.index, d.period_start), (0, 7 + period));
        let d = m.deadline_info(&policy, 0);
        assert_eq!(d.period_start, 7 - period, "epochs before the first period");
    }
}
