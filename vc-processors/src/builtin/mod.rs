//! Builtin processors: every stage on `filecoin-proofs-api`, in-process.
//!
//! [`BuiltinProcessor`] implements [`Processor`] for every task type, so the same
//! value serves in a sealing thread and behind `damocles-worker processor <stage>`.
//! Each call is guarded against panics, checks its inputs first and names the
//! file or value at fault, because the proofs library itself often reports a bare
//! "No such file or directory".

mod pieces;
mod transfer;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use filecoin_proofs_api::{post, seal, update, PrivateReplicaInfo, StorageProofsError};

use damocles_sector::CacheFile;

use crate::consumer::{catch_panic, Ctx, Processor};
use crate::error::{permanent, resource};
use crate::tasks::*;

pub use pieces::add_pieces;
pub use transfer::{real_path, transfer};

/// The builtin processor for every stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuiltinProcessor {
    /// Transfer: always copy, even where a route allows a symlink.
    pub disable_link: bool,
}

impl Processor<AddPieces> for BuiltinProcessor {
    fn process(&self, t: AddPieces, _: &Ctx) -> Result<Vec<PieceInfo>> {
        catch_panic(|| add_pieces(&t))
    }
}

impl Processor<TreeD> for BuiltinProcessor {
    fn process(&self, t: TreeD, _: &Ctx) -> Result<bool> {
        catch_panic(|| tree_d(&t).map(|_| true))
    }
}

impl Processor<PC1> for BuiltinProcessor {
    fn process(&self, t: PC1, _: &Ctx) -> Result<SealPreCommitPhase1Output> {
        catch_panic(|| {
            must_exist(&t.in_path, "pc1: staged file (in_path)")?;
            ensure_dir(&t.cache_path, "pc1: cache dir")?;
            ensure_file(&t.out_path, "pc1: sealed file (out_path)")?;
            seal::seal_pre_commit_phase1(
                t.registered_proof,
                &t.cache_path,
                &t.in_path,
                &t.out_path,
                t.prover_id,
                t.sector_id,
                t.ticket,
                &t.piece_infos,
            )
            .with_context(|| format!("pc1 of sector {}", u64::from(t.sector_id)))
        })
    }
}

impl Processor<PC2> for BuiltinProcessor {
    fn process(&self, t: PC2, _: &Ctx) -> Result<SealPreCommitPhase2Output> {
        catch_panic(|| {
            must_exist(&t.cache_dir, "pc2: cache dir")?;
            must_exist(&t.sealed_file, "pc2: sealed file")?;
            seal::seal_pre_commit_phase2(t.pc1out, &t.cache_dir, &t.sealed_file).context("pc2")
        })
    }
}

impl Processor<C2> for BuiltinProcessor {
    fn process(&self, t: C2, _: &Ctx) -> Result<SealCommitPhase2Output> {
        catch_panic(|| {
            seal::seal_commit_phase2(t.c1out, t.prover_id, t.sector_id)
                .map_err(params_hint)
                .with_context(|| {
                    format!(
                        "c2 of sector {} of miner {}",
                        u64::from(t.sector_id),
                        t.miner_id
                    )
                })
        })
    }
}

impl Processor<SnapEncode> for BuiltinProcessor {
    fn process(&self, t: SnapEncode, _: &Ctx) -> Result<SnapEncodeOutput> {
        catch_panic(|| {
            must_exist(&t.sector_path, "snap_encode: sealed sector (sector_path)")?;
            must_exist(
                &t.sector_cache_path,
                "snap_encode: sector cache (sector_cache_path)",
            )?;
            must_exist(
                &t.staged_data_path,
                "snap_encode: staged data (staged_data_path)",
            )?;
            ensure_dir(&t.new_cache_path, "snap_encode: new cache dir")?;
            ensure_file(&t.new_replica_path, "snap_encode: new replica file")?;
            // The library wants the new replica as large as the sector key.
            let key_len = fs::metadata(&t.sector_path)?.len();
            let replica = OpenOptions::new().write(true).open(&t.new_replica_path)?;
            if replica.metadata()?.len() != key_len {
                replica.set_len(key_len).with_context(|| {
                    format!(
                        "snap_encode: size new replica {}",
                        t.new_replica_path.display()
                    )
                })?;
            }
            let out = update::empty_sector_update_encode_into(
                t.registered_proof,
                &t.new_replica_path,
                &t.new_cache_path,
                &t.sector_path,
                &t.sector_cache_path,
                &t.staged_data_path,
                &t.piece_infos,
            )
            .context("snap_encode")?;
            Ok(SnapEncodeOutput {
                comm_r_new: out.comm_r_new,
                comm_r_last_new: out.comm_r_last_new,
                comm_d_new: out.comm_d_new,
            })
        })
    }
}

