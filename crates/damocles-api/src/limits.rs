//! Caps on what the manager keeps from a `Venus.*` call, in one place.
//!
//! Any write token (and, with `AnonymousPermission = "write"`, no token at
//! all) can call the worker methods, so every string and list the manager
//! stores has a cap. The caps are far above what a damocles worker sends:
//!
//! | field | cap | over the cap |
//! |---|---|---|
//! | WorkerPing `Name`, `Dest`, `Version` | [`MAX_NAME_BYTES`] | refused (-32602) |
//! | ReportState `Worker.Instance`, `StateChange.Prev` / `Next`, `Failure.Level` | [`MAX_NAME_BYTES`] | refused |
//! | ReportState `Worker.Location` (a path) | [`MAX_PATH_BYTES`] | refused |
//! | ReportState `StateChange.Event`, `Failure.Desc` | [`MAX_TEXT_BYTES`] | cut, with a marker |
//! | ReportAborted / AbortSector reason | [`MAX_TEXT_BYTES`] | cut, with a marker |
//! | SubmitProof `Proof` | [`MAX_PROOF_BYTES`] | refused |
//! | worker records | [`MAX_WORKERS`], each kept [`WORKER_TTL_SECS`] after its last ping | a new worker is refused while full |
//!
//! Free text is cut rather than refused: an error chain can be long, and a
//! refused ReportState or ReportAborted would leave an unmodified worker
//! unable to report at all. Names are never long in practice, so a long one is
//! refused, naming the field and its cap.
//!
//! `Venus.ListSectors` answers in pages; see [`LIST_SECTORS_DEFAULT_LIMIT`].

use crate::types::{ReportStateReq, WorkerInfo};

/// Names and ids: worker names, addresses, versions, state names.
pub const MAX_NAME_BYTES: usize = 256;
/// Filesystem paths (a sealing thread's location); Linux's `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 4096;
/// Free text: failure descriptions, abort reasons, event renderings.
pub const MAX_TEXT_BYTES: usize = 4096;
/// A C2 proof: 192 bytes per partition, at most 10 partitions; room to spare.
pub const MAX_PROOF_BYTES: usize = 64 * 1024;

/// Worker records kept at most; WorkerPing from a new worker is refused
/// while this many are fresh.
pub const MAX_WORKERS: u64 = 10_000;
/// A worker record not pinged for this long is removed (24 h).
pub const WORKER_TTL_SECS: u64 = 24 * 60 * 60;

/// Sectors per `ListSectors` page when the caller pages without a limit.
pub const LIST_SECTORS_DEFAULT_LIMIT: u64 = 1_000;
/// The largest `limit` a `ListSectors` page honours; larger ones are lowered.
pub const LIST_SECTORS_MAX_LIMIT: u64 = 10_000;
/// Bytes of sector records one `ListSectors` answer holds at most (whole
/// records, at least one): well below the server's default 10 MiB response
/// cap (the manager takes less when that cap is set lower), so an answer is
/// never refused as too big. A page that stops here holds fewer than `limit`
/// records; the caller goes on from its last sector.
pub const LIST_SECTORS_MAX_BYTES: usize = 8 * 1024 * 1024;

/// A field over its cap.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {len} bytes, more than the limit of {max} bytes")]
pub struct TooLong {
    /// The field as it is spelt on the wire, e.g. `Worker.Instance`.
    pub field: &'static str,
    /// Its length in bytes.
    pub len: usize,
    /// Its cap.
    pub max: usize,
}

/// `Err` when `value` is longer than `max` bytes.
pub fn check_len(field: &'static str, value: &[u8], max: usize) -> Result<(), TooLong> {
    if value.len() > max {
        return Err(TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Cuts `s` to at most `max` bytes (at a character boundary), ending it with
/// a marker that says how long it was. `max` must leave room for the marker
/// (64 bytes do). True when it cut.
pub fn truncate_text(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let marker = format!(" [... cut from {} bytes]", s.len());
    let mut end = max.saturating_sub(marker.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(&marker);
    true
}

/// Checks a WorkerPing's strings.
pub fn check_worker_info(info: &WorkerInfo) -> Result<(), TooLong> {
    check_len("Name", info.name.as_bytes(), MAX_NAME_BYTES)?;
    check_len("Dest", info.dest.as_bytes(), MAX_NAME_BYTES)?;
    check_len("Version", info.version.as_bytes(), MAX_NAME_BYTES)
}

/// Fits a ReportState to the caps: refuses long names and paths, cuts long
/// free text.
pub fn fit_report(req: &mut ReportStateReq) -> Result<(), TooLong> {
    let w = &req.worker;
    check_len("Worker.Instance", w.instance.as_bytes(), MAX_NAME_BYTES)?;
    check_len("Worker.Location", w.location.as_bytes(), MAX_PATH_BYTES)?;
    let c = &mut req.state_change;
    check_len("StateChange.Prev", c.prev.as_bytes(), MAX_NAME_BYTES)?;
    check_len("StateChange.Next", c.next.as_bytes(), MAX_NAME_BYTES)?;
    truncate_text(&mut c.event, MAX_TEXT_BYTES);
    if let Some(f) = &mut req.failure {
        check_len("Failure.Level", f.level.as_bytes(), MAX_NAME_BYTES)?;
        truncate_text(&mut f.desc, MAX_TEXT_BYTES);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{SectorFailure, SectorStateChange, WorkerIdentifier};

    fn report(instance: &str, desc: &str) -> ReportStateReq {
        ReportStateReq {
            worker: WorkerIdentifier {
                instance: instance.into(),
                location: "/sealing/1".into(),
            },
            state_change: SectorStateChange {
                prev: "PC1Done".into(),
                next: "PC2Done".into(),
                event: "PC2".into(),
            },
            failure: Some(SectorFailure {
                level: "Temporary".into(),
                desc: desc.into(),
            }),
        }
    }

    #[test]
    fn truncation_keeps_the_cap_a_char_boundary_and_says_so() {
        // 3-byte characters: a cut in the middle of one must step back.
        let mut s = "€".repeat(3000);
        assert!(truncate_text(&mut s, MAX_TEXT_BYTES));
        assert!(s.len() <= MAX_TEXT_BYTES, "{}", s.len());
        assert!(s.ends_with(" [... cut from 9000 bytes]"), "{s}");
        let mut short = "fine".to_string();
        assert!(!truncate_text(&mut short, MAX_TEXT_BYTES));
        assert_eq!(short, "fine");
    }

    #[test]
    fn reports_refuse_long_names_and_cut_long_text() {
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let err = fit_report(&mut report(&long, "")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Worker.Instance is 257 bytes, more than the limit of 256 bytes"
        );

        let mut r = report("worker-1", &"e".repeat(1 << 20));
        fit_report(&mut r).unwrap();
        let desc = &r.failure.unwrap().desc;
        assert!(desc.len() <= MAX_TEXT_BYTES && desc.contains("cut from 1048576 bytes"));

        let mut ok = report("worker-1", "rpc timeout");
        let before = ok.clone();
        fit_report(&mut ok).unwrap();
        assert_eq!(ok, before, "a normal report is stored as sent");
    }

    #[test]
    fn worker_info_names_its_long_field() {
        let info = WorkerInfo {
            name: "w".into(),
            dest: "d".repeat(MAX_NAME_BYTES + 5),
            version: "0.1.0".into(),
            summary: Default::default(),
        };
        assert_eq!(check_worker_info(&info).unwrap_err().field, "Dest");
    }
}
