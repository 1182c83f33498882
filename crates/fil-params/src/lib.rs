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
use filecoin_proofs::constants::{DefaultPieceHasher, SectorShape2KiB, SectorShape8MiB};
use filecoin_proofs::parameters::{
    public_params, window_post_public_params, winning_post_public_params,
};
use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof, RegisteredUpdateProof};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use storage_proofs_core::compound_proof::CompoundProof;
use storage_proofs_core::parameter_cache::{
    metadata_id, parameter_id, verifying_key_id, CacheableParameters,
};
use storage_proofs_porep::stacked::{StackedCircuit, StackedCompound, StackedDrg};
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
    /// Window PoSt for 8MiB sectors (PoSt from object storage at a size
    /// where ranged reads matter).
    WindowPost8MiB,
    /// Empty-sector-update (snap deals) for 2KiB sectors (~5 min, 656 MB).
    SnapUpdate2KiB,
    /// Interactive PoRep (SDR) for 2KiB sectors (~12 min, 5 GiB RAM, 1.1 GB).
    Porep2KiB,
}

impl ParamSet {
    /// Every set, cheapest first, so short jobs (PoSt) become usable early.
    pub const ALL: [ParamSet; 5] = [
        ParamSet::WindowPost2KiB,
        ParamSet::WinningPost2KiB,
        ParamSet::WindowPost8MiB,
        ParamSet::SnapUpdate2KiB,
        ParamSet::Porep2KiB,
    ];

