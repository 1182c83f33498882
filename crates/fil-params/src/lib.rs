//! Local generation of Groth16 proof parameters for *test* sector sizes.
//!
//! Real Filecoin parameters come from a trusted-setup ceremony and are downloaded;
//! this machine cannot download them, so a devnet derives its own. Every parameter
//! set is generated from a ChaCha20 RNG seeded with `sha256(SEED_DOMAIN || set name)`,
//! so every machine of a cluster derives byte-identical files and a proof made on a
//! worker verifies on the manager.
//!
//! **These parameters are insecure**: anyone can derive the toxic waste from the
//! public seed. They exist for devnets and tests only.
//!
//! Generation runs once per machine into a shared cache directory guarded by a file
//! lock, so concurrent tests or CI runs never generate the same set twice. A set is
//! only considered present once its completion stamp is written; a set interrupted
//! half way (kill, full disk) is deleted and generated again.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use filecoin_proofs::constants::{DefaultPieceHasher, SectorShape2KiB};
use filecoin_proofs::parameters::{
    public_params, window_post_public_params, winning_post_public_params,
};
use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof, RegisteredUpdateProof};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use storage_proofs_core::compound_proof::CompoundProof;
use storage_proofs_core::parameter_cache::CacheableParameters;
use storage_proofs_porep::stacked::{StackedCompound, StackedDrg};
use storage_proofs_post::fallback::{FallbackPoSt, FallbackPoStCircuit, FallbackPoStCompound};
use storage_proofs_update::{
    circuit::EmptySectorUpdateCircuit, compound::EmptySectorUpdateCompound, EmptySectorUpdate,
};

/// Mixed into every RNG seed; changing it changes every generated file.
pub const SEED_DOMAIN: &str = "damocles-rs devnet parameters v1 (INSECURE, testing only)";

/// Environment variable read by the proofs library for the parameter directory.
pub const PARAMETER_CACHE_ENV: &str = "FIL_PROOFS_PARAMETER_CACHE";
/// Environment variable read by the proofs library for the SDR parent cache.
pub const PARENT_CACHE_ENV: &str = "FIL_PROOFS_PARENT_CACHE";

/// One Groth16 parameter set that this crate can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamSet {
    /// Window PoSt for 2KiB sectors (~7 s, 11 MB).
    WindowPost2KiB,
    /// Winning PoSt for 2KiB sectors (~30 s, 47 MB).
    WinningPost2KiB,
    /// Empty-sector-update (snap deals) for 2KiB sectors (~5 min, 656 MB).
    SnapUpdate2KiB,
    /// Interactive PoRep (SDR) for 2KiB sectors (~12 min, 5 GiB RAM, 1.1 GB).
    Porep2KiB,
}

impl ParamSet {
    /// Every set, cheapest first, so short jobs (PoSt) become usable early.
    pub const ALL: [ParamSet; 4] = [
        ParamSet::WindowPost2KiB,
        ParamSet::WinningPost2KiB,
        ParamSet::SnapUpdate2KiB,
        ParamSet::Porep2KiB,
    ];

