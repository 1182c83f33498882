//! The parent side: spawn an ext-processor, send it tasks, supervise it.
//!
//! A [`Producer`] owns one child process. Many requests may be in flight; each
//! gets an id (from 1) and its response is matched by id, in whatever order the
//! child answers. A supervisor task restarts a child that exits (exponential
//! backoff, crash-loop detection), fails the requests it had in flight as
//! retryable, kills a child that hangs (request timeout, missing heartbeats) or
//! prints garbage, and re-applies the CPU/NUMA placement at every start. Each
//! child leads a process group of its own, and every kill takes the whole
//! group: a wrapper script's prover does not outlive it.

mod config;
mod error;

use std::collections::{HashMap, VecDeque};
use std::io::{IoSlice, Write as _};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, BufReader, Interest, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{oneshot, watch, Notify};

pub use self::config::{Backoff, EnvOverrides, ProducerConfig, ProtocolChoice};
pub use self::error::{ProcessorError, SpawnError};
use crate::protocol::{
    self, features, ChildFrame, ChildLine, ErrorKind, Hello, Opening, ParentFrame, Request,
};
use crate::sys;
use crate::task::Task;

type Reply = oneshot::Sender<Result<Box<RawValue>, ProcessorError>>;

/// A handle on a supervised ext-processor. Cheap to clone; the child is killed
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
    _alive: Arc<AliveGuard>,
}

struct AliveGuard(Arc<Notify>);
impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

struct Inner {
    cfg: ProducerConfig,
    next_id: AtomicU64,
    link: watch::Sender<LinkState>,
    restarts: AtomicU64,
}

#[derive(Clone)]
enum LinkState {
    Up(Arc<ChildLink>),
    /// Between children; requests wait for the next one.
    Restarting,
    /// No child and none coming soon: requests fail at once with this reason.
    Down(String),
}

/// One running child as requests see it.
struct ChildLink {
    pid: u32,
    hello: Option<Hello>,
    stdin: StdinWriter,
    /// In-flight requests; `None` once the child is gone, so that no request can
    /// be added after the others were failed.
    pending: Mutex<Option<HashMap<u64, Reply>>>,
    /// Requests cancelled after a timeout, with when the child must have confirmed.
    cancelling: Mutex<HashMap<u64, Instant>>,
    kill: Notify,
    kill_reason: Mutex<Option<String>>,
}

impl ChildLink {
    fn v2_has(&self, feature: &str) -> bool {
        self.hello.as_ref().is_some_and(|h| h.has(feature))
    }

    fn request_kill(&self, reason: String) {
        self.kill_reason
            .lock()
            .expect("poisoned")
            .get_or_insert(reason);
        self.kill.notify_one();
    }

    /// Fails every in-flight request and refuses new ones.
    fn fail_all(&self, err: impl Fn() -> ProcessorError) {
        let pending = self
            .pending
            .lock()
            .expect("poisoned")
            .take()
            .unwrap_or_default();
        for (_, reply) in pending {
            let _ = reply.send(Err(err()));
        }
    }

    /// Registers a request; false if the child is already gone.
    fn add_pending(&self, id: u64, reply: Reply) -> bool {
        match self.pending.lock().expect("poisoned").as_mut() {
            Some(map) => map.insert(id, reply).is_none(),
            None => false,
        }
    }

    fn take_pending(&self, id: u64) -> Option<Reply> {
        self.pending
            .lock()
            .expect("poisoned")
            .as_mut()
            .and_then(|m| m.remove(&id))
    }

    fn in_flight(&self) -> usize {
        self.pending
            .lock()
            .expect("poisoned")
            .as_ref()
            .map_or(0, |m| m.len())
    }
}

/// What [`Producer::status`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerStatus {
    /// The running child's pid, if one is up.
    pub pid: Option<u32>,
    /// Whether that child opened with a v2 hello.
    pub v2: bool,
    /// Restarts since the producer was made.
    pub restarts: u64,
    /// Requests in flight to the current child.
    pub in_flight: usize,
    /// Why no child is up, if none is and none is coming soon.
    pub down_reason: Option<String>,
}

