//! The sector layout shared by the worker, the manager, the devnet, the
//! processors and the stores: one definition of
//!
//! - a sector's id and its name (`s-t01000-7`, [`SectorID`]'s `Display`);
//! - where its files go in a store ([`objects`]) and what its cache keeps
//!   ([`CacheFile`], [`persisted_cache_files`]);
//! - the prover id of a miner ([`prover_id`]);
//! - the stage names on the wire ([`Stage`]).
//!
//! It has no proofs dependency on purpose: a crate that only needs to name a
//! sector or a stage must not pull the proof stack in.

#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod objects;

/// A miner's actor id (`t0<id>`).
pub type ActorID = u64;
/// A sector's number within its miner.
pub type SectorNumber = u64;

/// `{"Miner": 1000, "Number": 42}` on the wire; `s-t01000-42` as a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorID {
    /// The miner's actor id.
    pub miner: ActorID,
    /// The sector's number within the miner.
    pub number: SectorNumber,
}

impl SectorID {
    /// The sector `number` of miner `miner`.
    pub const fn new(miner: ActorID, number: SectorNumber) -> SectorID {
        SectorID { miner, number }
    }
}

/// The name damocles gives a sector everywhere: files, logs, job ids.
impl fmt::Display for SectorID {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s-t0{}-{}", self.miner, self.number)
    }
}

/// The prover id of miner `t0<miner_id>`: the id address's payload (the
/// LEB128 encoding of the id), zero-padded to 32 bytes.
pub fn prover_id(miner_id: ActorID) -> [u8; 32] {
    let mut id = [0u8; 32];
    let mut n = miner_id;
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            id[i] = byte;
            break;
        }
        id[i] = byte | 0x80;
        i += 1;
    }
    id
}

/// A file in a sector's cache directory, named as the proofs library names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheFile {
    /// The public aux data (`p_aux`: comm_c and comm_r_last).
    PAux,
    /// The temporary aux data (`t_aux`: tree configs).
    TAux,
    /// tree-d over the sector's data.
    TreeD,
    /// tree-r-last, whole (`None`: sizes with one tree) or part `i` of it.
    TreeRLast(Option<u32>),
}

impl fmt::Display for CacheFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheFile::PAux => f.write_str("p_aux"),
            CacheFile::TAux => f.write_str("t_aux"),
            CacheFile::TreeD => f.write_str("sc-02-data-tree-d.dat"),
            CacheFile::TreeRLast(None) => f.write_str("sc-02-data-tree-r-last.dat"),
            CacheFile::TreeRLast(Some(i)) => write!(f, "sc-02-data-tree-r-last-{i}.dat"),
        }
    }
}

/// How many files tree-r-last is split into for a sector size: one up to
/// 512MiB, 8 at 32GiB, 16 at 64GiB (the proofs library's base tree count).
pub fn tree_r_last_parts(sector_size: u64) -> u32 {
    match sector_size {
        s if s <= 512 << 20 => 1,
        s if s <= 32 << 30 => 8,
        _ => 16,
    }
}

/// The files a sealed sector keeps in its cache after the library's
/// `clear_cache`: what persisting copies, and what PoSt, unseal and snap read.
pub fn persisted_cache_files(sector_size: u64) -> Vec<CacheFile> {
    let mut files: Vec<CacheFile> = match tree_r_last_parts(sector_size) {
        1 => vec![CacheFile::TreeRLast(None)],
        n => (0..n).map(|i| CacheFile::TreeRLast(Some(i))).collect(),
    };
    files.push(CacheFile::PAux);
    files.push(CacheFile::TAux);
    files
}

/// Whether a cache file name is one PC2 writes (aux data, tree-c, tree-r-last):
/// what a PC2 interrupted half-way leaves behind to be removed before a retry.
pub fn is_pc2_output(file_name: &str) -> bool {
    file_name == "p_aux"
        || file_name == "t_aux"
        || file_name.contains("tree-c")
        || file_name.contains("tree-r-last")
}

