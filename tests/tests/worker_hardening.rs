//! The worker against its own mistakes and its children's: a persist store
//! that overlaps a sealing location, and a transfer onto its own source;
//! config values that cannot work; an ext-processor that leaves a child
//! behind when it is killed; request lines that are not UTF-8.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use damocles_e2e::{kill9, persist_task, process_gone, workspace_bin};
use serde_json::{json, Value};
use vc_processors::tasks::{Transfer, TransferItem, TransferOption, TransferRoute};

fn worker_bin() -> PathBuf {
    workspace_bin("damocles-worker", "damocles-worker")
}

/// Writes `<dir>/worker.toml`: a manager nobody listens on, one sealing
/// thread at `<dir>/sealing`, then `rest`.
fn write_config(dir: &Path, rest: &str) -> PathBuf {
    let cfg = dir.join("worker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sector_manager]\nrpc_client.addr = \"/ip4/127.0.0.1/tcp/9\"\n\n[[sealing_thread]]\nlocation = \"{}\"\n\n{rest}",
            dir.join("sealing").display()
        ),
    )
    .unwrap();
    cfg
}

fn attached(location: &Path) -> String {
    format!(
        "[[attached]]\nname = \"store-1\"\nlocation = \"{}\"\n",
        location.display()
    )
}

/// `config check -c cfg`: its exit status and stderr.
fn config_check(cfg: &Path) -> (bool, String) {
    let out = Command::new(worker_bin())
        .args(["config", "check", "-c"])
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `daemon -c cfg`, which must exit 1 at start; its stderr. Under a time
/// limit: a daemon that wrongly starts fails the test, not hangs it.
fn refused_at_start(cfg: &Path) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg(worker_bin())
        .args(["daemon", "-c"])
        .arg(cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "refused at start: {stderr}");
    stderr
}

/// Refused by `config check` and at daemon start, naming `key`.
fn refused(cfg: &Path, key: &str) {
    let (ok, stderr) = config_check(cfg);
    assert!(!ok && stderr.contains(&format!("key {key}:")), "{stderr}");
    let stderr = refused_at_start(cfg);
    assert!(stderr.contains(&format!("key {key}:")), "{stderr}");
}

#[test]
fn a_persist_store_overlapping_a_sealing_location_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sealing = dir.path().join("sealing");
    std::fs::create_dir_all(sealing.join("data/sealed")).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&sealing, &link).unwrap();

    // The finding's config first: the store is the thread's data directory,
    // so every persist route is `X -> X`.
    for (location, how) in [
        (sealing.join("data"), "lies inside"),
        (link.join("data"), "lies inside"),
        (link.clone(), "is"),
        (dir.path().to_path_buf(), "contains"),
    ] {
        let cfg = write_config(dir.path(), &attached(&location));
        refused(&cfg, "attached[0].location");
        let (_, stderr) = config_check(&cfg);
        assert!(
            stderr.contains(&format!(") {how} sealing_thread[0].location")),
            "{}: {stderr}",
            location.display()
        );
    }

    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let (ok, stderr) = config_check(&write_config(dir.path(), &attached(&store)));
    assert!(ok, "{stderr}");
}

#[test]
fn config_values_that_cannot_work_are_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let alias = dir.path().join("alias");
    std::os::unix::fs::symlink(dir.path().join("sealing"), &alias).unwrap();
    let with_store = |rest: &str| format!("{}\n{rest}", attached(&store));

    let cases = [
        (
            with_store("[[processors.pc1]]\ntimeout = \"0s\"\n"),
            "processors.pc1[0].timeout",
        ),
        (
            with_store("[[processors.c2]]\nstable_wait = \"0s\"\n"),
            "processors.c2[0].stable_wait",
        ),
        (
            with_store("[[processors.pc1]]\nnuma_preferred = -1\n"),
            "processors.pc1[0].numa_preferred",
        ),
        (
            with_store("[sealing]\nseal_interval = \"0s\"\n"),
            "sealing.seal_interval",
        ),
        (
            with_store("[sealing]\nrecover_interval = \"0s\"\n"),
            "sealing.recover_interval",
        ),
        (
            with_store("[sealing]\nrpc_polling_interval = \"0s\"\n"),
            "sealing.rpc_polling_interval",
        ),
        (
            with_store(&format!(
                "[[sealing_thread]]\nlocation = \"{}\"\n",
                alias.display()
            )),
            "sealing_thread[1].location",
        ),
        (
            with_store("[[sealing_thread]]\nlocation = \"sealing-2\"\n"),
            "sealing_thread[1].location",
        ),
        (
            "[[attached]]\nname = \"store-1\"\nlocation = \"store\"\n".to_string(),
            "attached[0].location",
        ),
        (attached(&file), "attached[0].location"),
    ];
    for (rest, key) in cases {
        refused(&write_config(dir.path(), &rest), key);
    }

    // A store directory that is not there (yet): a warning naming the key.
    let missing = write_config(dir.path(), &attached(&dir.path().join("missing")));
    let (ok, stderr) = config_check(&missing);
    assert!(
        ok && stderr.contains("WARN") && stderr.contains("key attached[0].location:"),
        "{stderr}"
    );
}

