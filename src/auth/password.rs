//! argon2id password hashing (OWASP parameters: 19 MiB, 2 iterations, 1 lane). Hashing is CPU
//! work, so it runs on the blocking pool, never on an actor or request thread.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed")]
    Join,
}

/// Hashes `password` into a PHC string.
pub async fn hash(password: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError::Hash(e.to_string()))
    })
    .await
    .map_err(|_| HashError::Join)?
}

/// Checks `password` against a PHC string. `None` runs the same work against a dummy hash, so an
/// unknown email takes as long as a wrong password and reveals nothing.
pub async fn verify(password: String, phc: Option<String>) -> Result<bool, HashError> {
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY_HASH.to_string());
        let parsed = PasswordHash::new(&phc).map_err(|e| HashError::Hash(e.to_string()))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && ok)
    })
    .await
    .map_err(|_| HashError::Join)?
}

/// argon2id hash of a random string nobody knows, with the default parameters.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$Lp6uwbGRGJOD0AtEaiA/GW3l7dHq6kL7DCEj1sfvyjs";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let phc = hash("correct horse battery".into())
            .await
            .unwrap_or_default();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(phc.clone()))
            .await
            .unwrap_or(false));
        assert!(!verify("wrong".into(), Some(phc)).await.unwrap_or(true));
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        assert!(!verify("anything".into(), None).await.unwrap_or(true));
    }
}
