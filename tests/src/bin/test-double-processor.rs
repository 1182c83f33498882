//! TEST DOUBLE: a processor child that misbehaves on purpose, for the producer
//! fault tests. `test-double-processor <mode>`; the stage is always "echo".
//!
//! Modes built on the real consumer (`vc_processors::run_consumer`, v1 or v2 as
//! the parent asks): `echo`. The task is a JSON object; `{"sleep_ms": n}` sleeps,
//! `{"exit": c}` exits the process, `{"hang": true}` never returns,
//! `{"hang_until_cancelled": true}` returns once cancelled, `{"progress": n}`
//! reports n steps; any task is echoed back as the output.
//!
//! `sealing <pc1|pc2>`: the real builtin stage behind the real consumer, made
//! slow or stuck for the worker's fault tests: `TEST_DOUBLE_DELAY_MS` waits
//! before each task; with `TEST_DOUBLE_HANG_ONCE=<file>`, the first task (no
//! file yet) creates the file and never returns.
//!
//! `failing-pc1 <permanent|retryable>`: a pc1 processor on the real consumer
//! whose every task fails with that v2 error kind. `v1-failing-pc1`: the same
//! as a damocles-era child (ready line, `err_msg`, no kind). Both append a
//! line to the file `TEST_DOUBLE_COUNT` for each task, so a test can count
//! the attempts.
//!
//! `post <window_post|winning_post>`: the real builtin PoSt stage behind the
//! real consumer, misbehaving as `TEST_DOUBLE_POST_PLAN` says for successive
//! tasks (counted in the file `TEST_DOUBLE_COUNT`, so across restarts):
//! a comma list of `hang` (never returns; the process exits after 5 min),
//! `sigkill` (SIGKILLs itself half a second into the task), `corrupt` (a
//! real proof with a flipped byte);
//! tasks beyond the list are proven honestly.
//!
//! `v1-post <window_post|winning_post>`: the builtin PoSt stage behind a
//! hand-written damocles-era loop (ready line, `{"id","task"}` in,
//! `{"id","err_msg","output"}` out, no negotiation).
//!
//! Hand-written modes (raw lines, to misbehave below the consumer): `v1-strict`,
//! `garbage`, `wrong-ready`, `exit-at-start`, `silent`, `reverse`,
//! `crash-after-ready`, `mute` (reads requests, never answers).