impl Processor<SnapProve> for BuiltinProcessor {
    fn process(&self, t: SnapProve, _: &Ctx) -> Result<SnapProveOutput> {
        catch_panic(|| {
            let vanilla = t
                .vannilla_proofs
                .into_iter()
                .map(filecoin_proofs_api::PartitionProofBytes)
                .collect();
            update::generate_empty_sector_update_proof_with_vanilla(
                t.registered_proof,
                vanilla,
                t.comm_r_old,
                t.comm_r_new,
                t.comm_d_new,
            )
            .map(|p| p.0)
            .map_err(params_hint)
            .context("snap_prove")
        })
    }
}

impl Processor<Transfer> for BuiltinProcessor {
    fn process(&self, t: Transfer, _: &Ctx) -> Result<bool> {
        catch_panic(|| transfer(&t, self.disable_link).map(|_| true))
    }
}

impl Processor<WindowPoSt> for BuiltinProcessor {
    fn process(&self, t: WindowPoSt, _: &Ctx) -> Result<WindowPoStOutput> {
        catch_panic(|| window_post(&t))
    }
}

impl Processor<WinningPoSt> for BuiltinProcessor {
    fn process(&self, t: WinningPoSt, _: &Ctx) -> Result<WinningPoStOutput> {
        catch_panic(|| {
            let replicas = private_replicas(t.proof_type, &t.replicas)?;
            let proofs = post::generate_winning_post(&t.seed, &replicas, prover_id(t.miner_id))
                .map_err(params_hint)
                .with_context(|| format!("winning post of miner {}", t.miner_id))?;
            Ok(WinningPoStOutput {
                proofs: proofs.into_iter().map(|(_, p)| B64Bytes(p)).collect(),
            })
        })
    }
}

impl Processor<PoStVanilla> for BuiltinProcessor {
    fn process(&self, t: PoStVanilla, _: &Ctx) -> Result<PoStVanillaOutput> {
        catch_panic(|| post_vanilla(&t))
    }
}

impl Processor<PoStSnark> for BuiltinProcessor {
    fn process(&self, t: PoStSnark, _: &Ctx) -> Result<PoStSnarkOutput> {
        catch_panic(|| {
            if t.vanilla_proofs.is_empty() {
                return Err(permanent(anyhow!("no vanilla proofs given")));
            }
            let vanilla: Vec<Vec<u8>> = t.vanilla_proofs.into_iter().map(|b| b.0).collect();
            let prover = prover_id(t.miner_id);
            let proofs = if is_winning(t.proof_type) {
                post::generate_winning_post_with_vanilla(t.proof_type, &t.seed, prover, &vanilla)
            } else {
                post::generate_window_post_with_vanilla(t.proof_type, &t.seed, prover, &vanilla)
            }
            .map_err(params_hint)
            .with_context(|| format!("PoSt SNARK of miner {}", t.miner_id))?;
            Ok(PoStSnarkOutput {
                proofs: proofs.into_iter().map(|(_, p)| B64Bytes(p)).collect(),
            })
        })
    }
}

