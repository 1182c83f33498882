//! The child side: serve one stage over stdin/stdout.
//!
//! ```no_run
//! use vc_processors::consumer::{run_consumer, Ctx};
//! use vc_processors::tasks::TreeD;
//!
//! fn main() -> anyhow::Result<()> {
//!     run_consumer(|task: TreeD, _ctx: &Ctx| {
//!         // ... build the tree ...
//!         Ok(true)
//!     })
//! }
//! ```
//!
//! The consumer prints the opening line (v1 ready line, or a v2 hello when the
//! parent announced v2), answers every request it can identify, and never writes
//! anything but protocol lines to stdout: [`run_consumer`] keeps the protocol
//! stream for itself and points the process' stdout at stderr, so a stray print
//! in a processor ends up in the log, not in the protocol. Requests run concurrently on an elastic
//! thread pool: idle threads are reused, new ones are started when all are busy,
//! so a burst of tiny tasks costs no thread start each, and long proofs never queue
//! behind each other (the parent decides concurrency).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::value::RawValue;

use crate::error::{classify, render};
use crate::protocol::{
    self, ChildFrame, ErrorKind, Hello, ParentFrame, ParentLine, Progress, Request, Response,
};
use crate::task::Task;

/// Something that runs tasks of one stage. Blocking: it runs on a pool thread.
pub trait Processor<T: Task>: Send + Sync + 'static {
    fn process(&self, task: T, ctx: &Ctx) -> Result<T::Output>;
}

impl<T, F> Processor<T> for F
where
    T: Task,
    F: Fn(T, &Ctx) -> Result<T::Output> + Send + Sync + 'static,
{
    fn process(&self, task: T, ctx: &Ctx) -> Result<T::Output> {
        self(task, ctx)
    }
}

/// What a running task may ask of its parent. With a v1 parent, progress goes to
/// the log only, and there are no deadlines or cancellations.
pub struct Ctx {
    id: u64,
    cancelled: Arc<AtomicBool>,
    deadline: Option<Instant>,
    out: Option<mpsc::Sender<Out>>,
}

impl Ctx {
    /// A context for running a processor outside any protocol (in-process use).
    pub fn detached() -> Ctx {
        Ctx {
            id: 0,
            cancelled: Arc::new(AtomicBool::new(false)),
            deadline: None,
            out: None,
        }
    }

    /// The request id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True once the parent cancelled this request; long processors should check
    /// it between steps and return early.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// When the parent will give up on this request, if it said so.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Reports that `step` of `total` steps are done.
    pub fn progress(&self, step: u64, total: u64, note: Option<&str>) {
        let p = Progress {
            id: self.id,
            step,
            total,
            note: note.map(str::to_string),
        };
        tracing::debug!(id = self.id, step, total, note, "progress");
        if let Some(out) = &self.out {
            let line =
                serde_json::to_string(&ChildFrame::Progress(p)).expect("progress serializes");
            let _ = out.send(Out::Line(line));
        }
    }
}

/// Options for [`serve`]; [`run_consumer`] takes them from the environment.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Speak v2 (the parent announced it).
    pub v2: bool,
    /// v2 heartbeat interval.
    pub heartbeat: Duration,
}

impl ServeOptions {
    /// Reads `VC_PROCESSORS_PROTOCOL` and `VC_PROCESSORS_HEARTBEAT_MS`.
    pub fn from_env() -> ServeOptions {
        let v2 = std::env::var(protocol::PROTOCOL_ENV)
            .map(|v| v.trim().split('.').next() == Some("2"))
            .unwrap_or(false);
        let heartbeat = std::env::var(protocol::HEARTBEAT_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(2));
        ServeOptions { v2, heartbeat }
    }
}

/// Serves stage `T` on this process' stdin/stdout until stdin closes.
///
/// Applies the cgroup/NUMA placement a damocles parent asks for through
/// `VC_CG_NAME`/`VC_CG_CPUSET`/`VENUS_WORKER_NUMA_PREFERRED` first.
pub fn run_consumer<T: Task, P: Processor<T>>(processor: P) -> Result<()> {
    crate::sys::apply_placement_from_env();
    let protocol_out = take_stdout_for_protocol().context("reserve stdout for the protocol")?;
    let stdin = std::io::stdin().lock();
    serve::<T, P, _, _>(processor, stdin, protocol_out, ServeOptions::from_env())
}

/// Moves the protocol stream to a private descriptor and points fd 1 at stderr,
/// so a stray `println!` in a processor or a library it calls lands in the log
/// instead of corrupting the protocol.
fn take_stdout_for_protocol() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain descriptor syscalls; the new descriptor is owned by the File.
    unsafe {
        let private = libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3);
        if private < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) < 0 {
            let err = std::io::Error::last_os_error();
            libc::close(private);
            return Err(err);
        }
        Ok(std::fs::File::from_raw_fd(private))
    }
}

