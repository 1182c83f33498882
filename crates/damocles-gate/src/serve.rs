//! The accept loop and what happens to each request before a daemon's code
//! sees it: admission (see `conns`), headers read in time, rights decided
//! from the headers alone, a body read in time and bounded, WebSocket
//! upgrades only with rights.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::server::{
    stop_channel, BatchRequestConfig, HttpBody, HttpResponse, Methods, ServerConfig, ServerHandle,
    StopHandle,
};
use tower::layer::util::{Identity, Stack};
use tower::Service;

use crate::access::{Access, Granted, Refusal};
use crate::conns::{ConnTable, Slot};
use crate::guard::{Guard, RpcPolicy};
use crate::limits::Limits;

/// A boxed response future, for [`Routes`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A daemon's plain HTTP paths (everything but the RPC path).
pub trait Routes: Send + Sync + 'static {
    /// The answer for `req` (its body is not read), or `None` for 404.
    fn route(
        &self,
        req: &http::request::Parts,
        granted: &Granted,
    ) -> Option<BoxFuture<HttpResponse>>;
}

/// The JSON-RPC side of an endpoint.
pub struct Rpc {
    /// The path it is served on (e.g. `/rpc/v0`).
    pub path: &'static str,
    /// The methods.
    pub methods: Methods,
    /// Who may call what, and where calls are counted.
    pub policy: RpcPolicy,
}

/// One listening endpoint of a daemon.
pub struct Endpoint {
    /// For logs: "manager RPC", "worker admin RPC", "worker metrics".
    pub name: &'static str,
    /// Who is asking.
    pub access: Access,
    /// Bounds.
    pub limits: Limits,
    /// Plain paths.
    pub routes: Arc<dyn Routes>,
    /// The JSON-RPC, if this endpoint has one.
    pub rpc: Option<Rpc>,
}

/// Binds `addr` (first, so that a port in use is reported before a daemon
/// changes anything on disk).
pub async fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: listen on {addr}: {e}"))
}

/// Serves `endpoint` on `listener` until the returned handle is stopped.
pub fn start(
    listener: tokio::net::TcpListener,
    endpoint: Endpoint,
) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    endpoint
        .limits
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: limits: {e}", endpoint.name))?;
    let addr = listener.local_addr()?;
    let (stop, handle) = stop_channel();
    let shared = Arc::new(Shared::new(endpoint, stop.clone()));
    tokio::spawn(accept_loop(listener, shared, stop));
    Ok((addr, handle))
}

type RpcLayers = Stack<GuardLayer, Identity>;
/// The jsonrpsee service, built per connection.
type RpcTower = jsonrpsee::server::TowerService<RpcLayers, Identity>;

/// Wraps jsonrpsee's per-call service in [`Guard`].
#[derive(Clone)]
struct GuardLayer {
    policy: RpcPolicy,
    known: Arc<HashSet<String>>,
    max_response: usize,
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            policy: self.policy.clone(),
            known: Arc::clone(&self.known),
            max_response: self.max_response,
        }
    }
}

struct RpcSide {
    path: &'static str,
    methods: Methods,
    builder: jsonrpsee::server::TowerServiceBuilder<RpcLayers, Identity>,
}

struct Shared {
    name: &'static str,
    access: Access,
    limits: Limits,
    routes: Arc<dyn Routes>,
    rpc: Option<RpcSide>,
    conns: Arc<ConnTable>,
    stop: StopHandle,
}