impl Producer {
    /// Starts the child and waits for its opening line. Fails, with the child
    /// killed, on a wrong opening line, an early exit or a timeout.
    pub async fn spawn(cfg: ProducerConfig) -> Result<Producer, SpawnError> {
        let (session, link) = start_child(&cfg).await.map_err(|reason| SpawnError {
            stage: cfg.stage.clone(),
            command: cfg.command_line(),
            reason,
        })?;
        let (tx, _) = watch::channel(LinkState::Up(link.clone()));
        let inner = Arc::new(Inner {
            cfg,
            next_id: AtomicU64::new(1),
            link: tx,
            restarts: AtomicU64::new(0),
        });
        let shutdown = Arc::new(Notify::new());
        tokio::spawn(supervise(inner.clone(), session, link, shutdown.clone()));
        Ok(Producer {
            inner,
            _alive: Arc::new(AliveGuard(shutdown)),
        })
    }

    /// The configuration the producer was made with.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.cfg
    }

    /// The current child, restarts so far and requests in flight.
    pub fn status(&self) -> ProducerStatus {
        let restarts = self.inner.restarts.load(Ordering::Relaxed);
        match &*self.inner.link.borrow() {
            LinkState::Up(l) => ProducerStatus {
                pid: Some(l.pid),
                v2: l.hello.is_some(),
                restarts,
                in_flight: l.in_flight(),
                down_reason: None,
            },
            LinkState::Restarting => ProducerStatus {
                pid: None,
                v2: false,
                restarts,
                in_flight: 0,
                down_reason: None,
            },
            LinkState::Down(r) => ProducerStatus {
                pid: None,
                v2: false,
                restarts,
                in_flight: 0,
                down_reason: Some(r.clone()),
            },
        }
    }

    /// Runs `task` in the child and decodes its output.
    pub async fn process<T: Task>(&self, task: &T) -> Result<T::Output, ProcessorError> {
        self.process_within(task, self.inner.cfg.request_timeout)
            .await
    }

    /// [`Producer::process`] with this request's own time limit instead of
    /// the configured one (a PoSt must be done before its deadline closes,
    /// however long that leaves); `None` waits for as long as it takes.
    pub async fn process_within<T: Task>(
        &self,
        task: &T,
        limit: Option<Duration>,
    ) -> Result<T::Output, ProcessorError> {
        let stage = &self.inner.cfg.stage;
        if T::STAGE != stage {
            return Err(ProcessorError::Encode {
                stage: stage.clone(),
                detail: format!("this processor serves {stage:?}, not {:?}", T::STAGE),
            });
        }
        let task = serde_json::value::to_raw_value(task).map_err(|e| ProcessorError::Encode {
            stage: stage.clone(),
            detail: e.to_string(),
        })?;
        let raw = self.process_raw_within(&task, limit).await?;
        serde_json::from_str(raw.get()).map_err(|e| ProcessorError::Protocol {
            stage: stage.clone(),
            detail: format!(
                "cannot decode the output ({e}): {}",
                protocol::truncate_line(raw.get())
            ),
        })
    }

    /// Runs a task given as JSON and returns the output JSON undecoded.
    pub async fn process_raw(&self, task: &RawValue) -> Result<Box<RawValue>, ProcessorError> {
        self.process_raw_within(task, self.inner.cfg.request_timeout)
            .await
    }

    async fn process_raw_within(
        &self,
        task: &RawValue,
        request_timeout: Option<Duration>,
    ) -> Result<Box<RawValue>, ProcessorError> {
        let cfg = &self.inner.cfg;
        let started = Instant::now();
        let link = self.wait_for_link(started, request_timeout).await?;

        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let timeout_ms = request_timeout
            .filter(|_| link.v2_has(features::DEADLINE))
            .map(|t| t.saturating_sub(started.elapsed()).as_millis() as u64);
        let mut line = serde_json::to_vec(&Request {
            id,
            task,
            timeout_ms,
        })
        .map_err(|e| ProcessorError::Encode {
            stage: cfg.stage.clone(),
            detail: e.to_string(),
        })?;
        line.push(b'\n');

        let (tx, rx) = oneshot::channel();
        if !link.add_pending(id, tx) {
            return Err(ProcessorError::ChildExited {
                stage: cfg.stage.clone(),
                detail: "the child just exited".into(),
            });
        }
        if let Err(e) = link.stdin.send(line) {
            link.take_pending(id);
            link.request_kill(format!("write stdin: {e}"));
            return Err(ProcessorError::ChildExited {
                stage: cfg.stage.clone(),
                detail: format!("cannot write the request: {e}"),
            });
        }

        let answer = match request_timeout {
            None => rx.await,
            Some(limit) => {
                match tokio::time::timeout(limit.saturating_sub(started.elapsed()), rx).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        link.take_pending(id);
                        self.on_timeout(&link, id, limit);
                        return Err(ProcessorError::Timeout {
                            stage: cfg.stage.clone(),
                            after: limit,
                        });
                    }
                }
            }
        };
        answer.unwrap_or_else(|_| {
            Err(ProcessorError::ChildExited {
                stage: cfg.stage.clone(),
                detail: "reply dropped".into(),
            })
        })
    }

    fn on_timeout(&self, link: &ChildLink, id: u64, limit: Duration) {
        let stage = &self.inner.cfg.stage;
        if link.v2_has(features::CANCEL) {
            tracing::warn!(
                stage,
                pid = link.pid,
                id,
                ?limit,
                "request timed out; cancelling it"
            );
            link.cancelling
                .lock()
                .expect("poisoned")
                .insert(id, Instant::now() + self.inner.cfg.cancel_grace);
            // A frame that cannot be sent is caught by the cancel grace.
            if let Ok(mut frame) = serde_json::to_vec(&ParentFrame::Cancel(id)) {
                frame.push(b'\n');
                let _ = link.stdin.send(frame);
            }
        } else {
            tracing::error!(
                stage,
                pid = link.pid,
                id,
                ?limit,
                "request timed out; killing the processor"
            );
            link.request_kill(format!("request {id} timed out after {limit:?}"));
        }
    }

    async fn wait_for_link(
        &self,
        started: Instant,
        request_timeout: Option<Duration>,
    ) -> Result<Arc<ChildLink>, ProcessorError> {
        let mut rx = self.inner.link.subscribe();
        let stage = &self.inner.cfg.stage;
        loop {
            match &*rx.borrow_and_update() {
                LinkState::Up(l) => return Ok(l.clone()),
                LinkState::Down(reason) => {
                    return Err(ProcessorError::Unavailable {
                        stage: stage.clone(),
                        reason: reason.clone(),
                    })
                }
                LinkState::Restarting => {}
            }
            let changed = match request_timeout {
                None => rx.changed().await.is_ok(),
                Some(limit) => match tokio::time::timeout(
                    limit.saturating_sub(started.elapsed()),
                    rx.changed(),
                )
                .await
                {
                    Ok(r) => r.is_ok(),
                    Err(_) => {
                        return Err(ProcessorError::Timeout {
                            stage: stage.clone(),
                            after: limit,
                        })
                    }
                },
            };
            if !changed {
                return Err(ProcessorError::Unavailable {
                    stage: stage.clone(),
                    reason: "producer shut down".into(),
                });
            }
        }
    }
}

