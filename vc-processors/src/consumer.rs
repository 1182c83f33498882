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
//! in a processor ends up in the log, not in the protocol.
//!
//! Requests run concurrently on an elastic set of threads (idle ones are reused,
//! a new one starts when all are busy; the parent decides concurrency). Exactly
//! one thread at a time reads stdin. A request that arrives while nothing else
//! runs and nothing else is queued is run by the thread that read it, which
//! first hands reading over to another thread; the response is written by the
//! thread that made it. So a lone request crosses no thread between its read and
//! its response, and a burst of them is spread over the pool and written in few
//! writes.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::Scope;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::value::RawValue;

use crate::error::{classify, render};
use crate::protocol::{
    self, ChildFrame, ErrorKind, Hello, ParentFrame, ParentLine, Progress, Request, Response,
};
use crate::task::Task;

/// Something that runs tasks of one stage. Blocking: it runs on a thread of its own.
pub trait Processor<T: Task>: Send + Sync + 'static {
    /// Runs one task; an error becomes the response's `err_msg` (and, for a
    /// v2 parent, its class, see [`crate::error::classify`]).
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
    out: Option<Arc<dyn LineSink>>,
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
            match serde_json::to_string(&ChildFrame::Progress(p)) {
                Ok(line) => out.line(&line),
                Err(e) => tracing::warn!(id = self.id, "cannot encode a progress frame: {e}"),
            }
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
    serve::<T, P, _, _>(
        processor,
        std::io::stdin(),
        protocol_out,
        ServeOptions::from_env(),
    )
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

/// How long a thread with nothing to do waits before it exits.
const IDLE_RETIRE: Duration = Duration::from_secs(60);
/// A thread that finished a job searches for the next before it sleeps: it
/// spins for `SPIN_ROUNDS` rounds of 1, 2, 4 … 32 pauses (about 2 µs in all),
/// then yields the CPU for the rest of `SEARCH_ROUNDS` rounds. Measured on 2
/// cores: without a search every job costs a wake-up and pipelined throughput
/// halves; searching longer only burns CPU.
const SPIN_ROUNDS: u32 = 6;
const SEARCH_ROUNDS: u32 = 10;
/// A write buffer grown past this by a large line is not kept for the next.
const KEEP_BUFFER: usize = 1 << 20;

