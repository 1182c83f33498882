//! damocles-manager: the site's sector manager.
//!
//! | module | job |
//! |---|---|
//! | [`config`] | `sector-manager.cfg`: keys, defaults, validation |
//! | [`home`] | the home directory layout |
//! | [`ext_prover`] | `ext-prover.cfg`: PoSt provers as child processes, the weighted choice |
//! | [`db`] | durable state in redb: sectors, numbers, reservations |
//! | [`stores`] | persist stores and reservation choice |
//! | [`sealer`] | the `Venus.*` methods |
//! | [`server`] | the paths and metrics behind the gate (`damocles-gate`) |
//! | [`metrics`] | Prometheus metrics |
//! | [`post`] | window PoSt scheduler, winning PoSt, sector checks, provers, the proving RPCs |
//! | [`proxy`] | poster nodes: the sealing manager's chain and sector index over RPC |
//! | [`preseal`] | `daemon init --pre-seal`: CC sectors active at the devnet's genesis |
//! | [`daemon`] | `daemon init` / `daemon run` |

pub mod config;
pub mod daemon;
pub mod db;
pub mod error;
pub mod ext_prover;
pub mod home;
pub mod metrics;
pub mod post;
pub mod preseal;
pub mod proxy;
pub mod sealer;
pub mod server;
pub mod stores;
