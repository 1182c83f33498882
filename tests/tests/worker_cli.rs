//! The worker's offline commands on real files: `config check` on a config
//! written for damocles-worker, `store sealing-init`, `generator tree-d`.

use std::process::{Command, Output};

use damocles_e2e::workspace_bin;

fn worker(args: &[&str]) -> Output {
    Command::new(workspace_bin("damocles-worker", "damocles-worker"))
        .args(args)
        .output()
        .expect("run damocles-worker")
}

/// Runs `daemon -c cfg`, which must exit 1 at start; its stderr. Under a
/// time limit: a daemon that wrongly starts fails the test, not hangs it.
fn refused_at_start(cfg: &std::path::Path) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg(workspace_bin("damocles-worker", "damocles-worker"))
        .arg("daemon")
        .arg("-c")
        .arg(cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "refused at start: {stderr}");
    stderr
}

#[test]
fn a_damocles_worker_config_is_accepted_with_what_is_ignored_named() {
    let fixture = damocles_e2e::manifest_dir().join("fixtures/damocles-worker.toml");
    let fixture = fixture.to_str().expect("a UTF-8 path");
    let out = worker(&["config", "check", "-c", fixture]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    // What it will run.
    assert!(stdout.contains("/mnt/nvme1/sealing-2"), "{stdout}");
    assert!(stdout.contains("persist-1"), "{stdout}");
    // The one key damocles never had.
    assert!(
        stderr.contains("unknown config key ignored")
            && stderr.contains("processors.c2.0.gpu_model"),
        "{stderr}"
    );
    // damocles keys this release accepts but does not act on, each named.
    for key in [
        "worker.scan_persist_stores",
        "worker.local_pieces_dir(s)",
        "sealing.enable_deals",
    ] {
        assert!(
            stderr.contains("accepted but not used") && stderr.contains(key),
            "{key} named:\n{stderr}"
        );
    }

    // A bad value is refused naming its key and the file.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(fixture)
            .unwrap()
            .replace("pc1 = \"30s\"", "pc1 = \"soon\""),
    )
    .unwrap();
    let out = worker(&["config", "check", "-c", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("processors.limitation.staggered.pc1"),
        "{stderr}"
    );
}

#[test]
fn sealing_init_prepares_locations_and_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let out = worker(&[
        "store",
        "sealing-init",
        "-l",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for loc in [&a, &b] {
        for d in ["data/staged", "data/sealed", "data/cache"] {
            assert!(loc.join(d).is_dir(), "{}/{d}", loc.display());
        }
        assert!(loc.join("meta/sector.redb").is_file());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches(": ready").count(), 2, "{stdout}");

    // Again: nothing lost, nothing refused.
    let again = worker(&["store", "sealing-init", "-l", a.to_str().unwrap()]);
    assert!(again.status.success());

    // A location that cannot be a directory is refused by name.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = worker(&["store", "sealing-init", "-l", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(file.to_str().unwrap()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generator_tree_d_writes_a_whole_tree_and_the_daemon_refuses_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = worker(&[
        "generator",
        "tree-d",
        "-s",
        "2KiB",
        "-p",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("sc-02-data-tree-d.dat");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 2 * 2048 - 32);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2KiB = "));

    // A file that is not a 2KiB tree-d stops the daemon at start, by key,
    // before it asks the manager for anything.
    let short = dir.path().join("short.dat");
    std::fs::write(&short, [0u8; 100]).unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let cfg = dir.path().join("worker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sector_manager]\nrpc_client.addr = \"/ip4/127.0.0.1/tcp/9\"\n[[sealing_thread]]\nlocation = \"{}\"\n[[attached]]\nname = \"s1\"\nlocation = \"{}\"\n[processors.static_tree_d]\n2KiB = \"{}\"\n",
            dir.path().join("s").display(),
            store.display(),
            short.display()
        ),
    )
    .unwrap();
    let stderr = refused_at_start(&cfg);
    assert!(
        stderr.contains("processors.static_tree_d.2KiB") && stderr.contains("holds 100 bytes"),
        "{stderr}"
    );

    // The right size but not the tree (a build that did not finish): refused too.
    std::fs::write(&short, vec![0u8; 2 * 2048 - 32]).unwrap();
    let stderr = refused_at_start(&cfg);
    assert!(
        stderr.contains("processors.static_tree_d.2KiB")
            && stderr.contains("not the tree-d of a CC sector"),
        "{stderr}"
    );
}
