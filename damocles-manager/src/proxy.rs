//! Poster nodes (`daemon run --poster --proxy URL`): a second manager that
//! proves for a sealing manager. The sealing manager serves its chain and
//! its sector index (`Venus.Proxy*`, [`ProxyRpc`]); the poster node reads
//! the chain through [`RemoteChain`] and finds sectors' stores through
//! [`ProxyIndex`], then proves from the same persist stores (its config
//! names them as the sealing manager's does).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use damocles_api::proxy::{
    ProxyApiClient, ProxyApiServer, ProxyChainParams, SectorStore, MAX_STORE_QUERY,
};
use damocles_api::SectorID;
use damocles_chain::{
    ActorID, BlockRecord, Chain, ChainError, DeadlineInfo, DeadlineState, Domain, Epoch, Head,
    Message, MessageStatus, MinerInfo, PartitionState, PreCommitOnChain, SectorNumber,
    SectorOnChain, WinningChallenge,
};
use jsonrpsee::core::RpcResult;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::db::Db;
use crate::error::ApiError;

/// How long one call to the sealing manager may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The sealing manager's side: its chain and sector index, served.
pub struct ProxyRpc {
    chain: Arc<dyn Chain>,
    db: Db,
    /// The miners of this manager's config: the only ones a poster node
    /// may send messages for.
    miners: BTreeSet<ActorID>,
}

impl ProxyRpc {
    pub fn new(chain: Arc<dyn Chain>, db: Db, miners: BTreeSet<ActorID>) -> ProxyRpc {
        ProxyRpc { chain, db, miners }
    }
}

/// Epochs a caller may ask about: the chain's arithmetic on them cannot
/// overflow (a hostile `i64::MIN` would). Negative ones are legitimate: a
/// lookback from an early head reaches before genesis.
const MAX_EPOCH: Epoch = 1 << 40;

fn valid_epoch(epoch: Epoch) -> Result<(), ApiError> {
    if (-MAX_EPOCH..=MAX_EPOCH).contains(&epoch) {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "epoch {epoch} is out of range (±{MAX_EPOCH})"
        )))
    }
}

/// A poster node proves: window PoSt and recoveries of this manager's
/// miners are all it may send. Sealing messages stay with the sealer.
fn poster_message(message: &Message, miners: &BTreeSet<ActorID>) -> Result<(), ApiError> {
    let miner = match message {
        Message::SubmitWindowedPoSt { miner, .. }
        | Message::DeclareFaultsRecovered { miner, .. } => *miner,
        _ => {
            return Err(ApiError::Invalid(
                "a poster node may send only SubmitWindowedPoSt and DeclareFaultsRecovered".into(),
            ))
        }
    };
    own_miner(miner, miners)
}

fn own_miner(miner: ActorID, miners: &BTreeSet<ActorID>) -> Result<(), ApiError> {
    if miners.contains(&miner) {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "miner {miner} is not a miner of this manager"
        )))
    }
}

fn chain_err(e: ChainError) -> ApiError {
    match e {
        ChainError::Storage(_) | ChainError::Remote(_) => ApiError::Internal(format!("chain: {e}")),
        _ => ApiError::Invalid(e.to_string()),
    }
}

macro_rules! served {
    ($call:expr) => {
        $call.await.map_err(|e| chain_err(e).into())
    };
}

#[async_trait]
impl ProxyApiServer for ProxyRpc {
    async fn proxy_chain_params(&self) -> RpcResult<ProxyChainParams> {
        Ok(ProxyChainParams {
            network: self.chain.network(),
            block_time_ms: self.chain.block_time().as_millis() as u64,
            seed_delay: self.chain.seed_delay(),
            ticket_lookback: self.chain.ticket_lookback(),
        })
    }

    async fn proxy_head(&self) -> RpcResult<Head> {
        served!(self.chain.head())
    }

    async fn proxy_miner_info(&self, miner: ActorID) -> RpcResult<MinerInfo> {
        served!(self.chain.miner_info(miner))
    }

    async fn proxy_randomness(
        &self,
        domain: Domain,
        epoch: Epoch,
        entropy: Vec<u8>,
    ) -> RpcResult<[u8; 32]> {
        valid_epoch(epoch)?;
        served!(self.chain.randomness(domain, epoch, &entropy))
    }

