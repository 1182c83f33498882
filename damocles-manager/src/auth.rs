//! Bearer tokens: JWTs (HS256) whose claims list permissions, `{"Allow":
//! ["read","write"]}` as Lotus and Venus tokens do. `daemon init` creates the
//! secret; anyone holding it can mint tokens (`util auth create-token`).

use std::collections::HashSet;

use anyhow::{Context, Result};
use damocles_api::Permission;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::home::{write_private, Home};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "Allow")]
    allow: Vec<Permission>,
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Auth {
    /// Creates the secret in `home` unless one exists; returns whether it did.
    pub fn init_secret(home: &Home) -> Result<bool> {
        if home.secret().exists() {
            return Ok(false);
        }
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        write_private(&home.secret(), hex::encode(secret).as_bytes())?;
        Ok(true)
    }

    pub fn load(home: &Home) -> Result<Auth> {
        let path = home.secret();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "read token secret {} (run `damocles-manager daemon init`)",
                path.display()
            )
        })?;
        let secret = hex::decode(text.trim())
            .with_context(|| format!("{}: not a hex secret", path.display()))?;
        Ok(Auth::from_secret(&secret))
    }

    pub fn from_secret(secret: &[u8]) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        // Tokens do not expire (as Lotus/Venus tokens): no exp, no other claims required.
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A token granting `perm` and everything below it.
    pub fn create_token(&self, perm: Permission) -> Result<String> {
        let claims = Claims {
            allow: perm.and_below(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The permissions a token grants, or why it is not valid.
    pub fn verify(&self, token: &str) -> std::result::Result<Vec<Permission>, String> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|t| t.claims.allow)
            .map_err(|e| format!("invalid token: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_tokens_fail() {
        let a = Auth::from_secret(b"secret-a");
        let t = a.create_token(Permission::Write).unwrap();
        assert_eq!(
            a.verify(&t).unwrap(),
            vec![Permission::Read, Permission::Write]
        );
        let b = Auth::from_secret(b"secret-b");
        assert!(b.verify(&t).unwrap_err().contains("invalid token"));
        assert!(a.verify("garbage").is_err());
    }
}
