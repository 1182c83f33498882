//! The builtin filesystem store served as a plugin: the whole plugin is one
//! line, because `FsStore` implements `StorePlugin`. Built as
//! `libobjstore_fs_plugin.so`; a daemon given this file serves `PluginName =
//! "fs-plugin"` stores exactly as its builtin store does (`fs`, the builtin
//! store's kind, is not a plugin's to take).

damocles_objstore::export_store_plugin!(damocles_objstore::fs::FsStore);