impl Processor<Unseal> for BuiltinProcessor {
    fn process(&self, t: Unseal, _: &Ctx) -> Result<UnpaddedBytesAmount> {
        catch_panic(|| {
            must_exist(&t.cache_dir, "unseal: cache dir")?;
            must_exist(&t.sealed_file, "unseal: sealed file")?;
            let out = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&t.unsealed_output)
                .with_context(|| {
                    format!("unseal: create output {}", t.unsealed_output.display())
                })?;
            seal::get_unsealed_range_mapped(
                t.registered_proof,
                t.cache_dir.clone(),
                t.sealed_file.clone(),
                out,
                t.prover_id,
                t.sector_id,
                t.comm_d,
                t.ticket,
                t.offset,
                t.num_bytes,
            )
            .with_context(|| format!("unseal of sector {}", u64::from(t.sector_id)))
        })
    }
}

/// Where tree-d lives in a cache dir (`sc-02-data-tree-d.dat`).
pub fn tree_d_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(CacheFile::TreeD.to_string())
}

/// Bytes of a sector's tree-d: every node of a binary tree over its 32-byte leaves.
pub fn tree_d_len(sector_size: u64) -> u64 {
    (2 * sector_size).saturating_sub(32)
}

/// Checks that `file` is the whole tree-d of a CC sector of `proof`'s size:
/// its length, and its root (the last node) against the CC comm_d. A file
/// left half-written by an interrupted build has the length but not the root.
pub fn check_cc_tree_d(proof: RegisteredSealProof, file: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let size = u64::from(proof.sector_size());
    let want = tree_d_len(size);
    let mut f = fs::File::open(file).with_context(|| format!("open {}", file.display()))?;
    let got = f.metadata()?.len();
    ensure!(
        got == want,
        "{} holds {got} bytes, a tree-d of a {size}-byte sector holds {want}",
        file.display()
    );
    let mut root = [0u8; 32];
    f.seek(SeekFrom::Start(want - 32))?;
    f.read_exact(&mut root)?;
    let cc = seal::compute_comm_d(proof, &[]).context("the CC comm_d")?;
    ensure!(
        root == cc,
        "{} is not the tree-d of a CC sector: its root is not the CC comm_d (a build that did not finish?)",
        file.display()
    );
    Ok(())
}

/// Builds tree-d (`sc-02-data-tree-d.dat`) of the staged file into the cache dir.
pub fn tree_d(t: &TreeD) -> Result<()> {
    use filecoin_proofs::{DefaultPieceHasher, StoreConfig};
    use storage_proofs_core::cache_key::CacheKey;
    use storage_proofs_core::merkle::{create_base_merkle_tree, BinaryMerkleTree};

    must_exist(&t.staged_file, "tree_d: staged file")?;
    ensure_dir(&t.cache_dir, "tree_d: cache dir")?;
    let sector_size = u64::from(t.registered_proof.sector_size()) as usize;
    let file = fs::File::open(&t.staged_file)
        .with_context(|| format!("tree_d: open {}", t.staged_file.display()))?;
    let len = file.metadata()?.len() as usize;
    ensure!(
        len == sector_size,
        "tree_d: staged file {} holds {len} bytes, expected the sector size {sector_size}",
        t.staged_file.display()
    );
    // SAFETY: the staged file is not modified while the tree is built.
    let data = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("tree_d: map {}", t.staged_file.display()))?;
    let leafs = sector_size / 32;
    let cfg = StoreConfig::new(&t.cache_dir, CacheKey::CommDTree.to_string(), 0);
    create_base_merkle_tree::<BinaryMerkleTree<DefaultPieceHasher>>(Some(cfg), leafs, &data)
        .context("tree_d: build tree")?;
    Ok(())
}