/// The parts of a running child that only the supervisor touches.
struct Session {
    child: GroupChild,
    /// `Lines::next_line` is cancel-safe, which the select loop relies on.
    stdout: Lines<BufReader<ChildStdout>>,
}

/// A child that leads a process group of its own. Every kill goes to the whole
/// group, so what the child started (the prover under a wrapper script) goes
/// with it; dropping it kills the group too.
struct GroupChild {
    child: Child,
    /// The group's id (the child's pid); `None` once the child has been reaped,
    /// after which the id may belong to someone else.
    pgid: Option<libc::pid_t>,
}

impl GroupChild {
    fn new(child: Child) -> GroupChild {
        let pgid = child.id().and_then(|pid| libc::pid_t::try_from(pid).ok());
        GroupChild { child, pgid }
    }

    /// SIGKILL to the child and everything in its group.
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: a plain system call with integer arguments. The group is
            // ours: its leader has not been reaped, so the id was not reused.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
        // The leader too, should it have left its group.
        let _ = self.child.start_kill();
    }

    /// Kills the group and reaps the child; its exit status, as text.
    async fn kill_and_wait(&mut self) -> String {
        self.kill();
        let status = self.child.wait().await;
        if status.is_ok() {
            self.pgid = None;
        }
        status.map_or_else(|e| e.to_string(), |s| s.to_string())
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The child's stdin. A request is written by the task that makes it, with a
/// non-blocking write, so sending wakes no other task or thread. What the pipe
/// cannot take at once waits in the backlog, later lines queue behind it, and
/// the session loop drains it as the child reads; lines never interleave.
struct StdinWriter {
    fd: AsyncFd<std::fs::File>,
    backlog: Mutex<Backlog>,
    /// Tells the session loop that the backlog is no longer empty.
    more: Notify,
}

#[derive(Default)]
struct Backlog {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the first chunk already written.
    written: usize,
}

/// At most this many chunks go into one `writev`.
const WRITEV_CHUNKS: usize = 64;

impl StdinWriter {
    fn new(stdin: tokio::process::ChildStdin) -> std::io::Result<StdinWriter> {
        let fd: OwnedFd = stdin.into_owned_fd()?;
        set_nonblocking(&fd)?;
        let file = std::fs::File::from(fd);
        // SAFETY: the File owns its descriptor, which stays open, and is the one
        // `as_raw_fd` returns, until the AsyncFd (and the File in it) is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(file, Interest::WRITABLE)? };
        Ok(StdinWriter {
            fd,
            backlog: Mutex::new(Backlog::default()),
            more: Notify::new(),
        })
    }

    fn backlog(&self) -> MutexGuard<'_, Backlog> {
        // Nothing is left half-done under this lock: a poisoned one is usable.
        self.backlog.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes a whole line (newline included), or queues what the pipe does not take.
    fn send(&self, line: Vec<u8>) -> std::io::Result<()> {
        let mut backlog = self.backlog();
        if !backlog.chunks.is_empty() {
            backlog.chunks.push_back(line);
            return Ok(());
        }
        let mut written = 0;
        while written < line.len() {
            match self.fd.get_ref().write(&line[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if written < line.len() {
            backlog.written = written;
            backlog.chunks.push_back(line);
            drop(backlog);
            self.more.notify_one();
        }
        Ok(())
    }

    /// Writes the backlog as the pipe takes it; returns only on a write error.
    /// Cancel-safe: it waits only while holding nothing.
    async fn drain(&self) -> std::io::Error {
        loop {
            if self.backlog().chunks.is_empty() {
                self.more.notified().await;
                continue;
            }
            let mut ready = match self.fd.writable().await {
                Ok(ready) => ready,
                Err(e) => return e,
            };
            let mut backlog = self.backlog();
            let Backlog { chunks, written } = &mut *backlog;
            let result = ready.try_io(|fd| {
                let mut slices = Vec::with_capacity(chunks.len().min(WRITEV_CHUNKS));
                for (i, chunk) in chunks.iter().take(WRITEV_CHUNKS).enumerate() {
                    let skip = if i == 0 { *written } else { 0 };
                    slices.push(IoSlice::new(&chunk[skip..]));
                }
                fd.get_ref().write_vectored(&slices)
            });
            match result {
                Ok(Ok(mut n)) => {
                    while let Some(front) = chunks.front() {
                        let left = front.len() - *written;
                        if n < left {
                            *written += n;
                            break;
                        }
                        n -= left;
                        *written = 0;
                        chunks.pop_front();
                    }
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return e,
                // Not writable after all; wait for the next readiness.
                Err(_would_block) => {}
            }
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with plain integer arguments.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) >= 0
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Spawns the child and reads its opening line.
async fn start_child(cfg: &ProducerConfig) -> Result<(Session, Arc<ChildLink>), String> {
    let mut cmd = Command::new(&cfg.bin);
    cmd.args(&cfg.args);
    if cfg.inherit_envs {
        cfg.env_overrides.apply(&mut cmd);
    } else {
        cmd.env_clear();
    }
    // Placement for children that apply it themselves (damocles consumers).
    if let Some(cpuset) = &cfg.placement.cpuset {
        cmd.env(sys::CG_CPUSET_ENV, cpuset);
        if let Some(cg) = &cfg.placement.cgroup {
            cmd.env(sys::CG_NAME_ENV, cg);
        }
    }
    if let Some(node) = cfg.placement.numa_preferred {
        cmd.env(sys::NUMA_PREFERRED_ENV, node.to_string());
    }
    if cfg.protocol == ProtocolChoice::Negotiate {
        cmd.env(protocol::PROTOCOL_ENV, "2");
        cmd.env(
            protocol::HEARTBEAT_ENV,
            cfg.heartbeat.as_millis().to_string(),
        );
    } else {
        cmd.env_remove(protocol::PROTOCOL_ENV);
    }
    cmd.envs(&cfg.envs);
    // A group of its own, so that a kill reaches the child's own children.
    cmd.process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    if !cfg.placement.is_empty() {
        let prepared = cfg
            .placement
            .prepare()
            .map_err(|e| format!("placement: {e:#}"))?;
        // SAFETY: apply_in_child only makes system calls on data computed above.
        unsafe {
            cmd.pre_exec(move || prepared.apply_in_child());
        }
    }

    // From here on, every way out of this function kills the group (drop).
    let mut child = GroupChild::new(cmd.spawn().map_err(|e| format!("spawn failed: {e}"))?);
    let pid = child.child.id().unwrap_or(0);
    let c = &mut child.child;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (c.stdin.take(), c.stdout.take(), c.stderr.take())
    else {
        return Err("spawned without its pipes".into());
    };
    let stdin = StdinWriter::new(stdin).map_err(|e| format!("set up stdin: {e}"))?;
    let mut stdout = BufReader::new(stdout);
    tokio::spawn(forward_stderr(cfg.stage.clone(), pid, stderr));

    let mut first = String::new();
    let read = tokio::time::timeout(cfg.ready_timeout, stdout.read_line(&mut first)).await;
    match read {
        Err(_) => return Err(format!("no ready line within {:?}", cfg.ready_timeout)),
        Ok(Err(e)) => return Err(format!("read ready line: {e}")),
        Ok(Ok(0)) => {
            // A child that already exited keeps its own status through the kill,
            // and what it left behind in its group goes.
            let status = tokio::time::timeout(Duration::from_secs(2), child.kill_and_wait())
                .await
                .unwrap_or_else(|_| "unknown status".into());
            return Err(format!("exited before its ready line ({status})"));
        }
        Ok(Ok(_)) => {}
    }
    let hello = match protocol::parse_opening(&first, &cfg.stage) {
        Ok(Opening::V1Ready) => None,
        Ok(Opening::V2(hello)) if cfg.protocol == ProtocolChoice::Negotiate => Some(hello),
        Ok(Opening::V2(_)) => return Err("sent a v2 hello to a v1-only parent".into()),
        Err(e) => return Err(e.to_string()),
    };
    tracing::info!(
        stage = cfg.stage,
        pid,
        v2 = hello.is_some(),
        command = cfg.command_line(),
        "processor ready"
    );

    let link = Arc::new(ChildLink {
        pid,
        hello,
        stdin,
        pending: Mutex::new(Some(HashMap::new())),
        cancelling: Mutex::new(HashMap::new()),
        kill: Notify::new(),
        kill_reason: Mutex::new(None),
    });
    Ok((
        Session {
            child,
            stdout: stdout.lines(),
        },
        link,
    ))
}

async fn forward_stderr(stage: String, pid: u32, stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "vc_processors::child", stage, pid, "{line}");
    }
}

/// Runs children one after another for as long as the producer lives.
async fn supervise(
    inner: Arc<Inner>,
    mut session: Session,
    mut link: Arc<ChildLink>,
    shutdown: Arc<Notify>,
) {
    let cfg = &inner.cfg;
    let mut exits: VecDeque<Instant> = VecDeque::new();
    let mut attempt: u32 = 0;
    let mut in_crash_loop = false;
    loop {
        let up_since = Instant::now();
        let ended = tokio::select! {
            detail = run_session(cfg, &mut session, &link) => Some(detail),
            _ = shutdown.notified() => None,
        };
        let Some(detail) = ended else {
            session.child.kill_and_wait().await;
            link.fail_all(|| ProcessorError::Unavailable {
                stage: cfg.stage.clone(),
                reason: "producer shut down".into(),
            });
            inner
                .link
                .send_replace(LinkState::Down("producer shut down".into()));
            return;
        };
        // New requests wait for the next child from here on.
        inner.link.send_replace(LinkState::Restarting);
        // Also when the child exited by itself: what it started goes too.
        let status = session.child.kill_and_wait().await;
        let detail = format!("{detail} ({status})");
        tracing::warn!(
            stage = cfg.stage,
            pid = link.pid,
            "processor stopped: {detail}"
        );
        link.fail_all(|| ProcessorError::ChildExited {
            stage: cfg.stage.clone(),
            detail: detail.clone(),
        });

        if !cfg.auto_restart {
            inner.link.send_replace(LinkState::Down(format!(
                "processor stopped ({detail}) and auto_restart is off"
            )));
            shutdown.notified().await;
            return;
        }
        if up_since.elapsed() >= cfg.backoff.stable_after {
            attempt = 0;
        }

        // Start again, pacing failures, until a child is up or the producer dies.
        loop {
            let now = Instant::now();
            exits.push_back(now);
            while exits
                .front()
                .is_some_and(|t| now.duration_since(*t) > cfg.backoff.crash_loop_window)
            {
                exits.pop_front();
            }
            let delay = cfg.backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            if exits.len() >= cfg.backoff.crash_loop_exits {
                let reason = format!(
                    "crash loop: {} exits within {:?}; last: {detail}; next start in {delay:?}",
                    exits.len(),
                    cfg.backoff.crash_loop_window
                );
                if !in_crash_loop {
                    tracing::error!(
                        stage = cfg.stage,
                        command = cfg.command_line(),
                        "processor is in a {reason}"
                    );
                }
                in_crash_loop = true;
                inner.link.send_replace(LinkState::Down(reason));
            } else {
                if in_crash_loop {
                    tracing::info!(stage = cfg.stage, "processor left its crash loop");
                }
                in_crash_loop = false;
                inner.link.send_replace(LinkState::Restarting);
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.notified() => {
                    inner.link.send_replace(LinkState::Down("producer shut down".into()));
                    return;
                }
            }
            match start_child(cfg).await {
                Ok((s, l)) => {
                    session = s;
                    link = l;
                    inner.restarts.fetch_add(1, Ordering::Relaxed);
                    inner.link.send_replace(LinkState::Up(link.clone()));
                    break;
                }
                Err(reason) => {
                    tracing::error!(
                        stage = cfg.stage,
                        command = cfg.command_line(),
                        "restart failed: {reason}"
                    );
                }
            }
        }
    }
}

/// Reads one child's stdout, and writes what its stdin could not take at once,
/// until it exits or must be killed; returns why.
async fn run_session(cfg: &ProducerConfig, s: &mut Session, link: &ChildLink) -> String {
    let mut last_heard = Instant::now();
    let watch_liveness = link.v2_has(features::HEARTBEAT);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            read = s.stdout.next_line() => {
                let line = match read {
                    Ok(Some(line)) => line,
                    Ok(None) => return "stdout closed".into(),
                    Err(e) => return format!("read stdout: {e}"),
                };
                last_heard = Instant::now();
                if let Err(reason) = dispatch(cfg, link, line.trim_end()) {
                    return reason;
                }
            }
            e = link.stdin.drain() => return format!("write stdin: {e}"),
            _ = link.kill.notified() => {
                return link.kill_reason.lock().expect("poisoned").clone().unwrap_or_else(|| "killed".into());
            }
            _ = tick.tick() => {
                if watch_liveness && last_heard.elapsed() > cfg.liveness_timeout() {
                    return format!("no heartbeat for {:?}: hung", last_heard.elapsed());
                }
                let now = Instant::now();
                let overdue = link.cancelling.lock().expect("poisoned").iter().find(|(_, t)| **t < now).map(|(id, _)| *id);
                if let Some(id) = overdue {
                    return format!("request {id} was cancelled and not confirmed within {:?}", cfg.cancel_grace);
                }
            }
        }
    }
}

/// Handles one line from the child. An error means the stream can no longer be
/// trusted and the child must go.
fn dispatch(cfg: &ProducerConfig, link: &ChildLink, line: &str) -> Result<(), String> {
    if line.is_empty() {
        return Ok(());
    }
    let parsed = ChildLine::parse(line);
    // v1 children may only send responses.
    let parsed = match parsed {
        Ok(ChildLine::Frame(_) | ChildLine::UnknownFrame(_)) if link.hello.is_none() => {
            Err(protocol::MalformedLine {
                reason: "frame from a v1 child".into(),
                line: protocol::truncate_line(line),
            })
        }
        other => other,
    };
    match parsed {
        Ok(ChildLine::Response(resp)) => {
            let cancelled = link
                .cancelling
                .lock()
                .expect("poisoned")
                .remove(&resp.id)
                .is_some();
            let reply = link.take_pending(resp.id);
            match reply {
                Some(reply) => {
                    let result = match (resp.err_msg, resp.output) {
                        (Some(message), _) => Err(ProcessorError::Failed {
                            stage: cfg.stage.clone(),
                            kind: resp.error.map(|e| e.kind),
                            message,
                        }),
                        (None, Some(output)) => Ok(output),
                        (None, None) => {
                            unreachable!("ChildLine::parse rejects responses without either")
                        }
                    };
                    let _ = reply.send(result);
                }
                None if cancelled => {
                    tracing::debug!(stage = cfg.stage, id = resp.id, "cancellation confirmed")
                }
                None => tracing::warn!(
                    stage = cfg.stage,
                    id = resp.id,
                    "response to an unknown request id; ignored"
                ),
            }
            Ok(())
        }
        Ok(ChildLine::Frame(ChildFrame::Heartbeat(_))) => Ok(()),
        Ok(ChildLine::UnknownFrame(key)) => {
            tracing::debug!(
                stage = cfg.stage,
                frame = key,
                "ignoring a frame this version does not know"
            );
            Ok(())
        }
        Ok(ChildLine::Frame(ChildFrame::Progress(p))) => {
            tracing::info!(
                stage = cfg.stage,
                pid = link.pid,
                id = p.id,
                step = p.step,
                total = p.total,
                note = p.note,
                "progress"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(
                stage = cfg.stage,
                pid = link.pid,
                "malformed line from processor: {e}"
            );
            link.fail_all(|| ProcessorError::Protocol {
                stage: cfg.stage.clone(),
                detail: e.to_string(),
            });
            Err(format!("malformed line: {e}"))
        }
    }
}

impl ErrorKind {
    /// Whether a request that failed this way may be sent again.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Retryable | ErrorKind::Resource | ErrorKind::Timeout
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// A task whose request line is as long as its string.
    #[derive(Serialize, Deserialize)]
    struct Echo(String);
    impl Task for Echo {
        const STAGE: &'static str = "echo";
        type Output = u64;
    }

    /// Requests larger than the pipe, sent while the child is not reading yet,
    /// go through the backlog whole and in order, small ones queued behind them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_the_pipe_cannot_take_at_once_arrive_whole() {
        // Answers each request with its id and the length of its line.
        let script = r#"echo "echo processor ready"; sleep 0.3
            while IFS= read -r line; do
                id=${line#*\"id\":}; id=${id%%,*}
                echo "{\"id\":$id,\"err_msg\":null,\"output\":${#line}}"
            done"#;
        let mut cfg = ProducerConfig::new("echo", "sh", vec!["-c".into(), script.into()]);
        cfg.protocol = ProtocolChoice::V1Only;
        let p = Producer::spawn(cfg).await.expect("spawn sh");
        let sizes = [300_000usize, 10, 200_000, 5, 70_000, 1];
        let calls = sizes.iter().map(|&n| {
            let p = p.clone();
            async move {
                let task = Echo("x".repeat(n));
                let want = serde_json::to_string(&task).unwrap().len();
                (p.process(&task).await.unwrap(), want)
            }
        });
        for (got, want) in futures_join_all(calls).await {
            // The line is `{"id":N,"task":"xx…"}`: the task plus the id's wrapping.
            assert!(
                got as usize > want && (got as usize) < want + 20,
                "{got} {want}"
            );
        }
    }

    async fn futures_join_all<F: std::future::Future + Send + 'static>(
        fs: impl IntoIterator<Item = F>,
    ) -> Vec<F::Output>
    where
        F::Output: Send,
    {
        let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