/// Serves stage `T`: reads request lines from `input`, writes protocol lines to
/// `output`. Returns when `input` reaches EOF.
pub fn serve<T, P, R, W>(processor: P, input: R, output: W, opts: ServeOptions) -> Result<()>
where
    T: Task,
    P: Processor<T>,
    R: BufRead,
    W: Write + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::channel::<Out>();
    let writer = std::thread::Builder::new()
        .name("vc-consumer-out".into())
        .spawn(move || write_lines(out_rx, output))
        .context("start output thread")?;

    let opening = if opts.v2 {
        serde_json::to_string(&Hello::ours(T::STAGE)).expect("hello serializes")
    } else {
        protocol::ready_line(T::STAGE)
    };
    out_tx.send(Out::Line(opening)).expect("writer alive");

    let stop_heartbeat = Arc::new(AtomicBool::new(false));
    if opts.v2 {
        let tx = out_tx.clone();
        let stop = stop_heartbeat.clone();
        let every = opts.heartbeat;
        std::thread::Builder::new()
            .name("vc-consumer-heartbeat".into())
            .spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    n += 1;
                    let line =
                        serde_json::to_string(&ChildFrame::Heartbeat(n)).expect("serializes");
                    if tx.send(Out::Line(line)).is_err() {
                        break;
                    }
                }
            })
            .context("start heartbeat thread")?;
    }

    let shared = Arc::new(Shared::<T, P> {
        processor,
        out: out_tx.clone(),
        v2: opts.v2,
        running: Mutex::new(HashMap::new()),
        in_flight: AtomicUsize::new(0),
        _t: std::marker::PhantomData,
    });
    let pool = ElasticPool::new();

    for line in input.lines() {
        let line = line.context("read request from stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        match ParentLine::parse(&line) {
            Ok(ParentLine::Request(req)) => {
                shared.in_flight.fetch_add(1, Ordering::AcqRel);
                // Registered before it runs, so a cancel right behind it is not lost.
                let cancelled = Arc::new(AtomicBool::new(false));
                shared
                    .running
                    .lock()
                    .expect("poisoned")
                    .insert(req.id, cancelled.clone());
                let shared = shared.clone();
                pool.execute(Box::new(move || shared.run(req, cancelled)));
            }
            Ok(ParentLine::Frame(ParentFrame::Cancel(id))) => {
                if let Some(flag) = shared.running.lock().expect("poisoned").get(&id) {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => match serde_json::from_str::<protocol::RequestId>(&line) {
                // An id but no usable request: answer, so the parent does not wait.
                Ok(protocol::RequestId { id }) => {
                    let kind = shared.v2.then_some(ErrorKind::Permanent);
                    let resp = Response::<()>::err(
                        id,
                        format!("unreadable {} request: {e}", T::STAGE),
                        kind,
                    );
                    let _ =
                        out_tx.send(Out::Line(serde_json::to_string(&resp).expect("serializes")));
                }
                Err(_) => {
                    // No id to answer: the parent's own timeout covers the request.
                    tracing::error!(stage = T::STAGE, "skipping unreadable request line: {e}");
                }
            },
        }
    }

    // stdin closed: the parent sends no more requests. Finish what runs (a
    // pipe such as `echo '{..}' | processor` still wants its answer), flush, exit.
    tracing::debug!(stage = T::STAGE, "stdin closed; finishing running tasks");
    stop_heartbeat.store(true, Ordering::Relaxed);
    while shared.in_flight.load(Ordering::Acquire) > 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (ack_tx, ack_rx) = mpsc::channel();
    if out_tx.send(Out::Flush(ack_tx)).is_ok() {
        let _ = ack_rx.recv_timeout(Duration::from_secs(10));
    }
    drop(pool);
    drop(writer);
    Ok(())
}

struct Shared<T, P> {
    processor: P,
    out: mpsc::Sender<Out>,
    v2: bool,
    running: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    in_flight: AtomicUsize,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Task, P: Processor<T>> Shared<T, P> {
    fn run(&self, req: Request<Box<RawValue>>, cancelled: Arc<AtomicBool>) {
        let id = req.id;
        let ctx = Ctx {
            id,
            cancelled,
            deadline: req
                .timeout_ms
                .map(|ms| Instant::now() + Duration::from_millis(ms)),
            out: self.v2.then(|| self.out.clone()),
        };

        let result = serde_json::from_str::<T>(req.task.get())
            .with_context(|| format!("cannot decode {} task", T::STAGE))
            .map_err(crate::error::permanent)
            .and_then(|task| {
                let started = Instant::now();
                let r = catch_panic(|| self.processor.process(task, &ctx));
                tracing::debug!(stage = T::STAGE, id, elapsed = ?started.elapsed(), ok = r.is_ok(), "task done");
                r
            });

        self.running.lock().expect("poisoned").remove(&id);
        let line = if ctx.is_cancelled() {
            serde_json::to_string(&Response::<()>::err(
                id,
                "cancelled by the parent".into(),
                self.v2.then_some(ErrorKind::Cancelled),
            ))
        } else {
            match result {
                Ok(output) => serde_json::to_string(&Response::ok(id, output)),
                Err(e) => {
                    tracing::warn!(stage = T::STAGE, id, "task failed: {e:#}");
                    let kind = self.v2.then(|| classify(&e));
                    serde_json::to_string(&Response::<()>::err(id, render(&e), kind))
                }
            }
        };
        let line = line.unwrap_or_else(|e| {
            serde_json::to_string(&Response::<()>::err(
                id,
                format!("cannot encode {} output: {e}", T::STAGE),
                self.v2.then_some(ErrorKind::Permanent),
            ))
            .expect("error response serializes")
        });
        let _ = self.out.send(Out::Line(line));
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `f`, turning a panic into an error so one bad task does not take down a
/// child that serves others.
pub fn catch_panic<O>(f: impl FnOnce() -> Result<O>) -> Result<O> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            Err(anyhow::anyhow!("panic: {msg}"))
        }
    }
}

/// What the output thread is asked to do.
enum Out {
    Line(String),
    /// Flush, then signal.
    Flush(mpsc::Sender<()>),
}

/// Writes lines, flushing only when no more are queued, so a burst of responses
/// goes out in few writes.
fn write_lines<W: Write>(rx: mpsc::Receiver<Out>, out: W) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Out::Line(line) => {
                    if out
                        .write_all(line.as_bytes())
                        .and_then(|_| out.write_all(b"\n"))
                        .is_err()
                    {
                        return;
                    }
                }
                Out::Flush(ack) => {
                    let _ = out.flush();
                    let _ = ack.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A pool that reuses idle threads and starts a new one when none is idle.
/// `idle` counts threads waiting for work; a dispatcher claims one by
/// decrementing it, and a thread retiring after a quiet minute must also claim
/// itself, so no job is ever left without a thread.
struct ElasticPool {
    tx: mpsc::Sender<Job>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    idle: Arc<AtomicUsize>,
}

impl ElasticPool {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        ElasticPool {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            idle: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn claim(idle: &AtomicUsize) -> bool {
        idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn execute(&self, job: Job) {
        let need_thread = !Self::claim(&self.idle);
        if self.tx.send(job).is_err() {
            return;
        }
        if need_thread {
            let rx = self.rx.clone();
            let idle = self.idle.clone();
            let spawned = std::thread::Builder::new()
                .name("vc-consumer-task".into())
                .spawn(move || loop {
                    let job = rx
                        .lock()
                        .expect("poisoned")
                        .recv_timeout(Duration::from_secs(60));
                    match job {
                        Ok(job) => {
                            job();
                            idle.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if Self::claim(&idle) {
                                return;
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a task thread: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Sqr(u64);
    impl Task for Sqr {
        const STAGE: &'static str = "sqr";
        type Output = u64;
    }

    #[derive(Clone)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);
    impl Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(input: &str, v2: bool) -> Vec<String> {
        let buf = SharedBuf(Arc::new(Mutex::new(Vec::new())));
        let proc = |t: Sqr, _: &Ctx| {
            if t.0 == 13 {
                anyhow::bail!("unlucky")
            }
            Ok(t.0 * t.0)
        };
        serve::<Sqr, _, _, _>(
            proc,
            input.as_bytes(),
            buf.clone(),
            ServeOptions {
                v2,
                heartbeat: Duration::from_secs(3600),
            },
        )
        .unwrap();
        // Pool threads answer asynchronously; wait for all of them.
        let want = input.lines().filter(|l| l.contains("\"id\"")).count() + 1;
        for _ in 0..200 {
            let n = String::from_utf8(buf.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .count();
            if n >= want {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut lines: Vec<String> = String::from_utf8(buf.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        lines[1..].sort();
        lines
    }

    #[test]
    fn v1_session() {
        let lines = run("{\"id\":1,\"task\":3}\n{\"id\":2,\"task\":13}\n{\"id\":3,\"task\":\"x\"}\nnot json\n{\"id\":4}\n", false);
        assert_eq!(lines[0], "sqr processor ready");
        assert_eq!(lines[1], r#"{"id":1,"err_msg":null,"output":9}"#);
        assert_eq!(lines[2], r#"{"id":2,"err_msg":"unlucky","output":null}"#);
        assert!(
            lines[3].starts_with(r#"{"id":3,"err_msg":"cannot decode sqr task"#),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with(r#"{"id":4,"err_msg":"unreadable sqr request"#),
            "{}",
            lines[4]
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn v2_session_has_hello_and_kinds() {
        let lines = run("{\"id\":1,\"task\":13}\n", true);
        let hello: Hello = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(hello.stage, "sqr");
        assert!(hello.has(protocol::features::CANCEL));
        assert_eq!(
            lines[1],
            r#"{"id":1,"err_msg":"unlucky","output":null,"error":{"kind":"permanent"}}"#
        );
    }
}
