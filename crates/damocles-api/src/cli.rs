//! `Venus.*` methods for operators (the `damocles-manager util` commands), on
//! the same endpoint and tokens as the sealer methods. Reads need `read`;
//! changing a sector by hand needs `admin` (see [`crate::perm`]).

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;

use crate::state::*;
use crate::types::*;

#[rpc(server, client, namespace = "Venus", namespace_separator = ".")]
pub trait ManagerCliApi {
    /// The sector records of `kind` (online, offline or both), as the manager
    /// stores them, in SectorID order (miner, then number).
    ///
    /// Pages: `after` (the last SectorID of the previous page) and `limit`
    /// are optional trailing params, so `["all"]` is still a valid call. A
    /// page holds the sectors after `after`, at most `limit` of them
    /// (default [`LIST_SECTORS_DEFAULT_LIMIT`], at most
    /// [`LIST_SECTORS_MAX_LIMIT`]) and at most [`LIST_SECTORS_MAX_BYTES`] of
    /// records (less when the server's response cap is lower); an empty page
    /// is the end. A call with neither param has no count limit, only the
    /// byte cap: it answers whole as before up to that many bytes, and beyond
    /// them answers the first ones instead of failing as too big.
    ///
    /// [`LIST_SECTORS_DEFAULT_LIMIT`]: crate::limits::LIST_SECTORS_DEFAULT_LIMIT
    /// [`LIST_SECTORS_MAX_LIMIT`]: crate::limits::LIST_SECTORS_MAX_LIMIT
    /// [`LIST_SECTORS_MAX_BYTES`]: crate::limits::LIST_SECTORS_MAX_BYTES
    #[method(name = "ListSectors")]
    async fn list_sectors(
        &self,
        kind: SectorListKind,
        after: Option<SectorID>,
        limit: Option<u64>,
    ) -> RpcResult<Vec<SectorState>>;

    /// The sector's record, online or offline; `null` if the manager never had it.
    #[method(name = "FindSector")]
    async fn find_sector(&self, sector: SectorID) -> RpcResult<Option<SectorState>>;

    /// Marks an online sector aborted and moves it offline; the worker learns
    /// it at its next ReportState and drops the sector.
    #[method(name = "AbortSector")]
    async fn abort_sector(&self, sector: SectorID, reason: String) -> RpcResult<()>;

    /// Marks an online sector finalized and moves it offline.
    #[method(name = "FinalizeSector")]
    async fn finalize_sector(&self, sector: SectorID) -> RpcResult<()>;

    /// Moves an offline sector back online, clearing the finalized/aborted marks.
    #[method(name = "RestoreSector")]
    async fn restore_sector(&self, sector: SectorID) -> RpcResult<()>;

    /// Every persist store the manager knows, with its space and reservations.
    #[method(name = "StoreList")]
    async fn store_list(&self) -> RpcResult<Vec<StoreDetail>>;

    /// The chain's head epoch and time, the network name and the block time.
    #[method(name = "ChainHead")]
    async fn chain_head(&self) -> RpcResult<ChainHeadInfo>;

    /// The miner actor's view of a sector; `null` if the chain does not know it.
    #[method(name = "ChainSectorInfo")]
    async fn chain_sector_info(&self, sector: SectorID) -> RpcResult<Option<ChainSectorInfo>>;
}
