//! Wire types of the processor protocol. No I/O here: both the consumer (child)
//! and the producer (parent) build and parse lines with these types.
//!
//! Every message is one line of JSON terminated by `\n`.
//!
//! **v1** (compatible with damocles' vc-processors):
//! - child → parent, once, first: `<stage> processor ready`
//! - parent → child: `{"id": 1, "task": {...}}`
//! - child → parent: `{"id": 1, "err_msg": null, "output": {...}}`
//!
//! **v2** (negotiated; a v1 peer never sees any of it):
//! - the parent sets `VC_PROCESSORS_PROTOCOL=2` in the child's environment;
//! - a v2 child then opens with a [`Hello`] line instead of the ready line;
//! - requests may carry `timeout_ms`; the parent may send `{"cancel": id}`;
//! - responses may carry a typed `error` ([`ErrorInfo`]);
//! - the child may send `{"progress": {...}}` and `{"heartbeat": n}` frames.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Environment variable by which a v2 parent announces itself to its child.
pub const PROTOCOL_ENV: &str = "VC_PROCESSORS_PROTOCOL";
/// Environment variable carrying the heartbeat interval a v2 parent wants.
pub const HEARTBEAT_ENV: &str = "VC_PROCESSORS_HEARTBEAT_MS";
/// The protocol version this crate speaks as v2.
pub const V2_VERSION: &str = "2.0";

/// Feature names a v2 peer may announce.
pub mod features {
    /// Requests may carry `timeout_ms`.
    pub const DEADLINE: &str = "deadline";
    /// The parent may send `{"cancel": id}`.
    pub const CANCEL: &str = "cancel";
    /// The child may send progress frames.
    pub const PROGRESS: &str = "progress";
    /// The child sends heartbeat frames.
    pub const HEARTBEAT: &str = "heartbeat";
    /// Every feature this crate implements.
    pub const ALL: [&str; 4] = [DEADLINE, CANCEL, PROGRESS, HEARTBEAT];
}

/// The v1 ready line for a stage, without its newline.
pub fn ready_line(stage: &str) -> String {
    format!("{stage} processor ready")
}

/// A request line: `{"id": <u64>, "task": <task>}` (+ v2 `timeout_ms`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Request<T> {
    /// Unique per producer, from 1; the response carries it back.
    pub id: u64,
    /// The task, in its stage's encoding.
    pub task: T,
    /// v2 only: the parent gives up on this request after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Just the id of a request line, parsed leniently so that a child can still
/// answer a request whose task it cannot decode.
#[derive(Debug, Deserialize)]
pub struct RequestId {
    /// The request's id.
    pub id: u64,
}

/// A response line: `{"id": <u64>, "err_msg": <string|null>, "output": <output|null>}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response<O> {
    /// The id of the request answered.
    pub id: u64,
    /// Set on failure.
    pub err_msg: Option<String>,
    /// Set on success.
    pub output: Option<O>,
    /// v2 only: the class of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

impl<O> Response<O> {
    /// A success with `output`.
    pub fn ok(id: u64, output: O) -> Self {
        Response {
            id,
            err_msg: None,
            output: Some(output),
            error: None,
        }
    }

    /// A failure; `kind` only for a v2 parent.
    pub fn err(id: u64, msg: String, kind: Option<ErrorKind>) -> Self {
        Response {
            id,
            error: kind.map(|kind| ErrorInfo { kind }),
            err_msg: Some(msg),
            output: None,
        }
    }
}

/// v2: the class of a failed request, so the parent knows whether to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Trying the same request again may succeed (the child died, a transient fault).
    Retryable,
    /// The same request will fail again (bad input, invalid data).
    Permanent,
    /// Out of a resource (memory, disk, GPU): retry later or elsewhere.
    Resource,
    /// The request ran past its deadline.
    Timeout,
    /// The parent cancelled the request.
    Cancelled,
    /// A kind of a later protocol version; treated as permanent.
    #[serde(other)]
    Unknown,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Resource => "resource",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unknown => "unknown",
        })
    }
}

/// v2: the `error` object of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The class of the failure.
    pub kind: ErrorKind,
}

/// v2: the child's opening line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version, `major.minor`; compatible when the majors match.
    pub vc_processors: String,
    /// The stage the child serves.
    pub stage: String,
    /// The extensions the child implements (see [`features`]).
    #[serde(default)]
    pub features: Vec<String>,
}

