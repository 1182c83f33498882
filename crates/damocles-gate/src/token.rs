//! Bearer tokens: JWTs (HS256) whose claims list permissions, `{"Allow":
//! ["read","write"]}`, the shape Lotus and Venus tokens use. Whoever holds
//! the secret can mint tokens, so the secret is at least
//! [`MIN_SECRET_BYTES`] random bytes and a shorter one is refused.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use damocles_api::Permission;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The shortest secret accepted: 256 bits, what `create_secret_file` writes.
/// An empty or short secret (a failed restore, an empty template variable)
/// would let anyone forge an admin token.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "Allow")]
    allow: Vec<Permission>,
}

/// Mints and verifies tokens with one secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// Why a token was refused, in words a caller can act on (the library's
/// own messages name its internals).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Invalid {
    /// Not three base64url parts.
    #[error("the token is not a JWT (three base64url parts)")]
    Malformed,
    /// Signed with another secret.
    #[error("the token is not signed with this daemon's secret")]
    BadSignature,
    /// Not HS256.
    #[error("the token is signed with an algorithm other than HS256")]
    WrongAlgorithm,
    /// Its `exp` is past.
    #[error("the token has expired (its exp claim is in the past)")]
    Expired,
    /// Its `nbf` is ahead.
    #[error("the token is not valid yet (its nbf claim is in the future)")]
    NotYetValid,
    /// Claims of another shape.
    #[error("the token's claims are not {{\"Allow\": [permissions]}}")]
    BadClaims,
}

impl Tokens {
    /// Tokens signed with `secret`; refused when it is shorter than
    /// [`MIN_SECRET_BYTES`].
    pub fn from_secret(secret: &[u8]) -> Result<Tokens> {
        if secret.len() < MIN_SECRET_BYTES {
            bail!(
                "the token secret is {} bytes; at least {MIN_SECRET_BYTES} are needed",
                secret.len()
            );
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // Tokens need no expiry (as Lotus/Venus tokens), but one that
        // carries `exp` or `nbf` has it honoured.
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Ok(Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// Reads a hex secret file; every refusal names the file.
    pub fn load(path: &Path) -> Result<Tokens> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read token secret {}", path.display()))?;
        let secret = hex::decode(text.trim())
            .with_context(|| format!("token secret {}: not a hex secret", path.display()))?;
        Tokens::from_secret(&secret).with_context(|| {
            format!(
                "token secret {} is unusable (an empty or truncated file lets anyone forge tokens); \
                 restore it from a backup, or replace it with {MIN_SECRET_BYTES} random bytes in hex \
                 (`head -c {MIN_SECRET_BYTES} /dev/urandom | xxd -p -c 64`) and mint new tokens",
                path.display()
            )
        })
    }

    /// Writes a new random secret to `path` (0600, atomically) unless the
    /// file exists; returns whether it wrote one.
    pub fn create_secret_file(path: &Path) -> Result<bool> {
        if path.exists() {
            return Ok(false);
        }
        let mut secret = [0u8; MIN_SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        write_private(path, hex::encode(secret).as_bytes())?;
        Ok(true)
    }

    /// A token granting `perm` and everything below it.
    pub fn create(&self, perm: Permission) -> String {
        let claims = Claims {
            allow: perm.and_below(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of a serializable claim cannot fail")
    }

    /// The permissions a token grants, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Vec<Permission>, Invalid> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|t| t.claims.allow)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => Invalid::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    Invalid::WrongAlgorithm
                }
                ErrorKind::ExpiredSignature => Invalid::Expired,
                ErrorKind::ImmatureSignature => Invalid::NotYetValid,
                ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) => Invalid::BadClaims,
                _ => Invalid::Malformed,
            })
    }
}

/// Writes `contents` to `path` readable by the owner only, through a
/// temporary file and a rename, so a reader never sees half a file.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("a file path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    const B: &[u8; 32] = b"fedcba9876543210fedcba9876543210";

    fn sign(secret: &[u8], claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn tokens_round_trip_and_foreign_tokens_fail() {
        let a = Tokens::from_secret(A).unwrap();
        let t = a.create(Permission::Write);
        assert_eq!(
            a.verify(&t).unwrap(),
            vec![Permission::Read, Permission::Write]
        );
        let b = Tokens::from_secret(B).unwrap();
        assert_eq!(b.verify(&t), Err(Invalid::BadSignature));
        assert_eq!(a.verify("garbage"), Err(Invalid::Malformed));
    }

    #[test]
    fn short_secrets_are_refused() {
        for len in [0, 1, 31] {
            let err = Tokens::from_secret(&vec![7u8; len]).err().unwrap();
            assert!(err.to_string().contains("at least 32"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt-secret");
        std::fs::write(&path, "").unwrap();
        let err = format!("{:#}", Tokens::load(&path).err().unwrap());
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("0 bytes"), "{err}");
    }

    #[test]
    fn a_created_secret_is_long_enough_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore/jwt-secret");
        assert!(Tokens::create_secret_file(&path).unwrap());
        assert!(!Tokens::create_secret_file(&path).unwrap(), "kept as is");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let t = Tokens::load(&path).unwrap();
        assert!(t.verify(&t.create(Permission::Admin)).is_ok());
    }

    #[test]
    fn exp_and_nbf_are_honoured_when_present() {
        let a = Tokens::from_secret(A).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expired = sign(A, serde_json::json!({"Allow": ["read"], "exp": 1}));
        assert_eq!(a.verify(&expired), Err(Invalid::Expired));
        let later = sign(
            A,
            serde_json::json!({"Allow": ["read"], "nbf": 9_999_999_999u64}),
        );
        assert_eq!(a.verify(&later), Err(Invalid::NotYetValid));
        let fine = sign(
            A,
            serde_json::json!({"Allow": ["read"], "exp": now + 3600, "nbf": now - 10}),
        );
        assert_eq!(a.verify(&fine), Ok(vec![Permission::Read]));
        let wrong = sign(A, serde_json::json!({"Allow": "read"}));
        assert_eq!(a.verify(&wrong), Err(Invalid::BadClaims));
    }
}