    /// Stable name, used in the RNG seed, in stamps and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ParamSet::WindowPost2KiB => "window-post-2KiB",
            ParamSet::WinningPost2KiB => "winning-post-2KiB",
            ParamSet::SnapUpdate2KiB => "snap-update-2KiB",
            ParamSet::Porep2KiB => "porep-2KiB",
        }
    }

    pub fn from_name(name: &str) -> Option<ParamSet> {
        ParamSet::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Rough cost on a 2-core machine, shown while generating.
    pub fn expected_duration(self) -> Duration {
        Duration::from_secs(match self {
            ParamSet::WindowPost2KiB => 10,
            ParamSet::WinningPost2KiB => 30,
            ParamSet::SnapUpdate2KiB => 300,
            ParamSet::Porep2KiB => 720,
        })
    }

    /// The `.params` and `.vk` files the proofs library will look for.
    fn files(self) -> Result<Vec<PathBuf>> {
        let (params, vk) = match self {
            ParamSet::WindowPost2KiB => {
                let p = RegisteredPoStProof::StackedDrgWindow2KiBV1_2;
                (p.cache_params_path()?, p.cache_verifying_key_path()?)
            }
            ParamSet::WinningPost2KiB => {
                let p = RegisteredPoStProof::StackedDrgWinning2KiBV1;
                (p.cache_params_path()?, p.cache_verifying_key_path()?)
            }
            ParamSet::SnapUpdate2KiB => {
                let p = RegisteredUpdateProof::StackedDrg2KiBV1;
                (p.cache_params_path()?, p.cache_verifying_key_path()?)
            }
            ParamSet::Porep2KiB => {
                let p = RegisteredSealProof::StackedDrg2KiBV1_1;
                (p.cache_params_path()?, p.cache_verifying_key_path()?)
            }
        };
        let meta = params.with_extension("meta");
        Ok(vec![params, vk, meta])
    }

    fn rng(self) -> ChaCha20Rng {
        let mut h = Sha256::new();
        h.update(SEED_DOMAIN.as_bytes());
        h.update([0u8]);
        h.update(self.name().as_bytes());
        ChaCha20Rng::from_seed(h.finalize().into())
    }

    /// Writes `.meta`, `.params` and `.vk` for this set into the library's cache dir.
    fn generate(self) -> Result<()> {
        let mut rng = self.rng();
        match self {
            ParamSet::Porep2KiB => {
                let cfg = RegisteredSealProof::StackedDrg2KiBV1_1.as_v1_config();
                let pp = public_params::<SectorShape2KiB>(&cfg)?;
                type C = StackedCompound<SectorShape2KiB, DefaultPieceHasher>;
                type S<'a> = StackedDrg<'a, SectorShape2KiB, DefaultPieceHasher>;
                let circuit = <C as CompoundProof<S<'_>, _>>::blank_circuit(&pp);
                <C as CacheableParameters<_, _>>::get_param_metadata(circuit, &pp)?;
                <C as CompoundProof<S<'_>, _>>::groth_params(Some(&mut rng), &pp)?;
                <C as CompoundProof<S<'_>, _>>::verifying_key(Some(&mut rng), &pp)?;
            }
            ParamSet::WindowPost2KiB | ParamSet::WinningPost2KiB => {
                let cfg = if self == ParamSet::WindowPost2KiB {
                    RegisteredPoStProof::StackedDrgWindow2KiBV1_2.as_v1_config()
                } else {
                    RegisteredPoStProof::StackedDrgWinning2KiBV1.as_v1_config()
                };
                let pp = if self == ParamSet::WindowPost2KiB {
                    window_post_public_params::<SectorShape2KiB>(&cfg)?
                } else {
                    winning_post_public_params::<SectorShape2KiB>(&cfg)?
                };
                type C = FallbackPoStCompound<SectorShape2KiB>;
                type S<'a> = FallbackPoSt<'a, SectorShape2KiB>;
                type Circ = FallbackPoStCircuit<SectorShape2KiB>;
                let circuit = <C as CompoundProof<S<'_>, Circ>>::blank_circuit(&pp);
                <C as CacheableParameters<Circ, _>>::get_param_metadata(circuit, &pp)?;
                <C as CompoundProof<S<'_>, Circ>>::groth_params(Some(&mut rng), &pp)?;
                <C as CompoundProof<S<'_>, Circ>>::verifying_key(Some(&mut rng), &pp)?;
            }
            ParamSet::SnapUpdate2KiB => {
                let cfg = RegisteredUpdateProof::StackedDrg2KiBV1.as_v1_config();
                let pp = storage_proofs_update::PublicParams::from_sector_size(u64::from(
                    cfg.sector_size,
                ));
                type C = EmptySectorUpdateCompound<SectorShape2KiB>;
                type S = EmptySectorUpdate<SectorShape2KiB>;
                type Circ = EmptySectorUpdateCircuit<SectorShape2KiB>;
                let circuit = <C as CompoundProof<S, Circ>>::blank_circuit(&pp);
                <C as CacheableParameters<Circ, _>>::get_param_metadata(circuit, &pp)?;
                <C as CompoundProof<S, Circ>>::groth_params(Some(&mut rng), &pp)?;
                <C as CompoundProof<S, Circ>>::verifying_key(Some(&mut rng), &pp)?;
            }
        }
        Ok(())
    }
}