impl Hello {
    /// The hello of this crate's consumer, with every feature.
    pub fn ours(stage: &str) -> Self {
        Hello {
            vc_processors: V2_VERSION.to_string(),
            stage: stage.to_string(),
            features: features::ALL.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Semver-caret compatibility: same major version.
    pub fn is_compatible(&self) -> bool {
        major(&self.vc_processors) == major(V2_VERSION)
    }

    /// Whether the peer announced `feature`.
    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

fn major(v: &str) -> Option<u64> {
    v.split('.').next()?.trim().parse().ok()
}

/// v2: progress of a request, `step` of `total`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The request's id.
    pub id: u64,
    /// Steps done.
    pub step: u64,
    /// Steps in all.
    pub total: u64,
    /// What the step was, for the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Lines a v2 child sends besides responses.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildFrame {
    /// `{"progress": {...}}`.
    Progress(Progress),
    /// `{"heartbeat": n}`, n counting from 1.
    Heartbeat(u64),
}

/// Lines a v2 parent sends besides requests.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentFrame {
    /// `{"cancel": id}`: stop that request and answer it as cancelled.
    Cancel(u64),
}

/// Any line a child may print after its opening line, as the parent reads it.
/// The output stays raw JSON: only the caller knows its type.
#[derive(Debug)]
pub enum ChildLine {
    /// A response, its output undecoded.
    Response(Response<Box<RawValue>>),
    /// A known v2 frame.
    Frame(ChildFrame),
    /// A frame of a later protocol version (named by its key): ignored, so that
    /// newer children work with this parent.
    UnknownFrame(String),
}

/// Any line a parent may send, as the child reads it. The task stays raw JSON so a
/// child can answer (with an error) a request whose task it cannot decode.
#[derive(Debug)]
pub enum ParentLine {
    /// A request, its task undecoded.
    Request(Request<Box<RawValue>>),
    /// A v2 frame.
    Frame(ParentFrame),
}

/// Why a line could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {line}")]
pub struct MalformedLine {
    /// What is wrong with it.
    pub reason: String,
    /// The offending line, cut to [`MALFORMED_LINE_LIMIT`] characters.
    pub line: String,
}

/// How much of a malformed line is kept in errors and logs.
pub const MALFORMED_LINE_LIMIT: usize = 200;

/// Cuts a line for a log or an error message, on a char boundary.
pub fn truncate_line(line: &str) -> String {
    let line = line.trim_end();
    if line.len() <= MALFORMED_LINE_LIMIT {
        return line.to_string();
    }
    let mut end = MALFORMED_LINE_LIMIT;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &line[..end], line.len())
}

fn malformed(reason: impl fmt::Display, line: &str) -> MalformedLine {
    MalformedLine {
        reason: reason.to_string(),
        line: truncate_line(line),
    }
}

/// Shape shared by the two directions: frames are single-key objects whose key is
/// not `id`; everything with an `id` is a request or a response.
#[derive(Deserialize)]
struct Probe {
    id: Option<u64>,
}

impl ChildLine {
    /// Classifies a line from a child (after its opening line).
    pub fn parse(line: &str) -> Result<ChildLine, MalformedLine> {
        let probe: Probe = serde_json::from_str(line)
            .map_err(|e| malformed(format_args!("not a JSON object ({e})"), line))?;
        if probe.id.is_some() {
            let resp: Response<Box<RawValue>> = serde_json::from_str(line)
                .map_err(|e| malformed(format_args!("bad response ({e})"), line))?;
            if resp.err_msg.is_none() && resp.output.is_none() {
                return Err(malformed("response has neither err_msg nor output", line));
            }
            return Ok(ChildLine::Response(resp));
        }
        if let Ok(frame) = serde_json::from_str(line) {
            return Ok(ChildLine::Frame(frame));
        }
        // A single-key object is a frame; one we do not know comes from a newer peer.
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
            .map_err(|e| malformed(format_args!("not a JSON object ({e})"), line))?;
        match obj.keys().next() {
            Some(key) if obj.len() == 1 && !matches!(key.as_str(), "progress" | "heartbeat") => {
                Ok(ChildLine::UnknownFrame(key.clone()))
            }
            _ => Err(malformed("neither a response nor a frame", line)),
        }
    }
}

impl ParentLine {
    /// Classifies a line from a parent.
    pub fn parse(line: &str) -> Result<ParentLine, MalformedLine> {
        let probe: Probe = serde_json::from_str(line)
            .map_err(|e| malformed(format_args!("not a JSON object ({e})"), line))?;
        if probe.id.is_some() {
            return serde_json::from_str(line)
                .map(ParentLine::Request)
                .map_err(|e| malformed(format_args!("bad request ({e})"), line));
        }
        serde_json::from_str(line)
            .map(ParentLine::Frame)
            .map_err(|e| {
                malformed(
                    format_args!("neither a request nor a known frame ({e})"),
                    line,
                )
            })
    }
}

