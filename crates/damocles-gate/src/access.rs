//! Who is asking: the rights a request's headers grant, decided before its
//! body is read.

use std::sync::Arc;

use damocles_api::Permission;
use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::HeaderMap;

use crate::token::{Invalid, Tokens};

/// What the caller may do, attached to each request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Granted {
    /// No Authorization header: the daemon's anonymous permissions (none
    /// for a request from a browser page).
    Anonymous(Vec<Permission>),
    /// A token that verified.
    Token(Vec<Permission>),
    /// Loopback without a token, where the daemon allows it.
    Everything,
}

impl Granted {
    /// Whether `p` is granted. Permissions rank (read < write < sign <
    /// admin): a token listing only `admin` may read too.
    pub fn allows(&self, p: Permission) -> bool {
        match self {
            Granted::Anonymous(perms) | Granted::Token(perms) => perms.iter().any(|q| *q >= p),
            Granted::Everything => true,
        }
    }

    /// Whether the request may do anything at all. A connection is trusted
    /// (never evicted for a newcomer) only once a request with rights has
    /// been read whole.
    pub fn is_nothing(&self) -> bool {
        matches!(self, Granted::Anonymous(perms) if perms.is_empty())
    }
}

/// A daemon's access policy.
pub struct Access {
    /// The secret tokens are checked with.
    pub tokens: Arc<Tokens>,
    /// Rights of a request without a token (none, or e.g. `write` for
    /// unmodified damocles workers that send none).
    pub anonymous: Vec<Permission>,
    /// Token-less requests that name a loopback Host get every right
    /// (development only; the daemon refuses it on a non-loopback listener).
    pub open_on_loopback: bool,
}

/// Why the headers were refused before any body was read.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// HTTP 401: a token was sent and does not verify.
    #[error(
        "unauthorized: {0} (send `Authorization: Bearer <token>` with a token from this daemon)"
    )]
    BadToken(Invalid),
    /// HTTP 400: more than one Host header (RFC 9112 §3.2).
    #[error("bad request: more than one Host header")]
    TwoHosts,
}

impl Access {
    /// The rights `headers` grant, or why they are refused.
    pub fn grant(&self, headers: &HeaderMap) -> Result<Granted, Refusal> {
        let mut hosts = headers.get_all(HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err(Refusal::TwoHosts);
        }
        let Some(auth) = headers.get(AUTHORIZATION) else {
            // A browser page can reach a local server too (WebSocket has no
            // CORS; DNS rebinding): token-less rights only for requests that
            // carry no Origin (and, for the loopback switch, name this
            // machine by address).
            if headers.contains_key(ORIGIN) {
                return Ok(Granted::Anonymous(vec![]));
            }
            let loopback_host = host
                .and_then(|h| h.to_str().ok())
                .is_some_and(is_loopback_host);
            return Ok(match (self.open_on_loopback, loopback_host) {
                (true, true) => Granted::Everything,
                (true, false) => Granted::Anonymous(vec![]),
                (false, _) => Granted::Anonymous(self.anonymous.clone()),
            });
        };
        let token = auth
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        self.tokens
            .verify(token)
            .map(Granted::Token)
            .map_err(Refusal::BadToken)
    }
}

/// `127.0.0.1:1789`, `[::1]:1789`, `localhost:1789`: names of this machine
/// a DNS-rebinding page cannot use.
pub fn is_loopback_host(host: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn access(anonymous: Vec<Permission>, open_on_loopback: bool) -> (Access, Arc<Tokens>) {
        let tokens = Arc::new(Tokens::from_secret(&[9u8; 32]).unwrap());
        let a = Access {
            tokens: Arc::clone(&tokens),
            anonymous,
            open_on_loopback,
        };
        (a, tokens)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn ranks_decide_and_browsers_get_nothing_without_a_token() {
        let (a, tokens) = access(vec![Permission::Read], false);
        let admin_only = Granted::Token(vec![Permission::Admin]);
        assert!(admin_only.allows(Permission::Read));
        assert!(!Granted::Token(vec![Permission::Read]).allows(Permission::Write));

        let none = a
            .grant(&headers(&[
                ("host", "127.0.0.1:1"),
                ("origin", "http://evil.example"),
            ]))
            .unwrap();
        assert!(none.is_nothing());
        let anon = a.grant(&headers(&[("host", "127.0.0.1:1")])).unwrap();
        assert_eq!(anon, Granted::Anonymous(vec![Permission::Read]));
        let token = format!("Bearer {}", tokens.create(Permission::Write));
        let with = a
            .grant(&headers(&[("host", "x"), ("authorization", &token)]))
            .unwrap();
        assert!(with.allows(Permission::Write));
        assert!(matches!(
            a.grant(&headers(&[("authorization", "Bearer nope")])),
            Err(Refusal::BadToken(Invalid::Malformed))
        ));
    }

    #[test]
    fn the_loopback_switch_needs_a_loopback_host_and_one_host_header() {
        let (a, _) = access(vec![], true);
        for host in ["127.0.0.1:1789", "localhost", "[::1]:1"] {
            assert_eq!(
                a.grant(&headers(&[("host", host)])).unwrap(),
                Granted::Everything
            );
        }
        for host in [
            "127.1",
            "localhost.evil.com",
            "0.0.0.0",
            "127.0.0.1:80@evil.com",
        ] {
            assert!(
                a.grant(&headers(&[("host", host)])).unwrap().is_nothing(),
                "{host}"
            );
        }
        assert!(a.grant(&headers(&[])).unwrap().is_nothing());
        assert!(matches!(
            a.grant(&headers(&[
                ("host", "127.0.0.1:1"),
                ("host", "evil.example")
            ])),
            Err(Refusal::TwoHosts)
        ));
    }
}
