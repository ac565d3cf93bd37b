//! Firmware campaigns: the campaign, each charger's turn and progress. The one module that
//! writes them; every change is a guarded statement, so the runner on every replica, the
//! chargers' notifications and the API can act at once.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CampaignRecord {
    pub id: Uuid,
    pub location: String,
    pub retrieve_at: Option<DateTime<Utc>>,
    pub signature: Option<String>,
    pub signing_certificate: Option<String>,
    pub status: String,
    pub concurrency: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const CAMPAIGN_COLUMNS: &str = "id, location, retrieve_at, signature, signing_certificate, \
     status, concurrency, max_attempts, created_at, updated_at";

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CampaignChargerRecord {
    pub campaign_id: Uuid,
    pub charger_id: String,
    pub state: String,
    pub status: String,
    pub request_id: i32,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

const CHARGER_COLUMNS: &str =
    "campaign_id, charger_id, state, status, request_id, attempts, last_error, updated_at";

/// A campaign to start, as the API validated it.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub location: String,
    pub retrieve_at: Option<DateTime<Utc>>,
    pub signature: Option<String>,
    pub signing_certificate: Option<String>,
    pub concurrency: i32,
    pub max_attempts: i32,
    pub created_by: Uuid,
    pub charger_ids: Vec<String>,
}

/// Creates a RUNNING campaign with every charger QUEUED; `Err` names chargers that do not exist.
pub async fn create(
    pool: &PgPool,
    new: &NewCampaign,
) -> Result<Result<CampaignRecord, Vec<String>>, StoreError> {
    let mut tx = pool.begin().await?;
    let unknown: Vec<String> = sqlx::query_scalar(
        "SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM chargers x WHERE x.id = c)",
    )
    .bind(&new.charger_ids)
    .fetch_all(&mut *tx)
    .await?;
    if !unknown.is_empty() {
        return Ok(Err(unknown));
    }
    let campaign: CampaignRecord = sqlx::query_as(&format!(
        "INSERT INTO firmware_campaigns (id, location, retrieve_at, signature, signing_certificate, \
             concurrency, max_attempts, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         RETURNING {CAMPAIGN_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(&new.location)
    .bind(new.retrieve_at)
    .bind(&new.signature)
    .bind(&new.signing_certificate)
    .bind(new.concurrency)
    .bind(new.max_attempts)
    .bind(new.created_by)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO firmware_campaign_chargers (campaign_id, charger_id) \
         SELECT $1, c FROM unnest($2::text[]) AS c ON CONFLICT DO NOTHING",
    )
    .bind(campaign.id)
    .bind(&new.charger_ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(campaign))
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<CampaignRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM firmware_campaigns WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

pub async fn recent(pool: &PgPool, first: i64) -> Result<Vec<CampaignRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM firmware_campaigns ORDER BY created_at DESC LIMIT $1"
    ))
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// A page of a campaign's chargers, by charger id, after `after`.
pub async fn chargers_of(
    pool: &PgPool,
    campaign_id: Uuid,
    after: Option<&str>,
    first: i64,
) -> Result<Vec<CampaignChargerRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CHARGER_COLUMNS} FROM firmware_campaign_chargers \
         WHERE campaign_id = $1 AND ($2::text IS NULL OR charger_id > $2) ORDER BY charger_id LIMIT $3"
    ))
    .bind(campaign_id)
    .bind(after)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// The newest change of a campaign or any of its chargers (what a live view waits for).
pub async fn changed_at(pool: &PgPool, id: Uuid) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT GREATEST(c.updated_at, (SELECT max(updated_at) FROM firmware_campaign_chargers \
             WHERE campaign_id = c.id)) FROM firmware_campaigns c WHERE c.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .flatten())
}

pub async fn running(pool: &PgPool) -> Result<Vec<CampaignRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM firmware_campaigns WHERE status = 'RUNNING' ORDER BY created_at"
    ))
    .fetch_all(pool)
    .await?)
}

