//! Helpers shared by the end-to-end tests and benchmarks.

pub mod flaky_forwarder;
pub mod manager;
pub mod post;
pub mod s3;
pub mod sealing;
pub mod worker;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use fil_params::ParamSet;

/// Path of a binary of another workspace package, built on first use.
///
/// Cargo builds only the binaries of the package under test; the others are
/// built here with the same cargo and profile (cargo has released its build
/// lock by the time tests run), so `cargo test` alone is enough. Every target
/// of the workspace is built, exactly as `.ci/run` builds them: the same
/// feature unification, so after that build this is a no-op (a narrower
/// `--bins` or `--lib` build unifies features differently and rebuilds
/// dozens of crates, then the next full build rebuilds them again).
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let profile_dir = profile_dir();
    BUILT.get_or_init(|| {
        let status = build_workspace_cmd(&profile_dir)
            .status()
            .unwrap_or_else(|e| panic!("run cargo to build the workspace binaries: {e}"));
        assert!(status.success(), "building the workspace binaries failed");
    });
    let path = profile_dir.join(bin);
    assert!(
        path.exists(),
        "{} (package {package}) missing after build",
        path.display()
    );
    path
}

/// `cargo build` of every target of the workspace, in `profile_dir`'s
/// profile: the same feature unification as `.ci/run`'s build, so that after
/// it nothing is rebuilt.
///
/// The variables cargo sets for running this test package are removed: a
/// dependency's build script tracks `CARGO_MANIFEST_DIR` (ring's does), so
/// with the test's value inherited this build relinked every crate above it,
/// and the next plain `cargo build` relinked them all back.
fn build_workspace_cmd(profile_dir: &std::path::Path) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--workspace", "--all-targets"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_for_the_test = name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            );
        if set_for_the_test {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The directory of this test's profile: target/<profile>/deps/<test> ->
/// target/<profile>.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf()
}

/// Path of a `cdylib` of a workspace package (`lib<lib>.so`), built on first
/// use with the same cargo and profile, like [`workspace_bin`].
pub fn workspace_cdylib(package: &str, lib: &str) -> PathBuf {
    let profile_dir = profile_dir();
    let status = build_workspace_cmd(&profile_dir)
        .status()
        .unwrap_or_else(|e| panic!("run cargo to build {package}: {e}"));
    assert!(status.success(), "building {package} failed");
    let path = profile_dir.join(format!(
        "{}{lib}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// Makes sure the test parameter sets exist in the machine-wide cache (generating
/// them once, under a lock, if missing) and points this process at them.
pub fn proof_params(sets: &[ParamSet]) {
    fil_params::configure_process_env();
    fil_params::ensure(sets, &mut fil_params::Quiet).expect("proof parameters");
}

/// Logs of the code under test, captured by the test harness, once per process.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
}

/// The CPUs a process may run on, from /proc.
pub fn cpus_allowed(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|s| s.trim().to_string())
        .expect("Cpus_allowed_list")
}

/// Sends SIGKILL to a process.
pub fn kill9(pid: u32) {
    // SAFETY: plain syscall.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// Whether a process is gone: it does not exist, or it is a zombie waiting
/// for whoever inherited it to reap it.
pub fn process_gone(pid: u32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    if unsafe { libc::kill(pid as i32, 0) } != 0 {
        return true;
    }
    matches!(process_state(pid).as_deref(), None | Some("Z"))
}

/// A process' state letter from /proc (`R`, `S`, `T`, `Z`, ...).
pub fn process_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ...: comm may hold spaces, so split after ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next().map(str::to_string)
}

/// Where the wire-format golden files live.
pub fn golden_dir() -> PathBuf {
    manifest_dir().join("../vc-processors/tests/golden")
}

/// With `UPDATE_GOLDEN=1`, writes `value` as the golden file `name` (the exact
/// wire bytes plus a newline). Without it, does nothing.
pub fn update_golden<T: serde::Serialize>(name: &str, value: &T) {
    if std::env::var_os("UPDATE_GOLDEN").is_none() {
        return;
    }
    let dir = golden_dir();
    std::fs::create_dir_all(&dir).expect("create golden dir");
    let json = serde_json::to_string(value).expect("serialize golden value");
    std::fs::write(dir.join(name), json + "\n").expect("write golden file");
}

/// The transfer task persisting does: a sealed file and its cache directory,
/// from local paths into `sealed/<sector>` and `cache/<sector>` of a store whose
/// meta names a local `path`.
pub fn persist_task(
    store_name: &str,
    store_root: &std::path::Path,
    sealed: &std::path::Path,
    cache: &std::path::Path,
    sector: &str,
) -> vc_processors::tasks::Transfer {
    use std::collections::BTreeMap;
    use vc_processors::tasks::*;
    let route = |src: &std::path::Path, dest: String, is_dir: bool| TransferRoute {
        src: TransferItem {
            store_name: None,
            uri: src.to_path_buf(),
        },
        dest: TransferItem {
            store_name: Some(store_name.to_string()),
            uri: dest.into(),
        },
        opt: Some(TransferOption {
            is_dir,
            allow_link: false,
        }),
    };
    Transfer {
        stores: BTreeMap::from([(
            store_name.to_string(),
            TransferStoreInfo {
                name: store_name.to_string(),
                meta: Some(BTreeMap::from([(
                    "path".into(),
                    store_root.display().to_string(),
                )])),
            },
        )]),
        routes: vec![
            route(sealed, format!("sealed/{sector}"), false),
            route(cache, format!("cache/{sector}"), true),
        ],
    }
}

/// The package directory, read at run time (cargo sets it for tests too): a
/// test binary built from another checkout sharing the build directory would
/// carry that checkout's path in `env!`.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
