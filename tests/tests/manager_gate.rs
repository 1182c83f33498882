//! The manager's front door against hostile and unlucky clients
//! (reliability findings H1, H2, L3, L4): connections held without a token
//! cannot lock out a client with one, a short token secret stops the daemon,
//! batches are bounded and answered as arrays, and every call in a batch is
//! counted. Everything runs on 127.0.0.1, bounded in count and time.

use std::time::{Duration, Instant};

use damocles_e2e::manager::{http, init_home, manager_bin, ManagerProcess};
use damocles_e2e::worker::sample;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens `n` connections that send headers without a token and one byte of
/// a 1000-byte body, then nothing: the slow-body attack of finding H1.
async fn hold_slow_bodies(authority: &str, n: usize) -> Vec<TcpStream> {
    let req = format!(
        "POST /rpc/v0 HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        // A refused or reset connection is what the server may do to an
        // attacker: count only those it let us hold.
        let Ok(mut s) = TcpStream::connect(authority).await else {
            continue;
        };
        if s.write_all(req.as_bytes()).await.is_ok() {
            held.push(s);
        }
    }
    held
}

/// How many of `held` the server has closed (read gives EOF or an error).
async fn closed_by_server(held: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for s in held.iter_mut() {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1, // EOF, an answer then EOF, or a reset
            Err(_) => {}                           // still open and silent
        }
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_without_a_token_cannot_lock_out_a_client_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init_home(&home, |c| c);
    let m = ManagerProcess::start(&home);
    let token = m.token("read");
    let authority = m.authority();

    // More than the old 4096-slot limit, all held at once.
    let mut held = hold_slow_bodies(&authority, 4200).await;
    assert!(held.len() > 500, "the attack could not even connect");

    // A client with a token is served at once, again and again, while the
    // attacker keeps opening connections.
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(12) {
        let more = hold_slow_bodies(&authority, 200).await;
        held.extend(more);
        let (status, body) = http(
            &authority,
            "POST",
            "/rpc/v0",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            r#"{"jsonrpc":"2.0","id":1,"method":"Venus.ChainHead","params":[]}"#,
        );
        assert_eq!(status, 200, "a client with a token was refused: {body}");
        assert!(body.contains("\"result\""), "{body}");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(answered >= 10, "{answered} answers in 12 s");

    // The server drops what it will not serve: evicted for newcomers, or
    // closed when no whole request came within the untrusted timeout (10 s).
    let closed = closed_by_server(&mut held).await;
    assert!(
        closed * 10 >= held.len() * 9,
        "only {closed} of {} slow connections were closed by the manager",
        held.len()
    );
    drop(held);
    let (status, _) = http(&authority, "GET", "/healthcheck", &[], "");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_token_secret_stops_the_daemon_and_the_token_cli() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init_home(&home, |c| c);
    let secret = home.join("keystore").join("jwt-secret");
    for short in ["", "00", &"ab".repeat(31)] {
        std::fs::write(&secret, short).unwrap();
        for args in [
            &["daemon", "run"][..],
            &["util", "auth", "create-token", "--perm", "admin"][..],
        ] {
            let out = std::process::Command::new(manager_bin())
                .arg("--home")
                .arg(&home)
                .args(args)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{args:?} accepted a {}-byte secret",
                short.len() / 2
            );
            assert!(
                err.contains(&secret.display().to_string()),
                "{args:?}: {err}"
            );
            assert!(err.contains("at least 32"), "{args:?}: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded_answered_as_arrays_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init_home(&home, |c| {
        c.replace(
            "[Common.Auth]",
            "[Common.API.Limits]\nMaxBatch = 5\n\n[Common.Auth]",
        )
    });
    let m = ManagerProcess::start(&home);
    let read = m.token("read");
    let auth = format!("Bearer {read}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let call = |id: u32, method: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":[]}}"#)
    };

    // A refused call refuses the whole batch, answered call by call.
    let batch = format!(
        "[{},{}]",
        call(1, "Venus.ChainHead"),
        call(2, "Venus.AbortSector")
    );
    let (status, body) = http(&m.authority(), "POST", "/rpc/v0", &headers, &batch);
    assert_eq!(status, 200, "{body}");
    let answers: serde_json::Value = serde_json::from_str(&body).unwrap();
    let answers = answers
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {body}"));
    assert_eq!(answers.len(), 2, "{body}");
    assert!(
        answers.iter().all(|a| a["error"]["code"] == 11003),
        "{body}"
    );

    // Over the limit: refused, nothing run.
    let big = (0..6)
        .map(|i| call(i, "Venus.ChainHead"))
        .collect::<Vec<_>>();
    let (_, body) = http(
        &m.authority(),
        "POST",
        "/rpc/v0",
        &headers,
        &format!("[{}]", big.join(",")),
    );
    assert!(
        body.contains("\"error\""),
        "a batch of 6 over a limit of 5 ran: {body}"
    );

    // Within it: each call runs and is counted.
    let ok = (0..4)
        .map(|i| call(i, "Venus.ChainHead"))
        .collect::<Vec<_>>();
    let (status, body) = http(
        &m.authority(),
        "POST",
        "/rpc/v0",
        &headers,
        &format!("[{}]", ok.join(",")),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.matches("\"result\"").count(), 4, "{body}");
    let (_, metrics) = http(&m.authority(), "GET", "/metrics", &[], "");
    let counted = sample(
        &metrics,
        "damocles_manager_rpc_calls_total",
        &["Venus.ChainHead", "outcome=\"ok\""],
    );
    assert_eq!(counted, Some(4.0), "batched calls not counted:\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rank_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init_home(&home, |c| c);
    let m = ManagerProcess::start(&home);
    let secret = std::fs::read_to_string(home.join("keystore").join("jwt-secret")).unwrap();
    let secret = hex::decode(secret.trim()).unwrap();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap()
    };
    let head = |token: &str| {
        let auth = format!("Bearer {token}");
        http(
            &m.authority(),
            "POST",
            "/rpc/v0",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            r#"{"jsonrpc":"2.0","id":1,"method":"Venus.ChainHead","params":[]}"#,
        )
    };
    // Admin alone ranks above read.
    let (status, body) = head(&sign(serde_json::json!({"Allow": ["admin"]})));
    assert!(
        status == 200 && body.contains("\"result\""),
        "{status} {body}"
    );
    // An expired token is refused, in words that say so.
    let (status, body) = head(&sign(serde_json::json!({"Allow": ["read"], "exp": 1})));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
    // No library internals in a refusal.
    let (status, body) = head("x");
    assert_eq!(status, 401);
    assert!(
        !body.contains("Base64") && body.contains("not a JWT"),
        "{body}"
    );
}

/// A request with rights on a plain path (a piece download) trusts its
/// connection: a download longer than the untrusted deadline is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_piece_download_with_a_token_outlives_the_untrusted_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pieces = dir.path().join("pieces");
    std::fs::create_dir_all(&pieces).unwrap();
    let size = 32usize << 20;
    std::fs::write(pieces.join("bafkslowpiece"), vec![7u8; size]).unwrap();
    init_home(&home, |c| {
        c.replace(
            "[Common.Auth]",
            &format!(
                "[Common.API.Limits]\nUntrustedTimeout = \"1s\"\n\n[[Common.PieceStores]]\nName = \"pieces\"\nPath = \"{}\"\n\n[Common.Auth]",
                pieces.display()
            ),
        )
    });
    let m = ManagerProcess::start(&home);
    let token = m.token("read");
    let mut s = TcpStream::connect(m.authority()).await.unwrap();
    let req = format!(
        "GET /piecestore/bafkslowpiece HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        m.authority()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = vec![0u8; 64 << 10];
    let first = s.read(&mut got).await.unwrap();
    assert!(first > 0);
    // Well past the 1 s deadline for untrusted connections.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    let total = first + rest.len();
    assert!(
        total > size,
        "the download was cut after {total} of {size} bytes"
    );
}
