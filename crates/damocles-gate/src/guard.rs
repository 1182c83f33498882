//! Per JSON-RPC call: refuse what the caller's rights do not cover, and
//! report every call (batched ones too) to the daemon's metrics.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use damocles_api::codes::ERR_PERMISSION_DENIED;
use damocles_api::Permission;
use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::server::{BatchResponseBuilder, MethodResponse};
use jsonrpsee::types::{ErrorObjectOwned, Request};

use crate::access::Granted;

/// How a call ended, as metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with a result.
    Ok,
    /// Answered with an error by the method.
    Error,
    /// Refused: the caller's rights do not cover it.
    Denied,
    /// No such method (counted under one label, so callers cannot grow
    /// the metrics at will).
    Unknown,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
            Outcome::Unknown => "unknown",
        }
    }
}

/// Where calls are reported (the daemon's metrics).
pub trait CallObserver: Send + Sync + 'static {
    /// One call ended; `took` is set for calls that ran.
    fn call_done(&self, method: &str, outcome: Outcome, took: Option<Duration>);
}

/// What a daemon's RPC needs from the gate to guard it.
#[derive(Clone)]
pub struct RpcPolicy {
    /// The permission each method (full name) needs.
    pub required: fn(&str) -> Permission,
    /// Metrics.
    pub observer: Arc<dyn CallObserver>,
}

/// The rpc middleware (one per connection).
#[derive(Clone)]
pub(crate) struct Guard<S> {
    pub(crate) inner: S,
    pub(crate) policy: RpcPolicy,
    /// Methods this server has: anything else goes straight to jsonrpsee,
    /// which answers -32601 (damocles workers read that as "not supported").
    pub(crate) known: Arc<HashSet<String>>,
    pub(crate) max_response: usize,
}

fn denial(method: &str, need: Permission, granted: Option<&Granted>) -> ErrorObjectOwned {
    let msg = match granted {
        Some(Granted::Token(perms)) => format!(
            "permission denied: {method} needs the {need} permission; this token allows {}",
            perms.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
        ),
        _ => format!(
            "permission denied: {method} needs the {need} permission and the request carries no token; \
             send `Authorization: Bearer <token>` with a token that allows {need}"
        ),
    };
    ErrorObjectOwned::owned(ERR_PERMISSION_DENIED, msg, None::<()>)
}

impl<S> Guard<S> {
    /// The refusal for a known method the caller may not call.
    fn check(&self, method: &str, granted: Option<&Granted>) -> Option<ErrorObjectOwned> {
        if !self.known.contains(method) {
            return None;
        }
        let need = (self.policy.required)(method);
        (!granted.is_some_and(|g| g.allows(need))).then(|| denial(method, need, granted))
    }
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
        let known = self.known.contains(&method);
        let refusal = self.check(&method, req.extensions().get::<Granted>());
        let inner = self.inner.clone();
        let observer = Arc::clone(&self.policy.observer);
        async move {
            if !known {
                observer.call_done("unknown", Outcome::Unknown, None);
                return inner.call(req).await;
            }
            if let Some(err) = refusal {
                observer.call_done(&method, Outcome::Denied, None);
                tracing::debug!(%method, "call refused");
                return MethodResponse::error(req.id().into_owned(), err);
            }
            let start = Instant::now();
            let resp = inner.call(req).await;
            let outcome = if resp.is_error() {
                tracing::debug!(%method, response = %resp.as_json().get(), "call failed");
                Outcome::Error
            } else {
                Outcome::Ok
            };
            observer.call_done(&method, outcome, Some(start.elapsed()));
            resp
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        // A batch runs only if every call in it is permitted; each call then
        // goes through `call`, so it is counted like any other.
        let refused = batch.iter().flatten().any(|entry| {
            self.check(entry.method_name(), entry.extensions().get::<Granted>())
                .is_some()
        });
        let this = self.clone();
        async move {
            let mut answers = BatchResponseBuilder::new_with_limit(this.max_response);
            let mut notified = false;
            for entry in batch.into_iter() {
                let answer = match entry {
                    Ok(BatchEntry::Call(req)) if refused => {
                        let granted = req.extensions().get::<Granted>();
                        let err = this.check(req.method_name(), granted).unwrap_or_else(|| {
                            ErrorObjectOwned::owned(
                                ERR_PERMISSION_DENIED,
                                "not run: another call in this batch was refused",
                                None::<()>,
                            )
                        });
                        MethodResponse::error(req.id().into_owned(), err)
                    }
                    Ok(BatchEntry::Call(req)) => this.call(req).await,
                    Ok(BatchEntry::Notification(n)) => {
                        notified = true;
                        if !refused {
                            this.notification(n).await;
                        }
                        continue;
                    }
                    Err(err) => {
                        let (err, id) = err.into_parts();
                        MethodResponse::error(id, err)
                    }
                };
                if let Err(too_big) = answers.append(answer) {
                    return too_big;
                }
            }
            if answers.is_empty() && notified {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(answers.finish())
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        let allowed = self
            .check(n.method_name(), n.extensions().get::<Granted>())
            .is_none();
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
