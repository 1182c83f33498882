//! Both daemons with a plugins dir holding good and bad libraries: each
//! refusal (not a library, a second plugin of a kind, a constructor that
//! fails, a plugin nobody loaded) is logged naming the file or the store,
//! and the daemon keeps serving its other stores. A worker left with no
//! usable store refuses to start, saying so. Only the libraries stores name
//! are loaded (unless `LoadAll`): one whose entry point crashes is harmless
//! in the dir, and named by a store, the daemon's last log line names it.
//! `config check` loads plugins as the daemons do and fails on a refused
//! one. No sealing.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use damocles_api::rpc::SealerApiClient;
use damocles_e2e::manager::{http, init_home, manager_bin, ManagerProcess};
use damocles_e2e::worker::{kill_group, spawn, write_config_with, Setup};
use damocles_e2e::{workspace_bin, workspace_cdylib};

/// `<dir>/plugins`: the fs plugin, the test double (its constructor fails
/// when asked), a second copy of the fs plugin, and a file that is not a
/// library. None is named as its kind would be looked for (`double.so` is
/// not `test-double`), so the daemons load the whole dir (`LoadAll`).
fn plugins_dir(dir: &Path) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let fs = workspace_cdylib("example-objstore-fs-plugin", "objstore_fs_plugin");
    let double = workspace_cdylib("test-double-objstore-plugin", "test_double_objstore_plugin");
    std::fs::copy(&fs, plugins.join("a-fs.so")).unwrap();
    std::fs::copy(&fs, plugins.join("b-fs-again.so")).unwrap();
    std::fs::copy(&double, plugins.join("double.so")).unwrap();
    std::fs::write(plugins.join("broken.so"), "not a library").unwrap();
    plugins
}

fn wait_for_log(log: &Path, all: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if all.iter().all(|s| text.contains(s)) {
            return text;
        }
        assert!(Instant::now() < deadline, "{all:?} not all logged:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_plugins_and_stores_are_named_and_the_daemons_serve_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugins_dir(dir.path());
    let fs_store = dir.path().join("fs-store");
    std::fs::create_dir(&fs_store).unwrap();
    let pieces = dir.path().join("pieces");
    std::fs::create_dir(&pieces).unwrap();
    let cid = "baga6ea4seaqtest";
    // Several MiB: streamed in chunks, the length announced up front.
    let piece: String = (0..3 * (1 << 20) + 17)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    std::fs::write(pieces.join(format!("{cid}.car")), &piece).unwrap();
    std::fs::write(pieces.join(".hidden"), "not a piece").unwrap();
    let home = dir.path().join("manager");
    let extra = format!(
        r#"
[[Common.PersistStores]]
Name = "store-fs-plugin"
Path = "{fs}"
PluginName = "fs-plugin"

[[Common.PersistStores]]
Name = "store-bad"
Path = "bucket"
PluginName = "test-double"
Meta = {{ fail_open = "no such bucket" }}

[[Common.PersistStores]]
Name = "store-unknown"
Path = "somewhere"
PluginName = "nfs"

[[Common.PieceStores]]
Name = "pieces"
Path = "{pieces}"
PluginName = "fs-plugin"

[[Miners]]"#,
        fs = fs_store.display(),
        pieces = pieces.display()
    );
    // No sector numbers to hand out: the worker below only starts.
    init_home(&home, |c| {
        c.replace(
            "# Dir = \"/opt/damocles/plugins\"",
            &format!("Dir = {:?}\nLoadAll = true", plugins.display().to_string()),
        )
        .replacen("\n[[Miners]]", &extra, 1)
        .replace("# MaxNumber = 1000000", "MaxNumber = 0")
    });
    let m = ManagerProcess::start(&home);
    let c = m.client(Some(&m.token("read")));
    for (store, served) in [
        ("store-1", true),
        ("store-fs-plugin", true),
        ("store-bad", false),
        ("store-unknown", false),
    ] {
        assert_eq!(
            c.store_basic_info(store.into()).await.unwrap().is_some(),
            served,
            "{store}"
        );
    }
    let log = wait_for_log(
        &m.log,
        &[
            "broken.so: cannot be loaded",
            "b-fs-again.so: kind \"fs-plugin\" is already served by",
            "asked to fail: no such bucket",
            "no plugin \"nfs\"",
        ],
    );
    assert!(
        log.contains("store-bad") && log.contains("store-unknown"),
        "{log}"
    );

    // Pieces are served from the piece store, through the fs plugin.
    let read = format!("Bearer {}", m.token("read"));
    let get = |path: &str, auth: &[(&str, &str)]| http(&m.authority(), "GET", path, auth, "");
    let auth = [("Authorization", read.as_str())];
    let (status, body) = get(&format!("/piecestore/{cid}"), &auth);
    assert_eq!(status, 200);
    assert!(
        body == piece,
        "{} bytes back of {}",
        body.len(),
        piece.len()
    );
    let (status, body) = get("/piecestore/baga6ea4seaqnothere", &auth);
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("in no piece store") && body.contains("pieces"),
        "{body}"
    );
    assert_eq!(
        get(&format!("/piecestore/{cid}"), &[]).0,
        403,
        "no token, no piece"
    );
    for name in ["..", ".hidden", "x.car"] {
        assert_eq!(get(&format!("/piecestore/{name}"), &auth).0, 400, "{name}");
    }

    // The worker: the same dir, a local store and the failing one.
    let stores = |attached: &str| Setup {
        stores: Some(format!(
            "[plugins]\ndir = {:?}\nload_all = true\n\n{attached}",
            plugins.display().to_string()
        )),
        ..Setup::default()
    };
    let local = format!(
        "[[attached]]\nname = \"store-1\"\nlocation = \"{}\"\n\n",
        home.join("store-1").display()
    );
    let bad = "[[attached]]\nname = \"store-bad\"\nlocation = \"bucket\"\nplugin_name = \"test-double\"\nmeta = { fail_open = \"no such bucket\" }\n";
    let cfg = write_config_with(
        dir.path(),
        &m,
        &m.token("write"),
        &stores(&format!("{local}{bad}")),
    );
    let wlog = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &wlog);
    let text = wait_for_log(
        &wlog,
        &["attached store left out", "damocles-worker sealing"],
    );
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker runs on:\n{text}"
    );
    assert!(
        text.contains("broken.so: cannot be loaded")
            && text.contains("asked to fail: no such bucket"),
        "{text}"
    );
    kill_group(&mut worker);

    // Only the failing store: nothing to persist to, refused at start.
    let cfg = write_config_with(dir.path(), &m, &m.token("write"), &stores(bad));
    let out = Command::new("timeout")
        .arg("30")
        .arg(workspace_bin("damocles-worker", "damocles-worker"))
        .args(["daemon", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no writable [[attached]] store could be used"),
        "{stderr}"
    );
}