    async fn proxy_push_message(&self, message: Message) -> RpcResult<String> {
        poster_message(&message, &self.miners)?;
        served!(self.chain.push_message(message))
    }

    async fn proxy_message_status(&self, id: String) -> RpcResult<MessageStatus> {
        served!(self.chain.message_status(&id))
    }

    async fn proxy_precommit(
        &self,
        miner: ActorID,
        number: SectorNumber,
    ) -> RpcResult<Option<PreCommitOnChain>> {
        served!(self.chain.precommit(miner, number))
    }

    async fn proxy_sector(
        &self,
        miner: ActorID,
        number: SectorNumber,
    ) -> RpcResult<Option<SectorOnChain>> {
        served!(self.chain.sector(miner, number))
    }

    async fn proxy_deadline_info(&self, miner: ActorID, epoch: Epoch) -> RpcResult<DeadlineInfo> {
        valid_epoch(epoch)?;
        served!(self.chain.deadline_info(miner, epoch))
    }

    async fn proxy_deadlines(&self, miner: ActorID) -> RpcResult<Vec<DeadlineState>> {
        served!(self.chain.deadlines(miner))
    }

    async fn proxy_partitions(
        &self,
        miner: ActorID,
        deadline: u64,
    ) -> RpcResult<Vec<PartitionState>> {
        served!(self.chain.partitions(miner, deadline))
    }

    async fn proxy_sectors(
        &self,
        miner: ActorID,
        numbers: BTreeSet<SectorNumber>,
    ) -> RpcResult<Vec<SectorOnChain>> {
        served!(self.chain.sectors(miner, &numbers))
    }

    async fn proxy_open_winning_challenges(
        &self,
        miner: ActorID,
    ) -> RpcResult<Vec<WinningChallenge>> {
        served!(self.chain.open_winning_challenges(miner))
    }

    async fn proxy_submit_winning_post(
        &self,
        miner: ActorID,
        epoch: Epoch,
        proof: Vec<u8>,
    ) -> RpcResult<BlockRecord> {
        valid_epoch(epoch)?;
        own_miner(miner, &self.miners)?;
        served!(self.chain.submit_winning_post(miner, epoch, proof))
    }

    async fn proxy_blocks(&self, miner: ActorID, limit: u64) -> RpcResult<Vec<BlockRecord>> {
        served!(self.chain.blocks(miner, limit.min(100_000) as usize))
    }

    async fn proxy_sector_stores(
        &self,
        miner: ActorID,
        numbers: Vec<SectorNumber>,
    ) -> RpcResult<Vec<SectorStore>> {
        if numbers.len() > MAX_STORE_QUERY {
            return Err(ApiError::Invalid(format!(
                "{} sector numbers asked, at most {MAX_STORE_QUERY} per call",
                numbers.len()
            ))
            .into());
        }
        let db = self.db.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<Vec<SectorStore>, ApiError> {
            let mut out = Vec::new();
            for number in numbers {
                let Some((state, _)) = db.find(SectorID::new(miner, number))? else {
                    continue;
                };
                if let Some(store) = state.persisted {
                    out.push(SectorStore { number, store });
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("sector index lookup: {e}")))??;
        Ok(found)
    }
}

/// The RPC URL of `--proxy`: a full URL, or `host:port` of a manager's default path.
pub fn proxy_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}{}", crate::server::RPC_PATH)
    }
}

/// A client of the sealing manager at `url`, sending `token`.
pub fn client(url: &str, token: &str) -> Result<HttpClient> {
    let mut headers = HeaderMap::new();
    headers.insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .context("--proxy-token-file: the token is not a valid header value")?,
    );
    HttpClientBuilder::default()
        .set_headers(headers)
        .request_timeout(CALL_TIMEOUT)
        .max_response_size(256 << 20)
        .build(url)
        .with_context(|| format!("--proxy: RPC client for {url}"))
}

/// The chain of a sealing manager, read over its RPC.
pub struct RemoteChain {
    url: String,
    client: HttpClient,
    params: ProxyChainParams,
    heads: watch::Receiver<Head>,
    poll: tokio::task::JoinHandle<()>,
}

