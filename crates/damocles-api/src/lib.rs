//! The `Venus.*` JSON-RPC API spoken between damocles workers, the operator
//! CLI and the manager.
//!
//! This crate holds the wire types, shaped exactly as damocles' Go manager
//! encodes them (PascalCase keys, seal proof types as numbers, tickets and seeds
//! as base64, commitments as arrays of 32 numbers); see `docs/manager-rpc.md`.
//! [`rpc::SealerApiServer`] / [`rpc::SealerApiClient`] are the worker's methods
//! as a jsonrpsee trait, [`cli::ManagerCliApiServer`] / [`cli::ManagerCliApiClient`]
//! the operator's, [`perm`] says which token permission each one needs, and
//! [`limits`] how much of a call the manager keeps.

#![warn(missing_docs)]

pub mod cli;
pub mod codes;
pub mod encoding;
pub mod limits;
pub mod perm;
pub mod proving;
pub mod proxy;
pub mod rpc;
pub mod state;
pub mod types;
pub mod wdpost;

pub use codes::{OnChainState, SealProof, SubmitResult, ERR_SECTOR_STATE_NOT_FOUND};
pub use perm::Permission;
pub use state::*;
pub use types::*;
