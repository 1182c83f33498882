//! What a sealing thread is doing, and the handles to pause and resume it,
//! shared between the thread, the admin RPC and WorkerPing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::state::State;

/// A thread's activity, tagged by `state` on the wire as damocles has it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum ThreadState {
    Idle,
    Paused { elapsed: u64 },
    Running { elapsed: u64, proc: String },
    Waiting { elapsed: u64 },
}

impl ThreadState {
    /// Every state's name, as `/metrics` labels them.
    pub const NAMES: [&'static str; 4] = ["idle", "running", "waiting", "paused"];

    /// The state's name (`idle`, `running`, `waiting`, `paused`).
    pub fn name(&self) -> &'static str {
        match self {
            ThreadState::Idle => "idle",
            ThreadState::Running { .. } => "running",
            ThreadState::Waiting { .. } => "waiting",
            ThreadState::Paused { .. } => "paused",
        }
    }
}

/// The threads counted by state: one count for `/metrics` and WorkerPing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCounts {
    pub total: u64,
    pub idle: u64,
    pub running: u64,
    pub waiting: u64,
    pub paused: u64,
    /// Threads with a last error, in any state.
    pub with_error: u64,
}

impl ThreadCounts {
    /// The count of the state named `name` (one of [`ThreadState::NAMES`]).
    pub fn get(&self, name: &str) -> u64 {
        match name {
            "idle" => self.idle,
            "running" => self.running,
            "waiting" => self.waiting,
            "paused" => self.paused,
            _ => 0,
        }
    }
}

/// Counts `ctrls` by state, as of now.
pub fn summary(ctrls: &[Arc<Ctrl>]) -> ThreadCounts {
    let mut c = ThreadCounts::default();
    for info in ctrls.iter().map(|c| c.info()) {
        c.total += 1;
        match info.thread_state {
            ThreadState::Idle => c.idle += 1,
            ThreadState::Running { .. } => c.running += 1,
            ThreadState::Waiting { .. } => c.waiting += 1,
            ThreadState::Paused { .. } => c.paused += 1,
        }
        c.with_error += u64::from(info.last_error.is_some());
    }
    c
}

#[derive(Debug)]
struct Inner {
    /// `s-t01000-7` of the current sector.
    job_id: Option<String>,
    job_state: Option<State>,
    paused: bool,
    idle: bool,
    since: Instant,
    last_error: Option<String>,
}

/// One thread's shared control block.
#[derive(Debug)]
pub struct Ctrl {
    pub index: usize,
    pub location: String,
    /// `sealer` or `wdpost`.
    pub plan: &'static str,
    inner: Mutex<Inner>,
    pause_requested: AtomicBool,
    set_state: Mutex<Option<State>>,
    wake: Notify,
}

/// `VenusWorker.WorkerList` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreadInfo {
    pub location: String,
    pub plan: String,
    pub job_id: Option<String>,
    pub index: usize,
    pub thread_state: ThreadState,
    pub job_state: String,
    pub job_stage: Option<String>,
    pub last_error: Option<String>,
}

impl Ctrl {
    pub fn new(index: usize, location: String) -> Ctrl {
        Ctrl::with_plan(index, location, "sealer")
    }

    /// A thread of `plan` (`sealer`, `wdpost`).
    pub fn with_plan(index: usize, location: String, plan: &'static str) -> Ctrl {
        Ctrl {
            index,
            location,
            plan,
            inner: Mutex::new(Inner {
                job_id: None,
                job_state: None,
                paused: false,
                idle: true,
                since: Instant::now(),
                last_error: None,
            }),
            pause_requested: AtomicBool::new(false),
            set_state: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("ctrl lock"))
    }

    /// The thread works on `job` in `state`.
    pub fn working(&self, job: Option<String>, state: State) {
        self.with(|i| {
            if i.job_state != Some(state) || i.idle {
                i.since = Instant::now();
            }
            i.job_id = job;
            i.job_state = Some(state);
            i.idle = false;
        })
    }

    pub fn idle(&self) {
        self.with(|i| {
            i.idle = true;
            i.job_id = None;
            i.job_state = None;
            i.since = Instant::now();
        })
    }

    pub fn error(&self, e: Option<String>) {
        self.with(|i| i.last_error = e)
    }

    /// Asks the thread to pause before its next step.
    pub fn request_pause(&self) {
        self.pause_requested.store(true, Ordering::SeqCst);
    }

    pub fn pause_requested(&self) -> bool {
        self.pause_requested.load(Ordering::SeqCst)
    }

    /// Resumes a paused thread, optionally forcing its sector's state.
    /// Returns whether the thread was paused.
    pub fn resume(&self, set_to: Option<State>) -> bool {
        let was = self.with(|i| i.paused) || self.pause_requested();
        *self.set_state.lock().expect("ctrl lock") = set_to;
        self.pause_requested.store(false, Ordering::SeqCst);
        self.wake.notify_one();
        was
    }

    /// Blocks the calling thread while paused; returns the state to force, if
    /// the resume asked for one.
    pub async fn wait_while_paused(&self, why: Option<String>) -> Option<State> {
        self.with(|i| {
            i.paused = true;
            i.since = Instant::now();
            if why.is_some() {
                i.last_error = why;
            }
        });
        self.pause_requested.store(true, Ordering::SeqCst);
        while self.pause_requested() {
            self.wake.notified().await;
        }
        self.with(|i| {
            i.paused = false;
            i.since = Instant::now();
        });
        self.set_state.lock().expect("ctrl lock").take()
    }

    pub fn info(&self) -> ThreadInfo {
        self.with(|i| {
            let elapsed = i.since.elapsed().as_secs();
            let thread_state = if i.paused {
                ThreadState::Paused { elapsed }
            } else if i.idle {
                ThreadState::Idle
            } else {
                ThreadState::Running {
                    elapsed,
                    proc: i
                        .job_state
                        .map(|s| s.name().to_string())
                        .unwrap_or_default(),
                }
            };
            ThreadInfo {
                location: self.location.clone(),
                plan: self.plan.into(),
                job_id: i.job_id.clone(),
                index: self.index,
                thread_state,
                job_state: i.job_state.map(|s| s.name()).unwrap_or("Empty").to_string(),
                job_stage: None,
                last_error: i.last_error.clone(),
            }
        })
    }
}
