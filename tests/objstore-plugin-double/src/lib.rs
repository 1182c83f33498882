//! TEST DOUBLE: a store plugin that misbehaves on purpose. Its constructor
//! fails when `Meta.fail_open` is set; `stat` panics; everything else
//! answers as an empty store. Only the plugin loader tests load it.

use std::ffi::CStr;
use std::io::Read;

use damocles_objstore::sdk::StorePlugin;
use damocles_objstore::{Config, Error, ErrorKind, Info, ObjectPath, Result, Store};

pub struct Misbehaving(Config);

impl Store for Misbehaving {
    fn kind(&self) -> &str {
        "test-double"
    }
    fn config(&self) -> &Config {
        &self.0
    }
    fn info(&self) -> Result<Info> {
        Ok(Info::default())
    }
    fn stat(&self, path: &ObjectPath) -> Result<u64> {
        panic!("asked to panic on stat of {path}");
    }
    fn get(&self, path: &ObjectPath, _: u64, _: Option<u64>) -> Result<Box<dyn Read + Send>> {
        Err(Error::new(ErrorKind::NotFound, path.to_string()))
    }
    fn put(&self, _: &ObjectPath, data: &mut dyn Read) -> Result<u64> {
        std::io::copy(data, &mut std::io::sink())
            .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))
    }
    fn del(&self, path: &ObjectPath) -> Result<()> {
        Err(Error::new(ErrorKind::NotFound, path.to_string()))
    }
    fn list(&self, _: Option<&ObjectPath>) -> Result<Vec<String>> {
        Ok(vec![])
    }
    fn full_path(&self, path: &ObjectPath) -> String {
        format!("double://{path}")
    }
}

impl StorePlugin for Misbehaving {
    const KIND: &'static CStr = c"test-double";
    fn open(cfg: Config) -> Result<Self> {
        if let Some(why) = cfg.meta.get("fail_open") {
            return Err(Error::new(
                ErrorKind::Config,
                format!("asked to fail: {why}"),
            ));
        }
        Ok(Misbehaving(cfg))
    }
}

damocles_objstore::export_store_plugin!(Misbehaving);
