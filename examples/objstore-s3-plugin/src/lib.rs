//! A store plugin keeping objects in an S3-compatible object store, on the
//! `object_store` crate: ranged reads streamed in GETs of 64 MiB, multipart uploads
//! that appear only when complete (aborted on failure), and retries with
//! backoff. Built as `libobjstore_s3_plugin.so`.
//!
//! `Path` is the bucket. `Meta` keys:
//!
//! | key | |
//! |---|---|
//! | `endpoint` | e.g. `http://10.0.0.5:9000`; default: AWS for the region |
//! | `region` | default `us-east-1` |
//! | `access_key_id`, `secret_access_key` | required, unless `anonymous = "true"` |
//! | `prefix` | keys go under it, e.g. `cluster-a/` |
//! | `part_size` | multipart part size in bytes, at least 5 MiB; default 16 MiB |
//! | `read_window` | bytes per GET when reading, at least 1 MiB; default 64 MiB |
//! | `max_retries`, `retry_timeout_secs` | default 5 and 60 |
//! | `capacity` | bytes reported as the store's total and free (S3 has no size); default 1 PiB |
//!
//! Credentials come only from the config, never from the environment, so a
//! store is exactly what its config says.

use std::ffi::CStr;
use std::io::Read;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use damocles_objstore::sdk::StorePlugin;
use damocles_objstore::{check_range, Config, Error, ErrorKind, Info, ObjectPath, Result, Store};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, RetryConfig, WriteMultipart};

const MIB: usize = 1 << 20;
/// Bytes asked for per GET when reading, by default.
const READ_WINDOW: u64 = 64 * MIB as u64;

pub struct S3Store {
    cfg: Config,
    bucket: String,
    prefix: String,
    part_size: usize,
    read_window: u64,
    capacity: u64,
    store: Arc<dyn ObjectStore>,
    rt: Arc<tokio::runtime::Runtime>,
}

fn meta<'a>(cfg: &'a Config, key: &str) -> Option<&'a str> {
    cfg.meta
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn meta_num<T: std::str::FromStr>(cfg: &Config, key: &str, default: T) -> Result<T> {
    match meta(cfg, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!("Meta.{key}: {v:?} is not a number"),
            )
        }),
    }
}

impl S3Store {
    fn key(&self, p: &ObjectPath) -> Key {
        Key::from(format!("{}{p}", self.prefix))
    }

    fn url(&self, p: &ObjectPath) -> String {
        format!("s3://{}/{}{p}", self.bucket, self.prefix)
    }

    fn fail(&self, p: &ObjectPath, what: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::new(ErrorKind::NotFound, self.url(p)),
            e @ (object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }) => Error::new(ErrorKind::Io, format!(
                "{} {what}: access denied; check Meta.access_key_id and Meta.secret_access_key of store {}: {e}",
                self.url(p),
                self.instance()
            )),
            other => Error::new(ErrorKind::Io, format!("{} {what}: {other}", self.url(p))),
        }
    }

    fn writable(&self) -> Result<()> {
        if self.cfg.read_only {
            return Err(Error::new(ErrorKind::ReadOnly, self.instance().to_string()));
        }
        Ok(())
    }
}

impl StorePlugin for S3Store {
    const KIND: &'static CStr = c"s3";

    fn open(cfg: Config) -> Result<Self> {
        if cfg.path.is_empty() {
            return Err(Error::new(ErrorKind::Config, "Path (the bucket) is empty"));
        }
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.path)
            .with_region(meta(&cfg, "region").unwrap_or("us-east-1"));
        if let Some(endpoint) = meta(&cfg, "endpoint") {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if meta(&cfg, "anonymous") == Some("true") {
            b = b.with_skip_signature(true);
        } else {
            let id = meta(&cfg, "access_key_id").ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    "Meta.access_key_id is missing (or set Meta.anonymous = \"true\")",
                )
            })?;
            let secret = meta(&cfg, "secret_access_key").ok_or_else(|| {
                Error::new(ErrorKind::Config, "Meta.secret_access_key is missing")
            })?;
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let retry = RetryConfig {
            max_retries: meta_num(&cfg, "max_retries", 5usize)?,
            retry_timeout: Duration::from_secs(meta_num(&cfg, "retry_timeout_secs", 60u64)?),
            ..RetryConfig::default()
        };
        let store = b.with_retry(retry).build().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("S3 client for bucket {}: {e}", cfg.path),
            )
        })?;
        let part_size = meta_num(&cfg, "part_size", 16 * MIB)?;
        if part_size < 5 * MIB {
            return Err(Error::new(
                ErrorKind::Config,
                format!("Meta.part_size: {part_size} is below S3's minimum part of 5 MiB"),
            ));
        }
        let read_window = meta_num(&cfg, "read_window", READ_WINDOW)?;
        if read_window < MIB as u64 {
            return Err(Error::new(
                ErrorKind::Config,
                format!("Meta.read_window: {read_window} is below 1 MiB"),
            ));
        }
        let mut prefix = meta(&cfg, "prefix").unwrap_or("").to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("objstore-s3")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    format!("start the S3 plugin's runtime: {e}"),
                )
            })?;
        Ok(S3Store {
            bucket: cfg.path.clone(),
            capacity: meta_num(&cfg, "capacity", 1u64 << 50)?,
            cfg,
            prefix,
            part_size,
            read_window,
            store: Arc::new(store),
            rt: Arc::new(rt),
        })
    }
}

impl Store for S3Store {
    fn kind(&self) -> &str {
        "s3"
    }

