//! The task catalog: one [`Task`] type per stage, with damocles' field names.
//!
//! The JSON of these types is the wire format. It is the plain serde encoding of
//! the `filecoin-proofs-api` types they hold: proof types as variant names,
//! 32-byte values as arrays of numbers, byte vectors as arrays of numbers — except
//! PoSt proofs, which are base64 strings ([`B64Bytes`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use filecoin_proofs_api::seal::{
    SealCommitPhase1Output, SealCommitPhase2Output, SealPreCommitPhase1Output,
    SealPreCommitPhase2Output,
};
pub use filecoin_proofs_api::{
    ChallengeSeed, Commitment, PieceInfo, ProverId, RegisteredPoStProof, RegisteredSealProof,
    RegisteredUpdateProof, SectorId, Ticket, UnpaddedByteIndex, UnpaddedBytesAmount,
};

use crate::task::Task;

/// Stage names: one definition, shared with the daemons.
pub use damocles_sector::Stage;

pub use damocles_sector::{prover_id, ActorID};

/// Bytes that travel as a standard base64 string (PoSt proofs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct B64Bytes(pub Vec<u8>);

impl Serialize for B64Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(B64Bytes)
            .map_err(serde::de::Error::custom)
    }
}

impl From<Vec<u8>> for B64Bytes {
    fn from(v: Vec<u8>) -> Self {
        B64Bytes(v)
    }
}

/// A PoSt SNARK proof on the wire.
pub type SnarkProof = B64Bytes;

/// Where a piece's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PieceFile {
    /// Fetched over HTTP(S).
    Url(String),
    /// A local file.
    Local(PathBuf),
    /// Zeros (a committed-capacity filler).
    Pledge,
}

/// One piece of an [`AddPieces`] task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Piece {
    /// Where its bytes come from.
    pub piece_file: PieceFile,
    /// Bytes to read from the source; the rest of `piece_size` is zero-filled.
    pub payload_size: u64,
    /// Its size in unpadded bytes (fr32 padding makes it 128/127 larger).
    pub piece_size: UnpaddedBytesAmount,
}

/// Writes pieces (fr32-padded) into the staged file. Output: their commitments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddPieces {
    /// The seal proof type, which fixes the sector size.
    pub seal_proof_type: RegisteredSealProof,
    /// The pieces in sector order; empty for a committed-capacity sector.
    pub pieces: Vec<Piece>,
    /// The staged (unsealed) file, created or truncated, then written.
    pub staged_filepath: PathBuf,
}

impl Task for AddPieces {
    const STAGE: &'static str = Stage::AddPieces.as_str();
    type Output = Vec<PieceInfo>;
}

/// Builds tree-d of the staged file into `cache_dir`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TreeD {
    /// The seal proof type, which fixes the sector size.
    pub registered_proof: RegisteredSealProof,
    /// The staged file, exactly sector-size bytes.
    pub staged_file: PathBuf,
    /// Where `sc-02-data-tree-d.dat` is written.
    pub cache_dir: PathBuf,
}

impl Task for TreeD {
    const STAGE: &'static str = Stage::TreeD.as_str();
    type Output = bool;
}

/// Pre-commit phase 1 (SDR labelling). `out_path` (the sealed file) must exist.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PC1 {
    /// The sector's seal proof type.
    pub registered_proof: RegisteredSealProof,
    /// The sector's cache dir; receives the layer labels.
    pub cache_path: PathBuf,
    /// The staged file (the sector's unsealed data).
    pub in_path: PathBuf,
    /// The sealed file.
    pub out_path: PathBuf,
    /// The miner's prover id, derived from its actor id (see [`prover_id`]).
    pub prover_id: ProverId,
    /// The sector number.
    pub sector_id: SectorId,
    /// The ticket drawn from the chain for this sector (32 bytes).
    pub ticket: Ticket,
    /// The sector's pieces, as `add_pieces` returned them.
    pub piece_infos: Vec<PieceInfo>,
}

impl Task for PC1 {
    const STAGE: &'static str = Stage::Pc1.as_str();
    type Output = SealPreCommitPhase1Output;
}

/// Pre-commit phase 2 (tree-c, tree-r-last, comm_r). Rewrites the sealed file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PC2 {
    /// The `pc1` output, unchanged.
    pub pc1out: SealPreCommitPhase1Output,
    /// The cache dir PC1 wrote; receives tree-c and tree-r-last.
    pub cache_dir: PathBuf,
    /// The sealed file, rewritten as the replica.
    pub sealed_file: PathBuf,
}

impl Task for PC2 {
    const STAGE: &'static str = Stage::Pc2.as_str();
    type Output = SealPreCommitPhase2Output;
}

