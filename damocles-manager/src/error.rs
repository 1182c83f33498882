//! Errors the RPC methods return, mapped to JSON-RPC error objects.

use damocles_api::{SectorID, ERR_SECTOR_STATE_NOT_FOUND};
use jsonrpsee::types::ErrorObjectOwned;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Code 11001: the worker aborts the sector.
    #[error("sector state not found: {}: {}", .0, .1)]
    NotFound(SectorID, String),
    /// The request makes no sense (wrong miner, unknown store, ...): -32602.
    #[error("{0}")]
    Invalid(String),
    /// Not now: the caller may retry later.
    #[error("{0}")]
    NotReady(String),
    /// A fault of the manager (database, chain): -32603.
    #[error("{0}")]
    Internal(String),
}

/// Code of [`ApiError::NotReady`].
pub use damocles_api::codes::ERR_NOT_READY;

impl From<ApiError> for ErrorObjectOwned {
    fn from(e: ApiError) -> Self {
        let code = match e {
            ApiError::NotFound(..) => ERR_SECTOR_STATE_NOT_FOUND,
            ApiError::Invalid(_) => jsonrpsee::types::error::INVALID_PARAMS_CODE,
            ApiError::NotReady(_) => ERR_NOT_READY,
            ApiError::Internal(_) => jsonrpsee::types::error::INTERNAL_ERROR_CODE,
        };
        ErrorObjectOwned::owned(code, e.to_string(), None::<()>)
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        use crate::db::DbError;
        match e {
            DbError::NotOnline { id, why } => ApiError::NotFound(id, why),
            DbError::NotOffline(_) => ApiError::Invalid(e.to_string()),
            // Records expire: a later ping gets in.
            DbError::TooManyWorkers { .. } => ApiError::NotReady(e.to_string()),
            DbError::Storage(_) | DbError::Record(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<damocles_chain::ChainError> for ApiError {
    fn from(e: damocles_chain::ChainError) -> Self {
        ApiError::Internal(format!("chain: {e}"))
    }
}
