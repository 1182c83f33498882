//! Who may call what: the permission each `Venus.*` method needs.
//!
//! Tokens carry a list of permissions (`{"Allow": ["read", "write"]}`, the
//! shape Lotus and Venus tokens use). The table below is the one place that
//! decides; a method missing from it needs `admin`, so a new method is closed
//! until someone opens it on purpose.

use serde::{Deserialize, Serialize};

/// A permission a token may carry, lowest first (the order [`Permission::and_below`] uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Queries: nothing a caller asked for changes.
    Read,
    /// Sealing traffic from workers: allocates, submits, reports.
    Write,
    /// Reserved for message signing (kept for token compatibility).
    Sign,
    /// Operator actions: abort, finalize, restore sectors.
    Admin,
}

impl Permission {
    /// Every permission, lowest first.
    pub const ALL: [Permission; 4] = [
        Permission::Read,
        Permission::Write,
        Permission::Sign,
        Permission::Admin,
    ];

    /// The lowercase name tokens carry (`read`, `write`, `sign`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Sign => "sign",
            Permission::Admin => "admin",
        }
    }

    /// Every permission up to and including `self`, in the order tokens list
    /// them (an admin token also reads, writes and signs).
    pub fn and_below(self) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|p| *p <= self).collect()
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "sign" => Ok(Permission::Sign),
            "admin" => Ok(Permission::Admin),
            other => Err(format!(
                "unknown permission {other:?} (expected read, write, sign or admin)"
            )),
        }
    }
}

/// The permission `method` (full name, e.g. `Venus.AllocateSector`) needs.
pub fn required(method: &str) -> Permission {
    let Some(name) = method.strip_prefix("Venus.") else {
        return Permission::Admin;
    };
    match name {
        // Queries a worker or an operator makes.
        "PollPreCommitState" | "PollProofState" | "StoreBasicInfo" | "ListSectors"
        | "FindSector" | "StoreList" | "ChainHead" | "ChainSectorInfo" | "WorkerList"
        | "Version" | "ProvingInfo" | "ProvingDeadlines" | "ProvingDeadline" | "ProvingFaults"
        | "ProvingBlocks" | "WdPoStAllJobs" => Permission::Read,
        // Reads files of every sector of a deadline (with `slow`, proofs).
        "CheckProvable" => Permission::Write,
        // What a sealing worker does to a sector.
        "AllocateSector" | "AcquireDeals" | "AssignTicket" | "SubmitPreCommit"
        | "SubmitPersisted" | "SubmitPersistedEx" | "SubmitProof" | "ReportState"
        | "ReportFinalized" | "ReportAborted" | "WorkerPing" | "StoreReserveSpace" | "WaitSeed" => {
            Permission::Write
        }
        // What a wdpost worker does to a job. These are listed even when the
        // manager runs without --worker-prover: a caller with `write` then
        // gets "method not found", which damocles' worker reads as idle.
        "WdPoStAllocateJobs" | "WdPoStHeartbeatJobs" | "WdPoStFinishJob" => Permission::Write,
        // A poster node (`--proxy`) reading the chain and the sector index.
        "ProxyChainParams"
        | "ProxyHead"
        | "ProxyMinerInfo"
        | "ProxyRandomness"
        | "ProxyMessageStatus"
        | "ProxyPreCommit"
        | "ProxySector"
        | "ProxyDeadlineInfo"
        | "ProxyDeadlines"
        | "ProxyPartitions"
        | "ProxySectors"
        | "ProxyOpenWinningChallenges"
        | "ProxyBlocks"
        | "ProxySectorStores" => Permission::Read,
        // A poster node sending messages and winning proofs on the miner's behalf.
        "ProxyPushMessage" | "ProxySubmitWinningPoSt" => Permission::Sign,
        // Operator actions and anything not listed.
        _ => Permission::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_methods_need_write_queries_read_unknown_admin() {
        assert_eq!(required("Venus.AllocateSector"), Permission::Write);
        assert_eq!(required("Venus.PollProofState"), Permission::Read);
        assert_eq!(required("Venus.AbortSector"), Permission::Admin);
        assert_eq!(required("Venus.ProvingDeadlines"), Permission::Read);
        assert_eq!(required("Venus.CheckProvable"), Permission::Write);
        assert_eq!(required("Venus.SimulateWdPoSt"), Permission::Admin);
        assert_eq!(required("Venus.ProvingRecoverFaults"), Permission::Admin);
        assert_eq!(required("Venus.WdPoStAllocateJobs"), Permission::Write);
        assert_eq!(required("Venus.WdPoStFinishJob"), Permission::Write);
        assert_eq!(required("Venus.WdPoStAllJobs"), Permission::Read);
        assert_eq!(required("Venus.WdPoStResetJob"), Permission::Admin);
        assert_eq!(required("Venus.ProxyDeadlines"), Permission::Read);
        assert_eq!(required("Venus.ProxyPushMessage"), Permission::Sign);
        assert_eq!(required("Venus.ProxySubmitWinningPoSt"), Permission::Sign);
        assert_eq!(required("Venus.SomethingNew"), Permission::Admin);
        assert_eq!(required("Other.ListSectors"), Permission::Admin);
    }

    #[test]
    fn admin_implies_the_rest() {
        assert_eq!(Permission::Admin.and_below(), Permission::ALL.to_vec());
        assert_eq!(Permission::Read.and_below(), vec![Permission::Read]);
        assert_eq!("write".parse::<Permission>(), Ok(Permission::Write));
        assert!("root".parse::<Permission>().is_err());
    }
}
