//! The manager's home directory: config, secret, tokens, database.
//!
//! ```text
//! <home>/sector-manager.cfg   config (daemon init writes a commented default)
//! <home>/keystore/jwt-secret  HMAC secret tokens are signed with (0600)
//! <home>/token                the admin token (0600)
//! <home>/api                  the running daemon's RPC URL, for the CLI
//! <home>/data/manager.redb    sector state, allocator, reservations, devnet chain
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Clone, Debug)]
pub struct Home(PathBuf);

impl Home {
    pub fn new(path: impl Into<PathBuf>) -> Home {
        Home(path.into())
    }

    /// `--home`, else `$DAMOCLES_PATH`, else `~/.damocles-manager`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("DAMOCLES_PATH") {
            return PathBuf::from(p);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".damocles-manager")
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn config(&self) -> PathBuf {
        self.0.join(crate::config::FILE_NAME)
    }
    pub fn secret(&self) -> PathBuf {
        self.0.join("keystore").join("jwt-secret")
    }
    pub fn token(&self) -> PathBuf {
        self.0.join("token")
    }
    pub fn api(&self) -> PathBuf {
        self.0.join("api")
    }
    pub fn database(&self) -> PathBuf {
        self.0.join("data").join("manager.redb")
    }
    /// Where PoSt fetches the files of sectors in plugin stores; emptied at start.
    pub fn post_fetch(&self) -> PathBuf {
        self.0.join("post-fetch")
    }

    pub fn read_token(&self) -> Result<String> {
        let p = self.token();
        Ok(std::fs::read_to_string(&p)
            .with_context(|| {
                format!(
                    "read token {} (run `damocles-manager daemon init` first, or pass --token)",
                    p.display()
                )
            })?
            .trim()
            .to_string())
    }

    pub fn read_api(&self) -> Result<String> {
        let p = self.api();
        Ok(std::fs::read_to_string(&p)
            .with_context(|| {
                format!(
                    "read {} (is the daemon running? or pass --api)",
                    p.display()
                )
            })?
            .trim()
            .to_string())
    }
}

/// Owner-only files written whole (secret, token, api).
pub use damocles_gate::token::write_private;