/// Serves stage `T`: reads request lines from `input`, writes protocol lines to
/// `output`. Returns when `input` reaches EOF and every request read has been
/// answered.
pub fn serve<T, P, R, W>(processor: P, input: R, output: W, opts: ServeOptions) -> Result<()>
where
    T: Task,
    P: Processor<T>,
    R: Read + Send,
    W: Write + Send + 'static,
{
    let out = Arc::new(Output::new(output));
    let opening = if opts.v2 {
        serde_json::to_string(&Hello::ours(T::STAGE)).context("encode the hello")?
    } else {
        protocol::ready_line(T::STAGE)
    };
    out.line(&opening);

    let server = Server::<T, P, R, W> {
        processor,
        out,
        v2: opts.v2,
        // Large enough that a burst of requests is read in few system calls.
        input: Mutex::new(BufReader::with_capacity(64 * 1024, input)),
        running: Mutex::new(HashMap::new()),
        in_flight: AtomicUsize::new(0),
        sched: Mutex::new(Sched {
            jobs: VecDeque::from([Job::Read]),
            idle: 0,
            claimed: 0,
            eof: false,
        }),
        work: Condvar::new(),
        searching: AtomicUsize::new(0),
        tokens: AtomicUsize::new(0),
        ended: Condvar::new(),
        read_error: Mutex::new(None),
        _t: PhantomData,
    };
    std::thread::scope(|s| -> Result<()> {
        if opts.v2 {
            let server = &server;
            std::thread::Builder::new()
                .name("vc-consumer-heartbeat".into())
                .spawn_scoped(s, move || server.heartbeats(opts.heartbeat))
                .context("start heartbeat thread")?;
        }
        // This thread reads first, then serves like any other.
        server.work(s);
        Ok(())
    })?;

    // Every thread is done: stdin closed and every request read was answered
    // and written.
    tracing::debug!(stage = T::STAGE, "stdin closed; all requests answered");
    let read_error = lock(&server.read_error).take();
    match read_error {
        Some(e) => Err(e).context("read request from stdin"),
        None => Ok(()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves nothing half-done that
    // matters (processor panics are caught outside them): keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where progress frames go: the protocol output, whatever its writer type.
trait LineSink: Send + Sync {
    fn line(&self, line: &str);
}

/// The protocol stream, shared by every thread that answers. A thread queues
/// its line, then writes everything queued if no other thread is writing; a
/// writer looks at the queue again after letting go, so no line is left
/// behind. Nobody ever waits for a write: a lone line goes out at once, in one
/// system call, and lines made during a write go out together in the next.
struct Output<W: Write> {
    queued: Mutex<Vec<u8>>,
    /// The stream, and a spare buffer to swap with `queued`.
    w: Mutex<(W, Vec<u8>)>,
}

impl<W: Write> Output<W> {
    fn new(w: W) -> Self {
        Output {
            queued: Mutex::new(Vec::new()),
            w: Mutex::new((w, Vec::new())),
        }
    }
}

impl<W: Write + Send> LineSink for Output<W> {
    fn line(&self, line: &str) {
        {
            let mut queued = lock(&self.queued);
            queued.extend_from_slice(line.as_bytes());
            queued.push(b'\n');
        }
        loop {
            let mut w = match self.w.try_lock() {
                Ok(w) => w,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                // The writer will find our line when it looks again.
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            let (stream, batch) = &mut *w;
            std::mem::swap(batch, &mut *lock(&self.queued));
            if batch.is_empty() {
                return;
            }
            // A failed write means the parent is gone; stdin will close and end us.
            let _ = stream.write_all(batch).and_then(|()| stream.flush());
            if batch.capacity() > KEEP_BUFFER {
                *batch = Vec::new();
            } else {
                batch.clear();
            }
            drop(w);
            if lock(&self.queued).is_empty() {
                return;
            }
        }
    }
}

/// Work for the serving threads.
enum Job {
    /// Read stdin until a request is to run on this thread or stdin ends.
    Read,
    /// Run a request read by another thread.
    Run(Request<Box<RawValue>>, Arc<AtomicBool>),
}

/// The serving threads' shared state. Each queued job claims a thread of its
/// own, so no job waits for a busy one: a searching thread (one that just
/// finished a job and looks for the next for a few microseconds, which costs
/// no system call to claim), else a sleeping one (woken), else a new one.
struct Sched {
    jobs: VecDeque<Job>,
    /// Threads waiting on `work`.
    idle: usize,
    /// Wake-ups owed to waiting threads; never more than `idle`.
    claimed: usize,
    /// stdin ended: threads exit once the queue is empty.
    eof: bool,
}

struct Server<T, P, R, W: Write> {
    processor: P,
    out: Arc<Output<W>>,
    v2: bool,
    /// Only the thread running `Job::Read` touches it.
    input: Mutex<BufReader<R>>,
    /// Cancel flags of the requests read and not yet answered.
    running: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    in_flight: AtomicUsize,
    sched: Mutex<Sched>,
    work: Condvar,
    /// Searching threads not yet claimed.
    searching: AtomicUsize,
    /// Claims on searching threads not yet taken up.
    tokens: AtomicUsize,
    /// Signalled when stdin ends, for the heartbeat thread.
    ended: Condvar,
    read_error: Mutex<Option<std::io::Error>>,
    _t: PhantomData<fn(T)>,
}

impl<T, P, R, W> Server<T, P, R, W>
where
    T: Task,
    P: Processor<T>,
    R: Read + Send,
    W: Write + Send + 'static,
{
    /// A serving thread: runs jobs until stdin ended and none is left, or until
    /// it has been idle for [`IDLE_RETIRE`].
    fn work<'s>(&'s self, s: &'s Scope<'s, '_>) {
        loop {
            let job = lock(&self.sched).jobs.pop_front();
            if let Some(job) = job {
                self.run_job(s, job);
                continue;
            }
            // Under load the next job comes within microseconds: look for it
            // before sleeping, so that claiming this thread needs no wake-up.
            if self.search() {
                continue;
            }
            let mut sched = lock(&self.sched);
            if let Some(job) = sched.jobs.pop_front() {
                drop(sched);
                self.run_job(s, job);
                continue;
            }
            if sched.eof {
                return;
            }
            sched.idle += 1;
            loop {
                let (guard, waited) = self
                    .work
                    .wait_timeout(sched, IDLE_RETIRE)
                    .unwrap_or_else(PoisonError::into_inner);
                sched = guard;
                if sched.claimed > 0 {
                    sched.claimed -= 1;
                    sched.idle -= 1;
                    break;
                }
                if sched.eof {
                    sched.idle -= 1;
                    break;
                }
                if waited.timed_out() {
                    sched.idle -= 1;
                    return;
                }
            }
        }
    }

    fn run_job<'s>(&'s self, s: &'s Scope<'s, '_>, job: Job) {
        match job {
            Job::Read => self.read(s),
            Job::Run(req, cancelled) => self.run(req, cancelled),
        }
    }

    /// Spins, then yields, for a few microseconds as a searching thread; true
    /// if a job claimed this thread meanwhile.
    fn search(&self) -> bool {
        let take_token = || {
            self.tokens
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1))
                .is_ok()
        };
        self.searching.fetch_add(1, Ordering::AcqRel);
        for round in 0..SEARCH_ROUNDS {
            if take_token() {
                return true;
            }
            if round < SPIN_ROUNDS {
                for _ in 0..1 << round {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
        }
        loop {
            let n = self.searching.load(Ordering::Acquire);
            if n == 0 {
                // Every searching thread, this one included, has been claimed:
                // a token is on its way (pushers add it right after).
                while !take_token() {
                    std::hint::spin_loop();
                }
                return true;
            }
            if self
                .searching
                .compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return false;
            }
        }
    }

    /// Queues a job and claims a thread for it: a searching one, a sleeping one
    /// (woken), or a new one.
    fn push<'s>(&'s self, s: &'s Scope<'s, '_>, job: Job) {
        let mut sched = lock(&self.sched);
        sched.jobs.push_back(job);
        let searcher = self
            .searching
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if searcher {
            self.tokens.fetch_add(1, Ordering::AcqRel);
            return;
        }
        if sched.idle > sched.claimed {
            sched.claimed += 1;
            drop(sched);
            self.work.notify_one();
            return;
        }
        drop(sched);
        let spawned = std::thread::Builder::new()
            .name("vc-consumer-task".into())
            .spawn_scoped(s, move || self.work(s));
        if let Err(e) = spawned {
            // The job waits for a thread to come free.
            tracing::error!(stage = T::STAGE, "cannot start a task thread: {e}");
        }
    }

    /// Reads stdin. Requests go to the pool while others run or more input is
    /// already buffered; a request alone is run here, once reading has been
    /// handed over, so that it needs no other thread.
    fn read<'s>(&'s self, s: &'s Scope<'s, '_>) {
        let mut input = lock(&self.input);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match input.read_until(b'\n', &mut buf) {
                Ok(0) => return self.end(None),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return self.end(Some(e)),
            }
            // Bytes, not a String: a line that is not UTF-8 is one more
            // unreadable line, not the end of the input.
            let Some(line) = request_text(T::STAGE, &buf) else {
                continue;
            };
            match ParentLine::parse(line) {
                Ok(ParentLine::Request(req)) => {
                    let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0
                        && input.buffer().is_empty();
                    // Registered before it runs, so a cancel right behind it is not lost.
                    let cancelled = Arc::new(AtomicBool::new(false));
                    lock(&self.running).insert(req.id, cancelled.clone());
                    if alone {
                        drop(input);
                        self.push(s, Job::Read);
                        return self.run(req, cancelled);
                    }
                    self.push(s, Job::Run(req, cancelled));
                }
                Ok(ParentLine::Frame(ParentFrame::Cancel(id))) => {
                    if let Some(flag) = lock(&self.running).get(&id) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => match serde_json::from_str::<protocol::RequestId>(line) {
                    // An id but no usable request: answer, so the parent does not wait.
                    Ok(protocol::RequestId { id }) => {
                        let kind = self.v2.then_some(ErrorKind::Permanent);
                        let msg = format!("unreadable {} request: {e}", T::STAGE);
                        self.out.line(&error_line(id, msg, kind));
                    }
                    Err(_) => {
                        // No id to answer: the parent's own timeout covers the request.
                        tracing::error!(stage = T::STAGE, "skipping unreadable request line: {e}");
                    }
                },
            }
        }
    }

    /// stdin ended (or failed): the parent sends nothing more. Requests already
    /// read still run and are answered (a pipe such as `echo '{..}' | processor`
    /// wants its answer); then every thread exits.
    fn end(&self, error: Option<std::io::Error>) {
        if let Some(e) = error {
            *lock(&self.read_error) = Some(e);
        }
        lock(&self.sched).eof = true;
        self.work.notify_all();
        self.ended.notify_all();
    }

    fn heartbeats(&self, every: Duration) {
        let mut n = 0u64;
        loop {
            let sched = lock(&self.sched);
            let (sched, _) = self
                .ended
                .wait_timeout_while(sched, every, |s| !s.eof)
                .unwrap_or_else(PoisonError::into_inner);
            if sched.eof {
                return;
            }
            drop(sched);
            n += 1;
            match serde_json::to_string(&ChildFrame::Heartbeat(n)) {
                Ok(line) => self.out.line(&line),
                Err(e) => tracing::warn!("cannot encode a heartbeat: {e}"),
            }
        }
    }

    fn run(&self, req: Request<Box<RawValue>>, cancelled: Arc<AtomicBool>) {
        let id = req.id;
        let ctx = Ctx {
            id,
            cancelled,
            deadline: req
                .timeout_ms
                .map(|ms| Instant::now() + Duration::from_millis(ms)),
            out: self.v2.then(|| self.out.clone() as Arc<dyn LineSink>),
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

        lock(&self.running).remove(&id);
        let line = if ctx.is_cancelled() {
            error_line(
                id,
                "cancelled by the parent".into(),
                self.v2.then_some(ErrorKind::Cancelled),
            )
        } else {
            let encoded = match result {
                Ok(output) => serde_json::to_string(&Response::ok(id, output)),
                Err(e) => {
                    tracing::warn!(stage = T::STAGE, id, "task failed: {e:#}");
                    let kind = self.v2.then(|| classify(&e));
                    serde_json::to_string(&Response::<()>::err(id, render(&e), kind))
                }
            };
            encoded.unwrap_or_else(|e| {
                error_line(
                    id,
                    format!("cannot encode {} output: {e}", T::STAGE),
                    self.v2.then_some(ErrorKind::Permanent),
                )
            })
        };
        // Before the write: the parent may send the next request as soon as it
        // reads this answer, and that request should find nothing in flight.
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.out.line(&line);
    }
}

