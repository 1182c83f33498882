use std::time::Duration;

use crate::protocol::ErrorKind;

/// Why a request sent to an ext-processor failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessorError {
    /// The child answered with `err_msg`. `kind` is known only from a v2 child.
    #[error("{stage} processor failed: {message}")]
    Failed {
        /// The processor's stage.
        stage: String,
        /// The class the child gave the failure, if it speaks v2.
        kind: Option<ErrorKind>,
        /// The child's `err_msg`.
        message: String,
    },
    /// The child exited (or was killed) with this request in flight.
    #[error("{stage} processor exited with the request in flight: {detail}")]
    ChildExited {
        /// The processor's stage.
        stage: String,
        /// Why the child stopped.
        detail: String,
    },
    /// No answer in time.
    #[error("{stage} processor did not answer within {after:?}")]
    Timeout {
        /// The processor's stage.
        stage: String,
        /// The request timeout that ran out.
        after: Duration,
    },
    /// The child broke the protocol (garbage on stdout, an undecodable output).
    #[error("{stage} processor broke the protocol: {detail}")]
    Protocol {
        /// The processor's stage.
        stage: String,
        /// What was wrong, with the offending line cut short.
        detail: String,
    },
    /// No child is running and none can be started right now.
    #[error("{stage} processor is unavailable: {reason}")]
    Unavailable {
        /// The processor's stage.
        stage: String,
        /// Why no child is up (shut down, crash loop, restarts off).
        reason: String,
    },
    /// The task could not be encoded.
    #[error("cannot encode the {stage} task: {detail}")]
    Encode {
        /// The processor's stage.
        stage: String,
        /// The encoder's error.
        detail: String,
    },
}

impl ProcessorError {
    /// Whether and when trying again makes sense.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProcessorError::Failed { kind, .. } => match kind {
                None | Some(ErrorKind::Unknown) => ErrorKind::Permanent,
                Some(k) => *k,
            },
            ProcessorError::ChildExited { .. } | ProcessorError::Protocol { .. } => {
                ErrorKind::Retryable
            }
            ProcessorError::Timeout { .. } => ErrorKind::Timeout,
            ProcessorError::Unavailable { .. } => ErrorKind::Resource,
            ProcessorError::Encode { .. } => ErrorKind::Permanent,
        }
    }

    /// Whether the same request may succeed if sent again (now or later).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Retryable | ErrorKind::Resource | ErrorKind::Timeout
        )
    }
}

/// Why a producer could not start its child.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the {stage} processor `{command}`: {reason}")]
pub struct SpawnError {
    /// The processor's stage.
    pub stage: String,
    /// The command line that was run.
    pub command: String,
    /// Why it did not start (spawn failure, wrong opening line, timeout).
    pub reason: String,
}