use std::io::{BufRead, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::tasks::{WindowPoSt, WinningPoSt, PC1, PC2};
use vc_processors::{run_consumer, Ctx, Processor, Task};

#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct Echo(Value);

impl Task for Echo {
    const STAGE: &'static str = "echo";
    type Output = Value;
}

fn echo(t: Echo, ctx: &Ctx) -> anyhow::Result<Value> {
    let v = &t.0;
    if let Some(ms) = v.get("sleep_ms").and_then(Value::as_u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Some(code) = v.get("exit").and_then(Value::as_i64) {
        std::process::exit(code as i32);
    }
    if v.get("hang").is_some() {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if v.get("hang_until_cancelled").is_some() {
        while !ctx.is_cancelled() {
            std::thread::sleep(Duration::from_millis(10));
        }
        anyhow::bail!("stopped: cancelled");
    }
    if let Some(n) = v.get("progress").and_then(Value::as_u64) {
        for i in 1..=n {
            ctx.progress(i, n, None);
        }
    }
    if v.get("print").is_some() {
        // A careless processor: must end up in the log, not in the protocol.
        println!("stray output from a processor");
    }
    if v.get("fail").is_some() {
        return Err(vc_processors::error::resource(anyhow::anyhow!(
            "asked to fail"
        )));
    }
    Ok(t.0)
}

/// The builtin stage, delayed or stuck as the environment asks.
fn sealing<T: Task>() -> anyhow::Result<()>
where
    BuiltinProcessor: Processor<T>,
{
    let delay = std::env::var("TEST_DOUBLE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let hang_once = std::env::var_os("TEST_DOUBLE_HANG_ONCE").map(std::path::PathBuf::from);
    run_consumer::<T, _>(move |task: T, ctx: &Ctx| {
        if let Some(marker) = &hang_once {
            if std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(marker)
                .is_ok()
            {
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        BuiltinProcessor::default().process(task, ctx)
    })
}

/// The builtin PoSt stage `T`, misbehaving as `TEST_DOUBLE_POST_PLAN` says.
fn post<T>() -> anyhow::Result<()>
where
    T: Task,
    BuiltinProcessor: Processor<T>,
    T::Output: Serialize + serde::de::DeserializeOwned,
{
    let plan: Vec<String> = std::env::var("TEST_DOUBLE_POST_PLAN")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    run_consumer::<T, _>(move |task: T, ctx: &Ctx| {
        let n = attempts_so_far();
        count_attempt();
        match plan.get(n).map(String::as_str) {
            // Longer than any test waits; bounded so that a child whose
            // parent died mid-hang (stdin closed, a request still running)
            // does not outlive the test run.
            Some("hang") => {
                std::thread::sleep(Duration::from_secs(300));
                std::process::exit(3)
            }
            Some("sigkill") => {
                std::thread::sleep(Duration::from_millis(500));
                let _ = std::process::Command::new("kill")
                    .args(["-9", &std::process::id().to_string()])
                    .status();
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            Some("corrupt") => {
                let out = BuiltinProcessor::default().process(task, ctx)?;
                // Flip one byte of the first proof, keeping the wire shape.
                let mut v = serde_json::to_value(&out)?;
                if let Some(Value::String(p)) = v.pointer_mut("/proofs/0") {
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD;
                    let mut bytes = b64.decode(p.as_bytes())?;
                    bytes[10] ^= 0xff;
                    *p = b64.encode(bytes);
                }
                Ok(serde_json::from_value(v)?)
            }
            _ => BuiltinProcessor::default().process(task, ctx),
        }
    })
}

/// The builtin PoSt stage `T` behind a damocles-era v1 loop.
fn v1_post<T>() -> anyhow::Result<()>
where
    T: Task + serde::de::DeserializeOwned,
    BuiltinProcessor: Processor<T>,
    T::Output: Serialize,
{
    out(&format!("{} processor ready", T::STAGE));
    for line in std::io::stdin().lock().lines() {
        let v: Value = serde_json::from_str(&line?)?;
        count_attempt();
        let reply = match serde_json::from_value::<T>(v["task"].clone()) {
            Ok(task) => match BuiltinProcessor::default().process(task, &Ctx::detached()) {
                Ok(o) => serde_json::json!({"id": v["id"], "err_msg": null, "output": o}),
                Err(e) => {
                    serde_json::json!({"id": v["id"], "err_msg": format!("{e:#}"), "output": null})
                }
            },
            Err(e) => {
                serde_json::json!({"id": v["id"], "err_msg": format!("bad task: {e}"), "output": null})
            }
        };
        out(&reply.to_string());
    }
    Ok(())
}

fn attempts_so_far() -> usize {
    std::env::var_os("TEST_DOUBLE_COUNT")
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Appends a line to `TEST_DOUBLE_COUNT`, if set: one per task received.
fn count_attempt() {
    if let Some(file) = std::env::var_os("TEST_DOUBLE_COUNT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .expect("open TEST_DOUBLE_COUNT");
        writeln!(f, "attempt").expect("write TEST_DOUBLE_COUNT");
    }
}

/// A pc1 processor whose every task fails with error kind `kind`.
fn failing_pc1(kind: &str) -> anyhow::Result<()> {
    let tag = match kind {
        "permanent" => vc_processors::error::permanent,
        "retryable" => vc_processors::error::retryable,
        other => anyhow::bail!("failing-pc1: no kind {other:?} (permanent or retryable)"),
    };
    let kind = kind.to_string();
    run_consumer::<PC1, _>(move |_: PC1, _: &Ctx| {
        count_attempt();
        Err(tag(anyhow::anyhow!(
            "test double: this pc1 always fails ({kind})"
        )))
    })
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}").unwrap();
    o.flush().unwrap();
}

fn main() -> anyhow::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let stdin = std::io::stdin();
    match mode.as_str() {
        "echo" => return run_consumer::<Echo, _>(echo),
        "sealing" => {
            return match std::env::args().nth(2).as_deref() {
                Some("pc1") => sealing::<PC1>(),
                Some("pc2") => sealing::<PC2>(),
                other => anyhow::bail!("sealing: no stage {other:?} (pc1 or pc2)"),
            }
        }
        "failing-pc1" => return failing_pc1(&std::env::args().nth(2).unwrap_or_default()),
        "post" => {
            return match std::env::args().nth(2).as_deref() {
                Some("window_post") => post::<WindowPoSt>(),
                Some("winning_post") => post::<WinningPoSt>(),
                other => anyhow::bail!("post: no stage {other:?}"),
            }
        }
        "v1-post" => {
            return match std::env::args().nth(2).as_deref() {
                Some("window_post") => v1_post::<WindowPoSt>(),
                Some("winning_post") => v1_post::<WinningPoSt>(),
                other => anyhow::bail!("v1-post: no stage {other:?}"),
            }
        }
        "v1-failing-pc1" => out("pc1 processor ready"),
        "exit-at-start" => std::process::exit(7),
        "silent" => {
            std::thread::sleep(Duration::from_secs(3600));
            return Ok(());
        }
        "wrong-ready" => out("pc1 processor ready"),
        "crash-after-ready" => {
            out("echo processor ready");
            std::process::exit(9);
        }
        _ => out("echo processor ready"),
    }
    let mut held: Vec<Value> = Vec::new();
    for line in stdin.lock().lines() {
        let line = line?;
        match mode.as_str() {
            "v1-strict" => {
                // A damocles-era child: anything beyond {"id","task"} is a violation.
                let v: Value = serde_json::from_str(&line)?;
                let keys: Vec<&String> = v
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                if keys.len() != 2 || v.get("id").is_none() || v.get("task").is_none() {
                    eprintln!("v1-strict: received a non-v1 line: {line}");
                    std::process::exit(3);
                }
                out(&format!(
                    r#"{{"id":{},"err_msg":null,"output":{}}}"#,
                    v["id"], v["task"]
                ));
            }
            "v1-failing-pc1" => {
                let v: Value = serde_json::from_str(&line)?;
                count_attempt();
                out(&format!(
                    r#"{{"id":{},"err_msg":"test double: this v1 pc1 always fails","output":null}}"#,
                    v["id"]
                ));
            }
            "garbage" => out("this is not json at all"),
            "mute" => {}
            "reverse" => {
                held.push(serde_json::from_str(&line)?);
                if held.len() == 3 {
                    for v in held.drain(..).rev() {
                        out(&format!(
                            r#"{{"id":{},"err_msg":null,"output":{}}}"#,
                            v["id"], v["task"]
                        ));
                    }
                }
            }
            other => anyhow::bail!("unknown mode {other:?}"),
        }
    }
    Ok(())
}