/// Commit phase 2: the Groth16 SNARK of the C1 vanilla proofs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct C2 {
    /// The commit phase 1 output (C1 always runs inside the worker).
    pub c1out: SealCommitPhase1Output,
    /// The miner's prover id, as in PC1.
    pub prover_id: ProverId,
    /// The sector number.
    pub sector_id: SectorId,
    /// The miner's actor id (`1000` for `f01000`).
    pub miner_id: ActorID,
}

impl Task for C2 {
    const STAGE: &'static str = Stage::C2.as_str();
    type Output = SealCommitPhase2Output;
}

/// Snap-deal encoding of new data into an existing replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapEncode {
    /// The snap-deal update proof type.
    pub registered_proof: RegisteredUpdateProof,
    /// The new replica (`update`) file, sized to the old sealed file and written.
    pub new_replica_path: PathBuf,
    /// The new replica's cache dir (`update-cache`).
    pub new_cache_path: PathBuf,
    /// The sector's current sealed file (the sector key).
    pub sector_path: PathBuf,
    /// The sector's current cache dir.
    pub sector_cache_path: PathBuf,
    /// The staged file holding the new data.
    pub staged_data_path: PathBuf,
    /// The new data's pieces.
    pub piece_infos: Vec<PieceInfo>,
}

/// The commitments of a snap-deal encoded replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapEncodeOutput {
    /// The new replica commitment.
    pub comm_r_new: Commitment,
    /// Root of the new replica's tree-r-last.
    pub comm_r_last_new: Commitment,
    /// Data commitment of the new data.
    pub comm_d_new: Commitment,
}

impl Task for SnapEncode {
    const STAGE: &'static str = Stage::SnapEncode.as_str();
    type Output = SnapEncodeOutput;
}

/// Snap-deal proof from vanilla partition proofs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapProve {
    /// The snap-deal update proof type.
    pub registered_proof: RegisteredUpdateProof,
    /// Spelt this way on the wire, as in damocles.
    pub vannilla_proofs: Vec<Vec<u8>>,
    /// The replica commitment before the update.
    pub comm_r_old: Commitment,
    /// The replica commitment after the update.
    pub comm_r_new: Commitment,
    /// Data commitment of the new data.
    pub comm_d_new: Commitment,
}

/// The snap-deal proof bytes.
pub type SnapProveOutput = Vec<u8>;

impl Task for SnapProve {
    const STAGE: &'static str = Stage::SnapProve.as_str();
    type Output = SnapProveOutput;
}

/// A store that [`Transfer`] routes may name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStoreInfo {
    /// The store's name (the same as its key in [`Transfer::stores`]).
    pub name: String,
    /// The store's meta from the manager; the builtin resolves paths under `meta["path"]`.
    pub meta: Option<BTreeMap<String, String>>,
}

/// One end of a [`TransferRoute`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferItem {
    /// `None`: a local path.
    pub store_name: Option<String>,
    /// An absolute local path, or a path inside the store (no `..`).
    pub uri: PathBuf,
}

/// How a route is carried out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOption {
    /// The source is a directory, copied recursively; else a file.
    pub is_dir: bool,
    /// A symlink may stand in for the copy (unless the processor runs with `--disable_link`).
    pub allow_link: bool,
}

/// One copy (or link) from `src` to `dest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRoute {
    /// What to copy; must exist and be of the kind `opt` says.
    pub src: TransferItem,
    /// Where to put it; an existing entry of the same kind is replaced.
    pub dest: TransferItem,
    /// `null`: a file, copied.
    pub opt: Option<TransferOption>,
}

/// Copies (or links) files and directories between local paths and stores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Transfer {
    /// Sorted, so the JSON is the same on every run.
    pub stores: BTreeMap<String, TransferStoreInfo>,
    /// Carried out in order; the first failure ends the task.
    pub routes: Vec<TransferRoute>,
}

impl Task for Transfer {
    const STAGE: &'static str = Stage::Transfer.as_str();
    type Output = bool;
}

/// One sealed sector as PoSt needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoStReplicaInfo {
    /// The sector number.
    pub sector_id: SectorId,
    /// Its replica commitment.
    pub comm_r: Commitment,
    /// Its cache dir (tree-r-last and `p_aux`).
    pub cache_dir: PathBuf,
    /// Its sealed file (the `update` file for a snap-upgraded sector).
    pub sealed_file: PathBuf,
}

/// Window PoSt over one partition's sectors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowPoSt {
    /// The miner's actor id; its prover id is derived from it.
    pub miner_id: ActorID,
    /// A window PoSt proof type, e.g. `StackedDrgWindow32GiBV1_2`.
    pub proof_type: RegisteredPoStProof,
    /// The partition's sectors.
    pub replicas: Vec<PoStReplicaInfo>,
    /// The challenge randomness; the manager clears the top two bits of its last byte.
    pub seed: ChallengeSeed,
}