    fn config(&self) -> &Config {
        &self.cfg
    }

    fn info(&self) -> Result<Info> {
        Ok(Info {
            total: self.capacity,
            free: self.capacity,
            used: 0,
        })
    }

    fn stat(&self, path: &ObjectPath) -> Result<u64> {
        let key = self.key(path);
        let meta = self
            .rt
            .block_on(self.store.head(&key))
            .map_err(|e| self.fail(path, "stat", e))?;
        Ok(meta.size)
    }

    fn get(
        &self,
        path: &ObjectPath,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let size = self.stat(path)?;
        let len = check_range(path, size, offset, len)?;
        Ok(Box::new(RangeReader {
            store: Arc::clone(&self.store),
            rt: Arc::clone(&self.rt),
            key: self.key(path),
            url: self.url(path),
            range: offset..offset + len,
            window: self.read_window,
            window_end: offset,
            body: None,
            buf: Bytes::new(),
        }))
    }

    fn put(&self, path: &ObjectPath, data: &mut dyn Read) -> Result<u64> {
        self.writable()?;
        let key = self.key(path);
        let read_part = |data: &mut dyn Read| -> Result<Vec<u8>> {
            let mut part = Vec::with_capacity(self.part_size);
            data.take(self.part_size as u64)
                .read_to_end(&mut part)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Io,
                        format!("{}: reading the data to put: {e}", self.url(path)),
                    )
                })?;
            Ok(part)
        };
        let first = read_part(data)?;
        if first.len() < self.part_size {
            // Small enough for one request, which S3 applies whole.
            let n = first.len() as u64;
            self.rt
                .block_on(self.store.put(&key, PutPayload::from(first)))
                .map_err(|e| self.fail(path, "put", e))?;
            return Ok(n);
        }
        // A multipart upload: the object appears only once it completes.
        self.rt.block_on(async {
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| self.fail(path, "start multipart upload", e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, self.part_size);
            let mut written = first.len() as u64;
            w.write(&first);
            loop {
                let part = match read_part(data) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = w.abort().await;
                        return Err(e);
                    }
                };
                if part.is_empty() {
                    break;
                }
                written += part.len() as u64;
                if let Err(e) = w.wait_for_capacity(2).await {
                    let _ = w.abort().await;
                    return Err(self.fail(path, "upload part", e));
                }
                w.write(&part);
            }
            // A failed part makes `finish` return without aborting.
            if let Err(e) = w.wait_for_capacity(0).await {
                let _ = w.abort().await;
                return Err(self.fail(path, "upload part", e));
            }
            w.finish()
                .await
                .map_err(|e| self.fail(path, "complete multipart upload", e))?;
            Ok(written)
        })
    }

    fn del(&self, path: &ObjectPath) -> Result<()> {
        self.writable()?;
        // S3 deletes missing keys silently; say so, as the filesystem store does.
        self.stat(path)?;
        self.rt
            .block_on(self.store.delete(&self.key(path)))
            .map_err(|e| self.fail(path, "delete", e))
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> Result<Vec<String>> {
        let under = match prefix {
            Some(p) => Key::from(format!("{}{p}", self.prefix)),
            None => Key::from(self.prefix.trim_end_matches('/')),
        };
        let metas: Vec<_> = self
            .rt
            .block_on(self.store.list(Some(&under)).try_collect())
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("s3://{}/{under} list: {e}", self.bucket),
                )
            })?;
        let mut out: Vec<String> = metas
            .into_iter()
            .map(|m| m.location.to_string())
            .map(|k| k.strip_prefix(&self.prefix).map(String::from).unwrap_or(k))
            .collect();
        out.sort();
        Ok(out)
    }

    fn full_path(&self, path: &ObjectPath) -> String {
        self.url(path)
    }
}

/// Reads a byte range in GETs of up to [`READ_WINDOW`], each body streamed
/// as it arrives (the first request is sent on the first read). A window
/// keeps each request within the client's timeout however long the whole
/// read takes.
struct RangeReader {
    store: Arc<dyn ObjectStore>,
    rt: Arc<tokio::runtime::Runtime>,
    key: Key,
    url: String,
    /// What is left to read.
    range: Range<u64>,
    /// Bytes per GET.
    window: u64,
    /// Where the current GET's body ends.
    window_end: u64,
    body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    buf: Bytes,
}

impl RangeReader {
    fn fail(&self, e: impl std::fmt::Display) -> std::io::Error {
        std::io::Error::other(format!("{} at byte {}: {e}", self.url, self.range.start))
    }
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            if self.range.is_empty() {
                return Ok(0);
            }
            if self.body.is_none() {
                self.window_end = self.range.end.min(self.range.start + self.window);
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(self.range.start..self.window_end)),
                    ..GetOptions::default()
                };
                let got = self
                    .rt
                    .block_on(self.store.get_opts(&self.key, opts))
                    .map_err(|e| self.fail(e))?;
                self.body = Some(got.into_stream());
            }
            let body = self.body.as_mut().expect("set above");
            match self.rt.block_on(body.next()) {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(self.fail(e)),
                None if self.range.start == self.window_end => self.body = None,
                None => return Err(self.fail("the server ended the body early")),
            }
        }
        let n = out
            .len()
            .min(self.buf.len())
            .min(self.range.end.saturating_sub(self.range.start) as usize);
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        self.range.start += n as u64;
        Ok(n)
    }
}

damocles_objstore::export_store_plugin!(S3Store);
