//! Users and their idTags.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::reservations::Holds;
use super::{StoreError, Tx};
use crate::domain::{Email, IdTag, PersonName, Role};

/// A user as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: String,
    pub plan: String,
    pub blocked: bool,
    pub wallet_balance: Decimal,
    pub wallet_currency: String,
    pub created_at: DateTime<Utc>,
}

impl UserRecord {
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Driver)
    }
}

pub struct NewUser<'a> {
    pub email: &'a Email,
    pub name: &'a PersonName,
    pub password_hash: &'a str,
    pub role: Role,
    pub currency: &'a str,
}

pub(crate) const USER_COLUMNS: &str =
    "id, email, name, password_hash, role, plan, blocked, wallet_balance, \
                            wallet_currency::text AS wallet_currency, created_at";

/// Inserts the user and their app idTag. A taken email (any case) is a `Conflict`.
#[tracing::instrument(skip_all)]
pub async fn insert(tx: &mut Tx<'_>, user: NewUser<'_>) -> Result<UserRecord, StoreError> {
    let id = Uuid::now_v7();
    let record = sqlx::query_as::<_, UserRecord>(&format!(
        "INSERT INTO users (id, email, name, password_hash, role, wallet_currency) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(user.email.as_str())
    .bind(user.name.as_str())
    .bind(user.password_hash)
    .bind(user.role.as_str())
    .bind(user.currency)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        StoreError::from_unique(
            e,
            "users_email_lower_key",
            "an account with this email already exists",
        )
    })?;
    // 64 random bits make a collision practically impossible; retry anyway rather than fail.
    for _ in 0..3 {
        let tag = IdTag::generate();
        let inserted = sqlx::query(
            "INSERT INTO id_tags (id_tag, user_id, kind) VALUES ($1, $2, 'APP') \
             ON CONFLICT (id_tag) DO NOTHING",
        )
        .bind(tag.as_str())
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(record);
        }
    }
    Err(StoreError::Conflict("could not allocate an idTag".into()))
}

#[tracing::instrument(skip_all)]
pub async fn find_by_email(pool: &PgPool, email: &Email) -> Result<Option<UserRecord>, StoreError> {
    Ok(sqlx::query_as::<_, UserRecord>(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = $1"
    ))
    .bind(email.normalized())
    .fetch_optional(pool)
    .await?)
}

#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn find_by_id(pool: &PgPool, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
    Ok(
        sqlx::query_as::<_, UserRecord>(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// The user's app idTag (the one the app's sessions use).
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn app_id_tag(pool: &PgPool, user_id: Uuid) -> Result<String, StoreError> {
    sqlx::query_scalar::<_, String>(
        "SELECT id_tag FROM id_tags WHERE user_id = $1 AND kind = 'APP' ORDER BY created_at LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound)
}

/// What an Authorize answer tells a charger besides the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagDetails {
    pub expires_at: Option<DateTime<Utc>>,
    /// The token's group (1.6 parentIdTag, 2.0.1 groupIdToken): its own, else its owner's
    /// (the group of their app token, else the app token itself), so that all of a driver's
    /// cards share what the driver reserved.
    pub group: Option<String>,
    /// The token is in a transaction that has not ended (started in the last 24 hours) on
    /// another charger.
    pub in_transaction: bool,
}

/// Resolves a token for an Authorize answer: `resolve_id_tag`'s status, the token's expiry and
/// group, and whether it is already charging somewhere (one statement).
pub async fn resolve_for_authorize(
    pool: &PgPool,
    id_tag: &str,
    max_unpaid: Decimal,
    asking_charger: Option<&str>,
) -> Result<(TagStatus, TagDetails), StoreError> {
    resolve_with_details(pool, id_tag, Some(max_unpaid), asking_charger).await
}

/// `resolve_id_tag` with the token's expiry and group, and with `concurrent_beside` whether
/// it is in a transaction (started in the last 24 hours, not ended) on another charger;
/// without `max_unpaid` unpaid invoices do not count. It reads no `chargers` row: a charger's
/// Authorize never waits on what the API does with that table.
pub async fn resolve_with_details(
    pool: &PgPool,
    id_tag: &str,
    max_unpaid: Option<Decimal>,
    concurrent_beside: Option<&str>,
) -> Result<(TagStatus, TagDetails), StoreError> {
    let (status, details, _) =
        resolve_at(pool, id_tag, max_unpaid, concurrent_beside, None).await?;
    Ok((status, details))
}

/// `resolve_with_details`, and for a transaction starting on `at` (charger, connector) who
/// holds that connector (`reservations::holds_at`), read in the same statement.
#[tracing::instrument(skip_all)]
pub async fn resolve_at(
    pool: &PgPool,
    id_tag: &str,
    max_unpaid: Option<Decimal>,
    concurrent_beside: Option<&str>,
    at: Option<(&str, i32)>,
) -> Result<(TagStatus, TagDetails, Holds), StoreError> {
    type Row = (
        Option<Uuid>,
        Option<String>,
        Option<DateTime<Utc>>,
        Option<bool>,
        Decimal,
        Option<String>,
        bool,
        sqlx::types::Json<Vec<super::reservations::HoldRow>>,
    );
    static STATEMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let group =
            "COALESCE(t.group_id_tag, (SELECT COALESCE(a.group_id_tag, a.id_tag) FROM id_tags a \
             WHERE a.user_id = t.user_id AND a.kind = 'APP' ORDER BY a.created_at LIMIT 1))";
        format!(
            "SELECT t.user_id, t.status, t.expires_at, u.blocked, \
                 CASE WHEN $2 AND u.id IS NOT NULL THEN (SELECT COALESCE(sum(i.amount), 0) FROM invoices i \
                     WHERE i.user_id = u.id AND i.status IN ('PENDING', 'OVERDUE')) ELSE 0 END, \
                 {group}, \
                 $3::text IS NOT NULL AND t.id_tag IS NOT NULL AND EXISTS (SELECT 1 FROM charger_transactions x \
                     WHERE x.id_tag = t.id_tag AND x.charger_id <> $3 \
                     AND x.started_at > now() - interval '24 hours' AND x.stopped_at IS NULL), \
                 {holds} \
             FROM (SELECT 1) AS one \
             LEFT JOIN (id_tags t JOIN users u ON u.id = t.user_id) ON t.id_tag = $1",
            holds = crate::store::reservations::holds_json("$4::text", "$5::int", group),
        )
    });
    let (charger, connector) = at.unzip();
    let (user_id, status, expires_at, blocked, unpaid, group, in_transaction, holds) =
        sqlx::query_as::<_, Row>(&STATEMENT)
            .bind(id_tag)
            .bind(max_unpaid.is_some())
            .bind(concurrent_beside)
            .bind(charger)
            .bind(connector)
            .fetch_one(pool)
            .await?;
    let holds = Holds::from(holds.0);
    let (Some(user_id), Some(status), Some(blocked)) = (user_id, status, blocked) else {
        return Ok((TagStatus::Invalid, TagDetails::default(), holds));
    };
    let over = max_unpaid.is_some_and(|max| unpaid > max);
    let status = tag_status(user_id, &status, expires_at, blocked, over);
    Ok((
        status,
        TagDetails {
            expires_at,
            group,
            in_transaction,
        },
        holds,
    ))
}

