//! Producer supervision against real child processes (the test double and the
//! real consumer): deaths, hangs, garbage, bad openings, ordering, protocol
//! negotiation, crash loops and placement.

use std::time::{Duration, Instant};

use damocles_e2e::{cpus_allowed, init_logs, kill9, process_gone};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vc_processors::producer::{Backoff, ProcessorError, Producer, ProducerConfig, ProtocolChoice};
use vc_processors::protocol::ErrorKind;
use vc_processors::sys::Placement;
use vc_processors::Task;

#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct Echo(Value);
impl Task for Echo {
    const STAGE: &'static str = "echo";
    type Output = Value;
}

fn cfg(mode: &str) -> ProducerConfig {
    init_logs();
    let mut c = ProducerConfig::new(
        "echo",
        env!("CARGO_BIN_EXE_test-double-processor"),
        vec![mode.into()],
    );
    c.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        stable_after: Duration::from_secs(60),
        crash_loop_exits: 5,
        crash_loop_window: Duration::from_secs(60),
    };
    c
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn killed_child_fails_in_flight_as_retryable_and_is_restarted() {
    let p = Producer::spawn(cfg("echo")).await.unwrap();
    let first_pid = p.status().pid.unwrap();
    let slow = {
        let p = p.clone();
        tokio::spawn(async move { p.process(&Echo(json!({"sleep_ms": 10_000}))).await })
    };
    wait_until("the request is in flight", || p.status().in_flight == 1).await;
    kill9(first_pid);

    let err = slow.await.unwrap().unwrap_err();
    assert!(matches!(err, ProcessorError::ChildExited { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Retryable);

    let out = p.process(&Echo(json!({"n": 1}))).await.unwrap();
    assert_eq!(out, json!({"n": 1}));
    let st = p.status();
    assert_eq!(st.restarts, 1);
    assert_ne!(st.pid.unwrap(), first_pid);
}

#[tokio::test]
async fn hung_v1_child_is_killed_at_the_request_timeout() {
    let mut c = cfg("echo");
    c.protocol = ProtocolChoice::V1Only;
    c.request_timeout = Some(Duration::from_millis(500));
    let p = Producer::spawn(c).await.unwrap();
    let pid = p.status().pid.unwrap();

    let started = Instant::now();
    let err = p.process(&Echo(json!({"hang": true}))).await.unwrap_err();
    assert!(matches!(err, ProcessorError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    wait_until("the hung child is replaced", || {
        p.status().pid.is_some_and(|p| p != pid)
    })
    .await;
    assert_eq!(p.process(&Echo(json!(2))).await.unwrap(), json!(2));
}

#[tokio::test]
async fn v2_timeout_cancels_a_cooperative_request_and_keeps_the_child() {
    let mut c = cfg("echo");
    c.request_timeout = Some(Duration::from_millis(300));
    let p = Producer::spawn(c).await.unwrap();
    assert!(p.status().v2);
    let pid = p.status().pid.unwrap();

    let err = p
        .process(&Echo(json!({"hang_until_cancelled": true})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // The child confirms the cancellation and keeps serving.
    assert_eq!(p.process(&Echo(json!(3))).await.unwrap(), json!(3));
    assert_eq!(p.status().pid, Some(pid));
    assert_eq!(p.status().restarts, 0);
}

#[tokio::test]
async fn v2_timeout_kills_a_child_that_ignores_the_cancel() {
    let mut c = cfg("echo");
    c.request_timeout = Some(Duration::from_millis(300));
    c.cancel_grace = Duration::from_millis(300);
    let p = Producer::spawn(c).await.unwrap();
    let pid = p.status().pid.unwrap();
    let err = p.process(&Echo(json!({"hang": true}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    wait_until("the child is replaced after the grace", || {
        p.status().pid.is_some_and(|p| p != pid)
    })
    .await;
    assert_eq!(p.process(&Echo(json!(4))).await.unwrap(), json!(4));
}

#[tokio::test]
async fn garbage_on_stdout_is_a_protocol_error_not_a_hang() {
    // No request timeout: only the protocol check can end this request.
    let p = Producer::spawn(cfg("garbage")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), p.process(&Echo(json!(1))))
        .await
        .expect("must not hang")
        .unwrap_err();
    match &err {
        ProcessorError::Protocol { detail, .. } => {
            assert!(detail.contains("this is not json at all"), "{detail}")
        }
        other => panic!("expected a protocol error, got {other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Retryable);
    wait_until("the child is restarted", || p.status().restarts >= 1).await;
}

#[tokio::test]
async fn bad_openings_fail_startup_with_a_clear_error() {
    let cases = [
        ("wrong-ready", "unexpected first line"),
        ("exit-at-start", "exited before its ready line"),
        ("silent", "no ready line within"),
    ];
    for (mode, expect) in cases {
        let mut c = cfg(mode);
        c.ready_timeout = Duration::from_millis(500);
        let started = Instant::now();
        let err = Producer::spawn(c)
            .await
            .err()
            .unwrap_or_else(|| panic!("{mode}: spawn should fail"));
        let msg = err.to_string();
        assert!(msg.contains(expect), "{mode}: {msg}");
        assert!(
            msg.contains("test-double-processor"),
            "names the command: {msg}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{mode} took {:?}",
            started.elapsed()
        );
    }
    let err = Producer::spawn(ProducerConfig::new(
        "echo",
        "/nonexistent/processor",
        vec![],
    ))
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("/nonexistent/processor"), "{err}");
}

#[tokio::test]
async fn out_of_order_responses_reach_their_requests() {
    let p = Producer::spawn(cfg("reverse")).await.unwrap();
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move { (i, p.process(&Echo(json!({"i": i}))).await.unwrap()) })
        })
        .collect();
    for call in calls {
        let (i, out) = call.await.unwrap();
        assert_eq!(out, json!({"i": i}));
    }
}

#[tokio::test]
async fn v1_child_never_receives_v2_fields() {
    // The parent offers v2 and has a request timeout; the child answers with the
    // v1 ready line, so requests must go out as plain {"id","task"}. The test
    // double exits (failing the request) on any other shape.
    let mut c = cfg("v1-strict");
    c.request_timeout = Some(Duration::from_secs(10));
    let p = Producer::spawn(c).await.unwrap();
    assert!(!p.status().v2);
    for i in 0..20 {
        assert_eq!(p.process(&Echo(json!(i))).await.unwrap(), json!(i));
    }
    assert_eq!(p.status().restarts, 0);
}

#[tokio::test]
async fn crash_loop_is_detected_and_requests_fail_fast() {
    let p = Producer::spawn(cfg("crash-after-ready")).await.unwrap();
    wait_until("a crash loop is declared", || {
        p.status()
            .down_reason
            .is_some_and(|r| r.contains("crash loop"))
    })
    .await;
    let started = Instant::now();
    let err = p.process(&Echo(json!(1))).await.unwrap_err();
    assert!(matches!(err, ProcessorError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("crash loop"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn mute_child_is_cut_off_by_the_request_timeout() {
    let mut c = cfg("mute");
    c.request_timeout = Some(Duration::from_millis(300));
    let p = Producer::spawn(c).await.unwrap();
    let err = p.process(&Echo(json!(1))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn typed_errors_and_progress_from_a_v2_child() {
    let p = Producer::spawn(cfg("echo")).await.unwrap();
    let err = p.process(&Echo(json!({"fail": true}))).await.unwrap_err();
    match &err {
        ProcessorError::Failed { kind, message, .. } => {
            assert_eq!(*kind, Some(ErrorKind::Resource));
            assert!(message.contains("asked to fail"));
        }
        other => panic!("{other}"),
    }
    // Progress frames are consumed by the parent, not mistaken for responses.
    assert_eq!(
        p.process(&Echo(json!({"progress": 5}))).await.unwrap(),
        json!({"progress": 5})
    );
}

#[tokio::test]
async fn a_stray_print_in_a_processor_does_not_break_the_protocol() {
    let p = Producer::spawn(cfg("echo")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            p.process(&Echo(json!({"print": 1}))).await.unwrap(),
            json!({"print": 1})
        );
    }
    assert_eq!(p.status().restarts, 0);
}

#[tokio::test]
async fn many_requests_in_flight_are_matched_by_id() {
    let p = Producer::spawn(cfg("echo")).await.unwrap();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let p = p.clone();
            tokio::spawn(async move {
                (
                    i,
                    p.process(&Echo(json!({"i": i, "sleep_ms": (i % 7) * 3})))
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    for call in calls {
        let (i, out) = call.await.unwrap();
        assert_eq!(out["i"], json!(i));
    }
}

#[tokio::test]
async fn cpu_placement_is_applied_and_reapplied_after_a_restart() {
    let mut c = cfg("echo");
    c.placement = Placement {
        cpuset: Some("0".into()),
        cgroup: None,
        numa_preferred: None,
    };
    let p = Producer::spawn(c).await.unwrap();
    let pid = p.status().pid.unwrap();
    assert_eq!(cpus_allowed(pid), "0");
    kill9(pid);
    wait_until("restarted", || p.status().pid.is_some_and(|p| p != pid)).await;
    assert_eq!(cpus_allowed(p.status().pid.unwrap()), "0");
}

#[tokio::test]
async fn dropping_the_producer_kills_the_child() {
    let p = Producer::spawn(cfg("echo")).await.unwrap();
    let pid = p.status().pid.unwrap();
    drop(p);
    wait_until("the child is gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its reaper.
        stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")
    })
    .await;
}

/// A wrapper script, as an SP writes one around a prover: it starts a child
/// without `exec` (`sleep 42`), writes that child's pid to `pidfile`, then
/// runs `then`.
fn wrapper(pidfile: &std::path::Path, then: &str) -> ProducerConfig {
    let mut c = cfg("echo");
    c.bin = "sh".into();
    c.args = vec![
        "-c".into(),
        format!("sleep 42 & echo $! > '{}'; {then}", pidfile.display()),
    ];
    c
}

/// The pid the wrapper wrote, once it is there; the process is killed when
/// the guard drops, so a failing test leaves nothing behind.
async fn grandchild(pidfile: &std::path::Path) -> Grandchild {
    wait_until("the wrapper wrote its child's pid", || {
        std::fs::read_to_string(pidfile).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    Grandchild(
        std::fs::read_to_string(pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    )
}

struct Grandchild(u32);

impl Grandchild {
    fn is_gone(&self) -> bool {
        process_gone(self.0)
    }

    async fn wait_gone(&self, after: &str) {
        wait_until(&format!("`sleep 42` is gone after {after}"), || {
            self.is_gone()
        })
        .await;
    }
}

impl Drop for Grandchild {
    fn drop(&mut self) {
        if !self.is_gone() {
            kill9(self.0);
        }
    }
}

#[tokio::test]
async fn a_killed_processor_takes_its_own_children_with_it() {
    let dir = tempfile::tempdir().unwrap();

    // A wrong ready line, then no ready line at all: the start fails.
    let pidfile = dir.path().join("wrong-ready");
    let err = Producer::spawn(wrapper(&pidfile, "echo 'pc1 processor ready'; wait"))
        .await
        .err()
        .expect("a wrong ready line fails the start");
    assert!(err.to_string().contains("unexpected first line"), "{err}");
    grandchild(&pidfile)
        .await
        .wait_gone("a wrong ready line")
        .await;

    let pidfile = dir.path().join("silent");
    let mut c = wrapper(&pidfile, "wait");
    c.ready_timeout = Duration::from_millis(500);
    let err = Producer::spawn(c).await.err().expect("no ready line");
    assert!(err.to_string().contains("no ready line within"), "{err}");
    grandchild(&pidfile)
        .await
        .wait_gone("the ready timeout")
        .await;

    // A v1 child that never answers is killed at the request timeout and
    // restarted; the replacement's child goes when the producer is dropped.
    let pidfile = dir.path().join("mute");
    let mut c = wrapper(&pidfile, "echo 'echo processor ready'; wait");
    c.request_timeout = Some(Duration::from_millis(300));
    let p = Producer::spawn(c).await.unwrap();
    let first = grandchild(&pidfile).await;
    std::fs::remove_file(&pidfile).unwrap();
    let err = p.process(&Echo(json!(1))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    first.wait_gone("the request timeout").await;
    let second = grandchild(&pidfile).await;
    assert!(!second.is_gone(), "the restarted wrapper's child runs");
    drop(p);
    second.wait_gone("dropping the producer").await;
}
