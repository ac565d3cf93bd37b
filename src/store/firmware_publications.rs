//! Firmware published by local controllers (OCPP 2.0.1 L05): the request, and its status as
//! the controller reports it.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PublicationRecord {
    pub id: Uuid,
    pub charger_id: String,
    pub request_id: i32,
    pub location: String,
    pub checksum: String,
    pub status: String,
    pub published_locations: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, charger_id, request_id, location, checksum, status, published_locations, created_at, updated_at";

/// Records a publication about to be sent (status SENT) with a new requestId. `None` when the
/// charger does not exist.
pub async fn create(
    pool: &PgPool,
    charger_id: &str,
    location: &str,
    checksum: &str,
    created_by: Uuid,
) -> Result<Option<PublicationRecord>, StoreError> {
    Ok(sqlx::query_as::<_, PublicationRecord>(&format!(
        "INSERT INTO firmware_publications (id, charger_id, request_id, location, checksum, status, created_by) \
         SELECT $1, c.id, nextval('firmware_publication_request_ids'), $3, $4, 'SENT', $5 \
         FROM chargers c WHERE c.id = $2 RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(charger_id)
    .bind(location)
    .bind(checksum)
    .bind(created_by)
    .fetch_optional(pool)
    .await?)
}

/// Sets a publication's status (and, when given, where it is published).
pub async fn set_status(
    pool: &PgPool,
    id: Uuid,
    status: &str,
) -> Result<Option<PublicationRecord>, StoreError> {
    Ok(sqlx::query_as::<_, PublicationRecord>(&format!(
        "UPDATE firmware_publications SET status = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(status)
    .fetch_optional(pool)
    .await?)
}

/// The controller's notification for `request_id`; `false` when no such publication is known.
pub async fn record_notification(
    pool: &PgPool,
    charger_id: &str,
    request_id: i32,
    status: &str,
    locations: &[String],
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE firmware_publications SET status = $3, updated_at = now(), \
             published_locations = CASE WHEN cardinality($4::text[]) > 0 THEN $4 ELSE published_locations END \
         WHERE charger_id = $1 AND request_id = $2 AND status <> 'UNPUBLISHED'",
    )
    .bind(charger_id)
    .bind(request_id)
    .bind(status)
    .bind(locations)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() > 0)
}

/// Marks the charger's publications of `checksum` unpublished.
pub async fn unpublished(
    pool: &PgPool,
    charger_id: &str,
    checksum: &str,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE firmware_publications SET status = 'UNPUBLISHED', updated_at = now() \
         WHERE charger_id = $1 AND checksum = $2 AND status <> 'UNPUBLISHED'",
    )
    .bind(charger_id)
    .bind(checksum)
    .execute(pool)
    .await?
    .rows_affected())
}

/// The charger's publications, newest first.
pub async fn of_charger(
    pool: &PgPool,
    charger_id: &str,
    limit: i64,
) -> Result<Vec<PublicationRecord>, StoreError> {
    Ok(sqlx::query_as::<_, PublicationRecord>(&format!(
        "SELECT {COLUMNS} FROM firmware_publications WHERE charger_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(charger_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
