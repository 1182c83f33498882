//! The [`Task`] trait: what a stage takes and gives back.

use serde::{de::DeserializeOwned, Serialize};

/// A unit of work for one stage. Its serde encoding *is* the wire format of the
/// request's `task` field, and `Output`'s encoding that of the response's `output`.
pub trait Task: Serialize + DeserializeOwned + Send + 'static {
    /// The stage name: printed in the ready line (`<STAGE> processor ready`) and
    /// used as the default subcommand (`processor <STAGE>`).
    const STAGE: &'static str;
    /// What a successful run returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}
