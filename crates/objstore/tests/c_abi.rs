//! The C side of the plugin ABI, compiled here with the system C compiler:
//! the shipped header agrees with the Rust definitions, the minimal C plugin
//! of examples/objstore-c-plugin built from it loads and serves reads, and
//! libraries that are not plugins of this ABI are refused with the file and
//! the reason. The TEST DOUBLE `tests/c/misbehaving.c` breaks the ABI one
//! way per build: NULL functions, bad kinds and error buffers the host
//! cannot trust are refused, never followed.

use std::collections::BTreeMap;
use std::io::Read;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use damocles_objstore::abi::{self, code, Buf, PluginTable, RawInfo};
use damocles_objstore::plugin::{LoadError, Plugin};
use damocles_objstore::{Config, ErrorKind, ObjectPath, Store};

/// The package directory, read at run time (cargo sets it for tests too): a
/// test binary built from another checkout sharing the build directory would
/// carry that checkout's path in `env!`.
fn manifest() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn cc(args: &[&str]) {
    let include = manifest().join("include");
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-I")
        .arg(&include)
        .args(["-Wall", "-Werror"])
        .args(args)
        .output()
        .expect("run the C compiler (cc)");
    assert!(
        out.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `src` into a shared library at `out`.
fn shared(src: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["-shared", "-fPIC", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(src.to_str().unwrap());
    cc(&args);
}

/// `tests/c/misbehaving.c` built with `defines` into `<dir>/<name>`.
fn misbehaving(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let out = dir.join(name);
    shared(&manifest().join("tests/c/misbehaving.c"), &out, defines);
    out
}

fn hello_src() -> PathBuf {
    manifest().join("../../examples/objstore-c-plugin/hello_store.c")
}

fn p(s: &str) -> ObjectPath {
    ObjectPath::new(s).unwrap()
}

#[test]
fn the_header_matches_the_rust_table() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("layout");
    cc(&[
        "-o",
        exe.to_str().unwrap(),
        manifest().join("tests/c/layout.c").to_str().unwrap(),
    ]);
    let out = Command::new(&exe).output().unwrap();
    let c: BTreeMap<String, String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let rust: Vec<(&str, String)> = vec![
        ("abi_version_const", abi::ABI_VERSION.to_string()),
        ("entry", abi::ENTRY_SYMBOL.to_string()),
        ("sizeof_table", size_of::<PluginTable>().to_string()),
        ("sizeof_buf", size_of::<Buf>().to_string()),
        ("sizeof_info", size_of::<RawInfo>().to_string()),
        (
            "abi_version",
            offset_of!(PluginTable, abi_version).to_string(),
        ),
        (
            "struct_size",
            offset_of!(PluginTable, struct_size).to_string(),
        ),
        ("kind", offset_of!(PluginTable, kind).to_string()),
        ("open", offset_of!(PluginTable, open).to_string()),
        ("close", offset_of!(PluginTable, close).to_string()),
        ("info", offset_of!(PluginTable, info).to_string()),
        ("stat", offset_of!(PluginTable, stat).to_string()),
        ("get", offset_of!(PluginTable, get).to_string()),
        ("read", offset_of!(PluginTable, read).to_string()),
        (
            "reader_close",
            offset_of!(PluginTable, reader_close).to_string(),
        ),
        ("put", offset_of!(PluginTable, put).to_string()),
        ("del", offset_of!(PluginTable, del).to_string()),
        ("list", offset_of!(PluginTable, list).to_string()),
        ("full_path", offset_of!(PluginTable, full_path).to_string()),
        ("free_buf", offset_of!(PluginTable, free_buf).to_string()),
        ("code_ok", code::OK.to_string()),
        ("code_not_found", code::NOT_FOUND.to_string()),
        ("code_invalid_path", code::INVALID_PATH.to_string()),
        ("code_read_only", code::READ_ONLY.to_string()),
        ("code_not_regular_file", code::NOT_REGULAR_FILE.to_string()),
        ("code_invalid_range", code::INVALID_RANGE.to_string()),
        ("code_io", code::IO.to_string()),
        ("code_config", code::CONFIG.to_string()),
        ("code_panic", code::PANIC.to_string()),
        ("code_other", code::OTHER.to_string()),
        ("to_end", abi::TO_END.to_string()),
    ];
    for (name, value) in rust {
        assert_eq!(c.get(name), Some(&value), "{name}: header vs Rust");
    }
    assert_eq!(c.len(), 31, "every line of layout.c is compared: {c:?}");
}

#[test]
fn a_c_plugin_built_from_the_header_loads_and_serves_reads() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libhello_store.so");
    shared(&hello_src(), &lib, &[]);
    let plugin = Plugin::load(&lib).unwrap();
    assert_eq!(plugin.kind(), "hello");
    let s = plugin
        .open(Config {
            name: "hello-1".into(),
            ..Config::default()
        })
        .unwrap();
    assert_eq!(s.instance(), "hello-1");
    assert_eq!(s.stat(&p("hello.txt")).unwrap(), 22);
    let mut all = String::new();
    s.get(&p("hello.txt"), 0, None)
        .unwrap()
        .read_to_string(&mut all)
        .unwrap();
    assert_eq!(all, "hello from a C plugin\n");
    let mut part = String::new();
    s.get(&p("hello.txt"), 6, Some(4))
        .unwrap()
        .read_to_string(&mut part)
        .unwrap();
    assert_eq!(part, "from");
    assert!(matches!(
        s.get(&p("hello.txt"), 20, Some(10)),
        Err(e) if e.kind() == ErrorKind::InvalidRange
    ));
    match s
        .stat(&p("missing"))
        .map_err(|e| (e.kind(), e.message().to_owned()))
    {
        Err((ErrorKind::NotFound, m)) => assert!(m.contains("store hello-1"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.put(&p("new"), &mut &b"x"[..]),
        Err(e) if e.kind() == ErrorKind::ReadOnly
    ));
    assert_eq!(s.list(None).unwrap(), vec!["hello.txt".to_string()]);
    assert_eq!(s.full_path(&p("hello.txt")), "hello://hello.txt");
    assert_eq!(s.info().unwrap().used, 22);
}

#[test]
fn libraries_that_are_not_plugins_of_this_abi_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("a-good.so");
    shared(&hello_src(), &good, &[]);

    let c = dir.path().join("nothing.c");
    std::fs::write(&c, "int nothing(void) { return 0; }\n").unwrap();
    let no_entry = dir.path().join("b-no-entry.so");
    shared(&c, &no_entry, &[]);
    match Plugin::load(&no_entry) {
        Err(e @ LoadError::NoEntry { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("b-no-entry.so") && m.contains("damocles_objstore_plugin"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }

    let v99 = dir.path().join("c-v99.so");
    shared(&hello_src(), &v99, &["-DPLUGIN_ABI_VERSION=99"]);
    match Plugin::load(&v99) {
        Err(e @ LoadError::Version { found: 99, .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("c-v99.so") && m.contains("version 99") && m.contains("version 1"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }

    let junk = dir.path().join("d-junk.so");
    std::fs::write(&junk, "not a library").unwrap();
    assert!(matches!(Plugin::load(&junk), Err(LoadError::Open { .. })));

    // A directory of them: the good one loads, each other one is named.
    let (ok, refused) = Plugin::load_dir(dir.path()).unwrap();
    assert_eq!(ok.len(), 1, "{refused:?}");
    assert_eq!(ok[0].path(), good);
    assert_eq!(refused.len(), 3, "{refused:?}");
}

#[test]
fn a_table_with_null_functions_is_refused_naming_the_file_and_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    // The same source with every function filled loads: only the NULLs
    // below make the difference.
    let whole = misbehaving(dir.path(), "whole.so", &[]);
    assert_eq!(Plugin::load(&whole).unwrap().kind(), "misbehaving");

    let nullfns = misbehaving(dir.path(), "nullfns.so", &["-DNULL_FNS"]);
    match Plugin::load(&nullfns) {
        Err(e @ LoadError::NullFunctions { .. }) => {
            let m = e.to_string();
            assert!(m.contains("nullfns.so") && m.contains("NULL"), "{m}");
            for f in [
                "open",
                "close",
                "info",
                "stat",
                "get",
                "read",
                "reader_close",
                "put",
                "del",
                "list",
                "full_path",
                "free_buf",
            ] {
                assert!(m.contains(f), "{f}: {m}");
            }
        }
        other => panic!("{other:?}"),
    }
    let no_free = misbehaving(dir.path(), "no-free.so", &["-DNULL_FREE_BUF"]);
    match Plugin::load(&no_free) {
        Err(LoadError::NullFunctions { path, fields }) => {
            assert_eq!((path, fields), (no_free, vec!["free_buf"]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_kind_must_be_a_plain_identifier_and_not_a_builtin_one() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("-DKIND=\"{}\"", "k".repeat(abi::MAX_KIND_LEN + 1));
    let max = format!("-DKIND=\"{}\"", "k".repeat(abi::MAX_KIND_LEN));
    let ok = misbehaving(dir.path(), "max.so", &[&max]);
    assert_eq!(Plugin::load(&ok).unwrap().kind().len(), abi::MAX_KIND_LEN);
    for (name, define, why) in [
        ("builtin.so", "-DKIND=\"fs\"", "builtin"),
        ("upper.so", "-DKIND=\"S3\"", "plain identifier"),
        ("empty.so", "-DKIND=\"\"", "plain identifier"),
        (
            "escapes.so",
            "-DKIND=\"bad\\n\\x1b[31m\"",
            "plain identifier",
        ),
        ("long.so", long.as_str(), "plain identifier"),
        ("null.so", "-DKIND=0", "no kind"),
    ] {
        let lib = misbehaving(dir.path(), name, &[define]);
        match Plugin::load(&lib) {
            Err(e @ LoadError::Invalid { .. }) => {
                let m = e.to_string();
                assert!(m.contains(name) && m.contains(why), "{m}");
                // Logged as is, it must not break or color a log line.
                assert!(!m.contains('\n') && !m.contains('\x1b'), "{m:?}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn an_error_buffer_the_host_cannot_trust_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    for (name, defines, why) in [
        (
            "huge.so",
            ["-DERR_PTR=0x10", "-DERR_LEN=((size_t)1 << 30)"],
            "1073741824 bytes, over the 65536-byte limit",
        ),
        (
            "null.so",
            ["-DERR_PTR=0", "-DERR_LEN=5"],
            "a null pointer with a length of 5 bytes",
        ),
    ] {
        let plugin = Plugin::load(&misbehaving(dir.path(), name, &defines)).unwrap();
        let e = plugin
            .open(Config {
                name: "bad-err".into(),
                ..Config::default()
            })
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let m = e.message();
        assert!(m.contains(name) && m.contains("bad-err"), "{m}");
        assert!(
            m.contains("error message was not read") && m.contains(why),
            "{m}"
        );
    }
}