/// The rule shared by both resolutions.
fn tag_status(
    user_id: Uuid,
    status: &str,
    expires_at: Option<DateTime<Utc>>,
    blocked: bool,
    over_credit: bool,
) -> TagStatus {
    if blocked || status == "BLOCKED" {
        TagStatus::Blocked { user_id }
    } else if status == "EXPIRED" || expires_at.is_some_and(|e| e <= Utc::now()) {
        TagStatus::Expired { user_id }
    } else if over_credit {
        TagStatus::NoCredit { user_id }
    } else {
        TagStatus::Accepted { user_id }
    }
}

/// What a charger's idTag stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagStatus {
    Accepted {
        user_id: Uuid,
    },
    /// The user's unpaid invoices exceed what is allowed: no new charging until they are paid.
    NoCredit {
        user_id: Uuid,
    },
    Blocked {
        user_id: Uuid,
    },
    Expired {
        user_id: Uuid,
    },
    Invalid,
}

/// Resolves an idTag presented by a charger: the tag's own status, its user's `blocked` flag
/// and, with `max_unpaid` (starting to charge), whether the user's unpaid invoices (PENDING or
/// OVERDUE) exceed it.
#[tracing::instrument(skip_all)]
pub async fn resolve_id_tag(
    pool: &PgPool,
    id_tag: &str,
    max_unpaid: Option<Decimal>,
) -> Result<TagStatus, StoreError> {
    let row = sqlx::query_as::<_, (Uuid, String, Option<DateTime<Utc>>, bool, Decimal)>(
        "SELECT t.user_id, t.status, t.expires_at, u.blocked, \
             CASE WHEN $2 THEN (SELECT COALESCE(sum(i.amount), 0) FROM invoices i \
                 WHERE i.user_id = u.id AND i.status IN ('PENDING', 'OVERDUE')) ELSE 0 END \
         FROM id_tags t JOIN users u ON u.id = t.user_id WHERE t.id_tag = $1",
    )
    .bind(id_tag)
    .bind(max_unpaid.is_some())
    .fetch_optional(pool)
    .await?;
    let row = row.map(|(user_id, status, expires, blocked, unpaid)| {
        let over = max_unpaid.is_some_and(|max| unpaid > max);
        (user_id, status, expires, blocked, over)
    });
    Ok(match row {
        None => TagStatus::Invalid,
        Some((user_id, status, expires, blocked, over)) => {
            tag_status(user_id, &status, expires, blocked, over)
        }
    })
}
