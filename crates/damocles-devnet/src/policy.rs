//! The protocol constants of the devnet, small enough that a test sees a seed
//! in seconds and several proving deadlines in a minute.

use serde::{Deserialize, Serialize};

use damocles_chain::Epoch;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Policy {
    /// Epochs between a precommit landing and its interactive seed
    /// (mainnet: PreCommitChallengeDelay = 150).
    pub seed_delay: Epoch,
    /// How far behind the head a ticket is drawn (mainnet: 900 = finality).
    pub ticket_lookback: Epoch,
    /// A precommit whose ticket is older than this is refused
    /// (mainnet: MaxPreCommitRandomnessLookback).
    pub max_ticket_age: Epoch,
    /// A prove-commit later than this after the precommit is refused and the
    /// precommit expires.
    pub max_prove_commit_delay: Epoch,
    /// Epochs per proving deadline (mainnet: WPoStChallengeWindow = 60).
    pub challenge_window: Epoch,
    /// Deadlines per proving period (mainnet: 48).
    pub deadlines_per_period: u64,
    /// How long before a deadline opens its challenge is drawn (mainnet: 20).
    pub challenge_lookback: Epoch,
    /// Sector lifetime for new sectors, in epochs.
    pub sector_lifetime: Epoch,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            seed_delay: 5,
            ticket_lookback: 1,
            max_ticket_age: 10_000,
            max_prove_commit_delay: 10_000,
            challenge_window: 10,
            deadlines_per_period: 12,
            challenge_lookback: 2,
            sector_lifetime: 1_000_000,
        }
    }
}

impl Policy {
    pub fn proving_period(&self) -> Epoch {
        self.challenge_window * self.deadlines_per_period as Epoch
    }

    /// Which values make no sense, by key name.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("SeedDelay", self.seed_delay),
            ("MaxTicketAge", self.max_ticket_age),
            ("MaxProveCommitDelay", self.max_prove_commit_delay),
            ("ChallengeWindow", self.challenge_window),
            ("SectorLifetime", self.sector_lifetime),
        ];
        for (key, v) in positive {
            if v <= 0 {
                return Err(format!("{key} must be > 0, got {v}"));
            }
        }
        if self.ticket_lookback < 0 || self.challenge_lookback < 0 {
            return Err("TicketLookback and ChallengeLookback must be >= 0".into());
        }
        if self.deadlines_per_period == 0 {
            return Err("DeadlinesPerPeriod must be > 0".into());
        }
        if self.max_prove_commit_delay <= self.seed_delay {
            return Err(format!(
                "MaxProveCommitDelay ({}) must be larger than SeedDelay ({})",
                self.max_prove_commit_delay, self.seed_delay
            ));
        }
        Ok(())
    }
}