/// The text of a request line without its line ending; `None` for a blank
/// line, or one that is not UTF-8 (logged: it has no id to answer).
fn request_text<'a>(stage: &str, raw: &'a [u8]) -> Option<&'a str> {
    match std::str::from_utf8(raw) {
        Ok(text) => {
            let line = text.trim_end_matches(['\n', '\r']);
            (!line.trim().is_empty()).then_some(line)
        }
        Err(e) => {
            tracing::error!(
                stage,
                "skipping a request line that is not UTF-8 ({e}): {}",
                // Cut before the lossy copy: the line may be huge.
                protocol::truncate_line(&String::from_utf8_lossy(
                    &raw[..raw.len().min(protocol::MALFORMED_LINE_LIMIT + 4)]
                ))
            );
            None
        }
    }
}

/// An error response line. Its fields are a number, a string and an enum, which
/// always encode; the fallback only keeps this free of a panic path.
fn error_line(id: u64, msg: String, kind: Option<ErrorKind>) -> String {
    serde_json::to_string(&Response::<()>::err(id, msg, kind))
        .unwrap_or_else(|_| format!(r#"{{"id":{id},"err_msg":"unencodable error","output":null}}"#))
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
        run_bytes(input.as_bytes(), v2)
    }

    fn run_bytes(input: &[u8], v2: bool) -> Vec<String> {
        let buf = SharedBuf(Arc::new(Mutex::new(Vec::new())));
        let proc = |t: Sqr, _: &Ctx| {
            if t.0 == 13 {
                anyhow::bail!("unlucky")
            }
            Ok(t.0 * t.0)
        };
        serve::<Sqr, _, _, _>(
            proc,
            input,
            buf.clone(),
            ServeOptions {
                v2,
                heartbeat: Duration::from_secs(3600),
            },
        )
        .unwrap();
        // serve returns once every request read has been answered.
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
    fn a_line_that_is_not_utf8_is_skipped_like_any_unreadable_line() {
        // First, between requests, and last without a newline.
        let lines = run_bytes(
            b"\xff\n{\"id\":1,\"task\":3}\n{\"id\":\xc3\x28}\n{\"id\":2,\"task\":4}\n\xfe",
            false,
        );
        assert_eq!(
            lines,
            [
                "sqr processor ready",
                r#"{"id":1,"err_msg":null,"output":9}"#,
                r#"{"id":2,"err_msg":null,"output":16}"#,
            ]
        );
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

    /// Input fed line by line from the test, so requests arrive one at a time.
    struct Feed(std::sync::mpsc::Receiver<String>, Vec<u8>);
    impl Read for Feed {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(line) => self.1 = line.into_bytes(),
                    Err(_) => return Ok(0),
                }
            }
            let n = out.len().min(self.1.len());
            out[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    fn wait_for(buf: &SharedBuf, needle: &str) -> String {
        for _ in 0..500 {
            let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no line with {needle:?}");
    }

    /// A request run by the thread that read it must not stop reading: a second
    /// request and a cancel frame still get through while it runs.
    #[test]
    fn a_request_run_inline_does_not_block_reading() {
        let buf = SharedBuf(Arc::new(Mutex::new(Vec::new())));
        let (tx, rx) = std::sync::mpsc::channel();
        let second_done = Arc::new(AtomicBool::new(false));
        let flag = second_done.clone();
        let proc = move |t: Sqr, ctx: &Ctx| {
            match t.0 {
                // Runs until the second request has been answered, then until cancelled.
                1 => {
                    while !flag.load(Ordering::SeqCst) || !ctx.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(1)
                }
                2 => {
                    flag.store(true, Ordering::SeqCst);
                    Ok(4)
                }
                n => Ok(n * n),
            }
        };
        let out = buf.clone();
        let server = std::thread::spawn(move || {
            serve::<Sqr, _, _, _>(
                proc,
                Feed(rx, Vec::new()),
                out,
                ServeOptions {
                    v2: true,
                    heartbeat: Duration::from_secs(3600),
                },
            )
        });
        tx.send("{\"id\":1,\"task\":1}\n".into()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        tx.send("{\"id\":2,\"task\":2}\n".into()).unwrap();
        assert_eq!(
            wait_for(&buf, "\"id\":2"),
            r#"{"id":2,"err_msg":null,"output":4}"#
        );
        tx.send("{\"cancel\":1}\n".into()).unwrap();
        assert_eq!(
            wait_for(&buf, "\"id\":1"),
            r#"{"id":1,"err_msg":"cancelled by the parent","output":null,"error":{"kind":"cancelled"}}"#
        );
        // One at a time again, then the end of input.
        for i in 3..20u64 {
            tx.send(format!("{{\"id\":{i},\"task\":{i}}}\n")).unwrap();
            wait_for(&buf, &format!("\"id\":{i},"));
        }
        drop(tx);
        server.join().unwrap().unwrap();
    }
}