impl Shared {
    fn new(endpoint: Endpoint, stop: StopHandle) -> Shared {
        let limits = endpoint.limits;
        let rpc = endpoint.rpc.map(|rpc| {
            let known = Arc::new(rpc.methods.method_names().map(String::from).collect());
            let guard = GuardLayer {
                policy: rpc.policy,
                known,
                max_response: limits.max_response as usize,
            };
            let config = ServerConfig::builder()
                .max_request_body_size(limits.max_body)
                .max_response_body_size(limits.max_response)
                .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch))
                // Connections are counted by the gate, per TCP connection.
                .max_connections(u32::MAX)
                .build();
            let builder = jsonrpsee::server::Server::builder()
                .set_config(config)
                .set_rpc_middleware(RpcServiceBuilder::new().layer(guard))
                .to_service_builder();
            RpcSide {
                path: rpc.path,
                methods: rpc.methods,
                builder,
            }
        });
        Shared {
            name: endpoint.name,
            access: endpoint.access,
            conns: ConnTable::new(limits.clone()),
            limits,
            routes: endpoint.routes,
            rpc,
            stop,
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: StopHandle) {
    let name = shared.name;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.clone().shutdown() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, mostly: wait rather than spin.
                    tracing::warn!(endpoint = name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        match shared.conns.admit(peer.ip()) {
            Ok((slot, eviction)) => {
                tokio::spawn(serve_connection(
                    stream,
                    slot,
                    eviction,
                    Arc::clone(&shared),
                ));
            }
            Err(full) => {
                // Dropping the stream closes it: cheaper than an answer, and
                // a client with rights never meets this while untrusted
                // connections can be evicted.
                tracing::debug!(endpoint = name, %peer, ?full, "connection refused: no free slot");
            }
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    slot: Slot,
    eviction: crate::conns::Eviction,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let slot = Arc::new(slot);
    let rpc = shared.rpc.as_ref().map(|r| {
        r.builder
            .clone()
            .build(r.methods.clone(), shared.stop.clone())
    });
    let service = {
        let (shared, slot) = (Arc::clone(&shared), Arc::clone(&slot));
        hyper::service::service_fn(move |req| {
            handle(req, Arc::clone(&shared), Arc::clone(&slot), rpc.clone())
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(64 << 10);
    let conn = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let untrusted_deadline = tokio::time::sleep(shared.limits.untrusted_timeout);
    tokio::pin!(conn, untrusted_deadline);
    let mut eviction = eviction;
    let mut watching = true;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            evicted = &mut eviction, if watching => {
                // The sender is dropped without a word when the connection
                // becomes trusted.
                if evicted.is_err() {
                    watching = false;
                    continue;
                }
                tracing::debug!(endpoint = shared.name, "untrusted connection dropped for a newcomer");
                return;
            }
            () = &mut untrusted_deadline, if watching => {
                if slot.is_trusted() {
                    watching = false;
                    continue;
                }
                tracing::debug!(endpoint = shared.name, "untrusted connection timed out");
                return;
            }
            _ = shared.stop.clone().shutdown() => return,
        }
    }
}

fn plain(status: StatusCode, body: String) -> HttpResponse {
    let mut resp = Response::new(HttpBody::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// An RPC-shaped error for refusals on the RPC path (clients parse JSON).
fn rpc_refusal(status: StatusCode, code: i32, message: String) -> HttpResponse {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message },
    });
    let mut resp = Response::new(HttpBody::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A refusal after which the connection is closed (its body was not read).
fn closing(mut resp: HttpResponse) -> HttpResponse {
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    rpc: Option<RpcTower>,
) -> Result<HttpResponse, Infallible> {
    let granted = match shared.access.grant(req.headers()) {
        Ok(g) => g,
        Err(refusal @ Refusal::TwoHosts) => {
            return Ok(closing(plain(
                StatusCode::BAD_REQUEST,
                format!("{refusal}\n"),
            )))
        }
        Err(refusal) => {
            return Ok(closing(rpc_refusal(
                StatusCode::UNAUTHORIZED,
                damocles_api::codes::ERR_PERMISSION_DENIED,
                refusal.to_string(),
            )))
        }
    };
    let path = req.uri().path().trim_end_matches('/');
    match (&shared.rpc, rpc) {
        (Some(side), Some(rpc)) if path == side.path.trim_end_matches('/') => {
            Ok(handle_rpc(req, granted, &shared, slot, rpc).await)
        }
        _ => {
            // Plain paths take no body: headers with rights are the whole
            // request. Without this a long download (a piece) would be cut
            // at the untrusted deadline.
            if !granted.is_nothing() {
                slot.trust();
            }
            let (parts, _body) = req.into_parts();
            Ok(match shared.routes.route(&parts, &granted) {
                Some(answer) => answer.await,
                None => plain(
                    StatusCode::NOT_FOUND,
                    format!("no such path {:?}\n", parts.uri.path()),
                ),
            })
        }
    }
}

async fn handle_rpc(
    req: Request<Incoming>,
    granted: Granted,
    shared: &Shared,
    slot: Arc<Slot>,
    mut rpc: RpcTower,
) -> HttpResponse {
    let (mut parts, body) = req.into_parts();
    let upgrade = parts
        .headers
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if upgrade {
        // A WebSocket without rights could only hold a slot: refuse it.
        if granted.is_nothing() {
            return closing(rpc_refusal(
                StatusCode::UNAUTHORIZED,
                damocles_api::codes::ERR_PERMISSION_DENIED,
                "a WebSocket needs a token (`Authorization: Bearer <token>`)".into(),
            ));
        }
        slot.trust();
        // The WebSocket task keeps the request's extensions (and so the
        // slot) for as long as it lives: it stays counted.
        parts.extensions.insert(granted);
        parts.extensions.insert(slot);
        return call(&mut rpc, Request::from_parts(parts, HttpBody::empty())).await;
    }
    let read = Limited::new(body, shared.limits.max_body as usize).collect();
    let bytes: Bytes = match tokio::time::timeout(shared.limits.body_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return closing(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body over the limit of {} bytes\n",
                    shared.limits.max_body
                ),
            ))
        }
        Ok(Err(e)) => {
            return closing(plain(
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}\n"),
            ))
        }
        Err(_) => {
            tracing::debug!(endpoint = shared.name, "request body not read in time");
            return closing(plain(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {:?}\n",
                    shared.limits.body_timeout
                ),
            ));
        }
    };
    if !granted.is_nothing() {
        slot.trust();
    }
    parts.extensions.insert(granted);
    let body = HttpBody::new(http_body_util::Full::new(bytes));
    call(&mut rpc, Request::from_parts(parts, body)).await
}

async fn call(rpc: &mut RpcTower, req: Request<HttpBody>) -> HttpResponse {
    match rpc.call(req).await {
        Ok(resp) => resp,
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}\n"),
        ),
    }
}
