//! A real damocles-manager with its devnet chain, and the commitments of one
//! sector driven through its `Venus.*` RPC the way a worker does: allocate,
//! ticket, precommit until landed, persist into a store, seed, prove-commit
//! until the sector is active, finalize.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use damocles_api::cli::ManagerCliApiClient;
use damocles_api::encoding::Base64Bytes;
use damocles_api::rpc::SealerApiClient;
use damocles_api::*;
use filecoin_proofs_api::seal::SealPreCommitPhase2Output;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use vc_processors::sector::{objects, persisted_cache_files};

use crate::{Commitments, MINER, SEAL_PROOF};

/// A `damocles-manager daemon run` child; killed when dropped.
pub struct ManagerProcess {
    pub home: PathBuf,
    pub bin: PathBuf,
    pub url: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl ManagerProcess {
    /// `daemon init` into a new `home` for miner 1000 with a devnet of
    /// `block_time` and `seed_delay` epochs; `edit` may change the config text.
    pub fn init(
        bin: &Path,
        home: &Path,
        block_time: &str,
        seed_delay: u32,
        edit: impl FnOnce(String) -> String,
    ) -> Result<()> {
        Self::init_with(bin, home, block_time, seed_delay, &[], edit)
    }

    /// [`ManagerProcess::init`] with more `daemon init` flags (`--pre-seal N`,
    /// `--policy Key=Value`).
    pub fn init_with(
        bin: &Path,
        home: &Path,
        block_time: &str,
        seed_delay: u32,
        extra: &[&str],
        edit: impl FnOnce(String) -> String,
    ) -> Result<()> {
        let out = Command::new(bin)
            .arg("--home")
            .arg(home)
            .args([
                "daemon",
                "init",
                "--miner",
                &MINER.to_string(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args([
                "--block-time",
                block_time,
                "--seed-delay",
                &seed_delay.to_string(),
            ])
            .args(extra)
            .output()
            .with_context(|| format!("run {}", bin.display()))?;
        ensure!(
            out.status.success(),
            "damocles-manager daemon init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = home.join("sector-manager.cfg");
        let text = std::fs::read_to_string(&cfg)?;
        std::fs::write(&cfg, edit(text))?;
        Ok(())
    }

    /// Starts `daemon run` on `home` and waits until it serves (it writes its
    /// URL to `<home>/api`). Its log goes to `<home>/manager-<n>.log`.
    pub fn start(bin: &Path, home: &Path) -> Result<ManagerProcess> {
        Self::start_with(bin, home, &[])
    }

    /// [`ManagerProcess::start`] with more `daemon run` flags (`--poster`, `--miner`).
    pub fn start_with(bin: &Path, home: &Path, flags: &[&str]) -> Result<ManagerProcess> {
        let api = home.join("api");
        let _ = std::fs::remove_file(&api);
        let n = (0..)
            .find(|n| !home.join(format!("manager-{n}.log")).exists())
            .unwrap();
        let log = home.join(format!("manager-{n}.log"));
        let child = Command::new(bin)
            .arg("--home")
            .arg(home)
            .args(["daemon", "run"])
            .args(flags)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut m = ManagerProcess {
            home: home.to_path_buf(),
            bin: bin.to_path_buf(),
            url: String::new(),
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(url) = std::fs::read_to_string(&api) {
                m.url = url.trim().to_string();
                return Ok(m);
            }
            if let Some(status) = m.child.as_mut().unwrap().try_wait()? {
                bail!(
                    "damocles-manager exited with {status} before serving:\n{}",
                    m.log_text()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "damocles-manager did not start in 30 s:\n{}",
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs the manager CLI on this home; stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "damocles-manager {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    /// A token of `perm` minted from this home's secret.
    pub fn token(&self, perm: &str) -> Result<String> {
        Ok(self
            .cli(&["util", "auth", "create-token", "--perm", perm])?
            .trim()
            .to_string())
    }

    pub fn client(&self, token: Option<&str>) -> Result<HttpClient> {
        let mut headers = HeaderMap::new();
        if let Some(t) = token {
            headers.insert(
                "Authorization",
                HeaderValue::from_str(&format!("Bearer {t}"))?,
            );
        }
        Ok(HttpClientBuilder::default()
            .set_headers(headers)
            .request_timeout(Duration::from_secs(120))
            .build(&self.url)?)
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn rpc(e: jsonrpsee::core::ClientError) -> anyhow::Error {
    anyhow!("manager RPC: {e}")
}

/// Polls until a message leaves the pool; errors unless it landed.
async fn until_landed<
    F: std::future::Future<Output = std::result::Result<PollStateResp, jsonrpsee::core::ClientError>>,
>(
    what: &str,
    mut poll: impl FnMut() -> F,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = poll().await.map_err(rpc)?;
        match r.state {
            OnChainState::Landed => return Ok(()),
            OnChainState::Pending | OnChainState::Packed => {}
            other => bail!("{what}: {other:?} {}", r.desc.unwrap_or_default()),
        }
        ensure!(Instant::now() < deadline, "{what} did not land in 120 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One sector's commitments through the manager.
pub struct ManagerCommitments {
    pub client: HttpClient,
    pub sector: AllocatedSector,
    /// Persist store name and root (files go to `sealed/` and `cache/` in it).
    pub store: (String, PathBuf),
    ticket: Option<Ticket>,
}

impl ManagerCommitments {
    /// Allocates a sector for miner 1000.
    pub async fn allocate(
        client: HttpClient,
        store: (String, PathBuf),
    ) -> Result<ManagerCommitments> {
        let spec = AllocateSectorSpec {
            allowed_miners: Some(vec![MINER]),
            allowed_proof_types: Some(vec![SealProof(SEAL_PROOF)]),
        };
        let sector = client
            .allocate_sector(spec, None)
            .await
            .map_err(rpc)?
            .ok_or_else(|| anyhow!("the manager has no sector to allocate"))?;
        Ok(ManagerCommitments {
            client,
            sector,
            store,
            ticket: None,
        })
    }

    pub fn name(&self) -> String {
        self.sector.id.to_string()
    }
}

#[async_trait::async_trait]
impl Commitments for ManagerCommitments {
    async fn ticket(&mut self) -> Result<[u8; 32]> {
        let t = self
            .client
            .assign_ticket(self.sector.id)
            .await
            .map_err(rpc)?;
        self.ticket = Some(t);
        Ok(t.ticket.0)
    }

    async fn seed(
        &mut self,
        pc2: &SealPreCommitPhase2Output,
        sealed: &Path,
        cache: &Path,
    ) -> Result<[u8; 32]> {
        let id = self.sector.id;
        let info = PreCommitOnChainInfo {
            comm_r: pc2.comm_r,
            comm_d: pc2.comm_d,
            ticket: self.ticket.context("ticket() first")?,
        };
        let r = self
            .client
            .submit_pre_commit(self.sector, info, false)
            .await
            .map_err(rpc)?;
        ensure!(
            matches!(
                r.res,
                SubmitResult::Accepted | SubmitResult::DuplicateSubmit
            ),
            "precommit refused: {r:?}"
        );
        until_landed("precommit", || self.client.poll_pre_commit_state(id)).await?;

        let (store_name, store_root) = self.store.clone();
        let reserved = self
            .client
            .store_reserve_space(id, 2 * 2048, vec![store_name.clone()])
            .await
            .map_err(rpc)?
            .ok_or_else(|| anyhow!("no room in persist store {store_name}"))?;
        std::fs::create_dir_all(store_root.join("sealed"))?;
        std::fs::copy(sealed, store_root.join(objects::sealed(id)))
            .context("persist the sealed file")?;
        std::fs::create_dir_all(store_root.join(objects::cache_dir(id)))?;
        for f in persisted_cache_files(2048) {
            std::fs::copy(
                cache.join(f.to_string()),
                store_root.join(objects::cache_file(id, f)),
            )
            .with_context(|| format!("persist {f}"))?;
        }
        ensure!(
            self.client
                .submit_persisted_ex(id, reserved.name.clone(), false)
                .await
                .map_err(rpc)?,
            "the manager found the persisted files incomplete"
        );

        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let w = self
                .client
                .wait_seed(id, Some(SealProof(SEAL_PROOF)))
                .await
                .map_err(rpc)?;
            if let (false, Some(seed)) = (w.should_wait, w.seed) {
                return Ok(seed.seed.0);
            }
            ensure!(Instant::now() < deadline, "no seed in 300 s");
            tokio::time::sleep(Duration::from_secs(w.delay.clamp(1, 10))).await;
        }
    }

    async fn prove(&mut self, proof: &[u8]) -> Result<()> {
        let id = self.sector.id;
        let r = self
            .client
            .submit_proof(
                id,
                ProofOnChainInfo {
                    proof: Base64Bytes(proof.to_vec()),
                },
                false,
            )
            .await
            .map_err(rpc)?;
        ensure!(
            matches!(
                r.res,
                SubmitResult::Accepted | SubmitResult::DuplicateSubmit
            ),
            "proof refused: {r:?}"
        );
        until_landed("prove-commit", || self.client.poll_proof_state(id)).await?;
        let on_chain = self.client.chain_sector_info(id).await.map_err(rpc)?;
        ensure!(
            on_chain.as_ref().is_some_and(|s| s.state == "Active"),
            "sector not active on chain: {on_chain:?}"
        );
        self.client.report_finalized(id).await.map_err(rpc)?;
        Ok(())
    }
}
