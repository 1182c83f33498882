//! Encodings Go's `encoding/json` uses that serde does not by default.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Exactly 32 bytes, as a standard base64 string (Go `abi.Randomness` for
/// tickets and seeds). Anything that does not decode to 32 bytes is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bytes32(pub [u8; 32]);

impl Serialize for Bytes32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)?;
        let arr: [u8; 32] = v.try_into().map_err(|v: Vec<u8>| {
            serde::de::Error::custom(format!("expected 32 bytes, got {}", v.len()))
        })?;
        Ok(Bytes32(arr))
    }
}

/// Bytes as a standard base64 string (Go `[]byte`); `null` reads as empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Base64Bytes(pub Vec<u8>);

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Base64Bytes(Vec::new())),
            Some(s) => STANDARD
                .decode(s.as_bytes())
                .map(Base64Bytes)
                .map_err(serde::de::Error::custom),
        }
    }
}