/// Commit phase 1 (vanilla proofs), always run in-process: it is cheap and reads
/// the sealing files directly.
#[allow(clippy::too_many_arguments)]
pub fn seal_commit_phase1(
    cache_path: &Path,
    sealed_file: &Path,
    prover_id: ProverId,
    sector_id: SectorId,
    ticket: Ticket,
    seed: Ticket,
    pre_commit: SealPreCommitPhase2Output,
    piece_infos: &[PieceInfo],
) -> Result<SealCommitPhase1Output> {
    catch_panic(|| {
        must_exist(cache_path, "c1: cache dir")?;
        must_exist(sealed_file, "c1: sealed file")?;
        seal::seal_commit_phase1(
            cache_path,
            sealed_file,
            prover_id,
            sector_id,
            ticket,
            seed,
            pre_commit,
            piece_infos,
        )
        .with_context(|| format!("c1 of sector {}", u64::from(sector_id)))
    })
}

fn window_post(t: &WindowPoSt) -> Result<WindowPoStOutput> {
    // Sectors whose files are gone are faults, not a failure of the partition:
    // the proofs library would stop at the first missing file.
    let size = u64::from(t.proof_type.sector_size());
    let faults: Vec<u64> = t
        .replicas
        .iter()
        .filter(|r| !replica_files_present(r, size))
        .map(|r| u64::from(r.sector_id))
        .collect::<std::collections::BTreeSet<u64>>()
        .into_iter()
        .collect();
    if !faults.is_empty() {
        tracing::warn!(
            miner = t.miner_id,
            ?faults,
            "window post: sectors with missing files"
        );
        return Ok(WindowPoStOutput {
            proofs: vec![],
            faults,
        });
    }
    let replicas = private_replicas(t.proof_type, &t.replicas)?;
    match post::generate_window_post(&t.seed, &replicas, prover_id(t.miner_id)) {
        Ok(proofs) => Ok(WindowPoStOutput {
            proofs: proofs.into_iter().map(|(_, p)| B64Bytes(p)).collect(),
            faults: vec![],
        }),
        Err(e) => {
            let faults = e
                .chain()
                .find_map(|c| match c.downcast_ref::<StorageProofsError>() {
                    Some(StorageProofsError::FaultySectors(s)) => {
                        Some(s.iter().map(|id| u64::from(*id)).collect())
                    }
                    _ => None,
                });
            match faults {
                Some(faults) => Ok(WindowPoStOutput {
                    proofs: vec![],
                    faults,
                }),
                None => Err(params_hint(e))
                    .with_context(|| format!("window post of miner {}", t.miner_id)),
            }
        }
    }
}

/// Whether a PoSt proof type is a winning one (else window).
fn is_winning(proof: RegisteredPoStProof) -> bool {
    format!("{proof:?}").starts_with("StackedDrgWinning")
}

/// Vanilla proofs of every sector, challenged as `generate_window_post` /
/// `generate_winning_post` would challenge them; sectors whose files are
/// missing or do not prove are faults, as `window_post` reports them.
fn post_vanilla(t: &PoStVanilla) -> Result<PoStVanillaOutput> {
    let replicas = private_replicas(t.proof_type, &t.replicas)?;
    let size = u64::from(t.proof_type.sector_size());
    let ids: Vec<SectorId> = replicas.keys().copied().collect();
    let challenges = post::generate_fallback_sector_challenges(
        t.proof_type,
        &t.seed,
        &ids,
        prover_id(t.miner_id),
    )
    .with_context(|| format!("PoSt challenges of miner {}", t.miner_id))?;
    let mut proofs = Vec::with_capacity(replicas.len());
    let mut faults = Vec::new();
    for (id, info) in &replicas {
        let r = t
            .replicas
            .iter()
            .find(|r| r.sector_id == *id)
            .expect("every replica is listed");
        if !replica_files_present(r, size) {
            faults.push(u64::from(*id));
            continue;
        }
        let ch = challenges
            .get(id)
            .with_context(|| format!("no challenges drawn for sector {}", u64::from(*id)))?;
        match post::generate_single_vanilla_proof(t.proof_type, *id, info, ch) {
            Ok(p) => proofs.push(B64Bytes(p)),
            Err(e) => {
                tracing::warn!(miner = t.miner_id, sector = u64::from(*id), error = %format!("{e:#}"), "vanilla proof failed: a fault");
                faults.push(u64::from(*id));
            }
        }
    }
    if !faults.is_empty() {
        return Ok(PoStVanillaOutput {
            proofs: vec![],
            faults,
        });
    }
    Ok(PoStVanillaOutput {
        proofs,
        faults: vec![],
    })
}