/// The machine-wide default cache: `$HOME/.cache/damocles/filecoin-proof-parameters`.
pub fn default_cache_dir() -> PathBuf {
    home_cache().join("filecoin-proof-parameters")
}

/// The machine-wide default SDR parent cache.
pub fn default_parent_cache_dir() -> PathBuf {
    home_cache().join("filecoin-parents")
}

fn home_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("damocles")
}

/// Points the proofs library at the parameter and parent caches.
///
/// The library reads these settings once per process, on its first call, so this
/// must run before any proofs call. An already set variable wins, so a user (or a
/// parent process) can always override the location. Returns the parameter dir.
pub fn configure_process_env() -> PathBuf {
    if std::env::var_os(PARAMETER_CACHE_ENV).is_none() {
        std::env::set_var(PARAMETER_CACHE_ENV, default_cache_dir());
    }
    if std::env::var_os(PARENT_CACHE_ENV).is_none() {
        std::env::set_var(PARENT_CACHE_ENV, default_parent_cache_dir());
    }
    PathBuf::from(std::env::var_os(PARAMETER_CACHE_ENV).expect("set above"))
}

fn stamp_path(dir: &Path, set: ParamSet) -> PathBuf {
    dir.join(format!(".damocles-{}.complete", set.name()))
}

/// Whether a set is fully generated in `dir` (its stamp and every file exist).
pub fn is_present(dir: &Path, set: ParamSet) -> Result<bool> {
    if !stamp_path(dir, set).exists() {
        return Ok(false);
    }
    Ok(set.files()?.iter().all(|f| f.exists()))
}

/// How generation reports what it is doing.
pub trait Progress {
    fn start(&mut self, set: ParamSet, index: usize, total: usize);
    fn finish(&mut self, set: ParamSet, elapsed: Duration);
    fn skip(&mut self, set: ParamSet);
}

/// No output, for library callers that log themselves.
pub struct Quiet;
impl Progress for Quiet {
    fn start(&mut self, _: ParamSet, _: usize, _: usize) {}
    fn finish(&mut self, _: ParamSet, _: Duration) {}
    fn skip(&mut self, _: ParamSet) {}
}

/// Makes sure every set in `sets` is present in the process' parameter cache,
/// generating the missing ones under an exclusive lock.
///
/// Call [`configure_process_env`] (or set `FIL_PROOFS_PARAMETER_CACHE`) first.
pub fn ensure(sets: &[ParamSet], progress: &mut dyn Progress) -> Result<()> {
    let dir = PathBuf::from(
        std::env::var_os(PARAMETER_CACHE_ENV)
            .with_context(|| format!("{PARAMETER_CACHE_ENV} is not set"))?,
    );
    if sets.iter().try_fold(true, |all, s| {
        Ok::<_, anyhow::Error>(all && is_present(&dir, *s)?)
    })? {
        sets.iter().for_each(|s| progress.skip(*s));
        return Ok(());
    }
    fs::create_dir_all(&dir)
        .with_context(|| format!("create parameter cache dir {}", dir.display()))?;
    let lock_path = dir.join(".damocles-generate.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("open lock file {}", lock_path.display()))?;
    // Blocks while another process generates; it may produce what we need.
    fs4::fs_std::FileExt::lock_exclusive(&lock)
        .with_context(|| format!("lock {}", lock_path.display()))?;

    for (i, set) in sets.iter().enumerate() {
        if is_present(&dir, *set)? {
            progress.skip(*set);
            continue;
        }
        // Anything here without a stamp is a leftover of an interrupted run.
        for f in set.files()? {
            match fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => bail!("remove partial parameter file {}: {e}", f.display()),
            }
        }
        progress.start(*set, i + 1, sets.len());
        let started = Instant::now();
        set.generate()
            .with_context(|| format!("generate parameter set {}", set.name()))?;
        fs::write(stamp_path(&dir, *set), SEED_DOMAIN)
            .with_context(|| format!("write stamp in {}", dir.display()))?;
        progress.finish(*set, started.elapsed());
    }
    Ok(())
}
