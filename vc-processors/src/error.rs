//! Error classes for processors: how a failure is reported to a v2 parent.

use std::fmt;

pub use crate::protocol::ErrorKind;

/// An error tagged with its [`ErrorKind`]. Build one with [`retryable`],
/// [`permanent`] or [`resource`]; an untagged error is classified by
/// [`classify`].
#[derive(Debug)]
pub struct Classified {
    /// The class reported to the parent.
    pub kind: ErrorKind,
    /// The error itself; it alone decides the message.
    pub error: anyhow::Error,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Classified {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

fn tag(kind: ErrorKind, error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        kind,
        error: error.into(),
    })
}

/// The same request may succeed if tried again.
pub fn retryable(error: impl Into<anyhow::Error>) -> anyhow::Error {
    tag(ErrorKind::Retryable, error)
}

/// The same request will fail again.
pub fn permanent(error: impl Into<anyhow::Error>) -> anyhow::Error {
    tag(ErrorKind::Permanent, error)
}

/// Out of memory, disk or device: retry later or elsewhere.
pub fn resource(error: impl Into<anyhow::Error>) -> anyhow::Error {
    tag(ErrorKind::Resource, error)
}

/// The class of an error: an explicit tag anywhere in its chain wins; a full disk
/// or exhausted memory is `resource`; any other I/O error is `retryable` (a
/// mount that came back, a file being written); anything else is `permanent`,
/// since a processor given the same input will fail the same way.
pub fn classify(err: &anyhow::Error) -> ErrorKind {
    if let Some(c) = err.downcast_ref::<Classified>() {
        return c.kind;
    }
    let mut io_error = false;
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Classified>() {
            return c.kind;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if is_resource_exhaustion(io) {
                return ErrorKind::Resource;
            }
            io_error = true;
        }
    }
    if io_error {
        ErrorKind::Retryable
    } else {
        ErrorKind::Permanent
    }
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::OutOfMemory
            | std::io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(libc::ENOSPC)
        || e.raw_os_error() == Some(libc::ENOMEM)
}

/// The message sent as `err_msg`: the whole context chain on one line.
pub fn render(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn tags_survive_context() {
        let e: anyhow::Result<()> = Err(retryable(anyhow::anyhow!("gpu busy")));
        let e = e.context("c2 failed").unwrap_err();
        assert_eq!(classify(&e), ErrorKind::Retryable);
        assert_eq!(render(&e), "c2 failed: gpu busy");
    }

    #[test]
    fn full_disk_is_resource() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = anyhow::Error::new(io).context("write sealed file");
        assert_eq!(classify(&e), ErrorKind::Resource);
        assert_eq!(
            classify(&anyhow::anyhow!("bad input")),
            ErrorKind::Permanent
        );
    }

    #[test]
    fn other_io_is_retryable_unless_tagged() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(io()).context("open sealed file");
        assert_eq!(classify(&e), ErrorKind::Retryable);
        assert_eq!(classify(&permanent(io())), ErrorKind::Permanent);
    }
}
