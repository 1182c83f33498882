//! The worker's manager client against the real manager binary: the token
//! from the worker config is sent, and a manager that goes away and comes back
//! costs a retry, not an error.

use std::time::Duration;

use damocles_api::cli::ManagerCliApiClient;
use damocles_api::rpc::SealerApiClient;
use damocles_api::*;
use damocles_e2e::manager::{init_home, ManagerProcess};
use damocles_worker::config::SectorManagerSection;
use damocles_worker::manager_client::{ManagerClient, RetryPolicy};
use jsonrpsee::core::ClientError;

fn section(url: &str, token: Option<String>) -> SectorManagerSection {
    let mut s = SectorManagerSection::default();
    s.rpc_client.addr = url.trim_end_matches("/rpc/v0").to_string();
    s.token = token;
    s
}

fn spec() -> AllocateSectorSpec {
    AllocateSectorSpec {
        allowed_miners: Some(vec![1000]),
        allowed_proof_types: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_sent_and_a_restarting_manager_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("manager");
    init_home(&home, |c| c);
    let mut m = ManagerProcess::start(&home);
    let token = m.token("write");
    let fast = RetryPolicy {
        attempts: 40,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
    };

    // Without the token the manager refuses, and a refusal is not retried.
    let anonymous = ManagerClient::new(&section(&m.url, None), fast).unwrap();
    let e = anonymous
        .call("AllocateSector", |c| async move {
            c.allocate_sector(spec(), None).await
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Call(o) if o.code() == 11003),
        "{e:?}"
    );

    let client = ManagerClient::new(&section(&m.url, Some(token)), fast).unwrap();
    let s = client
        .call("AllocateSector", |c| async move {
            c.allocate_sector(spec(), None).await
        })
        .await
        .unwrap()
        .expect("a sector");

    // The manager goes away; the worker keeps asking until it is back. The
    // restarted manager listens on the port it had.
    m.pin_port();
    m.kill9();
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        ManagerProcess::start(&home)
    });
    let id = s.id;
    let head = client
        .call("FindSector", |c| async move { c.find_sector(id).await })
        .await
        .expect("answered once the manager is back");
    assert_eq!(
        head.unwrap().id,
        id,
        "the restarted manager still knows the sector"
    );
    let _m = restart.await.unwrap();

    // Nobody there at all: transport errors, retried, then given up.
    let nowhere = ManagerClient::new(
        &section("http://127.0.0.1:9", None),
        RetryPolicy {
            attempts: 2,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
    )
    .unwrap();
    let e = nowhere
        .call("ChainHead", |c| async move { c.chain_head().await })
        .await
        .unwrap_err();
    assert!(damocles_worker::manager_client::is_transient(&e), "{e:?}");
}
