//! The `Venus.*` methods a sealing worker calls, as a jsonrpsee trait: the
//! manager implements `SealerApiServer`, workers and the CLI use the generated
//! `SealerApiClient`, so both sides share one definition.
//!
//! Params are positional, as go-jsonrpc sends them. A trailing `Option` param is
//! optional on the wire, which lets one server accept both worker generations
//! (`AllocateSector` and `WaitSeed` gained a parameter with NI-PoRep).

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;

use crate::codes::SealProof;
use crate::types::*;

#[rpc(server, client, namespace = "Venus", namespace_separator = ".")]
pub trait SealerApi {
    /// A sector number for one of the allowed miners, or `null`.
    #[method(name = "AllocateSector")]
    async fn allocate_sector(
        &self,
        spec: AllocateSectorSpec,
        niporep: Option<bool>,
    ) -> RpcResult<Option<AllocatedSector>>;

    /// Deals to fill the sector with; `null` or empty for a CC sector.
    #[method(name = "AcquireDeals")]
    async fn acquire_deals(
        &self,
        sector: SectorID,
        spec: AcquireDealsSpec,
    ) -> RpcResult<Option<Vec<SectorPiece>>>;

    /// The sector's PC1 ticket: drawn from the chain on the first call, the stored one after.
    #[method(name = "AssignTicket")]
    async fn assign_ticket(&self, sector: SectorID) -> RpcResult<Ticket>;

    /// Sends the sector's precommit on chain; `reset` resubmits after a `Failed` poll.
    #[method(name = "SubmitPreCommit")]
    async fn submit_pre_commit(
        &self,
        sector: AllocatedSector,
        info: PreCommitOnChainInfo,
        reset: bool,
    ) -> RpcResult<SubmitResp>;

    /// Where the precommit message stands; the worker polls until `Landed`.
    #[method(name = "PollPreCommitState")]
    async fn poll_pre_commit_state(&self, sector: SectorID) -> RpcResult<PollStateResp>;

    /// Legacy form of SubmitPersistedEx.
    #[method(name = "SubmitPersisted")]
    async fn submit_persisted(&self, sector: SectorID, instance: String) -> RpcResult<bool>;

    /// The sector's files are in store `instance`; the manager checks them.
    #[method(name = "SubmitPersistedEx")]
    async fn submit_persisted_ex(
        &self,
        sector: SectorID,
        instance: String,
        is_upgrade: bool,
    ) -> RpcResult<bool>;

    /// The interactive seed once the chain has released it, else how long to wait.
    /// Older workers send no `proof_type`.
    #[method(name = "WaitSeed")]
    async fn wait_seed(
        &self,
        sector: SectorID,
        proof_type: Option<SealProof>,
    ) -> RpcResult<WaitSeedResp>;

    /// Sends the sector's prove-commit with its C2 proof; `reset` resubmits after a `Failed` poll.
    #[method(name = "SubmitProof")]
    async fn submit_proof(
        &self,
        sector: SectorID,
        proof: ProofOnChainInfo,
        reset: bool,
    ) -> RpcResult<SubmitResp>;

    /// Where the prove-commit message stands; the worker polls until `Landed`.
    #[method(name = "PollProofState")]
    async fn poll_proof_state(&self, sector: SectorID) -> RpcResult<PollStateResp>;

    /// Records the worker's latest state change (or failure); answers `Finalized`
    /// for a sector the manager already holds offline.
    #[method(name = "ReportState")]
    async fn report_state(
        &self,
        sector: SectorID,
        req: ReportStateReq,
    ) -> RpcResult<SectorStateResp>;

    /// The worker finished the sector: it is marked finalized and moves offline.
    #[method(name = "ReportFinalized")]
    async fn report_finalized(&self, sector: SectorID) -> RpcResult<()>;

    /// The worker gave the sector up: it is marked aborted with `reason` and moves offline.
    #[method(name = "ReportAborted")]
    async fn report_aborted(&self, sector: SectorID, reason: String) -> RpcResult<()>;

    /// A worker's periodic liveness report with its thread counts; the manager records when.
    #[method(name = "WorkerPing")]
    async fn worker_ping(&self, info: WorkerInfo) -> RpcResult<()>;

    /// A persist store with room for `size` bytes among `candidates`, or `null`.
    #[method(name = "StoreReserveSpace")]
    async fn store_reserve_space(
        &self,
        sector: SectorID,
        size: u64,
        candidates: Vec<String>,
    ) -> RpcResult<Option<StoreBasicInfo>>;

    /// The persist store named `instance`, or `null` if the manager has none by that name.
    #[method(name = "StoreBasicInfo")]
    async fn store_basic_info(&self, instance: String) -> RpcResult<Option<StoreBasicInfo>>;
}
