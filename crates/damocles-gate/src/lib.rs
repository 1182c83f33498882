//! The guarded front door both daemons serve HTTP and JSON-RPC through.
//!
//! Every network endpoint of damocles is hostile territory. Before a
//! daemon's own code sees a request, the gate has:
//! - admitted its connection within bounds that leave room for clients with
//!   rights: untrusted connections (no request with rights read yet) are
//!   capped in all and per peer, the oldest is dropped for a newcomer, and
//!   each must send a whole request with rights in time ([`conns`]);
//! - read its headers in time, and decided its rights from them alone:
//!   a bearer token ([`token`]), or the daemon's anonymous rights for a
//!   request that carries no Origin ([`access`]);
//! - read its body in time and within a size limit, and only then handed it
//!   to the JSON-RPC methods, where each call is checked against the rights
//!   and counted ([`guard`]).
//!
//! [`conns`]: crate::limits::Limits
#![warn(missing_docs)]

pub mod access;
mod conns;
pub mod guard;
pub mod limits;
mod serve;
pub mod token;

pub use access::{Access, Granted};
pub use guard::{CallObserver, Outcome, RpcPolicy};
pub use limits::Limits;
pub use serve::{bind, start, BoxFuture, Endpoint, Routes, Rpc};
pub use token::Tokens;