/// A window PoSt that finds faulty sectors succeeds with empty `proofs` and the
/// sectors in `faults`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPoStOutput {
    /// One proof per partition, base64 on the wire; empty when `faults` is not.
    pub proofs: Vec<SnarkProof>,
    /// Numbers of the sectors found faulty.
    pub faults: Vec<u64>,
}

impl Task for WindowPoSt {
    const STAGE: &'static str = Stage::WindowPost.as_str();
    type Output = WindowPoStOutput;
}

/// Winning PoSt over the challenged sectors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WinningPoSt {
    /// The miner's actor id; its prover id is derived from it.
    pub miner_id: ActorID,
    /// A winning PoSt proof type, e.g. `StackedDrgWinning32GiBV1`.
    pub proof_type: RegisteredPoStProof,
    /// The challenged sectors.
    pub replicas: Vec<PoStReplicaInfo>,
    /// The challenge randomness.
    pub seed: ChallengeSeed,
}

/// The result of a [`WinningPoSt`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinningPoStOutput {
    /// The proofs, base64 on the wire.
    pub proofs: Vec<SnarkProof>,
}

impl Task for WinningPoSt {
    const STAGE: &'static str = Stage::WinningPost.as_str();
    type Output = WinningPoStOutput;
}

/// The vanilla half of a window or winning PoSt: for each sector, the
/// inclusion proofs of its challenged leaves, read from its files. It runs
/// where the files are; [`PoStSnark`] turns its output into the proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoStVanilla {
    /// The miner's actor id; its prover id is derived from it.
    pub miner_id: ActorID,
    /// A window or winning PoSt proof type.
    pub proof_type: RegisteredPoStProof,
    /// The sectors (a sector listed twice is proven once).
    pub replicas: Vec<PoStReplicaInfo>,
    /// The challenge randomness (for window PoSt with the top two bits of
    /// its last byte cleared, as for [`WindowPoSt`]).
    pub seed: ChallengeSeed,
}

/// The vanilla proofs of a [`PoStVanilla`], or the sectors that could not
/// be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoStVanillaOutput {
    /// One vanilla proof per sector, in ascending sector number (the order
    /// the SNARK takes them), base64 on the wire; empty when `faults` is not.
    pub proofs: Vec<B64Bytes>,
    /// Numbers of the sectors whose files could not be proven.
    pub faults: Vec<u64>,
}

impl Task for PoStVanilla {
    const STAGE: &'static str = Stage::PostVanilla.as_str();
    type Output = PoStVanillaOutput;
}

/// The SNARK half of a window or winning PoSt: the proof from the vanilla
/// proofs of a [`PoStVanilla`] with the same type, miner and seed. Reads no
/// sector file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoStSnark {
    /// The miner's actor id.
    pub miner_id: ActorID,
    /// The same proof type as the vanilla proofs'.
    pub proof_type: RegisteredPoStProof,
    /// The same seed as the vanilla proofs'.
    pub seed: ChallengeSeed,
    /// The vanilla proofs, in ascending sector number.
    pub vanilla_proofs: Vec<B64Bytes>,
}

/// The proofs of a [`PoStSnark`]: one per partition (window), one (winning).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoStSnarkOutput {
    /// The proofs, base64 on the wire.
    pub proofs: Vec<SnarkProof>,
}

impl Task for PoStSnark {
    const STAGE: &'static str = Stage::PostSnark.as_str();
    type Output = PoStSnarkOutput;
}

/// Recovers unsealed bytes of a sealed sector into `unsealed_output`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unseal {
    /// The sector's seal proof type.
    pub registered_proof: RegisteredSealProof,
    /// The miner's prover id, as in PC1.
    pub prover_id: ProverId,
    /// The sector number.
    pub sector_id: SectorId,
    /// The sector's data commitment.
    pub comm_d: Commitment,
    /// The ticket the sector was sealed with.
    pub ticket: Ticket,
    /// The sector's cache dir.
    pub cache_dir: PathBuf,
    /// The sealed file.
    pub sealed_file: PathBuf,
    /// Where the unsealed bytes go (created or truncated).
    pub unsealed_output: PathBuf,
    /// Where to start, unpadded bytes from the start of the sector.
    pub offset: UnpaddedByteIndex,
    /// How many unpadded bytes to recover.
    pub num_bytes: UnpaddedBytesAmount,
}

impl Task for Unseal {
    const STAGE: &'static str = Stage::Unseal.as_str();
    type Output = UnpaddedBytesAmount;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_proofs_are_base64() {
        let out = WinningPoStOutput {
            proofs: vec![B64Bytes(vec![1, 2, 3])],
        };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"proofs":["AQID"]}"#
        );
    }

    #[test]
    fn piece_files_are_camel_case() {
        assert_eq!(
            serde_json::to_string(&PieceFile::Pledge).unwrap(),
            r#""pledge""#
        );
        assert_eq!(
            serde_json::to_string(&PieceFile::Url("u".into())).unwrap(),
            r#"{"url":"u"}"#
        );
    }
}
