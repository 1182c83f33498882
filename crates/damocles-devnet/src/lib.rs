//! The chain as the manager sees it, and the embedded devnet that stands in
//! for a real network on one machine.
//!
//! - [`Chain`] (from `damocles-chain`, re-exported here) is the seam: head,
//!   randomness, messages, the miner actor's view of sectors. The manager only
//!   talks to that trait; a Lotus/Venus node adapter can implement it later.
//! - [`Devnet`] implements it locally: epochs follow the wall clock at a
//!   configured block time, randomness is a hash of (domain, epoch, entropy),
//!   messages execute one epoch after they are pushed, and the miner actor
//!   ([`actor`]) checks precommits and **verifies every prove-commit with
//!   `verify_seal`**, so a wrong proof never makes a sector active. It also
//!   **demands window PoSt**: each deadline's partitions must be proven while
//!   it is open (`verify_window_post`), or their sectors turn faulty and lose
//!   power when it closes. It **holds block elections**: each epoch a miner
//!   with power may be elected (`ElectionRatePercent` × its power share) and
//!   must hand in a winning PoSt over the sectors the chain challenges
//!   (`verify_winning_post`) before a wall-clock cutoff, or the block is
//!   missed. Its state lives in redb tables of the manager's database: it
//!   survives kill -9.

pub mod actor;
pub mod devnet;
pub mod policy;
pub mod randomness;

pub use damocles_chain::*;
pub use devnet::{Devnet, DevnetMiner};
pub use policy::Policy;
