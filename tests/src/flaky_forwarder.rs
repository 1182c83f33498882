//! A test double: an HTTP forwarder put between a poster node and its
//! sealing manager that answers `503` to the JSON-RPC calls of one method
//! while told to, so a test can take the poster's view of one call away (a
//! dropped link) and leave the rest of the chain readable.
//!
//! It forwards one request per upstream connection and understands only
//! `Content-Length` bodies, which is what jsonrpsee's HTTP client and server
//! send.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The forwarder; it stops with the test's runtime.
pub struct FlakyForwarder {
    /// Where the poster node connects (`--proxy`).
    pub addr: SocketAddr,
    failing: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
}

impl FlakyForwarder {
    /// Listens on a free local port and forwards to `target` (host:port);
    /// calls whose body names `method` fail while [`Self::fail`] is on.
    pub async fn start(target: String, method: &'static str) -> FlakyForwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let failing = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let (f, n) = (Arc::clone(&failing), Arc::clone(&failed));
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (target, f, n) = (target.clone(), Arc::clone(&f), Arc::clone(&n));
                tokio::spawn(async move {
                    // A closed or broken connection ends its task; the
                    // client sees it as a failed call, which is the point.
                    let _ = serve(conn, &target, method, &f, &n).await;
                });
            }
        });
        FlakyForwarder {
            addr,
            failing,
            failed,
        }
    }

    /// Turns the failures of the method on or off.
    pub fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// Calls failed so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut client: TcpStream,
    target: &str,
    method: &str,
    failing: &AtomicBool,
    failed: &AtomicUsize,
) -> Result<()> {
    loop {
        let Some(request) = read_message(&mut client).await? else {
            return Ok(());
        };
        let body = String::from_utf8_lossy(&request[header_end(&request)?..]);
        if failing.load(Ordering::SeqCst) && body.contains(method) {
            failed.fetch_add(1, Ordering::SeqCst);
            client
                .write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await?;
            return Ok(());
        }
        let mut upstream = TcpStream::connect(target).await.context("upstream")?;
        upstream.write_all(&request).await?;
        let response = read_message(&mut upstream)
            .await?
            .ok_or_else(|| anyhow!("upstream closed without a response"))?;
        client.write_all(&response).await?;
    }
}

/// One HTTP message (head and `Content-Length` body), or `None` at EOF
/// before any byte.
async fn read_message(conn: &mut TcpStream) -> Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Ok(end) = header_end(&buf) {
            let want = end + content_length(&buf[..end])?;
            while buf.len() < want {
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    bail!("closed mid-body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.truncate(want);
            return Ok(Some(buf));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(anyhow!("closed mid-head"))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header_end(buf: &[u8]) -> Result<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .ok_or_else(|| anyhow!("no end of head yet"))
}

fn content_length(head: &[u8]) -> Result<usize> {
    let head = String::from_utf8_lossy(head);
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                return Ok(value.trim().parse()?);
            }
        }
    }
    if head.contains("chunked") {
        bail!("chunked bodies are not forwarded");
    }
    Ok(0)
}