/// The TEST DOUBLE `crates/objstore/tests/c/misbehaving.c` built with
/// `defines` into `out` by the system C compiler.
fn misbehaving_plugin(out: &Path, defines: &[&str]) {
    let objstore = damocles_e2e::manifest_dir().join("../crates/objstore");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-I")
        .arg(objstore.join("include"))
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .args(defines)
        .arg(objstore.join("tests/c/misbehaving.c"))
        .status()
        .expect("run the C compiler (cc)");
    assert!(status.success(), "cc {}", out.display());
}

/// Runs `cmd` in `cwd` (where a core dump would land) with info logs, in
/// its own process group, until it exits: its status and its stderr.
fn run_to_exit(cmd: &mut Command, cwd: &Path, name: &str) -> (ExitStatus, String) {
    let log = cwd.join(format!("{name}.log"));
    let mut child = cmd
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            kill_group(&mut child);
            panic!(
                "{name} still running after 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever it started goes with it.
    kill_group(&mut child);
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

/// The daemon died of the crashing plugin, and its last log line names it.
fn assert_crashed_naming(status: ExitStatus, log: &str, file: &str) {
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status}:\n{log}");
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.contains(file) && last.contains("calling objstore plugin entry point"),
        "last line: {last}\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("loading objstore plugin") && l.contains(file)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_named_plugins_are_loaded_a_crash_names_its_library_and_checks_fail_on_a_null_table() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    // Named as the build names it: found for kind `fs-plugin`.
    let fs = workspace_cdylib("example-objstore-fs-plugin", "objstore_fs_plugin");
    std::fs::copy(&fs, plugins.join("libobjstore_fs_plugin.so")).unwrap();
    let crash = plugins.join("crash.so");
    misbehaving_plugin(&crash, &["-DCRASH_IN_ENTRY", "-DKIND=\"crash\""]);
    let nullfns = plugins.join("nullfns.so");
    misbehaving_plugin(&nullfns, &["-DNULL_FNS", "-DKIND=\"nullfns\""]);
    let fs_store = dir.path().join("fs-store");
    std::fs::create_dir(&fs_store).unwrap();
    let stores = |names: &[(&str, &str)]| -> String {
        names
            .iter()
            .map(|(name, kind)| {
                format!(
                    "\n[[Common.PersistStores]]\nName = {name:?}\nPath = {:?}\nPluginName = {kind:?}\n",
                    fs_store.display().to_string()
                )
            })
            .collect()
    };
    let home_with = |home: &Path, names: &[(&str, &str)]| {
        let extra = stores(names) + "\n[[Miners]]";
        init_home(home, |c| {
            c.replace(
                "# Dir = \"/opt/damocles/plugins\"",
                &format!("Dir = {:?}", plugins.display().to_string()),
            )
            .replacen("\n[[Miners]]", &extra, 1)
            .replace("# MaxNumber = 1000000", "MaxNumber = 0")
        });
    };

    // Manager: crash.so is in the dir, but no store names it.
    let home = dir.path().join("manager");
    home_with(
        &home,
        &[("store-fs-plugin", "fs-plugin"), ("store-null", "nullfns")],
    );
    let m = ManagerProcess::start(&home);
    let c = m.client(Some(&m.token("read")));
    for (store, served) in [("store-fs-plugin", true), ("store-null", false)] {
        assert_eq!(
            c.store_basic_info(store.into()).await.unwrap().is_some(),
            served,
            "{store}"
        );
    }
    let log = wait_for_log(
        &m.log,
        &[
            "nullfns.so: its ABI table has no function (NULL) for open",
            "store-null",
        ],
    );
    assert!(log.contains("libobjstore_fs_plugin.so"), "{log}");
    assert!(!log.contains("crash.so"), "never opened:\n{log}");

    // Its config check loads the same plugins and fails on the NULL table.
    let check = |home: &Path| {
        Command::new(manager_bin())
            .arg("--home")
            .arg(home)
            .args(["config", "check"])
            .output()
            .unwrap()
    };
    let out = check(&home);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("key Common.Plugins.Dir")
            && stderr.contains("nullfns.so: its ABI table has no function (NULL) for open"),
        "{stderr}"
    );
    assert!(!stderr.contains("crash.so"), "{stderr}");
    let fine = dir.path().join("manager-fine");
    home_with(&fine, &[("store-fs-plugin", "fs-plugin")]);
    let out = check(&fine);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A store names the crashing library: the log names it before the end.
    let crashing = dir.path().join("manager-crash");
    home_with(
        &crashing,
        &[("store-fs-plugin", "fs-plugin"), ("store-crash", "crash")],
    );
    let (status, log) = run_to_exit(
        Command::new(manager_bin())
            .arg("--home")
            .arg(&crashing)
            .args(["daemon", "run"]),
        dir.path(),
        "manager-crash",
    );
    assert_crashed_naming(status, &log, "crash.so");

    // Worker: the same dir, the same stores.
    let worker_cfg = |kinds: &[(&str, &str)]| {
        let attached: String = kinds
            .iter()
            .map(|(name, kind)| {
                format!(
                    "[[attached]]\nname = {name:?}\nlocation = {:?}\nplugin_name = {kind:?}\n\n",
                    fs_store.display().to_string()
                )
            })
            .collect();
        let setup = Setup {
            stores: Some(format!(
                "[plugins]\ndir = {:?}\n\n{attached}",
                plugins.display().to_string()
            )),
            // Builtin processors: no children to outlive a crash.
            processors: String::new(),
            ..Setup::default()
        };
        write_config_with(dir.path(), &m, &m.token("write"), &setup)
    };
    let cfg = worker_cfg(&[("store-fs-plugin", "fs-plugin"), ("store-null", "nullfns")]);
    let wlog = dir.path().join("worker.log");
    let mut worker = spawn(&cfg, &wlog);
    let text = wait_for_log(
        &wlog,
        &[
            "nullfns.so: its ABI table has no function (NULL) for open",
            "damocles-worker sealing",
        ],
    );
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker runs on:\n{text}"
    );
    assert!(text.contains("libobjstore_fs_plugin.so"), "{text}");
    assert!(!text.contains("crash.so"), "never opened:\n{text}");
    kill_group(&mut worker);

    let config_check = |cfg: &Path| {
        Command::new(workspace_bin("damocles-worker", "damocles-worker"))
            .args(["config", "check", "-c"])
            .arg(cfg)
            .output()
            .unwrap()
    };
    let out = config_check(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("key plugins.dir")
            && stderr.contains("nullfns.so: its ABI table has no function (NULL) for open"),
        "{stderr}"
    );
    let out = config_check(&worker_cfg(&[("store-fs-plugin", "fs-plugin")]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cfg = worker_cfg(&[("store-fs-plugin", "fs-plugin"), ("store-crash", "crash")]);
    let (status, log) = run_to_exit(
        Command::new(workspace_bin("damocles-worker", "damocles-worker"))
            .args(["daemon", "-c"])
            .arg(&cfg),
        dir.path(),
        "worker-crash",
    );
    assert_crashed_naming(status, &log, "crash.so");
}
