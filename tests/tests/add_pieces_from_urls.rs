//! add_pieces fetching pieces over HTTP, as a market serves them: a redirect to
//! the piece store, followed with the piece token, through the worker's
//! `processor add_pieces` child.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use damocles_e2e::{init_logs, workspace_bin};
use vc_processors::producer::{Producer, ProducerConfig};
use vc_processors::tasks::*;

/// A tiny HTTP server on loopback: `/piece` redirects to `/store/piece`, which
/// answers only with the right bearer token; anything else is a 404. Records the
/// request heads it saw.
fn serve(payload: Vec<u8>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, base2) = (seen.clone(), base.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            seen2.lock().unwrap().push(head.clone());
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let authorized = head.contains("Authorization: Bearer piece-token")
                && head
                    .to_ascii_lowercase()
                    .contains("x-venus-api-namespace: v1.imarket");
            let reply: Vec<u8> = match path.as_str() {
                "/piece" => format!("HTTP/1.1 302 Found\r\nLocation: {base2}/store/piece\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(),
                "/store/piece" if authorized => {
                    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", payload.len()).into_bytes();
                    r.extend_from_slice(&payload);
                    r
                }
                "/store/piece" => b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            };
            let _ = conn.write_all(&reply);
        }
    });
    (base, seen)
}

fn task(file: PieceFile, payload_len: u64, staged: std::path::PathBuf) -> AddPieces {
    AddPieces {
        seal_proof_type: RegisteredSealProof::StackedDrg2KiBV1_1,
        pieces: vec![Piece {
            piece_file: file,
            payload_size: payload_len,
            piece_size: UnpaddedBytesAmount(2032),
        }],
        staged_filepath: staged,
    }
}

#[tokio::test]
async fn pieces_come_from_urls_through_a_redirect_with_the_piece_token() {
    init_logs();
    let payload: Vec<u8> = (0..1500u32).map(|i| (i % 241) as u8).collect();
    let (base, seen) = serve(payload.clone());
    let dir = tempfile::tempdir().unwrap();
    let bin = workspace_bin("damocles-worker", "damocles-worker");
    let mut cfg = ProducerConfig::new(
        "add_pieces",
        bin,
        vec!["processor".into(), "add_pieces".into()],
    );
    cfg.envs
        .insert("PIECE_FETCHER_TOKEN".into(), "piece-token".into());
    let p = Producer::spawn(cfg).await.unwrap();

    let from_url = p
        .process(&task(
            PieceFile::Url(format!("{base}/piece")),
            payload.len() as u64,
            dir.path().join("a"),
        ))
        .await
        .unwrap();
    std::fs::write(dir.path().join("local"), &payload).unwrap();
    let from_file = p
        .process(&task(
            PieceFile::Local(dir.path().join("local")),
            payload.len() as u64,
            dir.path().join("b"),
        ))
        .await
        .unwrap();
    assert_eq!(from_url, from_file, "same bytes, same piece commitment");
    assert_eq!(
        std::fs::read(dir.path().join("a")).unwrap(),
        std::fs::read(dir.path().join("b")).unwrap()
    );
    let heads = seen.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("GET /store/piece") && h.contains("Bearer piece-token")),
        "{heads:?}"
    );

    let err = p
        .process(&task(
            PieceFile::Url(format!("{base}/missing")),
            10,
            dir.path().join("c"),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/missing") && err.contains("404"), "{err}");
}
