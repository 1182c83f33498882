//! Sealing threads: each walks one sector at a time from `Empty` to
//! `Finished` as a persistent state machine.
//!
//! - [`state`]: the states, the events that move between them, and the sector
//!   document they change; pure, no I/O.
//! - [`doc_store`]: the document on disk (redb in the thread's location), saved
//!   after every event, so a killed worker resumes where it was.
//! - [`thread`]: the steps of the sealer plan, failure levels, reporting.
//! - [`ctrl`]: what each thread is doing, and pause / resume.

pub mod ctrl;
pub mod doc_store;
pub mod state;
pub mod thread;
pub mod wdpost;
