//! The HTTP side: `/rpc/v0` (JSON-RPC over HTTP and WebSocket), `/metrics`,
//! `/healthcheck`, and `GET /piecestore/<cid>` (pieces read from the
//! `[[Common.PieceStores]]`, streamed; a token with `read` needed, as for the
//! RPC).
//!
//! Two layers guard the RPC:
//! - [`GateLayer`] (HTTP) routes by path and turns the `Authorization: Bearer`
//!   header into the permissions it grants; a token that does not verify is
//!   answered with HTTP 401 at once.
//! - [`Guard`] (per JSON-RPC call) refuses a method the caller's permissions do
//!   not cover (see `damocles_api::perm`), and counts and times every call.

use std::collections::HashSet;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use damocles_api::perm::{self, Permission};
use jsonrpsee::server::middleware::rpc::{Batch, Notification, RpcServiceBuilder, RpcServiceT};
use jsonrpsee::server::{
    HttpBody, HttpRequest, HttpResponse, MethodResponse, Methods, Server, ServerHandle,
};
use jsonrpsee::types::{ErrorObjectOwned, Request};
use tower::{BoxError, Layer, Service};

use crate::auth::Auth;
use crate::metrics::{CallLabels, MethodLabels, Metrics};
use crate::stores::{PieceLookup, PieceStores};

use damocles_api::codes::ERR_PERMISSION_DENIED;
pub const RPC_PATH: &str = "/rpc/v0";

/// What the caller may do, attached to each request by the gate.
#[derive(Clone, Debug)]
pub enum Granted {
    /// No Authorization header: `Common.Auth.AnonymousPermission`.
    Anonymous(Vec<Permission>),
    Token(Vec<Permission>),
    /// Loopback without a token, with `AllowUnauthenticatedLoopback`.
    Everything,
}

impl Granted {
    fn allows(&self, p: Permission) -> bool {
        match self {
            Granted::Anonymous(perms) => perms.contains(&p),
            Granted::Token(perms) => perms.contains(&p),
            Granted::Everything => true,
        }
    }
}

#[derive(Clone)]
pub struct GateLayer {
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    /// Requests without a token get every permission (loopback-only servers).
    pub open_without_token: bool,
    /// What requests without a token get otherwise.
    pub anonymous: Vec<Permission>,
    pub pieces: PieceStores,
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;
    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            shared: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    shared: GateLayer,
}

fn plain(status: u16, content_type: &'static str, body: String) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(HttpBody::from(body))
        .expect("a valid response")
}

fn rpc_error_response(status: u16, code: i32, message: String) -> HttpResponse {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    plain(status, "application/json", body.to_string())
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<HttpRequest<B>> for Gate<S>
where
    S: Service<HttpRequest<B>, Response = HttpResponse> + Send + 'static,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture<Result<HttpResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: HttpRequest<B>) -> Self::Future {
        let path = req.uri().path().trim_end_matches('/').to_string();
        match path.as_str() {
            "/healthcheck" => Box::pin(async { Ok(plain(200, "text/plain", "ok\n".into())) }),
            "/metrics" => {
                let text = self.shared.metrics.render();
                Box::pin(async move { Ok(plain(200, "text/plain; version=0.0.4", text)) })
            }
            RPC_PATH => {
                let granted = match self.shared.granted(&req) {
                    Ok(g) => g,
                    Err(denied) => return Box::pin(async move { Ok(denied) }),
                };
                req.extensions_mut().insert(granted);
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            p if p.starts_with(PIECE_PATH) => {
                let cid = p[PIECE_PATH.len()..].to_string();
                match self.shared.granted(&req) {
                    Err(denied) => Box::pin(async move { Ok(denied) }),
                    Ok(g) if !g.allows(Permission::Read) => Box::pin(async move {
                        Ok(plain(
                            403,
                            "text/plain",
                            "reading pieces needs a token with the read permission\n".into(),
                        ))
                    }),
                    Ok(_) if req.method() != http::Method::GET => Box::pin(async move {
                        Ok(plain(
                            405,
                            "text/plain",
                            "pieces are read with GET\n".into(),
                        ))
                    }),
                    Ok(_) => {
                        let pieces = self.shared.pieces.clone();
                        Box::pin(async move { Ok(serve_piece(pieces, cid).await) })
                    }
                }
            }
            other => {
                let msg = format!("no such path {other:?}: the JSON-RPC endpoint is {RPC_PATH}; also /metrics, /healthcheck and {PIECE_PATH}<cid>\n");
                Box::pin(async move { Ok(plain(404, "text/plain", msg)) })
            }
        }
    }
}

