//! Security profiles, the development CSMS CA, charger certificates and security events.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;

/// The charger connected with `achieved`: an upgrade it was asked for (`pending`) at or below
/// that becomes its minimum. True when something changed.
pub async fn promote_profile(pool: &PgPool, id: &str, achieved: i16) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE chargers SET security_profile = pending_security_profile, \
             pending_security_profile = NULL, updated_at = now() \
         WHERE id = $1 AND pending_security_profile IS NOT NULL \
           AND pending_security_profile <= $2",
    )
    .bind(id)
    .bind(achieved)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Asks for an upgrade to `profile` (in force once the charger first connects with it).
pub async fn request_profile(pool: &PgPool, id: &str, profile: i16) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE chargers SET pending_security_profile = $2, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(profile)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The charger authenticated with the password the server set: it becomes its only one.
pub async fn promote_password(pool: &PgPool, id: &str, phc: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE chargers SET password_hash = pending_password_hash, pending_password_hash = NULL, \
             pending_password_at = NULL, updated_at = now() \
         WHERE id = $1 AND pending_password_hash = $2",
    )
    .bind(id)
    .bind(phc)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Keeps a new password beside the charger's current one (rotation). False when another
/// rotation is still pending (less than a day old): one at a time.
pub async fn set_pending_password(pool: &PgPool, id: &str, phc: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE chargers SET pending_password_hash = $2, pending_password_at = now(), \
             updated_at = now() \
         WHERE id = $1 AND (pending_password_hash IS NULL \
                            OR pending_password_at < now() - interval '1 day')",
    )
    .bind(id)
    .bind(phc)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The development CSMS CA: the stored one, or `generated` stored now (the first replica to
/// start wins; every replica ends up with the same CA).
pub async fn dev_ca(
    pool: &PgPool,
    generated: impl FnOnce() -> Option<(String, String)>,
) -> Result<Option<(String, String)>, StoreError> {
    let stored: Option<(String, String)> =
        sqlx::query_as("SELECT certificate_pem, private_key_pem FROM csms_ca")
            .fetch_optional(pool)
            .await?;
    if stored.is_some() {
        return Ok(stored);
    }
    let Some((cert, key)) = generated() else {
        return Ok(None);
    };
    sqlx::query(
        "INSERT INTO csms_ca (certificate_pem, private_key_pem) VALUES ($1, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&cert)
    .bind(&key)
    .execute(pool)
    .await?;
    Ok(
        sqlx::query_as("SELECT certificate_pem, private_key_pem FROM csms_ca")
            .fetch_optional(pool)
            .await?,
    )
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CertificateRecord {
    pub serial: String,
    pub charger_id: String,
    pub certificate_type: String,
    pub subject: String,
    pub certificate_pem: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

const CERT_COLUMNS: &str = "serial, charger_id, certificate_type, subject, certificate_pem, \
                            not_before, not_after, issued_at, revoked_at, revoked_reason";

/// A certificate the CSMS CA signed for a charger.
pub struct NewCertificate<'a> {
    pub serial: &'a str,
    pub charger_id: &'a str,
    pub certificate_type: &'a str,
    pub subject: &'a str,
    pub pem: &'a str,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

pub async fn insert_certificate(pool: &PgPool, c: NewCertificate<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO charger_certificates \
             (serial, charger_id, certificate_type, subject, certificate_pem, not_before, not_after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.serial)
    .bind(c.charger_id)
    .bind(c.certificate_type)
    .bind(c.subject)
    .bind(c.pem)
    .bind(c.not_before)
    .bind(c.not_after)
    .execute(pool)
    .await?;
    Ok(())
}

/// A charger's certificates, newest first.
pub async fn certificates(
    pool: &PgPool,
    charger_id: &str,
    limit: i64,
) -> Result<Vec<CertificateRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CERT_COLUMNS} FROM charger_certificates WHERE charger_id = $1 \
         ORDER BY issued_at DESC LIMIT $2"
    ))
    .bind(charger_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Revokes a certificate of `charger_id`; the revoked record, or `None` if there is no such
/// certificate. Revoking twice keeps the first time and reason.
pub async fn revoke(
    pool: &PgPool,
    charger_id: &str,
    serial: &str,
    reason: &str,
) -> Result<Option<CertificateRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE charger_certificates SET revoked_at = COALESCE(revoked_at, now()), \
             revoked_reason = COALESCE(revoked_reason, $3) \
         WHERE charger_id = $1 AND serial = $2 RETURNING {CERT_COLUMNS}"
    ))
    .bind(charger_id)
    .bind(serial)
    .bind(reason)
    .fetch_optional(pool)
    .await?)
}

/// Serials of every revoked certificate that has not yet expired.
pub async fn revoked_serials(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT serial FROM charger_certificates WHERE revoked_at IS NOT NULL AND not_after > now()",
    )
    .fetch_all(pool)
    .await?)
}

/// Chargers connected to `node_id` whose newest valid certificate expires before `before`,
/// with the protocol they speak.
pub async fn expiring_here(
    pool: &PgPool,
    node_id: &str,
    before: DateTime<Utc>,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.protocol FROM chargers c \
         JOIN LATERAL (SELECT not_after FROM charger_certificates cc \
                       WHERE cc.charger_id = c.id AND cc.revoked_at IS NULL \
                       ORDER BY not_after DESC LIMIT 1) newest ON TRUE \
         WHERE c.online AND c.node_id = $1 AND newest.not_after < $2",
    )
    .bind(node_id)
    .bind(before)
    .fetch_all(pool)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecurityEventRecord {
    pub id: i64,
    pub charger_id: Option<String>,
    pub source: String,
    pub event_type: String,
    pub tech_info: Option<String>,
    pub critical: bool,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

/// A security event to record.
#[derive(Debug, Clone)]
pub struct NewSecurityEvent {
    pub charger_id: Option<String>,
    pub source: &'static str,
    pub event_type: String,
    pub tech_info: Option<String>,
    pub critical: bool,
    pub occurred_at: DateTime<Utc>,
}

pub async fn record_event(
    db: impl sqlx::PgExecutor<'_>,
    e: &NewSecurityEvent,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO security_events (charger_id, source, event_type, tech_info, critical, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&e.charger_id)
    .bind(e.source)
    .bind(&e.event_type)
    .bind(&e.tech_info)
    .bind(e.critical)
    .bind(e.occurred_at)
    .fetch_one(db)
    .await?)
}

/// Security events, newest first, of one charger or of all.
pub async fn events(
    pool: &PgPool,
    charger_id: Option<&str>,
    limit: i64,
) -> Result<Vec<SecurityEventRecord>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, charger_id, source, event_type, tech_info, critical, occurred_at, received_at \
         FROM security_events WHERE ($1::text IS NULL OR charger_id = $1) \
         ORDER BY received_at DESC, id DESC LIMIT $2",
    )
    .bind(charger_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Forgets a pending password the charger did not accept.
pub async fn clear_pending_password(pool: &PgPool, id: &str, phc: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE chargers SET pending_password_hash = NULL, pending_password_at = NULL \
         WHERE id = $1 AND pending_password_hash = $2",
    )
    .bind(id)
    .bind(phc)
    .execute(pool)
    .await?;
    Ok(())
}

/// Withdraws an upgrade the charger refused.
pub async fn request_profile_cancel(pool: &PgPool, id: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE chargers SET pending_security_profile = NULL WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