/// Polls until `pid` is gone; panics after 10 s.
fn wait_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) {
        if Instant::now() > deadline {
            kill9(pid);
            panic!("{what}: process {pid} is still running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_ext_processor_that_fails_to_start_leaves_no_child_behind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("store")).unwrap();
    // A wrapper script that runs its prover without `exec`, then prints the
    // wrong ready line.
    let script = dir.path().join("wrapper.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsleep 42 &\necho $! > \"$PIDFILE\"\necho 'tree_d processor ready'\nwait\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pidfile = dir.path().join("sleep.pid");
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}\n[[processors.pc1]]\nbin = \"{}\"\nenvs = {{ PIDFILE = \"{}\" }}\n",
            attached(&dir.path().join("store")),
            script.display(),
            pidfile.display()
        ),
    );
    let stderr = refused_at_start(&cfg);
    assert!(
        stderr.contains("processors.pc1[0]") && stderr.contains("unexpected first line"),
        "{stderr}"
    );
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(pid, "the wrapper's child after the worker gave up");
}

/// Runs `damocles-worker processor <stage>` (v1) on `input`, under a time
/// limit: its output.
fn processor(stage: &str, input: &[u8]) -> Output {
    let mut child = Command::new("timeout")
        .arg("30")
        .arg(worker_bin())
        .args(["processor", stage])
        .env_remove(vc_processors::protocol::PROTOCOL_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The answers on stdout after the ready line, by id.
fn answers(out: &Output, stage: &str) -> Vec<Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{stage} processor ready").as_str()),
        "the ready line comes first:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut answers: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    answers.sort_by_key(|a| a["id"].as_u64());
    answers
}

#[test]
fn a_processor_skips_lines_that_are_not_utf8_and_answers_the_rest() {
    // The bad line first: the ready line must still come out.
    let out = processor(
        "tree_d",
        b"\xff\n{\"id\":1,\"task\":null}\n{\"id\":\xc3\x28}\n{\"id\":2,\"task\":null}\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answers = answers(&out, "tree_d");
    let ids: Vec<_> = answers.iter().map(|a| a["id"].as_u64()).collect();
    assert_eq!(ids, [Some(1), Some(2)], "{answers:?}");
    assert!(
        answers.iter().all(|a| a["err_msg"]
            .as_str()
            .is_some_and(|m| m.contains("cannot decode tree_d task"))),
        "{answers:?}"
    );
    assert_eq!(stderr.matches("not UTF-8").count(), 2, "{stderr}");
}

#[test]
fn the_transfer_processor_refuses_a_route_onto_its_own_source() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sealing/data");
    let sealed = data.join("sealed/s-t01000-1");
    let cache = data.join("cache/s-t01000-1");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::create_dir_all(sealed.parent().unwrap()).unwrap();
    std::fs::write(&sealed, b"sealed").unwrap();
    std::fs::write(cache.join("p_aux"), b"aux").unwrap();

    // The worker's persist task with a store that is the sealing data dir,
    // and a directory routed onto itself.
    let persist = persist_task("store-1", &data, &sealed, &cache, "s-t01000-1");
    let end = |p: &Path| TransferItem {
        store_name: None,
        uri: p.to_path_buf(),
    };
    let dir_onto_itself = Transfer {
        stores: Default::default(),
        routes: vec![TransferRoute {
            src: end(&cache),
            dest: end(&cache),
            opt: Some(TransferOption {
                is_dir: true,
                allow_link: false,
            }),
        }],
    };
    let input = format!(
        "{}\n{}\n",
        json!({"id": 1, "task": persist}),
        json!({"id": 2, "task": dir_onto_itself})
    );
    let out = processor("transfer", input.as_bytes());
    let answers = answers(&out, "transfer");
    assert_eq!(answers.len(), 2, "{answers:?}");
    for a in &answers {
        let msg = a["err_msg"].as_str().unwrap_or_default();
        assert!(msg.contains("is the source"), "{a}");
    }
    assert_eq!(std::fs::read(&sealed).unwrap(), b"sealed");
    assert_eq!(std::fs::read(cache.join("p_aux")).unwrap(), b"aux");
}