impl GateLayer {
    /// What the request may do, from its `Authorization: Bearer` header;
    /// `Err` is the 401 answer for a token that does not verify.
    // The `Err` is the response itself, built once and sent as is: boxing it
    // would only add an allocation.
    #[allow(clippy::result_large_err)]
    fn granted<B>(&self, req: &HttpRequest<B>) -> Result<Granted, HttpResponse> {
        let header = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("").to_string());
        // A browser page can reach a local server too (WebSocket has no
        // CORS; DNS rebinding): token-less rights only for requests that
        // carry no Origin and name this machine by address.
        let from_browser = req.headers().contains_key(http::header::ORIGIN);
        let host_is_loopback = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(is_loopback_host);
        Ok(match header {
            None if from_browser => Granted::Anonymous(vec![]),
            None if self.open_without_token && host_is_loopback => Granted::Everything,
            None if self.open_without_token => Granted::Anonymous(vec![]),
            None => Granted::Anonymous(self.anonymous.clone()),
            Some(h) => {
                let token = h.strip_prefix("Bearer ").unwrap_or("").trim();
                match self.auth.verify(token) {
                    Ok(perms) => Granted::Token(perms),
                    Err(e) => {
                        let msg = format!("unauthorized: {e} (send `Authorization: Bearer <token>` with a token from this manager)");
                        return Err(rpc_error_response(401, ERR_PERMISSION_DENIED, msg));
                    }
                }
            }
        })
    }
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

/// `127.0.0.1:1789`, `[::1]:1789`, `localhost:1789`.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Per-call permission check, metrics and tracing.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    metrics: Arc<Metrics>,
    /// Methods this server has: anything else goes straight to jsonrpsee,
    /// which answers -32601 (damocles workers read that as "not supported").
    known: Arc<HashSet<String>>,
}

fn denial(method: &str, need: Permission, granted: Option<&Granted>) -> ErrorObjectOwned {
    let msg = match granted {
        Some(Granted::Token(perms)) => format!(
            "permission denied: {method} needs the {need} permission; this token allows {}",
            perms.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
        ),
        _ => format!(
            "permission denied: {method} needs the {need} permission and the request carries no token; \
             send `Authorization: Bearer <token>` (damocles-manager util auth create-token --perm {need})"
        ),
    };
    ErrorObjectOwned::owned(ERR_PERMISSION_DENIED, msg, None::<()>)
}

impl<S> RpcServiceT for Guard<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type BatchResponse = MethodResponse;
    type NotificationResponse = MethodResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let method = req.method_name().to_string();
        let need = perm::required(&method);
        let granted = req.extensions().get::<Granted>().cloned();
        let inner = self.inner.clone();
        let metrics = Arc::clone(&self.metrics);
        let known = self.known.contains(&method);
        async move {
            if !known {
                // Counted under one label: callers cannot grow /metrics at will.
                metrics
                    .rpc_calls
                    .get_or_create(&CallLabels {
                        method: "unknown".into(),
                        outcome: "error".into(),
                    })
                    .inc();
                return inner.call(req).await;
            }
            let labels = |outcome: &str| CallLabels {
                method: method.clone(),
                outcome: outcome.into(),
            };
            if !granted.as_ref().is_some_and(|g| g.allows(need)) {
                metrics.rpc_calls.get_or_create(&labels("denied")).inc();
                tracing::debug!(%method, %need, "call refused");
                return MethodResponse::error(
                    req.id().into_owned(),
                    denial(&method, need, granted.as_ref()),
                );
            }
            let start = Instant::now();
            let resp = inner.call(req).await;
            let outcome = if resp.is_error() { "error" } else { "ok" };
            metrics.rpc_calls.get_or_create(&labels(outcome)).inc();
            metrics
                .rpc_seconds
                .get_or_create(&MethodLabels {
                    method: method.clone(),
                })
                .observe(start.elapsed().as_secs_f64());
            if resp.is_error() {
                tracing::debug!(%method, response = %resp.as_json().get(), "call failed");
            }
            resp
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        // A batch runs only if every call in it is permitted.
        let mut refusal = None;
        for entry in batch.iter().flatten() {
            let method = entry.method_name().to_string();
            if !self.known.contains(&method) {
                continue;
            }
            let need = perm::required(&method);
            let granted = entry.extensions().get::<Granted>();
            if !granted.is_some_and(|g| g.allows(need)) {
                refusal = Some(denial(&method, need, granted));
                break;
            }
        }
        let inner = self.inner.clone();
        async move {
            match refusal {
                Some(err) => MethodResponse::error(jsonrpsee::types::Id::Null, err),
                None => inner.batch(batch).await,
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        let allowed = n
            .extensions()
            .get::<Granted>()
            .is_some_and(|g| g.allows(perm::required(n.method_name())));
        let inner = self.inner.clone();
        async move {
            if allowed {
                inner.notification(n).await
            } else {
                MethodResponse::notification()
            }
        }
    }
}

/// Starts the server on `listen`; returns the bound address and a handle that
/// stops it.
pub async fn serve(
    listen: SocketAddr,
    methods: impl Into<Methods>,
    gate: GateLayer,
) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    let methods: Methods = methods.into();
    let known: Arc<HashSet<String>> = Arc::new(methods.method_names().map(String::from).collect());
    let metrics = Arc::clone(&gate.metrics);
    let rpc = RpcServiceBuilder::new().layer_fn(move |inner| Guard {
        inner,
        metrics: Arc::clone(&metrics),
        known: Arc::clone(&known),
    });
    let config = jsonrpsee::server::ServerConfig::builder()
        .max_connections(4096)
        .build();
    let server = Server::builder()
        .set_config(config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(gate))
        .set_rpc_middleware(rpc)
        .build(listen)
        .await
        .map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?;
    let addr = server.local_addr()?;
    Ok((addr, server.start(methods)))
}
