//! What an access token may still do. A JWT proves who signed in and until when; whether the
//! user is still allowed (not blocked, not logged out, which role now) is read from Postgres and
//! remembered for a few seconds, so revocation, blocking and role changes take effect within
//! `ACCESS_CACHE` on every replica, on HTTP requests and on open subscription sockets alike.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use sqlx::PgPool;
use uuid::Uuid;

use super::Claims;
use crate::domain::Role;
use crate::store::StoreError;

/// How long a verdict is reused before Postgres is asked again.
pub const ACCESS_CACHE: Duration = Duration::from_secs(2);
/// Verdicts kept before stale ones are swept.
const SWEEP_ABOVE: usize = 100_000;

/// The verdict on a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Allowed, with the user's role as it is now (which may differ from the token's).
    Allowed(Role),
    /// The user is blocked or gone, or the sign-in was logged out.
    Revoked,
}

#[derive(Default)]
pub struct AccessCheck {
    verdicts: DashMap<(Uuid, Option<Uuid>), (Access, Instant)>,
}

impl AccessCheck {
    /// The verdict for `claims`, from memory when fresh, else from Postgres.
    pub async fn check(&self, db: &PgPool, claims: &Claims) -> Result<Access, StoreError> {
        let key = (claims.sub, claims.sid);
        if let Some(entry) = self.verdicts.get(&key) {
            if entry.1.elapsed() < ACCESS_CACHE {
                return Ok(entry.0);
            }
        }
        let row = sqlx::query_as::<_, (String, bool, bool)>(
            "SELECT u.role, u.blocked, \
                    $2::uuid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM refresh_tokens t \
                        WHERE t.family_id = $2 AND t.revoked_at IS NULL) \
             FROM users u WHERE u.id = $1",
        )
        .bind(claims.sub)
        .bind(claims.sid)
        .fetch_optional(db)
        .await?;
        let access = match row {
            Some((role, false, false)) => {
                Access::Allowed(Role::parse(&role).unwrap_or(Role::Driver))
            }
            _ => Access::Revoked,
        };
        if self.verdicts.len() > SWEEP_ABOVE {
            self.verdicts
                .retain(|_, (_, at)| at.elapsed() < ACCESS_CACHE);
        }
        self.verdicts.insert(key, (access, Instant::now()));
        Ok(access)
    }

    /// Forgets what is remembered about `user` (after a change made on this replica).
    pub fn forget(&self, user: Uuid) {
        self.verdicts.retain(|(sub, _), _| *sub != user);
    }
}
