//! Access tokens: HS256 JWTs with a short lifetime, issuer and audience checked.

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Role;

const ISSUER: &str = "chargegrid";
const AUDIENCE: &str = "chargegrid-api";

/// What an access token asserts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
    /// The sign-in (refresh-token family) the token belongs to: logging it out revokes the
    /// token too. Absent in tokens made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
    #[error("the access token was revoked (logged out, or the account is blocked)")]
    Revoked,
}

/// Signing and verification keys, built once from `JWT_SECRET`.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl JwtKeys {
    pub fn new(secret: &SecretString, ttl_secs: u64) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            ttl_secs: ttl_secs as i64,
        }
    }

    /// A fresh access token for `user_id`, part of the sign-in `sid`.
    pub fn issue(
        &self,
        user_id: Uuid,
        role: Role,
        sid: Option<Uuid>,
    ) -> Result<String, TokenError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            role,
            iat: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: Uuid::new_v4(),
            sid,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    /// Verifies signature, expiry, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&SecretString::from(secret), 900)
    }

    #[test]
    fn round_trip() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let id = Uuid::new_v4();
        let token = k.issue(id, Role::Driver, None).unwrap_or_default();
        assert_eq!(k.verify(&token).map(|c| c.sub).ok(), Some(id));
    }

    #[test]
    fn other_key_is_rejected() {
        let token = keys("0123456789abcdef0123456789abcdef")
            .issue(Uuid::new_v4(), Role::Admin, None)
            .unwrap_or_default();
        let other = keys("fedcba9876543210fedcba9876543210");
        assert_eq!(other.verify(&token).err(), Some(TokenError::Invalid));
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let token = k
            .issue(Uuid::new_v4(), Role::Driver, None)
            .unwrap_or_default();
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert_eq!(k.verify(&parts.join(".")).err(), Some(TokenError::Invalid));
    }
}