/// Takes the next chargers of a running campaign whose turn it is: online, queued, their
/// retry time reached, as many as its concurrency leaves room for. The campaign's row is locked
/// for it, so replicas running the same tick never claim beyond the limit.
pub async fn claim(
    pool: &PgPool,
    campaign_id: Uuid,
) -> Result<Vec<CampaignChargerRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    let room: Option<i64> = sqlx::query_scalar(
        "SELECT c.concurrency - (SELECT count(*) FROM firmware_campaign_chargers k \
             WHERE k.campaign_id = c.id AND k.state = 'SENT') \
         FROM firmware_campaigns c WHERE c.id = $1 AND c.status = 'RUNNING' FOR UPDATE SKIP LOCKED",
    )
    .bind(campaign_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(room) = room.filter(|room| *room > 0) else {
        return Ok(Vec::new());
    };
    let claimed = sqlx::query_as(&format!(
        "UPDATE firmware_campaign_chargers SET state = 'SENT', status = 'Sent', \
             attempts = attempts + 1, sent_at = now(), updated_at = now() \
         WHERE (campaign_id, charger_id) IN ( \
             SELECT k.campaign_id, k.charger_id FROM firmware_campaign_chargers k \
             JOIN chargers c ON c.id = k.charger_id \
             WHERE k.campaign_id = $1 AND k.state = 'QUEUED' AND c.online \
                 AND (k.next_attempt_at IS NULL OR k.next_attempt_at <= now()) \
             ORDER BY k.attempts, k.charger_id LIMIT $2) \
         RETURNING {CHARGER_COLUMNS}"
    ))
    .bind(campaign_id)
    .bind(room)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// A sent charger's attempt failed (refused, unanswered, a failure status, silence): queued
/// again after `retry_secs`, or FAILED once it used its campaign's attempts.
pub async fn attempt_failed(
    pool: &PgPool,
    campaign_id: Uuid,
    charger_id: &str,
    status: &str,
    reason: &str,
    retry_secs: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE firmware_campaign_chargers k SET \
             state = CASE WHEN k.attempts >= c.max_attempts THEN 'FAILED' ELSE 'QUEUED' END, \
             status = $3, last_error = $4, \
             next_attempt_at = now() + make_interval(secs => $5), updated_at = now() \
         FROM firmware_campaigns c \
         WHERE c.id = k.campaign_id AND k.campaign_id = $1 AND k.charger_id = $2 AND k.state = 'SENT'",
    )
    .bind(campaign_id)
    .bind(charger_id)
    .bind(status)
    .bind(reason)
    .bind(retry_secs as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives back a claimed charger that turned out to be offline, without counting the attempt.
pub async fn unclaim(pool: &PgPool, campaign_id: Uuid, charger_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE firmware_campaign_chargers SET state = 'QUEUED', status = 'Queued', \
             attempts = attempts - 1, updated_at = now() \
         WHERE campaign_id = $1 AND charger_id = $2 AND state = 'SENT'",
    )
    .bind(campaign_id)
    .bind(charger_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// What a charger's FirmwareStatusNotification says about the campaign it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Still going (Downloading, Installing, ...).
    Going,
    /// Installed.
    Done,
    /// A failure (DownloadFailed, InstallationFailed, InvalidSignature, ...).
    Failed,
}

impl Progress {
    /// What a FirmwareStatusNotification status (1.6, its security extension or 2.0.1) means.
    pub fn of(status: &str) -> Self {
        match status {
            "Installed" => Self::Done,
            "DownloadFailed"
            | "InstallationFailed"
            | "InstallVerificationFailed"
            | "InvalidSignature"
            | "InvalidCertificate"
            | "RevokedCertificate" => Self::Failed,
            _ => Self::Going,
        }
    }
}

/// The sent campaign charger a notification is about: the one with that 2.0.1 requestId, or
/// (1.6 has none) the charger's one sent campaign.
pub async fn sent_for(
    pool: &PgPool,
    charger_id: &str,
    request_id: Option<i32>,
) -> Result<Option<CampaignChargerRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CHARGER_COLUMNS} FROM firmware_campaign_chargers \
         WHERE charger_id = $1 AND state = 'SENT' AND ($2::int IS NULL OR request_id = $2) \
         ORDER BY sent_at DESC LIMIT 1"
    ))
    .bind(charger_id)
    .bind(request_id)
    .fetch_optional(pool)
    .await?)
}

/// Records a status that is progress or success.
pub async fn progressed(
    pool: &PgPool,
    campaign_id: Uuid,
    charger_id: &str,
    status: &str,
    done: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE firmware_campaign_chargers SET status = $3, \
             state = CASE WHEN $4 THEN 'DONE' ELSE state END, updated_at = now() \
         WHERE campaign_id = $1 AND charger_id = $2 AND state = 'SENT'",
    )
    .bind(campaign_id)
    .bind(charger_id)
    .bind(status)
    .bind(done)
    .execute(pool)
    .await?;
    Ok(())
}

/// Sent chargers silent for `stale_secs` (counted from the campaign's `retrieve_at` when that
/// is later: a 1.6 charger says nothing before it starts the download): (campaign, charger).
pub async fn stale(pool: &PgPool, stale_secs: i64) -> Result<Vec<(Uuid, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT k.campaign_id, k.charger_id FROM firmware_campaign_chargers k \
         JOIN firmware_campaigns c ON c.id = k.campaign_id \
         WHERE k.state = 'SENT' \
             AND GREATEST(k.updated_at, c.retrieve_at) < now() - make_interval(secs => $1)",
    )
    .bind(stale_secs as f64)
    .fetch_all(pool)
    .await?)
}

/// Ends running campaigns with no charger left to go: COMPLETED when every charger installed
/// it, else FAILED.
pub async fn finish_done(pool: &PgPool) -> Result<Vec<Uuid>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE firmware_campaigns c SET updated_at = now(), status = CASE WHEN NOT EXISTS \
             (SELECT 1 FROM firmware_campaign_chargers k WHERE k.campaign_id = c.id AND k.state <> 'DONE') \
             THEN 'COMPLETED' ELSE 'FAILED' END \
         WHERE c.status = 'RUNNING' AND NOT EXISTS (SELECT 1 FROM firmware_campaign_chargers k \
             WHERE k.campaign_id = c.id AND k.state IN ('QUEUED', 'SENT')) \
         RETURNING c.id",
    )
    .fetch_all(pool)
    .await?)
}

/// Cancels a running campaign: chargers not yet sent are CANCELLED (those updating finish).
pub async fn cancel(pool: &PgPool, id: Uuid) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE firmware_campaigns SET status = 'CANCELLED', updated_at = now() WHERE id = $1 AND status = 'RUNNING'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE firmware_campaign_chargers SET state = 'CANCELLED', status = 'Cancelled', updated_at = now() \
         WHERE campaign_id = $1 AND state = 'QUEUED'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}