macro_rules! stages {
    ($($(#[$doc:meta])* $variant:ident = $name:literal),+ $(,)?) => {
        /// A stage of sealing or proving, named as it is on the wire (the
        /// ready line `<stage> processor ready`, the `[[processors.<stage>]]`
        /// config sections, `limitation.concurrent` keys, metrics labels).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Stage {
            $($(#[$doc])* $variant),+
        }

        impl Stage {
            /// Every stage, in sealing order.
            pub const ALL: &'static [Stage] = &[$(Stage::$variant),+];

            /// The wire name (`pc1`, `window_post`, ...).
            pub const fn as_str(self) -> &'static str {
                match self { $(Stage::$variant => $name),+ }
            }
        }

        impl FromStr for Stage {
            type Err = UnknownStage;
            fn from_str(s: &str) -> Result<Stage, UnknownStage> {
                match s {
                    $($name => Ok(Stage::$variant),)+
                    _ => Err(UnknownStage(s.to_string())),
                }
            }
        }
    };
}

stages! {
    /// Write pieces (or zeros) into the staged file.
    AddPieces = "add_pieces",
    /// Build tree-d over the staged file.
    TreeD = "tree_d",
    /// Pre-commit phase 1 (SDR labelling).
    Pc1 = "pc1",
    /// Pre-commit phase 2 (tree-c, tree-r-last, comm_r).
    Pc2 = "pc2",
    /// Synthetic challenges (non-interactive PoRep); a limit key only.
    SynthProof = "synth_proof",
    /// Commit phase 1 (vanilla proofs); always in-process.
    C1 = "c1",
    /// Commit phase 2 (the seal SNARK).
    C2 = "c2",
    /// Snap-deal encoding of new data into a replica.
    SnapEncode = "snap_encode",
    /// Snap-deal proof.
    SnapProve = "snap_prove",
    /// Copying sector files to their store.
    Transfer = "transfer",
    /// Window PoSt of a partition.
    WindowPost = "window_post",
    /// Winning PoSt for an election.
    WinningPost = "winning_post",
    /// The vanilla half of a PoSt (window or winning): inclusion proofs of
    /// the challenged leaves, read where the sector files are (protocol v2).
    PostVanilla = "post_vanilla",
    /// The SNARK half of a PoSt, from vanilla proofs alone: no sector file
    /// needed, so it can run on any machine (protocol v2).
    PostSnark = "post_snark",
    /// Reading a range of a sector back out.
    Unseal = "unseal",
}

impl Stage {
    /// Whether the stage has a task type an ext-processor can serve
    /// (C1 always runs in-process; synth_proof is only a limit key).
    pub const fn has_task(self) -> bool {
        !matches!(self, Stage::C1 | Stage::SynthProof)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage name that is not one of [`Stage::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownStage(pub String);

impl fmt::Display for UnknownStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        write!(
            f,
            "unknown stage {:?} (stages: {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownStage {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_names_and_wire_shape() {
        let id = SectorID::new(1000, 7);
        assert_eq!(id.to_string(), "s-t01000-7");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            r#"{"Miner":1000,"Number":7}"#
        );
    }

    #[test]
    fn prover_ids_are_leb128() {
        assert_eq!(prover_id(1000)[..3], [0xe8, 0x07, 0]);
        assert_eq!(prover_id(0)[..2], [0, 0]);
        assert_eq!(prover_id(127)[..2], [0x7f, 0]);
        assert_eq!(prover_id(128)[..3], [0x80, 0x01, 0]);
    }

    #[test]
    fn stage_names_round_trip() {
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(*s));
        }
        let err = "pc3".parse::<Stage>().unwrap_err().to_string();
        assert!(
            err.contains("\"pc3\"") && err.contains("window_post"),
            "{err}"
        );
    }

    #[test]
    fn cache_files_by_size() {
        let small: Vec<String> = persisted_cache_files(2048)
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(small, ["sc-02-data-tree-r-last.dat", "p_aux", "t_aux"]);
        let big = persisted_cache_files(32 << 30);
        assert_eq!(big.len(), 10);
        assert_eq!(big[7].to_string(), "sc-02-data-tree-r-last-7.dat");
        assert_eq!(persisted_cache_files(64 << 30).len(), 18);
        assert!(is_pc2_output("sc-02-data-tree-c-3.dat"));
        assert!(!is_pc2_output("sc-02-data-layer-1.dat"));
    }
}
