//! Numbered enums of the API, numbered as damocles numbers them.

use filecoin_proofs_api::RegisteredSealProof;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// JSON-RPC error code: the manager has no state for this sector; the worker
/// aborts the sector.
pub const ERR_SECTOR_STATE_NOT_FOUND: i32 = 11001;

/// JSON-RPC error code: not now (a store unreachable, a message not yet
/// landed); the worker retries the call later.
pub const ERR_NOT_READY: i32 = 11002;

/// JSON-RPC error code: the caller's token does not permit this call.
pub const ERR_PERMISSION_DENIED: i32 = 11003;

macro_rules! numbered {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $n:expr),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant = $n),+ }

        impl $name {
            /// The number sent on the wire.
            pub fn code(self) -> u64 { self as u64 }
            /// The variant numbered `n`; `None` for a number it does not know (0 included).
            pub fn from_code(n: u64) -> Option<Self> {
                match n { $($n => Some($name::$variant),)+ _ => None }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(self.code())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = u64::deserialize(d)?;
                $name::from_code(n).ok_or_else(|| {
                    serde::de::Error::custom(format!("{} {n} is not a known value", stringify!($name)))
                })
            }
        }
    };
}

numbered! {
    /// Outcome of SubmitPreCommit / SubmitProof (`Res`). 0 is never sent.
    SubmitResult {
        /// Taken; the worker goes on to poll the message.
        Accepted = 1,
        /// The same content was submitted before.
        DuplicateSubmit = 2,
        /// Submitted again with different content.
        MismatchedSubmission = 3,
        /// Refused (`Desc` says why); the worker aborts the sector.
        Rejected = 4,
        /// The sector's files are missing; the worker fails permanently.
        FilesMissed = 5,
    }
}

numbered! {
    /// Where a submitted message stands (`State` of the Poll* responses). 0 is never sent.
    OnChainState {
        /// The message waits in the message pool; keep polling.
        Pending = 1,
        /// The message is on chain, waiting for confirmations; keep polling.
        Packed = 2,
        /// Executed successfully and confirmed; polling is done.
        Landed = 3,
        /// No such message was submitted; the worker fails permanently.
        NotFound = 4,
        /// Failed; the worker resubmits.
        Failed = 5,
        /// Failed in a way a resubmit cannot fix; the worker fails permanently.
        PermFailed = 6,
        /// The sector cannot go on; the worker aborts it.
        ShouldAbort = 7,
    }
}

/// A seal proof type, a number on the wire (Go `abi.RegisteredSealProof`), in
/// the order filecoin-proofs-api declares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SealProof(pub RegisteredSealProof);

const SEAL_PROOFS: [RegisteredSealProof; 20] = {
    use RegisteredSealProof::*;
    [
        StackedDrg2KiBV1,
        StackedDrg8MiBV1,
        StackedDrg512MiBV1,
        StackedDrg32GiBV1,
        StackedDrg64GiBV1,
        StackedDrg2KiBV1_1,
        StackedDrg8MiBV1_1,
        StackedDrg512MiBV1_1,
        StackedDrg32GiBV1_1,
        StackedDrg64GiBV1_1,
        StackedDrg2KiBV1_1_Feat_SyntheticPoRep,
        StackedDrg8MiBV1_1_Feat_SyntheticPoRep,
        StackedDrg512MiBV1_1_Feat_SyntheticPoRep,
        StackedDrg32GiBV1_1_Feat_SyntheticPoRep,
        StackedDrg64GiBV1_1_Feat_SyntheticPoRep,
        StackedDrg2KiBV1_2_Feat_NonInteractivePoRep,
        StackedDrg8MiBV1_2_Feat_NonInteractivePoRep,
        StackedDrg512MiBV1_2_Feat_NonInteractivePoRep,
        StackedDrg32GiBV1_2_Feat_NonInteractivePoRep,
        StackedDrg64GiBV1_2_Feat_NonInteractivePoRep,
    ]
};

impl SealProof {
    /// The seal proof sectors of `size` bytes get (the current V1_1 ones).
    pub fn for_sector_size(size: u64) -> Option<SealProof> {
        use RegisteredSealProof::*;
        Some(SealProof(match size {
            2048 => StackedDrg2KiBV1_1,
            0x80_0000 => StackedDrg8MiBV1_1,
            0x2000_0000 => StackedDrg512MiBV1_1,
            0x8_0000_0000 => StackedDrg32GiBV1_1,
            0x10_0000_0000 => StackedDrg64GiBV1_1,
            _ => return None,
        }))
    }

    /// The number on the wire: the position in Go's `abi.RegisteredSealProof` (0–19).
    pub fn code(self) -> i64 {
        SEAL_PROOFS
            .iter()
            .position(|p| *p == self.0)
            .expect("every variant is listed") as i64
    }

    /// The proof type numbered `n`; `None` outside 0–19.
    pub fn from_code(n: i64) -> Option<SealProof> {
        usize::try_from(n)
            .ok()
            .and_then(|i| SEAL_PROOFS.get(i))
            .map(|p| SealProof(*p))
    }
}

impl Serialize for SealProof {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

impl<'de> Deserialize<'de> for SealProof {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        SealProof::from_code(n)
            .ok_or_else(|| serde::de::Error::custom(format!("seal proof type {n} is not known")))
    }
}
