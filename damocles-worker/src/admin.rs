//! The worker's admin JSON-RPC (`VenusWorker.*`, damocles' names and shapes)
//! and the `damocles-worker worker list|pause|resume` client side.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::server::{Server, ServerHandle};
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

/// Serves the admin API on `addr`.
pub async fn serve(addr: SocketAddr, admin: Admin) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    let server = Server::builder()
        .build(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin RPC: listen on {addr}: {e}"))?;
    let bound = server.local_addr()?;
    Ok((bound, server.start(admin.into_rpc())))
}
