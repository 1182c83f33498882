//! The S3 store plugin (examples/objstore-s3-plugin, loaded as a cdylib)
//! against a real S3 server process: moto's server, which `.ci/run`
//! installs from PyPI. Put, stat, ranged get, list, delete, a large object
//! through a multipart upload, a failed upload leaving nothing visible, bad
//! config, and a server that went away.

use std::io::Read;
use std::time::{Duration, Instant};

use damocles_e2e::s3::{s3_plugin, S3Server};
use damocles_objstore::plugin::Plugin;
use damocles_objstore::{ErrorKind, ObjectPath, Store};

fn p(s: &str) -> ObjectPath {
    ObjectPath::new(s).unwrap()
}

/// A source that gives `n` bytes, then fails.
struct FailsAfter(usize);

impl Read for FailsAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("the sealed file went away"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(7);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn the_s3_plugin_serves_a_real_s3_server() {
    let lib = s3_plugin();
    let plugin = Plugin::load(&lib).unwrap();
    assert_eq!(plugin.kind(), "s3");
    let mut server = S3Server::start();
    server.create_bucket("sectors");
    let s = plugin.open(server.store_config("s3-1", "sectors")).unwrap();

    // Small objects: one request each.
    assert_eq!(
        s.put(&p("cache/s-t01000-1/p_aux"), &mut &b"aux-bytes"[..])
            .unwrap(),
        9
    );
    assert_eq!(s.stat(&p("cache/s-t01000-1/p_aux")).unwrap(), 9);
    let mut got = String::new();
    s.get(&p("cache/s-t01000-1/p_aux"), 4, Some(5))
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, "bytes");
    assert_eq!(
        s.full_path(&p("sealed/x")),
        "s3://sectors/cluster-a/sealed/x"
    );

    // A large object: a multipart upload of 5 MiB parts; ranged reads across
    // a part boundary and in the last part.
    let big: Vec<u8> = (0..12 * (1 << 20) + 123)
        .map(|i: u32| (i % 253) as u8)
        .collect();
    assert_eq!(
        s.put(&p("sealed/s-t01000-1"), &mut &big[..]).unwrap(),
        big.len() as u64
    );
    assert_eq!(s.stat(&p("sealed/s-t01000-1")).unwrap(), big.len() as u64);
    let boundary = 5 << 20;
    let mut part = Vec::new();
    s.get(&p("sealed/s-t01000-1"), boundary - 100, Some(200))
        .unwrap()
        .read_to_end(&mut part)
        .unwrap();
    assert_eq!(part, big[boundary as usize - 100..boundary as usize + 100]);
    let mut all = Vec::new();
    s.get(&p("sealed/s-t01000-1"), 0, None)
        .unwrap()
        .read_to_end(&mut all)
        .unwrap();
    assert!(all == big, "the whole object reads back byte for byte");
    assert!(matches!(
        s.get(
            &p("sealed/s-t01000-1"),
            big.len() as u64 - 1,
            Some(u64::MAX / 2)
        ),
        Err(e) if e.kind() == ErrorKind::InvalidRange
    ));

    // A multipart upload whose source fails is aborted: nothing visible.
    let failed = s.put(&p("sealed/s-t01000-2"), &mut FailsAfter(11 << 20));
    match failed.map_err(|e| (e.kind(), e.message().to_owned())) {
        Err((ErrorKind::Io, m)) => assert!(m.contains("the sealed file went away"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.stat(&p("sealed/s-t01000-2")),
        Err(e) if e.kind() == ErrorKind::NotFound
    ));

    assert_eq!(
        s.list(None).unwrap(),
        vec![
            "cache/s-t01000-1/p_aux".to_string(),
            "sealed/s-t01000-1".into()
        ]
    );
    assert_eq!(
        s.list(Some(&p("sealed"))).unwrap(),
        vec!["sealed/s-t01000-1".to_string()]
    );
    s.del(&p("cache/s-t01000-1/p_aux")).unwrap();
    match s
        .stat(&p("cache/s-t01000-1/p_aux"))
        .map_err(|e| (e.kind(), e.message().to_owned()))
    {
        Err((ErrorKind::NotFound, m)) => assert!(
            m.contains("s3://sectors/cluster-a/cache/s-t01000-1/p_aux"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.del(&p("nothing")), Err(e) if e.kind() == ErrorKind::NotFound));

    // Bad config, refused by the constructor with the key named.
    let mut no_key = server.store_config("s3-1", "sectors");
    no_key.meta.remove("access_key_id");
    match plugin
        .open(no_key)
        .map_err(|e| (e.kind(), e.message().to_owned()))
    {
        Err((ErrorKind::Config, m)) => assert!(m.contains("Meta.access_key_id"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let mut tiny_parts = server.store_config("s3-1", "sectors");
    tiny_parts.meta.insert("part_size".into(), "1024".into());
    match plugin
        .open(tiny_parts)
        .map_err(|e| (e.kind(), e.message().to_owned()))
    {
        Err((ErrorKind::Config, m)) => assert!(m.contains("Meta.part_size"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }

    // The server goes away: a clear error after the configured retries.
    server.stop();
    let started = Instant::now();
    match s
        .stat(&p("sealed/s-t01000-1"))
        .map_err(|e| (e.kind(), e.message().to_owned()))
    {
        Err((ErrorKind::Io, m)) => assert!(
            m.contains("s3://sectors/cluster-a/sealed/s-t01000-1"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn wrong_credentials_are_a_clear_error_naming_the_keys() {
    let plugin = Plugin::load(&s3_plugin()).unwrap();
    let server = S3Server::start_checking_credentials();
    // The constructor does not call the server: the first request fails.
    let s = plugin.open(server.store_config("s3-1", "sectors")).unwrap();
    for e in [
        s.put(&p("sealed/s-t01000-1"), &mut &b"sealed bytes"[..])
            .unwrap_err(),
        s.stat(&p("sealed/s-t01000-1")).unwrap_err(),
    ] {
        match (e.kind(), e.message()) {
            (ErrorKind::Io, m) => assert!(
                m.contains("access denied")
                    && m.contains("Meta.access_key_id")
                    && m.contains("s3-1")
                    && m.contains("s3://sectors/cluster-a/sealed/s-t01000-1"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
