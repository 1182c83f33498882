//! `Venus.Proxy*`: what a poster node (`daemon run --poster --proxy URL`)
//! asks the sealing manager it proves for. The sealing manager holds the
//! chain (the devnet) and the sector index; the poster node reads both
//! through these methods, and sends its PoSt messages and winning proofs
//! through them (which needs a `sign` token).
//!
//! The payloads are the chain's own types ([`damocles_chain`]) as serde
//! encodes them: this is the manager's own protocol, not damocles'.

use std::collections::BTreeSet;

use damocles_chain::{
    ActorID, BlockRecord, DeadlineInfo, DeadlineState, Domain, Epoch, Head, Message, MessageStatus,
    MinerInfo, PartitionState, PreCommitOnChain, SectorNumber, SectorOnChain, WinningChallenge,
};
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use serde::{Deserialize, Serialize};

/// The chain's fixed facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProxyChainParams {
    /// The chain's name for logs.
    pub network: String,
    /// Milliseconds between two epochs.
    pub block_time_ms: u64,
    /// Epochs between a precommit landing and its seed.
    pub seed_delay: Epoch,
    /// How far behind the head tickets are drawn.
    pub ticket_lookback: Epoch,
}

/// Where one sector's files are: the name of its persist store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorStore {
    /// The sector's number.
    pub number: SectorNumber,
    /// The persist store (`[[Common.PersistStores]]` name) holding it.
    pub store: String,
}

/// The most sector numbers one `ProxySectorStores` call may ask for.
pub const MAX_STORE_QUERY: usize = 100_000;

/// The methods a poster node calls on the sealing manager.
#[rpc(server, client, namespace = "Venus", namespace_separator = ".")]
pub trait ProxyApi {
    /// The chain's fixed facts.
    #[method(name = "ProxyChainParams")]
    async fn proxy_chain_params(&self) -> RpcResult<ProxyChainParams>;

    /// The chain's head.
    #[method(name = "ProxyHead")]
    async fn proxy_head(&self) -> RpcResult<Head>;

    /// A miner actor's fixed facts.
    #[method(name = "ProxyMinerInfo")]
    async fn proxy_miner_info(&self, miner: ActorID) -> RpcResult<MinerInfo>;

    /// Chain randomness of `domain` at `epoch` for `entropy`.
    #[method(name = "ProxyRandomness")]
    async fn proxy_randomness(
        &self,
        domain: Domain,
        epoch: Epoch,
        entropy: Vec<u8>,
    ) -> RpcResult<[u8; 32]>;

    /// Queues a message (window PoSt, recoveries); its id.
    #[method(name = "ProxyPushMessage")]
    async fn proxy_push_message(&self, message: Message) -> RpcResult<String>;

    /// Where a pushed message stands.
    #[method(name = "ProxyMessageStatus")]
    async fn proxy_message_status(&self, id: String) -> RpcResult<MessageStatus>;

    /// A sector's precommit.
    #[method(name = "ProxyPreCommit")]
    async fn proxy_precommit(
        &self,
        miner: ActorID,
        number: SectorNumber,
    ) -> RpcResult<Option<PreCommitOnChain>>;

    /// A proven sector.
    #[method(name = "ProxySector")]
    async fn proxy_sector(
        &self,
        miner: ActorID,
        number: SectorNumber,
    ) -> RpcResult<Option<SectorOnChain>>;

    /// The deadline current at `epoch`.
    #[method(name = "ProxyDeadlineInfo")]
    async fn proxy_deadline_info(&self, miner: ActorID, epoch: Epoch) -> RpcResult<DeadlineInfo>;

    /// Every deadline at the head.
    #[method(name = "ProxyDeadlines")]
    async fn proxy_deadlines(&self, miner: ActorID) -> RpcResult<Vec<DeadlineState>>;

    /// One deadline's partitions at the head.
    #[method(name = "ProxyPartitions")]
    async fn proxy_partitions(
        &self,
        miner: ActorID,
        deadline: u64,
    ) -> RpcResult<Vec<PartitionState>>;

    /// Proven sectors by number.
    #[method(name = "ProxySectors")]
    async fn proxy_sectors(
        &self,
        miner: ActorID,
        numbers: BTreeSet<SectorNumber>,
    ) -> RpcResult<Vec<SectorOnChain>>;

    /// Elections still waiting for a proof.
    #[method(name = "ProxyOpenWinningChallenges")]
    async fn proxy_open_winning_challenges(
        &self,
        miner: ActorID,
    ) -> RpcResult<Vec<WinningChallenge>>;

    /// Hands in a winning PoSt.
    #[method(name = "ProxySubmitWinningPoSt")]
    async fn proxy_submit_winning_post(
        &self,
        miner: ActorID,
        epoch: Epoch,
        proof: Vec<u8>,
    ) -> RpcResult<BlockRecord>;

    /// Elections, newest first.
    #[method(name = "ProxyBlocks")]
    async fn proxy_blocks(&self, miner: ActorID, limit: u64) -> RpcResult<Vec<BlockRecord>>;

    /// The persist store of each of `numbers` that the sealing manager has
    /// on record (numbers it does not know are left out). At most
    /// [`MAX_STORE_QUERY`] numbers.
    #[method(name = "ProxySectorStores")]
    async fn proxy_sector_stores(
        &self,
        miner: ActorID,
        numbers: Vec<SectorNumber>,
    ) -> RpcResult<Vec<SectorStore>>;
}
