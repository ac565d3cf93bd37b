//! HTTP Basic authentication of chargers at the WebSocket handshake (OCPP security profiles 1
//! and 2). Passwords are stored as argon2 hashes; a successful check is remembered for a while
//! as a SHA-256 digest so reconnect storms do not cost an argon2 verification per socket.

use std::time::{Duration, Instant};

use base64::Engine;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::password;

/// How long a verified password is trusted without running argon2 again.
const VERIFIED_TTL: Duration = Duration::from_secs(600);

/// The outcome of checking a charger's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicAuth {
    Ok,
    /// No `Authorization: Basic` header, or not decodable.
    Missing,
    /// Wrong user name or password.
    Wrong,
}

/// Remembers recently verified (charger, password digest) pairs.
#[derive(Default)]
pub struct ChargerAuthCache {
    verified: DashMap<String, ([u8; 32], Instant)>,
}

impl ChargerAuthCache {
    /// Forgets a charger's verified password (after it changed).
    pub fn forget(&self, charger_id: &str) {
        self.verified.remove(charger_id);
    }

    /// Checks an `Authorization` header value against the stored argon2 hash.
    pub async fn check(&self, charger_id: &str, header: Option<&str>, phc: &str) -> BasicAuth {
        let Some((user, pass)) = header.and_then(decode_basic) else {
            return BasicAuth::Missing;
        };
        if user != charger_id {
            return BasicAuth::Wrong;
        }
        let digest: [u8; 32] = Sha256::digest(pass.as_bytes()).into();
        if let Some(entry) = self.verified.get(charger_id) {
            let (cached, at) = *entry;
            if cached == digest && at.elapsed() < VERIFIED_TTL {
                return BasicAuth::Ok;
            }
        }
        match password::verify(pass, Some(phc.to_string())).await {
            Ok(true) => {
                self.verified
                    .insert(charger_id.to_string(), (digest, Instant::now()));
                BasicAuth::Ok
            }
            _ => BasicAuth::Wrong,
        }
    }
}

/// `Basic base64(user:password)` -> (user, password).
fn decode_basic(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_credentials() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("CP-1:s3cret:with:colons")
        );
        assert_eq!(
            decode_basic(&header),
            Some(("CP-1".to_string(), "s3cret:with:colons".to_string()))
        );
        assert_eq!(decode_basic("Bearer x"), None);
        assert_eq!(decode_basic("Basic !!!"), None);
    }
}
