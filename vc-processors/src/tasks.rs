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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Piece {
    pub piece_file: PieceFile,
    /// Bytes to read from the source; the rest of `piece_size` is zero-filled.
    pub payload_size: u64,
    pub piece_size: UnpaddedBytesAmount,
}

/// Writes pieces (fr32-padded) into the staged file. Output: their commitments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddPieces {
    pub seal_proof_type: RegisteredSealProof,
    pub pieces: Vec<Piece>,
    pub staged_filepath: PathBuf,
}

impl Task for AddPieces {
    const STAGE: &'static str = Stage::AddPieces.as_str();
    type Output = Vec<PieceInfo>;
}

/// Builds tree-d of the staged file into `cache_dir`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TreeD {
    pub registered_proof: RegisteredSealProof,
    pub staged_file: PathBuf,
    pub cache_dir: PathBuf,
}

impl Task for TreeD {
    const STAGE: &'static str = Stage::TreeD.as_str();
    type Output = bool;
}

/// Pre-commit phase 1 (SDR labelling). `out_path` (the sealed file) must exist.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PC1 {
    pub registered_proof: RegisteredSealProof,
    pub cache_path: PathBuf,
    pub in_path: PathBuf,
    pub out_path: PathBuf,
    pub prover_id: ProverId,
    pub sector_id: SectorId,
    pub ticket: Ticket,
    pub piece_infos: Vec<PieceInfo>,
}

impl Task for PC1 {
    const STAGE: &'static str = Stage::Pc1.as_str();
    type Output = SealPreCommitPhase1Output;
}

/// Pre-commit phase 2 (tree-c, tree-r-last, comm_r). Rewrites the sealed file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PC2 {
    pub pc1out: SealPreCommitPhase1Output,
    pub cache_dir: PathBuf,
    pub sealed_file: PathBuf,
}

impl Task for PC2 {
    const STAGE: &'static str = Stage::Pc2.as_str();
    type Output = SealPreCommitPhase2Output;
}

/// Commit phase 2: the Groth16 SNARK of the C1 vanilla proofs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct C2 {
    pub c1out: SealCommitPhase1Output,
    pub prover_id: ProverId,
    pub sector_id: SectorId,
    pub miner_id: ActorID,
}

impl Task for C2 {
    const STAGE: &'static str = Stage::C2.as_str();
    type Output = SealCommitPhase2Output;
}

/// Snap-deal encoding of new data into an existing replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapEncode {
    pub registered_proof: RegisteredUpdateProof,
    pub new_replica_path: PathBuf,
    pub new_cache_path: PathBuf,
    pub sector_path: PathBuf,
    pub sector_cache_path: PathBuf,
    pub staged_data_path: PathBuf,
    pub piece_infos: Vec<PieceInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapEncodeOutput {
    pub comm_r_new: Commitment,
    pub comm_r_last_new: Commitment,
    pub comm_d_new: Commitment,
}

impl Task for SnapEncode {
    const STAGE: &'static str = Stage::SnapEncode.as_str();
    type Output = SnapEncodeOutput;
}

/// Snap-deal proof from vanilla partition proofs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapProve {
    pub registered_proof: RegisteredUpdateProof,
    /// Spelt this way on the wire, as in damocles.
    pub vannilla_proofs: Vec<Vec<u8>>,
    pub comm_r_old: Commitment,
    pub comm_r_new: Commitment,
    pub comm_d_new: Commitment,
}

/// The snap-deal proof bytes.
pub type SnapProveOutput = Vec<u8>;

impl Task for SnapProve {
    const STAGE: &'static str = Stage::SnapProve.as_str();
    type Output = SnapProveOutput;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStoreInfo {
    pub name: String,
    pub meta: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferItem {
    /// `None`: a local path.
    pub store_name: Option<String>,
    pub uri: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOption {
    pub is_dir: bool,
    pub allow_link: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRoute {
    pub src: TransferItem,
    pub dest: TransferItem,
    pub opt: Option<TransferOption>,
}

/// Copies (or links) files and directories between local paths and stores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Transfer {
    /// Sorted, so the JSON is the same on every run.
    pub stores: BTreeMap<String, TransferStoreInfo>,
    pub routes: Vec<TransferRoute>,
}

impl Task for Transfer {
    const STAGE: &'static str = Stage::Transfer.as_str();
    type Output = bool;
}

/// One sealed sector as PoSt needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoStReplicaInfo {
    pub sector_id: SectorId,
    pub comm_r: Commitment,
    pub cache_dir: PathBuf,
    pub sealed_file: PathBuf,
}

/// Window PoSt over one partition's sectors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowPoSt {
    pub miner_id: ActorID,
    pub proof_type: RegisteredPoStProof,
    pub replicas: Vec<PoStReplicaInfo>,
    pub seed: ChallengeSeed,
}

/// A window PoSt that finds faulty sectors succeeds with empty `proofs` and the
/// sectors in `faults`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPoStOutput {
    pub proofs: Vec<SnarkProof>,
    pub faults: Vec<u64>,
}

impl Task for WindowPoSt {
    const STAGE: &'static str = Stage::WindowPost.as_str();
    type Output = WindowPoStOutput;
}

/// Winning PoSt over the challenged sectors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WinningPoSt {
    pub miner_id: ActorID,
    pub proof_type: RegisteredPoStProof,
    pub replicas: Vec<PoStReplicaInfo>,
    pub seed: ChallengeSeed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinningPoStOutput {
    pub proofs: Vec<SnarkProof>,
}

impl Task for WinningPoSt {
    const STAGE: &'static str = Stage::WinningPost.as_str();
    type Output = WinningPoStOutput;
}

/// Recovers unsealed bytes of a sealed sector into `unsealed_output`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unseal {
    pub registered_proof: RegisteredSealProof,
    pub prover_id: ProverId,
    pub sector_id: SectorId,
    pub comm_d: Commitment,
    pub ticket: Ticket,
    pub cache_dir: PathBuf,
    pub sealed_file: PathBuf,
    pub unsealed_output: PathBuf,
    pub offset: UnpaddedByteIndex,
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