fn private_replicas(
    proof_type: RegisteredPoStProof,
    replicas: &[PoStReplicaInfo],
) -> Result<BTreeMap<SectorId, PrivateReplicaInfo>> {
    if replicas.is_empty() {
        return Err(permanent(anyhow!("no replicas given")));
    }
    // A sector may be listed more than once: damocles' poster stands the
    // first good sector in for each skipped one. The copies must agree.
    let mut seen: BTreeMap<SectorId, &PoStReplicaInfo> = BTreeMap::new();
    for r in replicas {
        match seen.get(&r.sector_id) {
            None => {
                seen.insert(r.sector_id, r);
            }
            Some(first) if *first == r => {}
            Some(_) => {
                return Err(permanent(anyhow!(
                    "sector {} is listed twice with different comm_r or paths",
                    u64::from(r.sector_id)
                )))
            }
        }
    }
    Ok(seen
        .into_iter()
        .map(|(id, r)| {
            let info = PrivateReplicaInfo::new(
                proof_type,
                r.comm_r,
                r.cache_dir.clone(),
                r.sealed_file.clone(),
            );
            (id, info)
        })
        .collect())
}

/// Adds how to get parameters to a "no parameters" error.
fn params_hint(e: anyhow::Error) -> anyhow::Error {
    let msg = format!("{e:#}");
    if msg.contains("No cached parameters") || msg.contains("parameters file") {
        resource(e.context(
            "proof parameters are missing from FIL_PROOFS_PARAMETER_CACHE; for test sector sizes run `fil-params generate`",
        ))
    } else {
        e
    }
}

fn must_exist(p: &Path, what: &str) -> Result<()> {
    match fs::metadata(p) {
        Ok(_) => Ok(()),
        Err(e) => Err(permanent(anyhow!("{what} {}: {e}", p.display()))),
    }
}

fn ensure_dir(p: &Path, what: &str) -> Result<()> {
    fs::create_dir_all(p).with_context(|| format!("{what} {}: cannot create", p.display()))
}

/// Creates an empty file if none exists (the proofs library wants it present).
fn ensure_file(p: &Path, what: &str) -> Result<()> {
    if p.exists() {
        return Ok(());
    }
    if let Some(parent) = p.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            bail!("{what} {}: parent directory does not exist", p.display());
        }
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .map(drop)
        .with_context(|| format!("{what} {}: cannot create", p.display()))
}

fn replica_files_present(r: &PoStReplicaInfo, sector_size: u64) -> bool {
    let sealed_ok = fs::metadata(&r.sealed_file).is_ok_and(|m| m.is_file() && m.len() > 0);
    sealed_ok
        && damocles_sector::persisted_cache_files(sector_size)
            .iter()
            .all(|f| r.cache_dir.join(f.to_string()).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use filecoin_proofs::StoreConfig;
    use storage_proofs_core::cache_key::CacheKey;

    /// The layout crate names cache files without the proofs library: they
    /// must be the names the library reads and writes.
    #[test]
    fn cache_file_names_are_the_librarys() {
        let dir = Path::new("/c");
        let data = |k: CacheKey| StoreConfig::data_path(dir, &k.to_string());
        assert_eq!(tree_d_path(dir), data(CacheKey::CommDTree));
        assert_eq!(
            dir.join(CacheFile::TreeRLast(None).to_string()),
            data(CacheKey::CommRLastTree)
        );
        assert_eq!(
            dir.join(CacheFile::TreeRLast(Some(3)).to_string()),
            StoreConfig::data_path(dir, &format!("{}-3", CacheKey::CommRLastTree))
        );
        assert_eq!(CacheFile::PAux.to_string(), CacheKey::PAux.to_string());
        assert_eq!(CacheFile::TAux.to_string(), CacheKey::TAux.to_string());
    }
}
