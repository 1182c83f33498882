//! The protocol constants of the devnet, small enough that a test sees a seed
//! in seconds and several proving deadlines in a few minutes.

use serde::{Deserialize, Serialize};

use damocles_chain::Epoch;

/// The devnet's protocol constants (the `[Devnet.Policy]` keys).
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
    /// How long before a deadline opens its challenge is drawn (mainnet:
    /// WPoStChallengeLookback = 20).
    pub challenge_lookback: Epoch,
    /// How long before a deadline opens recoveries for it are refused
    /// (mainnet: FaultDeclarationCutoff = 70).
    pub fault_declaration_cutoff: Epoch,
    /// Sector lifetime for new sectors, in epochs.
    pub sector_lifetime: Epoch,
    /// The chance, in percent, that an epoch has a block winner at all; a
    /// miner's chance is that times its share of network power (non-faulty
    /// sectors). 100 elects a lone miner with power every epoch.
    pub election_rate_percent: u32,
    /// Wall-clock seconds from an election's announcement until its winning
    /// PoSt must have arrived (mainnet leaves about 25 s of a 30 s epoch; a
    /// 2KiB winning PoSt takes about 6 s).
    #[serde(rename = "WinningPoStCutoffSecs")]
    pub winning_post_cutoff_secs: u64,
}

/// The defaults leave room for damocles' default PoSt confidences at 1 s
/// blocks: the manager starts at challenge + 10 (open − 10), submits from
/// open + 4 and has until open + 20; recoveries it declares for the
/// deadline two ahead at open − 10 land before that deadline's cutoff
/// (open + 40 − 30).
impl Default for Policy {
    fn default() -> Self {
        Policy {
            seed_delay: 5,
            ticket_lookback: 1,
            max_ticket_age: 10_000,
            max_prove_commit_delay: 10_000,
            challenge_window: 20,
            deadlines_per_period: 12,
            challenge_lookback: 20,
            fault_declaration_cutoff: 30,
            sector_lifetime: 1_000_000,
            election_rate_percent: 5,
            winning_post_cutoff_secs: 25,
        }
    }
}

impl Policy {
    /// Epochs per proving period (every deadline once).
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
        let non_negative = [
            ("TicketLookback", self.ticket_lookback),
            ("ChallengeLookback", self.challenge_lookback),
            ("FaultDeclarationCutoff", self.fault_declaration_cutoff),
        ];
        for (key, v) in non_negative {
            if v < 0 {
                return Err(format!("{key} must be >= 0, got {v}"));
            }
        }
        if self.election_rate_percent > 100 {
            return Err(format!(
                "ElectionRatePercent must be <= 100, got {}",
                self.election_rate_percent
            ));
        }
        if self.winning_post_cutoff_secs == 0 {
            return Err("WinningPoStCutoffSecs must be > 0".into());
        }
        if self.deadlines_per_period == 0 {
            return Err("DeadlinesPerPeriod must be > 0".into());
        }
        let period = Epoch::try_from(self.deadlines_per_period)
            .ok()
            .and_then(|n| n.checked_mul(self.challenge_window))
            .ok_or_else(|| {
                format!(
                    "ChallengeWindow ({}) × DeadlinesPerPeriod ({}) is too large",
                    self.challenge_window, self.deadlines_per_period
                )
            })?;
        if self.max_prove_commit_delay <= self.seed_delay {
            return Err(format!(
                "MaxProveCommitDelay ({}) must be larger than SeedDelay ({})",
                self.max_prove_commit_delay, self.seed_delay
            ));
        }
        // Right after a deadline closes, its next opening is one period minus
        // one window away: a cutoff that long would refuse every recovery.
        if self.fault_declaration_cutoff >= period - self.challenge_window {
            return Err(format!(
                "FaultDeclarationCutoff ({}) must be less than a proving period minus ChallengeWindow ({}), or no recovery could ever be declared",
                self.fault_declaration_cutoff,
                period - self.challenge_window
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(p: Policy) -> String {
        p.validate().unwrap_err()
    }

    #[test]
    fn defaults_are_valid_and_leave_room_for_default_confidences() {
        let p = Policy::default();
        p.validate().unwrap();
        // damocles: start at challenge + 10, submit from open + 4, a message
        // lands one epoch after it is pushed.
        let start = -p.challenge_lookback + 10;
        assert!(start < 4 && 4 + 1 < p.challenge_window);
        // Recoveries for deadline + 2, pushed at the start, land before its cutoff.
        assert!(start + 1 < 2 * p.challenge_window - p.fault_declaration_cutoff);
        assert!(p.fault_declaration_cutoff > p.challenge_lookback);
    }

    #[test]
    fn refusals_name_the_key() {
        let e = refusal(Policy {
            fault_declaration_cutoff: -1,
            ..Policy::default()
        });
        assert!(e.starts_with("FaultDeclarationCutoff must be >= 0"), "{e}");
        let e = refusal(Policy {
            challenge_lookback: -1,
            ..Policy::default()
        });
        assert!(e.starts_with("ChallengeLookback"), "{e}");
        let e = refusal(Policy {
            fault_declaration_cutoff: 220,
            ..Policy::default()
        });
        assert!(e.starts_with("FaultDeclarationCutoff (220)"), "{e}");
        let e = refusal(Policy {
            deadlines_per_period: u64::MAX,
            ..Policy::default()
        });
        assert!(e.contains("DeadlinesPerPeriod"), "{e}");
        let e = refusal(Policy {
            challenge_window: 0,
            ..Policy::default()
        });
        assert!(e.starts_with("ChallengeWindow"), "{e}");
        let e = refusal(Policy {
            election_rate_percent: 101,
            ..Policy::default()
        });
        assert!(e.starts_with("ElectionRatePercent must be <= 100"), "{e}");
        let e = refusal(Policy {
            winning_post_cutoff_secs: 0,
            ..Policy::default()
        });
        assert!(e.starts_with("WinningPoStCutoffSecs"), "{e}");
        Policy {
            election_rate_percent: 100,
            ..Policy::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn election_keys_have_their_config_names() {
        let v = serde_json::to_value(Policy::default()).unwrap();
        assert_eq!(v["ElectionRatePercent"], 5);
        assert_eq!(v["WinningPoStCutoffSecs"], 25);
        let p: Policy = serde_json::from_str(r#"{"WinningPoStCutoffSecs": 3}"#).unwrap();
        assert_eq!(
            (p.winning_post_cutoff_secs, p.election_rate_percent),
            (3, 5)
        );
    }
}
