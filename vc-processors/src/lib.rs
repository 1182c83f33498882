//! # vc-processors
//!
//! The contract between damocles daemons and the processors that do their heavy
//! work. A *processor* runs the tasks of one stage (`pc1`, `c2`, `window_post`, ...),
//! either in-process ([`builtin`]) or as a child process (an *ext-processor*) that
//! talks newline-delimited JSON over stdin/stdout.
//!
//! - [`protocol`]: the wire types (v1, compatible with damocles; v2 extensions);
//! - [`tasks`]: the task catalog, one type per stage;
//! - [`consumer`]: write an ext-processor in a few lines;
//! - [`producer`]: spawn and supervise ext-processors from a daemon;
//! - [`builtin`]: every stage on `filecoin-proofs-api`.

#![warn(missing_docs)]

pub mod consumer;
pub mod error;
pub mod producer;
pub mod protocol;
pub mod sys;
pub mod task;
pub mod tasks;

#[cfg(feature = "builtin")]
pub mod builtin;

/// The sector layout (names, store paths, cache files, stage names), shared
/// with the daemons.
pub use damocles_sector as sector;

pub use consumer::{run_consumer, Ctx, Processor};
pub use task::Task;
