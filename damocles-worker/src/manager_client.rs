//! The worker's line to the manager: the `damocles-api` client (the same
//! definitions the manager serves) with the configured headers and token, and
//! retries with exponential backoff when the manager cannot be reached.
//!
//! Only transport failures are retried (connection refused, reset, timeout):
//! the manager restarting must not cost a sector. A JSON-RPC error is an
//! answer, and goes back to the caller as is (11001 means abort the sector).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use backon::{ExponentialBuilder, Retryable};
use http::HeaderName;
use jsonrpsee::core::ClientError;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use tracing::warn;

use crate::config::SectorManagerSection;

/// How long to keep trying an unreachable manager.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: usize,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About five minutes in all: 1 s, 2 s, 4 s, ... capped at 30 s, 14 tries.
    fn default() -> Self {
        RetryPolicy {
            attempts: 14,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Told of each failed try before the next: `(call, error)`.
pub type RetryObserver = Arc<dyn Fn(&str, &ClientError) + Send + Sync>;

#[derive(Clone)]
pub struct ManagerClient {
    client: HttpClient,
    url: String,
    retry: RetryPolicy,
    observer: Option<RetryObserver>,
}

/// Errors worth another try: the manager was not reached or did not answer.
pub fn is_transient(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Transport(_) | ClientError::RequestTimeout | ClientError::RestartNeeded(_)
    )
}

impl ManagerClient {
    pub fn new(cfg: &SectorManagerSection, retry: RetryPolicy) -> Result<ManagerClient> {
        let url = cfg.url()?;
        let mut headers = HeaderMap::new();
        for (k, v) in cfg.headers() {
            let name = HeaderName::from_bytes(k.as_bytes()).with_context(|| {
                format!("key sector_manager.rpc_client.headers: {k:?} is not a header name")
            })?;
            let value = HeaderValue::from_str(&v).with_context(|| {
                format!("key sector_manager.rpc_client.headers.{k}: not a valid header value")
            })?;
            headers.insert(name, value);
        }
        let client = HttpClientBuilder::default()
            .set_headers(headers)
            .request_timeout(Duration::from_secs(60))
            .build(&url)
            .with_context(|| format!("RPC client for {url}"))?;
        Ok(ManagerClient {
            client,
            url,
            retry,
            observer: None,
        })
    }

    /// A clone that also tells `observer` of each retry (a sealing thread
    /// shows it as its last error while it waits for the manager).
    pub fn observed(&self, observer: RetryObserver) -> ManagerClient {
        ManagerClient {
            observer: Some(observer),
            ..self.clone()
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client for one-off calls without retries.
    pub fn raw(&self) -> &HttpClient {
        &self.client
    }

    /// Runs `call` (e.g. `|c| c.report_state(id, req.clone())`), retrying while
    /// the manager is unreachable. `what` names the call in the log.
    pub async fn call<T, F, Fut>(&self, what: &str, call: F) -> std::result::Result<T, ClientError>
    where
        F: Fn(HttpClient) -> Fut,
        Fut: Future<Output = std::result::Result<T, ClientError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.first_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.attempts);
        (|| call(self.client.clone()))
            .retry(backoff)
            .when(is_transient)
            .notify(|e, wait| {
                warn!(call = what, manager = %self.url, error = %e, retry_in = ?wait, "manager unreachable, retrying");
                if let Some(observe) = &self.observer {
                    observe(what, e);
                }
            })
            .await
    }
}
