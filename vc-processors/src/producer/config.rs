//! How a producer spawns and supervises its child.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::sys::Placement;

/// Which protocol the parent offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtocolChoice {
    /// Announce v2; use its extensions only if the child answers with a hello.
    #[default]
    Negotiate,
    /// Behave exactly like a damocles parent.
    V1Only,
}

/// Restart pacing: the delay doubles after each failed or short-lived child,
/// and goes back to `initial` once a child has stayed up for `stable_after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first restart.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// A child up this long resets the delay to `initial`.
    pub stable_after: Duration,
    /// This many exits within `crash_loop_window` is a crash loop: logged as an
    /// error, and requests fail fast instead of waiting for the next start.
    pub crash_loop_exits: usize,
    /// The window in which `crash_loop_exits` are counted.
    pub crash_loop_window: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            crash_loop_exits: 5,
            crash_loop_window: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before restart number `attempt` (0-based) in a row.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Everything needed to run one ext-processor child.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// Stage served; the child's opening line must name it.
    pub stage: String,
    /// The child's executable.
    pub bin: PathBuf,
    /// The child's arguments.
    pub args: Vec<String>,
    /// Variables set in the child's environment, over everything else.
    pub envs: BTreeMap<String, String>,
    /// Start from the parent's environment (else from an empty one).
    pub inherit_envs: bool,
    /// How long to wait for the opening line.
    pub ready_timeout: Duration,
    /// Give up on a request after this long (and kill the child, or cancel the
    /// request if the child speaks v2); `None` waits for as long as it takes.
    pub request_timeout: Option<Duration>,
    /// How long a v2 child has to confirm a cancellation before it is killed.
    pub cancel_grace: Duration,
    /// CPU set, cgroup and NUMA node of the child, applied at every start.
    pub placement: Placement,
    /// Start a new child when one stops.
    pub auto_restart: bool,
    /// Restart pacing and crash-loop detection.
    pub backoff: Backoff,
    /// Which protocol the parent offers.
    pub protocol: ProtocolChoice,
    /// Heartbeat interval asked of a v2 child; a child silent for three
    /// intervals (plus a second) is considered hung and killed.
    pub heartbeat: Duration,
    /// Changes to the inherited environment made while the parent runs.
    pub env_overrides: EnvOverrides,
}

/// Changes to the environment children inherit, made while the parent runs
/// (the worker's `WorkerSetEnv` / `WorkerRemoveEnv`), without touching the
/// parent's own environment. Read at every start and restart of a child
/// that inherits its environment; the entry's own `envs` still win. Clones
/// share one set.
#[derive(Clone, Debug, Default)]
pub struct EnvOverrides(Arc<RwLock<BTreeMap<String, Option<String>>>>);

impl EnvOverrides {
    /// Checks a variable name and value the way the OS will take them.
    fn check(name: &str, value: Option<&str>) -> Result<(), String> {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(format!("{name:?} is not an environment variable name"));
        }
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(format!("the value of {name} holds a NUL byte"));
        }
        Ok(())
    }

    /// Sets `name` to `value` for children started from now on.
    pub fn set(&self, name: &str, value: &str) -> Result<(), String> {
        Self::check(name, Some(value))?;
        self.0
            .write()
            .expect("env lock")
            .insert(name.into(), Some(value.into()));
        Ok(())
    }

    /// Removes `name` from the environment of children started from now on.
    pub fn remove(&self, name: &str) -> Result<(), String> {
        Self::check(name, None)?;
        self.0.write().expect("env lock").insert(name.into(), None);
        Ok(())
    }

    pub(crate) fn apply(&self, cmd: &mut tokio::process::Command) {
        for (k, v) in self.0.read().expect("env lock").iter() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
    }
}

impl ProducerConfig {
    /// A config with damocles' defaults: 5 s ready wait, auto restart, inherited env.
    pub fn new(stage: impl Into<String>, bin: impl Into<PathBuf>, args: Vec<String>) -> Self {
        ProducerConfig {
            stage: stage.into(),
            bin: bin.into(),
            args,
            envs: BTreeMap::new(),
            inherit_envs: true,
            ready_timeout: Duration::from_secs(5),
            request_timeout: None,
            cancel_grace: Duration::from_secs(10),
            placement: Placement::default(),
            auto_restart: true,
            backoff: Backoff::default(),
            protocol: ProtocolChoice::Negotiate,
            heartbeat: Duration::from_secs(2),
            env_overrides: EnvOverrides::default(),
        }
    }

    /// `bin args...` for messages.
    pub fn command_line(&self) -> String {
        std::iter::once(self.bin.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(crate) fn liveness_timeout(&self) -> Duration {
        self.heartbeat * 3 + Duration::from_secs(1)
    }
}
