//! damocles-worker: the sealing worker.
//!
//! This release carries the processor side (`damocles-worker processor
//! <stage>`, the default ext-processor) and the worker config
//! ([`config`], `damocles-worker config check`). The sealing daemon that runs
//! threads over them is being built (see the README's status).

pub mod admin;
pub mod config;
pub mod daemon;
pub mod describe;
pub mod manager_client;
pub mod processors;
pub mod sealing;
