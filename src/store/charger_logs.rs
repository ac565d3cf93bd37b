//! Logs chargers upload on request: the request (with the secret of its upload URL), the
//! charger's status notifications, and the file once uploaded.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LogRecord {
    pub id: Uuid,
    pub charger_id: String,
    pub log_type: String,
    pub request_id: i32,
    pub status: String,
    pub charger_status: Option<String>,
    pub file_name: Option<String>,
    pub size_bytes: Option<i64>,
    pub requested_at: DateTime<Utc>,
    pub uploaded_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, charger_id, log_type, request_id, status, charger_status, file_name, \
     size_bytes, requested_at, uploaded_at";

pub async fn create(
    pool: &PgPool,
    charger_id: &str,
    log_type: &str,
    upload_token: &str,
    requested_by: Uuid,
) -> Result<LogRecord, StoreError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO charger_logs (id, charger_id, log_type, upload_token, requested_by) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(charger_id)
    .bind(log_type)
    .bind(upload_token)
    .bind(requested_by)
    .fetch_one(pool)
    .await?)
}

pub async fn of_charger(
    pool: &PgPool,
    charger_id: &str,
    first: i64,
) -> Result<Vec<LogRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM charger_logs WHERE charger_id = $1 ORDER BY requested_at DESC LIMIT $2"
    ))
    .bind(charger_id)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<LogRecord>, StoreError> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM charger_logs WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// The request failed before any upload (the charger refused or could not be asked).
pub async fn failed(pool: &PgPool, id: Uuid, why: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE charger_logs SET status = 'FAILED', charger_status = $2, updated_at = now() \
         WHERE id = $1 AND status <> 'UPLOADED'",
    )
    .bind(id)
    .bind(why)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether the request whose URL carries `token` still waits for its upload (asked in the
/// last 24 hours, not failed, nothing uploaded yet).
pub async fn awaiting(pool: &PgPool, token: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM charger_logs WHERE upload_token = $1 AND content IS NULL \
             AND status IN ('REQUESTED', 'UPLOADING') AND requested_at > now() - interval '24 hours')",
    )
    .bind(token)
    .fetch_one(pool)
    .await?)
}

/// Stores an upload for the request whose URL carries `token`; false when there is none or it
/// was uploaded already (one upload per request).
pub async fn upload(
    pool: &PgPool,
    token: &str,
    file_name: Option<&str>,
    content: &[u8],
) -> Result<bool, StoreError> {
    let size = i64::try_from(content.len()).unwrap_or(i64::MAX);
    let done = sqlx::query(
        "UPDATE charger_logs SET content = $2, size_bytes = $3, \
             file_name = COALESCE($4, file_name), status = 'UPLOADED', uploaded_at = now(), updated_at = now() \
         WHERE upload_token = $1 AND content IS NULL AND status IN ('REQUESTED', 'UPLOADING') \
             AND requested_at > now() - interval '24 hours'",
    )
    .bind(token)
    .bind(content)
    .bind(size)
    .bind(file_name)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The uploaded file: (file name, content).
pub async fn content(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<(Option<String>, Vec<u8>)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT file_name, content FROM charger_logs WHERE id = $1 AND content IS NOT NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// A charger's status notification about its upload (the newest request, or the one with
/// `request_id`). The file's name from the charger's answer is kept too.
pub async fn charger_status(
    pool: &PgPool,
    charger_id: &str,
    request_id: Option<i32>,
    status: &str,
) -> Result<(), StoreError> {
    let ours = match status {
        "Uploading" => Some("UPLOADING"),
        "UploadFailed"
        | "UploadFailure"
        | "BadMessage"
        | "NotSupportedOperation"
        | "PermissionDenied" => Some("FAILED"),
        _ => None,
    };
    sqlx::query(
        "UPDATE charger_logs SET charger_status = $3, updated_at = now(), \
             status = CASE WHEN status = 'UPLOADED' OR $4::text IS NULL THEN status ELSE $4 END \
         WHERE id = (SELECT id FROM charger_logs WHERE charger_id = $1 \
             AND ($2::int IS NULL OR request_id = $2) ORDER BY requested_at DESC LIMIT 1)",
    )
    .bind(charger_id)
    .bind(request_id)
    .bind(status)
    .bind(ours)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn named(pool: &PgPool, id: Uuid, file_name: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE charger_logs SET file_name = COALESCE(file_name, $2) WHERE id = $1")
        .bind(id)
        .bind(file_name)
        .execute(pool)
        .await?;
    Ok(())
}
