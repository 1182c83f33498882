//! The generated server answers damocles' method names with positional params,
//! both worker generations, and its client speaks the same.

use std::io::{Read, Write};
use std::net::TcpStream;

use damocles_api::rpc::{SealerApiClient, SealerApiServer};
use damocles_api::*;
use filecoin_proofs_api::RegisteredSealProof;
use jsonrpsee::core::{async_trait, RpcResult};
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::server::Server;
use serde_json::{json, Value};

/// TEST DOUBLE: answers every method with a fixed value; it only shows the wire.
struct FixedAnswers;

const SID: SectorID = SectorID {
    miner: 1000,
    number: 42,
};

fn unused<T>() -> RpcResult<T> {
    Err(jsonrpsee::types::ErrorObject::owned(
        ERR_SECTOR_STATE_NOT_FOUND,
        "sector state not found",
        None::<()>,
    ))
}

#[async_trait]
impl SealerApiServer for FixedAnswers {
    async fn allocate_sector(
        &self,
        spec: AllocateSectorSpec,
        niporep: Option<bool>,
    ) -> RpcResult<Option<AllocatedSector>> {
        let proof = if niporep == Some(true) {
            RegisteredSealProof::StackedDrg2KiBV1_2_Feat_NonInteractivePoRep
        } else {
            RegisteredSealProof::StackedDrg2KiBV1_1
        };
        let miner = spec
            .allowed_miners
            .and_then(|m| m.first().copied())
            .unwrap_or(SID.miner);
        Ok(Some(AllocatedSector {
            id: SectorID { miner, number: 42 },
            proof_type: SealProof(proof),
        }))
    }
    async fn acquire_deals(
        &self,
        _: SectorID,
        _: AcquireDealsSpec,
    ) -> RpcResult<Option<Vec<SectorPiece>>> {
        Ok(None)
    }
    async fn assign_ticket(&self, _: SectorID) -> RpcResult<Ticket> {
        Ok(Ticket {
            ticket: encoding::Bytes32([1; 32]),
            epoch: 10,
        })
    }
    async fn submit_pre_commit(
        &self,
        _: AllocatedSector,
        _: PreCommitOnChainInfo,
        _: bool,
    ) -> RpcResult<SubmitResp> {
        Ok(SubmitResp {
            res: SubmitResult::Accepted,
            desc: None,
        })
    }
    async fn poll_pre_commit_state(&self, _: SectorID) -> RpcResult<PollStateResp> {
        Ok(PollStateResp {
            state: OnChainState::Landed,
            desc: None,
        })
    }
    async fn submit_persisted(&self, _: SectorID, _: String) -> RpcResult<bool> {
        Ok(true)
    }
    async fn submit_persisted_ex(&self, _: SectorID, _: String, _: bool) -> RpcResult<bool> {
        Ok(true)
    }
    async fn wait_seed(&self, _: SectorID, _: Option<SealProof>) -> RpcResult<WaitSeedResp> {
        Ok(WaitSeedResp {
            should_wait: true,
            delay: 30,
            seed: None,
        })
    }
    async fn submit_proof(
        &self,
        _: SectorID,
        _: ProofOnChainInfo,
        _: bool,
    ) -> RpcResult<SubmitResp> {
        unused()
    }
    async fn poll_proof_state(&self, _: SectorID) -> RpcResult<PollStateResp> {
        unused()
    }
    async fn report_state(&self, id: SectorID, _: ReportStateReq) -> RpcResult<SectorStateResp> {
        Ok(SectorStateResp {
            id,
            finalized: false,
            abort_reason: Some(String::new()),
        })
    }
    async fn report_finalized(&self, _: SectorID) -> RpcResult<()> {
        Ok(())
    }
    async fn report_aborted(&self, _: SectorID, _: String) -> RpcResult<()> {
        Ok(())
    }
    async fn worker_ping(&self, _: WorkerInfo) -> RpcResult<()> {
        Ok(())
    }
    async fn store_reserve_space(
        &self,
        _: SectorID,
        _: u64,
        _: Vec<String>,
    ) -> RpcResult<Option<StoreBasicInfo>> {
        Ok(None)
    }
    async fn store_basic_info(&self, _: String) -> RpcResult<Option<StoreBasicInfo>> {
        Ok(None)
    }
}

/// A raw HTTP POST, as a damocles worker sends it; returns the JSON body.
fn post(addr: std::net::SocketAddr, body: &str) -> Value {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /rpc/v0 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let body = resp.split("\r\n\r\n").nth(1).expect("http body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn venus_methods_with_positional_params_of_both_worker_generations() {
    let server = Server::builder().build("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start(FixedAnswers.into_rpc());

    let addr2 = addr;
    let (new, old, nothing, err) = tokio::task::spawn_blocking(move || {
        (
            post(addr2, r#"{"jsonrpc":"2.0","method":"Venus.AllocateSector","params":[{"AllowedMiners":[1001],"AllowedProofTypes":[5,10,15]},true],"id":0}"#),
            post(addr2, r#"{"jsonrpc":"2.0","method":"Venus.AllocateSector","params":[{"AllowedMiners":null,"AllowedProofTypes":null}],"id":1}"#),
            post(addr2, r#"{"jsonrpc":"2.0","method":"Venus.ReportFinalized","params":[{"Miner":1000,"Number":42}],"id":2}"#),
            post(addr2, r#"{"jsonrpc":"2.0","method":"Venus.PollProofState","params":[{"Miner":1000,"Number":42}],"id":3}"#),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        new["result"],
        json!({"ID": {"Miner": 1001, "Number": 42}, "ProofType": 15})
    );
    assert_eq!(
        old["result"],
        json!({"ID": {"Miner": 1000, "Number": 42}, "ProofType": 5})
    );
    // A method that returns nothing still carries `"result": null`.
    assert!(
        nothing.as_object().unwrap().contains_key("result"),
        "{nothing}"
    );
    assert_eq!(nothing["result"], Value::Null);
    assert_eq!(err["error"]["code"], json!(ERR_SECTOR_STATE_NOT_FOUND));

    // The generated client speaks the same wire.
    let client = HttpClientBuilder::default()
        .build(format!("http://{addr}/rpc/v0"))
        .unwrap();
    let t = client.assign_ticket(SID).await.unwrap();
    assert_eq!(t.epoch, 10);
    let w = client.wait_seed(SID, None).await.unwrap();
    assert_eq!(w.delay, 30);
    handle.stop().unwrap();
}
