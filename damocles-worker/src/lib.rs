//! damocles-worker: the sealing worker.
//!
//! `damocles-worker daemon -c FILE` runs sealing threads ([`sealing`]) that
//! take sectors from the manager ([`manager_client`]) through the stages,
//! each run builtin or in ext-processors ([`processors`]); an admin RPC
//! ([`admin`]) and Prometheus metrics ([`metrics`]) show what they do. The
//! same binary is the default ext-processor (`damocles-worker processor
//! <stage>`).

pub mod admin;
pub mod config;
pub mod daemon;
pub mod describe;
pub mod manager_client;
pub mod metrics;
pub mod processors;
pub mod sealing;
pub mod stores;