impl Drop for RemoteChain {
    fn drop(&mut self) {
        self.poll.abort();
    }
}

impl RemoteChain {
    /// Reads the chain's facts and head (a sealing manager that cannot be
    /// reached or refuses the token fails here, at start), then follows
    /// its head, polling a few times per block.
    pub async fn connect(url: &str, client: HttpClient) -> Result<RemoteChain> {
        let params = client
            .proxy_chain_params()
            .await
            .with_context(|| format!("--proxy {url}: the sealing manager's chain (Venus.ProxyChainParams; the token needs `read`)"))?;
        let head = client
            .proxy_head()
            .await
            .with_context(|| format!("--proxy {url}: the chain's head"))?;
        let (tx, heads) = watch::channel(head);
        let every = Duration::from_millis((params.block_time_ms / 4).clamp(100, 2_000));
        let (poller, at) = (client.clone(), url.to_string());
        let poll = tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                match poller.proxy_head().await {
                    Ok(h) => {
                        if failing {
                            info!(url = %at, epoch = h.epoch, "sealing manager reachable again");
                            failing = false;
                        }
                        if h.epoch > tx.borrow().epoch && tx.send(h).is_err() {
                            return;
                        }
                    }
                    Err(e) if !failing => {
                        warn!(url = %at, error = %e, "cannot read the chain's head from the sealing manager; retrying");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
        info!(url, network = %params.network, head = head.epoch, "proving for the sealing manager behind --proxy");
        Ok(RemoteChain {
            url: url.to_string(),
            client,
            params,
            heads,
            poll,
        })
    }

    fn err(&self, e: jsonrpsee::core::ClientError) -> ChainError {
        ChainError::Remote(format!("sealing manager {}: {e}", self.url))
    }
}

macro_rules! remote {
    ($self:ident, $call:expr) => {
        $call.await.map_err(|e| $self.err(e))
    };
}

#[async_trait]
impl Chain for RemoteChain {
    fn network(&self) -> String {
        format!("{} via {}", self.params.network, self.url)
    }

    fn block_time(&self) -> Duration {
        Duration::from_millis(self.params.block_time_ms)
    }

    fn seed_delay(&self) -> Epoch {
        self.params.seed_delay
    }

    fn ticket_lookback(&self) -> Epoch {
        self.params.ticket_lookback
    }

    async fn head(&self) -> damocles_chain::Result<Head> {
        remote!(self, self.client.proxy_head())
    }

    async fn miner_info(&self, miner: ActorID) -> damocles_chain::Result<MinerInfo> {
        remote!(self, self.client.proxy_miner_info(miner))
    }

    async fn randomness(
        &self,
        domain: Domain,
        epoch: Epoch,
        entropy: &[u8],
    ) -> damocles_chain::Result<[u8; 32]> {
        remote!(
            self,
            self.client
                .proxy_randomness(domain, epoch, entropy.to_vec())
        )
    }

    async fn push_message(&self, msg: Message) -> damocles_chain::Result<String> {
        remote!(self, self.client.proxy_push_message(msg))
    }

    async fn message_status(&self, id: &str) -> damocles_chain::Result<MessageStatus> {
        match self.client.proxy_message_status(id.to_string()).await {
            // The sealing manager's chain answered that it has no such
            // message: that is an answer (send again), not a failed call.
            Err(jsonrpsee::core::ClientError::Call(e))
                if e.message().ends_with("is not known to this chain") =>
            {
                Err(ChainError::UnknownMessage(id.to_string()))
            }
            other => other.map_err(|e| self.err(e)),
        }
    }

    async fn precommit(
        &self,
        miner: ActorID,
        number: SectorNumber,
    ) -> damocles_chain::Result<Option<PreCommitOnChain>> {
        remote!(self, self.client.proxy_precommit(miner, number))
    }

    async fn sector(
        &self,
        miner: ActorID,
        number: SectorNumber,
    ) -> damocles_chain::Result<Option<SectorOnChain>> {
        remote!(self, self.client.proxy_sector(miner, number))
    }

    async fn deadline_info(
        &self,
        miner: ActorID,
        epoch: Epoch,
    ) -> damocles_chain::Result<DeadlineInfo> {
        remote!(self, self.client.proxy_deadline_info(miner, epoch))
    }

    async fn deadlines(&self, miner: ActorID) -> damocles_chain::Result<Vec<DeadlineState>> {
        remote!(self, self.client.proxy_deadlines(miner))
    }

    async fn partitions(
        &self,
        miner: ActorID,
        deadline: u64,
    ) -> damocles_chain::Result<Vec<PartitionState>> {
        remote!(self, self.client.proxy_partitions(miner, deadline))
    }

    async fn sectors(
        &self,
        miner: ActorID,
        numbers: &BTreeSet<SectorNumber>,
    ) -> damocles_chain::Result<Vec<SectorOnChain>> {
        remote!(self, self.client.proxy_sectors(miner, numbers.clone()))
    }

    fn head_changes(&self) -> watch::Receiver<Head> {
        self.heads.clone()
    }

    async fn open_winning_challenges(
        &self,
        miner: ActorID,
    ) -> damocles_chain::Result<Vec<WinningChallenge>> {
        remote!(self, self.client.proxy_open_winning_challenges(miner))
    }

    async fn submit_winning_post(
        &self,
        miner: ActorID,
        epoch: Epoch,
        proof: Vec<u8>,
    ) -> damocles_chain::Result<BlockRecord> {
        remote!(
            self,
            self.client.proxy_submit_winning_post(miner, epoch, proof)
        )
    }

    async fn blocks(
        &self,
        miner: ActorID,
        limit: usize,
    ) -> damocles_chain::Result<Vec<BlockRecord>> {
        remote!(self, self.client.proxy_blocks(miner, limit as u64))
    }
}

/// The sealing manager's sector index as a poster node sees it: the store
/// of each sector asked about, kept from the last answer so that the
/// blocking checks can look it up.
pub struct ProxyIndex {
    url: String,
    client: HttpClient,
    known: Mutex<HashMap<SectorID, String>>,
}

impl ProxyIndex {
    pub fn new(url: &str, client: HttpClient) -> ProxyIndex {
        ProxyIndex {
            url: url.to_string(),
            client,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Asks the sealing manager where `numbers` are. A failed call keeps
    /// what earlier calls said (a sector's store rarely changes).
    pub async fn resolve(&self, miner: ActorID, numbers: Vec<SectorNumber>) {
        for chunk in numbers.chunks(MAX_STORE_QUERY) {
            match self.client.proxy_sector_stores(miner, chunk.to_vec()).await {
                Ok(found) => {
                    let mut known = self.known.lock().expect("index lock");
                    for n in chunk {
                        known.remove(&SectorID::new(miner, *n));
                    }
                    for s in found {
                        known.insert(SectorID::new(miner, s.number), s.store);
                    }
                }
                Err(e) => {
                    warn!(url = %self.url, miner, error = %e, "cannot read the sector index of the sealing manager; using what it said before")
                }
            }
        }
    }

    /// The store of `id`, as the sealing manager last said.
    pub fn store(&self, id: SectorID) -> Result<String, String> {
        self.known
            .lock()
            .expect("index lock")
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "sector {id} has no persist store on record at the sealing manager {}",
                    self.url
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poster_node_sends_only_post_messages_of_this_manager_s_miners() {
        let miners = BTreeSet::from([1000]);
        let recover = |miner| Message::DeclareFaultsRecovered {
            miner,
            recoveries: vec![],
        };
        assert!(poster_message(&recover(1000), &miners).is_ok());
        let e = poster_message(&recover(1001), &miners).unwrap_err();
        assert!(e.to_string().contains("miner 1001"), "{e}");
        let seal = Message::ProveCommitSector {
            miner: 1000,
            sector_number: 1,
            proof: vec![],
        };
        let e = poster_message(&seal, &miners).unwrap_err();
        assert!(e.to_string().contains("only SubmitWindowedPoSt"), "{e}");
    }

    #[test]
    fn epochs_out_of_range_are_refused() {
        assert!(valid_epoch(0).is_ok() && valid_epoch(MAX_EPOCH).is_ok());
        assert!(valid_epoch(-40).is_ok(), "a lookback before genesis");
        assert!(valid_epoch(Epoch::MIN).is_err() && valid_epoch(MAX_EPOCH + 1).is_err());
    }
}