/// What a parent reads as a child's first line.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// `<stage> processor ready`.
    V1Ready,
    /// A v2 hello.
    V2(Hello),
}

/// Parses a child's first line, checking it names `stage`.
pub fn parse_opening(line: &str, stage: &str) -> Result<Opening, MalformedLine> {
    let trimmed = line.trim();
    if trimmed == ready_line(stage) {
        return Ok(Opening::V1Ready);
    }
    if trimmed.starts_with('{') {
        let hello: Hello = serde_json::from_str(trimmed)
            .map_err(|e| malformed(format_args!("bad hello ({e})"), line))?;
        if hello.stage != stage {
            return Err(malformed(
                format_args!("hello is for stage {:?}, expected {stage:?}", hello.stage),
                line,
            ));
        }
        if !hello.is_compatible() {
            return Err(malformed(
                format_args!(
                    "protocol version {} is not compatible with {V2_VERSION}",
                    hello.vc_processors
                ),
                line,
            ));
        }
        return Ok(Opening::V2(hello));
    }
    Err(malformed(
        format_args!("unexpected first line, expected {:?}", ready_line(stage)),
        line,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_shapes_match_damocles() {
        let req = Request {
            id: 7,
            task: 15u64,
            timeout_ms: None,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"id":7,"task":15}"#
        );
        let ok = Response::ok(7, 225u64);
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"id":7,"err_msg":null,"output":225}"#
        );
        let err: Response<u64> = Response::err(7, "boom".into(), None);
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"id":7,"err_msg":"boom","output":null}"#
        );
    }

    #[test]
    fn child_lines_are_classified() {
        match ChildLine::parse(r#"{"id":3,"err_msg":null,"output":[1,2]}"#).unwrap() {
            ChildLine::Response(r) => assert_eq!(r.output.unwrap().get(), "[1,2]"),
            other => panic!("{other:?}"),
        }
        match ChildLine::parse(r#"{"heartbeat":9}"#).unwrap() {
            ChildLine::Frame(ChildFrame::Heartbeat(9)) => {}
            other => panic!("{other:?}"),
        }
        match ChildLine::parse(r#"{"progress":{"id":1,"step":2,"total":5}}"#).unwrap() {
            ChildLine::Frame(ChildFrame::Progress(p)) => assert_eq!((p.step, p.total), (2, 5)),
            other => panic!("{other:?}"),
        }
        assert!(ChildLine::parse("hello world").is_err());
        assert!(ChildLine::parse(r#"{"id":1}"#).is_err());
        assert!(
            matches!(ChildLine::parse(r#"{"bogus":1}"#).unwrap(), ChildLine::UnknownFrame(k) if k == "bogus")
        );
        assert!(ChildLine::parse(r#"{"heartbeat":"x"}"#).is_err());
        assert!(ChildLine::parse(r#"{"a":1,"b":2}"#).is_err());
        let future_kind = r#"{"id":1,"err_msg":"x","output":null,"error":{"kind":"quota"}}"#;
        match ChildLine::parse(future_kind).unwrap() {
            ChildLine::Response(r) => assert_eq!(r.error.unwrap().kind, ErrorKind::Unknown),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn openings() {
        assert_eq!(
            parse_opening("pc1 processor ready\n", "pc1").unwrap(),
            Opening::V1Ready
        );
        assert!(parse_opening("pc2 processor ready", "pc1").is_err());
        let hello = serde_json::to_string(&Hello::ours("pc1")).unwrap();
        assert!(matches!(
            parse_opening(&hello, "pc1").unwrap(),
            Opening::V2(_)
        ));
        let future = r#"{"vc_processors":"3.0","stage":"pc1","features":[]}"#;
        assert!(parse_opening(future, "pc1").is_err());
        let newer_minor = r#"{"vc_processors":"2.7","stage":"pc1","features":["x"]}"#;
        assert!(matches!(
            parse_opening(newer_minor, "pc1").unwrap(),
            Opening::V2(_)
        ));
    }

    #[test]
    fn long_lines_are_cut() {
        let long = "x".repeat(5000);
        let cut = truncate_line(&long);
        assert!(cut.len() < 300 && cut.ends_with("(5000 bytes)"));
    }
}
