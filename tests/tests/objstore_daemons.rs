//! Both daemons with a plugins dir holding good and bad libraries: each
//! refusal (not a library, a second plugin of a kind, a constructor that
//! fails, a plugin nobody loaded) is logged naming the file or the store,
//! and the daemon keeps serving its other stores. A worker left with no
//! usable store refuses to start, saying so. No sealing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use damocles_api::rpc::SealerApiClient;
use damocles_e2e::manager::{http, init_home, ManagerProcess};
use damocles_e2e::worker::{kill_group, spawn, write_config_with, Setup};
use damocles_e2e::{workspace_bin, workspace_cdylib};

/// `<dir>/plugins`: the fs plugin, the test double (its constructor fails
/// when asked), a second copy of the fs plugin, and a file that is not a
/// library.
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
PluginName = "fs"

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
PluginName = "fs"

[[Miners]]"#,
        fs = fs_store.display(),
        pieces = pieces.display()
    );
    // No sector numbers to hand out: the worker below only starts.
    init_home(&home, |c| {
        c.replace(
            "# Dir = \"/opt/damocles/plugins\"",
            &format!("Dir = {:?}", plugins.display().to_string()),
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
            "b-fs-again.so: kind \"fs\" is already served by",
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
            "[plugins]\ndir = {:?}\n\n{attached}",
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