    /// Stable name, used in the RNG seed, in stamps and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ParamSet::WindowPost2KiB => "window-post-2KiB",
            ParamSet::WinningPost2KiB => "winning-post-2KiB",
            ParamSet::WindowPost8MiB => "window-post-8MiB",
            ParamSet::SnapUpdate2KiB => "snap-update-2KiB",
            ParamSet::Porep2KiB => "porep-2KiB",
        }
    }

    /// The set called `name` (see [`ParamSet::name`]).
    pub fn from_name(name: &str) -> Option<ParamSet> {
        ParamSet::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Rough cost on a 2-core machine, shown while generating.
    pub fn expected_duration(self) -> Duration {
        Duration::from_secs(match self {
            ParamSet::WindowPost2KiB => 10,
            ParamSet::WinningPost2KiB => 30,
            ParamSet::WindowPost8MiB => 15,
            ParamSet::SnapUpdate2KiB => 300,
            ParamSet::Porep2KiB => 720,
        })
    }

    /// The library's cache identifier for this set, from the same public
    /// parameters [`ParamSet::generate`] uses, so the names always match the
    /// files generation writes and proving reads.
    ///
    /// Not `Registered*Proof::cache_params_path`: for the update proof that
    /// answers with the PoRep circuit's paths (it asks the PoRep config), which
    /// once made the snap set delete and "check" PoRep's files.
    fn cache_id(self) -> Result<String> {
        Ok(match self {
            ParamSet::Porep2KiB => {
                type Circ = StackedCircuit<SectorShape2KiB, DefaultPieceHasher>;
                type C = StackedCompound<SectorShape2KiB, DefaultPieceHasher>;
                <C as CacheableParameters<Circ, _>>::cache_identifier(&porep_pp()?)
            }
            ParamSet::WindowPost2KiB | ParamSet::WinningPost2KiB => {
                type Circ = FallbackPoStCircuit<SectorShape2KiB>;
                type C = FallbackPoStCompound<SectorShape2KiB>;
                <C as CacheableParameters<Circ, _>>::cache_identifier(&post_pp(self)?)
            }
            ParamSet::WindowPost8MiB => {
                type Circ = FallbackPoStCircuit<SectorShape8MiB>;
                type C = FallbackPoStCompound<SectorShape8MiB>;
                <C as CacheableParameters<Circ, _>>::cache_identifier(&post_pp(self)?)
            }
            ParamSet::SnapUpdate2KiB => {
                type Circ = EmptySectorUpdateCircuit<SectorShape2KiB>;
                type C = EmptySectorUpdateCompound<SectorShape2KiB>;
                <C as CacheableParameters<Circ, _>>::cache_identifier(&update_pp())
            }
        })
    }

    /// Names of the `.params`, `.vk` and `.meta` files of this set, as the
    /// proofs library names them inside its parameter cache directory.
    pub fn file_names(self) -> Result<[String; 3]> {
        let id = self.cache_id()?;
        Ok([parameter_id(&id), verifying_key_id(&id), metadata_id(&id)])
    }

    fn files_in(self, dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(self.file_names()?.iter().map(|n| dir.join(n)).collect())
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
                let pp = porep_pp()?;
                type C = StackedCompound<SectorShape2KiB, DefaultPieceHasher>;
                type S<'a> = StackedDrg<'a, SectorShape2KiB, DefaultPieceHasher>;
                let circuit = <C as CompoundProof<S<'_>, _>>::blank_circuit(&pp);
                <C as CacheableParameters<_, _>>::get_param_metadata(circuit, &pp)?;
                <C as CompoundProof<S<'_>, _>>::groth_params(Some(&mut rng), &pp)?;
                <C as CompoundProof<S<'_>, _>>::verifying_key(Some(&mut rng), &pp)?;
            }
            ParamSet::WindowPost2KiB | ParamSet::WinningPost2KiB => {
                let pp = post_pp(self)?;
                type C = FallbackPoStCompound<SectorShape2KiB>;
                type S<'a> = FallbackPoSt<'a, SectorShape2KiB>;
                type Circ = FallbackPoStCircuit<SectorShape2KiB>;
                let circuit = <C as CompoundProof<S<'_>, Circ>>::blank_circuit(&pp);
                <C as CacheableParameters<Circ, _>>::get_param_metadata(circuit, &pp)?;
                <C as CompoundProof<S<'_>, Circ>>::groth_params(Some(&mut rng), &pp)?;
                <C as CompoundProof<S<'_>, Circ>>::verifying_key(Some(&mut rng), &pp)?;
            }
            ParamSet::WindowPost8MiB => {
                let pp = post_pp(self)?;
                type C = FallbackPoStCompound<SectorShape8MiB>;
                type S<'a> = FallbackPoSt<'a, SectorShape8MiB>;
                type Circ = FallbackPoStCircuit<SectorShape8MiB>;
                let circuit = <C as CompoundProof<S<'_>, Circ>>::blank_circuit(&pp);
                <C as CacheableParameters<Circ, _>>::get_param_metadata(circuit, &pp)?;
                <C as CompoundProof<S<'_>, Circ>>::groth_params(Some(&mut rng), &pp)?;
                <C as CompoundProof<S<'_>, Circ>>::verifying_key(Some(&mut rng), &pp)?;
            }
            ParamSet::SnapUpdate2KiB => {
                let pp = update_pp();
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

/// Public parameters of the 2KiB PoRep circuit, as `seal_commit_phase2` builds them.
fn porep_pp() -> Result<storage_proofs_porep::stacked::PublicParams<SectorShape2KiB>> {
    public_params::<SectorShape2KiB>(&RegisteredSealProof::StackedDrg2KiBV1_1.as_v1_config())
}

/// Public parameters of a PoSt circuit (`set` is one of the PoSt sets).
fn post_pp(set: ParamSet) -> Result<storage_proofs_post::fallback::PublicParams> {
    match set {
        ParamSet::WindowPost2KiB => window_post_public_params::<SectorShape2KiB>(
            &RegisteredPoStProof::StackedDrgWindow2KiBV1_2.as_v1_config(),
        ),
        ParamSet::WindowPost8MiB => window_post_public_params::<SectorShape8MiB>(
            &RegisteredPoStProof::StackedDrgWindow8MiBV1_2.as_v1_config(),
        ),
        _ => winning_post_public_params::<SectorShape2KiB>(
            &RegisteredPoStProof::StackedDrgWinning2KiBV1.as_v1_config(),
        ),
    }
}

/// Public parameters of the 2KiB update circuit, built from the sector size
/// exactly as filecoin-proofs' `get_empty_sector_update_params` does.
fn update_pp() -> storage_proofs_update::PublicParams {
    let cfg = RegisteredUpdateProof::StackedDrg2KiBV1.as_v1_config();
    storage_proofs_update::PublicParams::from_sector_size(u64::from(cfg.sector_size))
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
    Ok(set.files_in(dir)?.iter().all(|f| f.exists()))
}

/// How generation reports what it is doing.
pub trait Progress {
    /// Generation of `set`, number `index` of `total`, begins.
    fn start(&mut self, set: ParamSet, index: usize, total: usize);
    /// `set` was generated in `elapsed`.
    fn finish(&mut self, set: ParamSet, elapsed: Duration);
    /// `set` was already present and is left as it is.
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
    // The library reads its directory once; had it read it before the variable
    // was set, it would write where we never look and the stamps would lie.
    let library_dir = storage_proofs_core::parameter_cache::parameter_cache_dir();
    if library_dir != dir {
        bail!(
            "the proofs library uses {} but {PARAMETER_CACHE_ENV} is {}: \
             it must be set before the first proofs call",
            library_dir.display(),
            dir.display()
        );
    }
    ensure_in(&dir, sets, progress, &mut |set: ParamSet| set.generate())
}

/// [`ensure`] with the directory and the generator given, so the bookkeeping
/// (stamps, leftovers, lock) can be tested without generating anything.
fn ensure_in(
    dir: &Path,
    sets: &[ParamSet],
    progress: &mut dyn Progress,
    generate: &mut dyn FnMut(ParamSet) -> Result<()>,
) -> Result<()> {
    if sets.iter().try_fold(true, |all, s| {
        Ok::<_, anyhow::Error>(all && is_present(dir, *s)?)
    })? {
        sets.iter().for_each(|s| progress.skip(*s));
        return Ok(());
    }
    fs::create_dir_all(dir)
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
        if is_present(dir, *set)? {
            progress.skip(*set);
            continue;
        }
        // Anything here without a stamp is a leftover of an interrupted run.
        remove_leftovers(dir, *set)?;
        progress.start(*set, i + 1, sets.len());
        let started = Instant::now();
        generate(*set).with_context(|| format!("generate parameter set {}", set.name()))?;
        fs::write(stamp_path(dir, *set), SEED_DOMAIN)
            .with_context(|| format!("write stamp in {}", dir.display()))?;
        progress.finish(*set, started.elapsed());
    }
    Ok(())
}

/// Deletes the files of `set` (not its stamp, which is absent or stale).
///
/// Refuses to delete a file another set also claims: other processes may be
/// proving with it right now, and it would cost that set a regeneration.
fn remove_leftovers(dir: &Path, set: ParamSet) -> Result<()> {
    let others = ParamSet::ALL
        .into_iter()
        .filter(|s| *s != set)
        .map(ParamSet::file_names)
        .collect::<Result<Vec<_>>>()?;
    for name in set.file_names()? {
        if others.iter().flatten().any(|n| *n == name) {
            bail!(
                "parameter file {name} of {} also belongs to another set; not deleting it",
                set.name()
            );
        }
        let f = dir.join(&name);
        match fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("remove partial parameter file {}: {e}", f.display()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use filecoin_proofs::types::{PoRepConfig, PoStConfig};
    use storage_proofs_core::parameter_cache::PARAMETERS;

    use super::*;

    fn file_name(p: PathBuf) -> String {
        p.file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned()
    }

    /// What the proofs library's own path functions say (where they are right).
    fn library_names(set: ParamSet) -> Option<[String; 3]> {
        let (params, vk, meta) = match set {
            ParamSet::Porep2KiB => {
                let p = RegisteredSealProof::StackedDrg2KiBV1_1;
                let cfg: PoRepConfig = p.as_v1_config();
                (
                    p.cache_params_path().unwrap(),
                    p.cache_verifying_key_path().unwrap(),
                    cfg.get_cache_metadata_path::<SectorShape2KiB>().unwrap(),
                )
            }
            ParamSet::WindowPost2KiB | ParamSet::WinningPost2KiB => {
                let p = if set == ParamSet::WindowPost2KiB {
                    RegisteredPoStProof::StackedDrgWindow2KiBV1_2
                } else {
                    RegisteredPoStProof::StackedDrgWinning2KiBV1
                };
                let cfg: PoStConfig = p.as_v1_config();
                (
                    p.cache_params_path().unwrap(),
                    p.cache_verifying_key_path().unwrap(),
                    cfg.get_cache_metadata_path::<SectorShape2KiB>().unwrap(),
                )
            }
            ParamSet::WindowPost8MiB => {
                let p = RegisteredPoStProof::StackedDrgWindow8MiBV1_2;
                let cfg: PoStConfig = p.as_v1_config();
                (
                    p.cache_params_path().unwrap(),
                    p.cache_verifying_key_path().unwrap(),
                    cfg.get_cache_metadata_path::<SectorShape8MiB>().unwrap(),
                )
            }
            // The update proof's path functions answer with PoRep's files.
            ParamSet::SnapUpdate2KiB => return None,
        };
        Some([file_name(params), file_name(vk), file_name(meta)])
    }

    #[test]
    fn each_set_has_its_own_file_names_the_ones_the_library_reads() {
        let mut seen = HashSet::new();
        for set in ParamSet::ALL {
            let names = set.file_names().unwrap();
            for n in &names {
                assert!(seen.insert(n.clone()), "{n} is claimed twice");
            }
            if let Some(lib) = library_names(set) {
                assert_eq!(names, lib, "{}", set.name());
            }
            // The published manifest lists the real network's files under
            // the same names the library looks up: same circuits, same ids.
            let size = if set == ParamSet::WindowPost8MiB {
                8 << 20
            } else {
                2048
            };
            for n in &names[..2] {
                let entry = PARAMETERS
                    .get(n)
                    .unwrap_or_else(|| panic!("{n} ({}) not in parameters.json", set.name()));
                assert_eq!(entry.sector_size, size, "{n}");
            }
        }
        assert_eq!(seen.len(), 3 * ParamSet::ALL.len());

        // The trap the bug fell into: the update proof's own path function.
        let snap = ParamSet::SnapUpdate2KiB.file_names().unwrap();
        assert!(
            snap[0].starts_with("v28-empty-sector-update-"),
            "{}",
            snap[0]
        );
        let api = file_name(
            RegisteredUpdateProof::StackedDrg2KiBV1
                .cache_params_path()
                .unwrap(),
        );
        assert_eq!(api, ParamSet::Porep2KiB.file_names().unwrap()[0]);
    }

    /// Writes a set's files with `content`, as if generated; `stamp` adds its stamp.
    fn fake(dir: &Path, set: ParamSet, content: &str, stamp: bool) {
        for f in set.files_in(dir).unwrap() {
            fs::write(f, content).unwrap();
        }
        if stamp {
            fs::write(stamp_path(dir, set), SEED_DOMAIN).unwrap();
        }
    }

    fn contents(dir: &Path, set: ParamSet) -> Vec<Option<String>> {
        set.files_in(dir)
            .unwrap()
            .into_iter()
            .map(|f| fs::read_to_string(f).ok())
            .collect()
    }

    #[test]
    fn check_and_generate_leave_other_sets_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // The main job's sets, complete.
        fake(dir, ParamSet::Porep2KiB, "porep", true);
        fake(dir, ParamSet::WindowPost2KiB, "window", true);
        // An interrupted snap run: a partial file, and a stale stamp without
        // its files (the stamp alone must not count).
        let snap_params = ParamSet::SnapUpdate2KiB.files_in(dir).unwrap()[0].clone();
        fs::write(&snap_params, "partial").unwrap();
        fs::write(stamp_path(dir, ParamSet::SnapUpdate2KiB), SEED_DOMAIN).unwrap();

        // check
        let present = |s| is_present(dir, s).unwrap();
        assert!(present(ParamSet::Porep2KiB));
        assert!(present(ParamSet::WindowPost2KiB));
        assert!(!present(ParamSet::WinningPost2KiB));
        assert!(!present(ParamSet::SnapUpdate2KiB));

        // generate, everything
        let mut generated = Vec::new();
        ensure_in(dir, &ParamSet::ALL, &mut Quiet, &mut |set: ParamSet| {
            // Leftovers are gone before generation starts...
            assert!(contents(dir, set).iter().all(Option::is_none));
            // ...and nobody else's files went with them.
            assert_eq!(
                contents(dir, ParamSet::Porep2KiB),
                vec![Some("porep".into()); 3]
            );
            assert_eq!(
                contents(dir, ParamSet::WindowPost2KiB),
                vec![Some("window".into()); 3]
            );
            fake(dir, set, set.name(), false);
            generated.push(set);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            generated,
            [
                ParamSet::WinningPost2KiB,
                ParamSet::WindowPost8MiB,
                ParamSet::SnapUpdate2KiB
            ]
        );
        assert_eq!(
            contents(dir, ParamSet::Porep2KiB),
            vec![Some("porep".into()); 3]
        );
        assert_eq!(
            contents(dir, ParamSet::WindowPost2KiB),
            vec![Some("window".into()); 3]
        );
        assert!(ParamSet::ALL.into_iter().all(present));

        // A second run generates nothing and changes nothing.
        ensure_in(dir, &ParamSet::ALL, &mut Quiet, &mut |set: ParamSet| {
            panic!("{} generated again", set.name())
        })
        .unwrap();
        assert_eq!(
            contents(dir, ParamSet::Porep2KiB),
            vec![Some("porep".into()); 3]
        );
    }
}
