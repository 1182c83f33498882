//! Store plugins written in Rust with the SDK, built by cargo as cdylibs and
//! loaded at run time: the filesystem store as a plugin behaves as the
//! builtin one; a constructor that fails and a call that panics (in the TEST
//! DOUBLE test-double-objstore-plugin) are errors naming the plugin, never a
//! crash.

use std::io::Read;

use damocles_e2e::workspace_cdylib;
use damocles_objstore::fs::FsStore;
use damocles_objstore::plugin::Plugin;
use damocles_objstore::{Config, ErrorKind, ObjectPath, Store};

fn p(s: &str) -> ObjectPath {
    ObjectPath::new(s).unwrap()
}

fn cfg(name: &str, path: &std::path::Path) -> Config {
    Config {
        name: name.into(),
        path: path.display().to_string(),
        ..Config::default()
    }
}

#[test]
fn the_fs_store_as_a_plugin_behaves_as_the_builtin_one() {
    let lib = workspace_cdylib("example-objstore-fs-plugin", "objstore_fs_plugin");
    let plugin = Plugin::load(&lib).unwrap();
    // `fs` is the builtin store's kind, which no plugin may take.
    assert_eq!(plugin.kind(), "fs-plugin");
    let dir = tempfile::tempdir().unwrap();
    let s = plugin.open(cfg("persist-1", dir.path())).unwrap();
    let builtin = FsStore::open(cfg("persist-1", dir.path())).unwrap();

    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        s.put(&p("sealed/s-t01000-1"), &mut &data[..]).unwrap(),
        100_000
    );
    s.put(&p("cache/s-t01000-1/p_aux"), &mut &b"aux"[..])
        .unwrap();
    assert_eq!(s.stat(&p("sealed/s-t01000-1")).unwrap(), 100_000);
    let mut part = Vec::new();
    s.get(&p("sealed/s-t01000-1"), 65_536, Some(1000))
        .unwrap()
        .read_to_end(&mut part)
        .unwrap();
    assert_eq!(part, data[65_536..66_536]);
    assert!(matches!(
        s.get(&p("sealed/s-t01000-1"), 99_999, Some(2)),
        Err(e) if e.kind() == ErrorKind::InvalidRange
    ));
    // The same files as the builtin store sees, at the same place.
    assert_eq!(s.list(None).unwrap(), builtin.list(None).unwrap());
    assert_eq!(
        s.full_path(&p("sealed/s-t01000-1")),
        builtin.full_path(&p("sealed/s-t01000-1"))
    );
    assert!(s.info().unwrap().total > 0);
    s.del(&p("cache/s-t01000-1/p_aux")).unwrap();
    match s
        .stat(&p("cache/s-t01000-1/p_aux"))
        .map_err(|e| (e.kind(), e.message().to_owned()))
    {
        Err((ErrorKind::NotFound, m)) => assert!(m.contains("store persist-1"), "{m}"),
        other => panic!("{other:?}"),
    }

    // The constructor refuses a store it cannot serve, naming it.
    let missing = dir.path().join("no-such-dir");
    match plugin
        .open(cfg("persist-2", &missing))
        .map_err(|e| (e.kind(), e.message().to_owned()))
    {
        Err((ErrorKind::Config, m)) => {
            assert!(
                m.contains("objstore_fs_plugin") && m.contains("persist-2"),
                "{m}"
            );
            assert!(m.contains("no-such-dir"), "{m}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let ro = plugin
        .open(Config {
            read_only: true,
            ..cfg("persist-3", dir.path())
        })
        .unwrap();
    assert!(matches!(
        ro.put(&p("x"), &mut &b"x"[..]),
        Err(e) if e.kind() == ErrorKind::ReadOnly
    ));
}

#[test]
fn a_failing_constructor_and_a_panicking_call_are_errors_not_crashes() {
    let lib = workspace_cdylib("test-double-objstore-plugin", "test_double_objstore_plugin");
    let plugin = Plugin::load(&lib).unwrap();
    let mut failing = Config {
        name: "double-1".into(),
        ..Config::default()
    };
    failing
        .meta
        .insert("fail_open".into(), "for the test".into());
    match plugin
        .open(failing)
        .map_err(|e| (e.kind(), e.message().to_owned()))
    {
        Err((ErrorKind::Config, m)) => assert!(m.contains("asked to fail: for the test"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }

    let s = plugin
        .open(Config {
            name: "double-2".into(),
            ..Config::default()
        })
        .unwrap();
    match s
        .stat(&p("sealed/x"))
        .map_err(|e| (e.kind(), e.message().to_owned()))
    {
        Err((ErrorKind::Panic, m)) => {
            assert!(
                m.contains("store double-2") && m.contains("asked to panic on stat of sealed/x"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Still serving after the panic.
    assert_eq!(s.list(None).unwrap(), Vec::<String>::new());
    assert_eq!(s.put(&p("a"), &mut &b"abc"[..]).unwrap(), 3);
}
