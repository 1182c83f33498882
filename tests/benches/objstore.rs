//! Streaming through store plugins against the direct way, in one run.
//! Run: `cargo bench -p damocles-e2e --bench objstore --profile dev`
//! (`FS_MIB`, default 256; `S3_MIB`, default 64, 0 skips S3; `REPS`,
//! default 5).
//!
//! 1. Filesystem: the fs plugin (examples/objstore-fs-plugin, loaded as a
//!    cdylib) against std::fs on the same file and directory. Write: copy a
//!    local file in and sync it (the plugin also writes a temporary file and
//!    renames it). Read: the whole object into a sink, page cache warm.
//! 2. S3: the S3 plugin against object_store used directly, the crate the
//!    plugin is built on, both on the same moto server and bucket with the
//!    same 5 MiB parts. Write: a multipart upload of a local file. Read: the
//!    whole object.
//!
//! Repetitions alternate the two ways, so drift hits both; medians are
//! printed as MiB/s with the ratio plugin / direct (1.0 = no overhead).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use damocles_e2e::s3::{s3_plugin, S3Server};
use damocles_e2e::workspace_cdylib;
use damocles_objstore::plugin::Plugin;
use damocles_objstore::{Config, ObjectPath, Store};
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, WriteMultipart};

const PART: usize = 5 << 20;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// A file of `mib` MiB of varied bytes.
fn source(path: &Path, mib: usize) {
    let mut f = File::create(path).unwrap();
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31 % 251) as u8).collect();
    for _ in 0..mib {
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
}

struct Row {
    what: &'static str,
    direct: Duration,
    plugin: Duration,
    bytes: usize,
}

fn print(rows: &[Row]) {
    println!("| operation | direct MiB/s | plugin MiB/s | plugin / direct |");
    println!("|---|---|---|---|");
    for r in rows {
        let (d, p) = (mib_s(r.bytes, r.direct), mib_s(r.bytes, r.plugin));
        println!("| {} | {d:.0} | {p:.0} | {:.3} |", r.what, p / d);
    }
}

fn filesystem(dir: &Path, mib: usize, reps: usize) -> Vec<Row> {
    let src = dir.join("source");
    source(&src, mib);
    let root = dir.join("store");
    std::fs::create_dir(&root).unwrap();
    let lib = workspace_cdylib("example-objstore-fs-plugin", "objstore_fs_plugin");
    let store = Plugin::load(&lib)
        .unwrap()
        .open(Config {
            name: "bench".into(),
            path: root.display().to_string(),
            ..Config::default()
        })
        .unwrap();
    let obj = ObjectPath::new("sealed/plugin").unwrap();
    let direct_file = root.join("direct");
    let (mut w_direct, mut w_plugin, mut r_direct, mut r_plugin) = (vec![], vec![], vec![], vec![]);
    let mut w_buffered = vec![];
    for _ in 0..reps {
        // std::io::copy between files: the kernel copies (copy_file_range).
        w_direct.push(timed(|| {
            let mut out = File::create(&direct_file).unwrap();
            std::io::copy(&mut File::open(&src).unwrap(), &mut out).unwrap();
            out.sync_all().unwrap();
        }));
        // Through a 64 KiB buffer in this process, as any streaming source
        // (a plugin's data comes through one) must be.
        w_buffered.push(timed(|| {
            let mut out = File::create(&direct_file).unwrap();
            let mut f = File::open(&src).unwrap();
            let mut buf = vec![0; 64 << 10];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).unwrap();
            }
            out.sync_all().unwrap();
        }));
        w_plugin.push(timed(|| {
            let n = store.put(&obj, &mut File::open(&src).unwrap()).unwrap();
            assert_eq!(n as usize, mib << 20);
        }));
        r_direct.push(timed(|| {
            let n = std::io::copy(&mut File::open(&direct_file).unwrap(), &mut std::io::sink());
            assert_eq!(n.unwrap() as usize, mib << 20);
        }));
        r_plugin.push(timed(|| {
            let mut r = store.get(&obj, 0, None).unwrap();
            let n = std::io::copy(&mut r, &mut std::io::sink()).unwrap();
            assert_eq!(n as usize, mib << 20);
        }));
    }
    let w_plugin = median(w_plugin);
    vec![
        Row {
            what: "fs write (vs kernel copy)",
            direct: median(w_direct),
            plugin: w_plugin,
            bytes: mib << 20,
        },
        Row {
            what: "fs write (vs 64 KiB buffer)",
            direct: median(w_buffered),
            plugin: w_plugin,
            bytes: mib << 20,
        },
        Row {
            what: "fs read",
            direct: median(r_direct),
            plugin: median(r_plugin),
            bytes: mib << 20,
        },
    ]
}

fn s3(dir: &Path, mib: usize, reps: usize) -> Vec<Row> {
    let src = dir.join("s3-source");
    source(&src, mib);
    let server = S3Server::start();
    server.create_bucket("bench");
    // The plugin's defaults, but for the server and credentials.
    let mut cfg = server.store_config("bench", "bench");
    cfg.meta
        .retain(|k, _| ["endpoint", "access_key_id", "secret_access_key"].contains(&k.as_str()));
    cfg.meta.insert("part_size".into(), PART.to_string());
    let plugin = Plugin::load(&s3_plugin()).unwrap().open(cfg).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let direct = AmazonS3Builder::new()
        .with_bucket_name("bench")
        .with_region("us-east-1")
        .with_endpoint(format!("http://{}", server.authority))
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let key = object_store::path::Path::from("direct/object");
    let obj = ObjectPath::new("plugin/object").unwrap();
    let (mut w_direct, mut w_plugin, mut r_direct, mut r_plugin) = (vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        w_direct.push(timed(|| {
            rt.block_on(async {
                let upload = direct.put_multipart(&key).await.unwrap();
                let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
                let mut f = File::open(&src).unwrap();
                let mut buf = vec![0; PART];
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    w.wait_for_capacity(8).await.unwrap();
                    w.write(&buf[..n]);
                }
                w.finish().await.unwrap();
            })
        }));
        w_plugin.push(timed(|| {
            let n = plugin.put(&obj, &mut File::open(&src).unwrap()).unwrap();
            assert_eq!(n as usize, mib << 20);
        }));
        r_direct.push(timed(|| {
            // The body streamed as it arrives, as the plugin does.
            let n = rt.block_on(async {
                let mut body = direct.get(&key).await.unwrap().into_stream();
                let mut n = 0;
                while let Some(chunk) = body.next().await {
                    n += chunk.unwrap().len();
                }
                n
            });
            assert_eq!(n, mib << 20);
        }));
        r_plugin.push(timed(|| {
            let mut r = plugin.get(&obj, 0, None).unwrap();
            let n = std::io::copy(&mut r, &mut std::io::sink()).unwrap();
            assert_eq!(n as usize, mib << 20);
        }));
    }
    vec![
        Row {
            what: "S3 write (multipart)",
            direct: median(w_direct),
            plugin: median(w_plugin),
            bytes: mib << 20,
        },
        Row {
            what: "S3 read",
            direct: median(r_direct),
            plugin: median(r_plugin),
            bytes: mib << 20,
        },
    ]
}

fn main() {
    let reps = env_or("REPS", 5);
    let dir = tempfile::tempdir().unwrap();
    let mut rows = filesystem(dir.path(), env_or("FS_MIB", 256), reps);
    let s3_mib = env_or("S3_MIB", 64);
    if s3_mib > 0 {
        rows.extend(s3(dir.path(), s3_mib, reps));
    }
    print(&rows);
}
