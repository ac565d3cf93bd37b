//! argon2id password hashing (OWASP parameters: 19 MiB, 2 iterations, 1 lane). Hashing is CPU
//! work, so it runs on the blocking pool, never on an actor or request thread, and at most one
//! hash per core runs at once: each takes 19 MiB, and without a bound a burst of logins or
//! charger handshakes (a reconnect storm, a password-guessing client) would run hundreds at
//! once, exhausting memory instead of queueing for CPU.

use std::sync::OnceLock;

use tokio::sync::Semaphore;

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

/// The process-wide argon2 slots: one per core.
fn slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS
        .get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

/// Counts argon2 runs in progress (tests check the bound).
#[cfg(test)]
mod running {
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub static NOW: AtomicUsize = AtomicUsize::new(0);
    pub static PEAK: AtomicUsize = AtomicUsize::new(0);

    pub struct Guard;

    pub fn enter() -> Guard {
        let now = NOW.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        // long enough for runs that are not bounded to overlap
        std::thread::sleep(std::time::Duration::from_millis(20));
        Guard
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            NOW.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Hashes `password` into a PHC string.
pub async fn hash(password: String) -> Result<String, HashError> {
    let _slot = slots().acquire().await.map_err(|_| HashError::Join)?;
    tokio::task::spawn_blocking(move || {
        #[cfg(test)]
        let _running = running::enter();
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
    let _slot = slots().acquire().await.map_err(|_| HashError::Join)?;
    tokio::task::spawn_blocking(move || {
        #[cfg(test)]
        let _running = running::enter();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_verifications_runs_at_most_one_per_core_at_once() {
        let phc = hash("pw".into()).await.unwrap_or_default();
        let burst: Vec<_> = (0..16)
            .map(|_| tokio::spawn(verify("pw".into(), Some(phc.clone()))))
            .collect();
        for handle in burst {
            assert!(matches!(handle.await, Ok(Ok(true))));
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let peak = running::PEAK.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            peak >= 1 && peak <= cores,
            "{peak} argon2 runs at once on {cores} cores"
        );
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        assert!(!verify("anything".into(), None).await.unwrap_or(true));
    }
}
