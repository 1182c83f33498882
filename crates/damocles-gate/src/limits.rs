//! How much of a daemon one client may hold, and for how long.

use std::time::Duration;

/// Bounds on connections, time and sizes. The defaults suit a manager
/// serving a few hundred workers; every one is a daemon config key.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections in all. When every one is trusted, newcomers are
    /// refused; otherwise the oldest untrusted connection makes room.
    pub max_connections: usize,
    /// Connections that have not yet shown rights (see `conns`).
    pub max_untrusted: usize,
    /// Connections from one remote address (loopback peers are not capped:
    /// every local process is the same address).
    pub max_connections_per_peer: usize,
    /// Untrusted connections from one remote address.
    pub max_untrusted_per_peer: usize,
    /// An untrusted connection must have sent one whole request with rights
    /// within this time, or it is closed.
    pub untrusted_timeout: Duration,
    /// Reading a request's headers, and waiting for the next request on an
    /// idle keep-alive connection.
    pub header_timeout: Duration,
    /// Reading a request's whole body, from the end of its headers.
    pub body_timeout: Duration,
    /// The largest request body, in bytes.
    pub max_body: u32,
    /// The largest response, in bytes.
    pub max_response: u32,
    /// The most calls in one JSON-RPC batch.
    pub max_batch: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_untrusted: 512,
            max_connections_per_peer: 1024,
            max_untrusted_per_peer: 64,
            untrusted_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_body: 10 << 20,
            max_response: 10 << 20,
            max_batch: 1000,
        }
    }
}

impl Limits {
    /// Refuses limits that would stop the daemon serving anyone.
    pub fn validate(&self) -> Result<(), String> {
        let zero = |name: &str| format!("{name} must be above zero");
        for (name, v) in [
            ("max_connections", self.max_connections),
            ("max_untrusted", self.max_untrusted),
            ("max_connections_per_peer", self.max_connections_per_peer),
            ("max_untrusted_per_peer", self.max_untrusted_per_peer),
            ("max_body", self.max_body as usize),
            ("max_response", self.max_response as usize),
            ("max_batch", self.max_batch as usize),
        ] {
            if v == 0 {
                return Err(zero(name));
            }
        }
        for (name, v) in [
            ("untrusted_timeout", self.untrusted_timeout),
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
        ] {
            if v.is_zero() {
                return Err(zero(name));
            }
        }
        Ok(())
    }
}
