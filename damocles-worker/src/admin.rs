//! The worker's admin JSON-RPC (`VenusWorker.*`, damocles' names and shapes)
//! and the `damocles-worker worker list|pause|resume` client side.
//!
//! The admin RPC changes what the worker runs (`WorkerSetEnv` reaches every
//! ext-processor), so it takes the manager's token scheme: a secret beside
//! the config file (`keystore/admin-secret`, made at the first start), an
//! admin token the daemon writes next to it (`admin-token`, 0600) for the
//! CLI, and no rights without a token. It serves through the same gate as
//! the manager (limits, Origin and Host checks).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use damocles_api::Permission;
use damocles_gate::{Access, Endpoint, Limits, Rpc, RpcPolicy, Tokens};
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::server::ServerHandle;
use jsonrpsee::types::ErrorObjectOwned;

use vc_processors::producer::EnvOverrides;

use crate::sealing::ctrl::{Ctrl, ThreadInfo};
use crate::sealing::state::State;

#[rpc(server, client, namespace = "VenusWorker", namespace_separator = ".")]
pub trait WorkerAdminApi {
    #[method(name = "WorkerList")]
    async fn worker_list(&self) -> RpcResult<Vec<ThreadInfo>>;

    /// Pauses thread `index` before its next step.
    #[method(name = "WorkerPause")]
    async fn worker_pause(&self, index: usize) -> RpcResult<bool>;

    /// Resumes thread `index`, optionally forcing its sector's state by name.
    #[method(name = "WorkerResume")]
    async fn worker_resume(&self, index: usize, set_to: Option<String>) -> RpcResult<bool>;

    /// Sets a variable in the environment ext-processors inherit from the
    /// next time they start (restarts included). The worker's own
    /// environment is left alone.
    #[method(name = "WorkerSetEnv")]
    async fn worker_set_env(&self, name: String, value: String) -> RpcResult<()>;

    /// Removes a variable from what ext-processors inherit from their next start.
    #[method(name = "WorkerRemoveEnv")]
    async fn worker_remove_env(&self, name: String) -> RpcResult<()>;

    #[method(name = "WorkerVersion")]
    async fn worker_version(&self) -> RpcResult<String>;
}

pub struct Admin {
    pub threads: Vec<Arc<Ctrl>>,
    pub env: EnvOverrides,
}

fn invalid(msg: String) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        jsonrpsee::types::error::INVALID_PARAMS_CODE,
        msg,
        None::<()>,
    )
}

impl Admin {
    fn thread(&self, index: usize) -> RpcResult<&Arc<Ctrl>> {
        self.threads.get(index).ok_or_else(|| {
            invalid(format!(
                "no sealing thread {index} (this worker has {})",
                self.threads.len()
            ))
        })
    }
}

#[async_trait]
impl WorkerAdminApiServer for Admin {
    async fn worker_list(&self) -> RpcResult<Vec<ThreadInfo>> {
        Ok(self.threads.iter().map(|t| t.info()).collect())
    }

    async fn worker_pause(&self, index: usize) -> RpcResult<bool> {
        self.thread(index)?.request_pause();
        Ok(true)
    }

    async fn worker_resume(&self, index: usize, set_to: Option<String>) -> RpcResult<bool> {
        let state = match set_to {
            None => None,
            Some(name) => Some(State::from_name(&name).ok_or_else(|| {
                invalid(format!(
                    "{name:?} is not a state ({})",
                    State::ALL.map(|s| s.name()).join(", ")
                ))
            })?),
        };
        Ok(self.thread(index)?.resume(state))
    }

    async fn worker_set_env(&self, name: String, value: String) -> RpcResult<()> {
        self.env.set(&name, &value).map_err(invalid)?;
        tracing::info!(%name, "environment of ext-processors changed: set");
        Ok(())
    }

    async fn worker_remove_env(&self, name: String) -> RpcResult<()> {
        self.env.remove(&name).map_err(invalid)?;
        tracing::info!(%name, "environment of ext-processors changed: removed");
        Ok(())
    }

    async fn worker_version(&self) -> RpcResult<String> {
        Ok(env!("CARGO_PKG_VERSION").to_string())
    }
}

/// Where a worker's admin credentials live: beside its config file.
pub struct AdminFiles {
    dir: PathBuf,
}

impl AdminFiles {
    /// The files of the worker whose config is `config`.
    pub fn of(config: &Path) -> AdminFiles {
        let dir = match config.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        AdminFiles { dir }
    }

    /// The HMAC secret tokens are signed with (0600).
    pub fn secret(&self) -> PathBuf {
        self.dir.join("keystore").join("admin-secret")
    }

    /// The admin token the CLI sends (0600).
    pub fn token(&self) -> PathBuf {
        self.dir.join("admin-token")
    }

    /// At daemon start: makes the secret if there is none (a short one is
    /// refused, naming the file) and writes the admin token.
    pub fn prepare(&self) -> anyhow::Result<Arc<Tokens>> {
        if Tokens::create_secret_file(&self.secret())? {
            tracing::info!(path = %self.secret().display(), "admin token secret created");
        }
        let tokens = Tokens::load(&self.secret())?;
        damocles_gate::token::write_private(
            &self.token(),
            tokens.create(Permission::Admin).as_bytes(),
        )?;
        Ok(Arc::new(tokens))
    }

    /// The token the CLI sends.
    pub fn read_token(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        let p = self.token();
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "read the worker's admin token {} (the daemon writes it at start; or pass --token)",
                p.display()
            )
        })?;
        Ok(text.trim().to_string())
    }
}

/// The permission each admin method needs: reading the threads takes
/// `read`, changing anything `admin`.
pub fn required(method: &str) -> Permission {
    match method {
        "VenusWorker.WorkerList" | "VenusWorker.WorkerVersion" => Permission::Read,
        _ => Permission::Admin,
    }
}

/// Calls are not counted per method on the worker: its metrics are about
/// sealing.
struct Uncounted;

impl damocles_gate::CallObserver for Uncounted {
    fn call_done(&self, _: &str, _: damocles_gate::Outcome, _: Option<std::time::Duration>) {}
}

/// No plain paths on the admin port.
struct NoRoutes;

impl damocles_gate::Routes for NoRoutes {
    fn route(
        &self,
        _: &http::request::Parts,
        _: &damocles_gate::Granted,
    ) -> Option<damocles_gate::BoxFuture<jsonrpsee::server::HttpResponse>> {
        None
    }
}

/// Serves the admin API on `listener`: every call needs a token from `tokens`.
pub fn serve(
    listener: tokio::net::TcpListener,
    tokens: Arc<Tokens>,
    admin: Admin,
) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    let access = Access {
        tokens,
        anonymous: vec![],
        open_on_loopback: false,
    };
    let rpc = Rpc {
        path: "/",
        methods: admin.into_rpc().into(),
        policy: RpcPolicy {
            required,
            observer: Arc::new(Uncounted),
        },
    };
    damocles_gate::start(
        listener,
        Endpoint {
            name: "worker admin RPC",
            access,
            limits: Limits {
                // A handful of operators' CLIs, not a fleet.
                max_connections: 256,
                max_untrusted: 64,
                ..Limits::default()
            },
            routes: Arc::new(NoRoutes),
            rpc: Some(rpc),
        },
    )
}
