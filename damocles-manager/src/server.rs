//! The HTTP side: `/rpc/v0` (JSON-RPC over HTTP and WebSocket), `/metrics`,
//! `/healthcheck`, and `GET /piecestore/<cid>` (pieces read from the
//! `[[Common.PieceStores]]`, streamed; a token with `read` needed, as for the
//! RPC).
//!
//! The gate (`damocles-gate`) admits connections, reads headers and bodies
//! within limits, turns the `Authorization: Bearer` header into rights and
//! checks each call against `damocles_api::perm`; this module supplies the
//! plain paths and counts calls in the manager's metrics.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use damocles_api::perm::{self, Permission};
use damocles_gate::{
    Access, BoxFuture, CallObserver, Endpoint, Granted, Limits, Outcome, Routes, Rpc, RpcPolicy,
};
use jsonrpsee::server::{HttpBody, HttpResponse, Methods, ServerHandle};

use crate::metrics::{CallLabels, MethodLabels, Metrics};
use crate::stores::{PieceLookup, PieceStores};

pub const RPC_PATH: &str = "/rpc/v0";

fn plain(status: u16, content_type: &'static str, body: String) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(HttpBody::from(body))
        .expect("a valid response")
}

/// `/healthcheck`, `/metrics` and the piece store.
struct ManagerRoutes {
    metrics: Arc<Metrics>,
    pieces: PieceStores,
}

impl Routes for ManagerRoutes {
    fn route(
        &self,
        req: &http::request::Parts,
        granted: &Granted,
    ) -> Option<BoxFuture<HttpResponse>> {
        let path = req.uri.path().trim_end_matches('/');
        let answer = match path {
            "/healthcheck" => plain(200, "text/plain", "ok\n".into()),
            "/metrics" => plain(200, "text/plain; version=0.0.4", self.metrics.render()),
            p if p.starts_with(PIECE_PATH) => {
                if !granted.allows(Permission::Read) {
                    plain(403, "text/plain", "reading pieces needs a token with the read permission\n".into())
                } else if req.method != http::Method::GET {
                    plain(405, "text/plain", "pieces are read with GET\n".into())
                } else {
                    let cid = p[PIECE_PATH.len()..].to_string();
                    let pieces = self.pieces.clone();
                    return Some(Box::pin(serve_piece(pieces, cid)));
                }
            }
            other => plain(
                404,
                "text/plain",
                format!("no such path {other:?}: the JSON-RPC endpoint is {RPC_PATH}; also /metrics, /healthcheck and {PIECE_PATH}<cid>\n"),
            ),
        };
        Some(Box::pin(async move { answer }))
    }
}

impl CallObserver for Metrics {
    fn call_done(&self, method: &str, outcome: Outcome, took: Option<Duration>) {
        self.rpc_calls
            .get_or_create(&CallLabels {
                method: method.into(),
                outcome: outcome.as_str().into(),
            })
            .inc();
        if let Some(took) = took {
            self.rpc_seconds
                .get_or_create(&MethodLabels {
                    method: method.into(),
                })
                .observe(took.as_secs_f64());
        }
    }
}

/// Serves the manager's RPC and paths on `listener`.
pub fn serve(
    listener: tokio::net::TcpListener,
    methods: impl Into<Methods>,
    access: Access,
    limits: Limits,
    metrics: Arc<Metrics>,
    pieces: PieceStores,
) -> anyhow::Result<(std::net::SocketAddr, ServerHandle)> {
    let rpc = Rpc {
        path: RPC_PATH,
        methods: methods.into(),
        policy: RpcPolicy {
            required: perm::required,
            observer: Arc::clone(&metrics) as Arc<dyn CallObserver>,
        },
    };
    damocles_gate::start(
        listener,
        Endpoint {
            name: "manager RPC",
            access,
            limits,
            routes: Arc::new(ManagerRoutes { metrics, pieces }),
            rpc: Some(rpc),
        },
    )
}

pub const PIECE_PATH: &str = "/piecestore/";

/// Streams `<cid>` (or `<cid>.car`) from the first piece store holding it,
/// a MiB at a time. The object is opened before the answer is chosen, so a
/// 200 is only sent for a piece being read; 404 names the stores searched,
/// 503 the stores that did not answer.
async fn serve_piece(pieces: PieceStores, cid: String) -> HttpResponse {
    let turn = Arc::clone(&pieces.downloads)
        .acquire_owned()
        .await
        .expect("never closed");
    let lookup = {
        let (pieces, cid) = (pieces.clone(), cid.clone());
        tokio::task::spawn_blocking(move || pieces.find(&cid)).await
    };
    let (size, mut reader) = match lookup {
        Ok(PieceLookup::Found(size, reader)) => (size, reader),
        Ok(PieceLookup::Missing) => {
            let msg = format!(
                "piece {cid} is in no piece store (searched {:?})\n",
                pieces.names()
            );
            return plain(404, "text/plain", msg);
        }
        Ok(PieceLookup::BadName(why)) => return plain(400, "text/plain", format!("{why}\n")),
        Ok(PieceLookup::Unreachable(why)) => {
            return plain(503, "text/plain", format!("piece {cid}: {why}\n"))
        }
        Err(e) => return plain(500, "text/plain", format!("piece lookup: {e}\n")),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        loop {
            // Whole MiB chunks: a plugin may hand back a few KiB per read.
            let mut chunk = Vec::with_capacity(1 << 20);
            match (&mut reader).take(1 << 20).read_to_end(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {
                    if tx.blocking_send(Ok(chunk.into())).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    tracing::error!(piece = %cid, error = %e, "piece read failed");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (chunk.map(http_body::Frame::data), rx))
    });
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(http::header::CONTENT_LENGTH, size)
        .body(HttpBody::new(http_body_util::StreamBody::new(frames)))
        .expect("a valid response")
}
