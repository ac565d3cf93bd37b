//! Local authorization lists: named lists of tokens, the list each charger is given, and what
//! each charger holds (version and entries), from which differential updates are computed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// One token as a charger's list holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// Our token type (`ISO14443`, `CENTRAL`, ...).
    pub token_type: String,
    /// `Accepted`, `Blocked` or `Expired`.
    pub status: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub group: Option<String>,
}

/// One token in a SendLocalList: with its entry, or without (a difference removing it); its
/// type either way (a 2.0.1 station knows a token by value and type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListChange {
    pub id_tag: String,
    pub token_type: String,
    pub entry: Option<ListEntry>,
}

/// idTag -> entry, in idTag order.
pub type Entries = BTreeMap<String, ListEntry>;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ListRecord {
    pub id: Uuid,
    pub name: String,
    pub size: i64,
    pub created_at: DateTime<Utc>,
}

/// What a charger holds and is given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChargerList {
    pub list_id: Option<Uuid>,
    pub version: i32,
    pub entries: Entries,
    pub synced_at: Option<DateTime<Utc>>,
    pub reported_version: Option<i32>,
    pub reported_at: Option<DateTime<Utc>>,
}

const LIST_COLUMNS: &str = "l.id, l.name, \
     (SELECT count(*) FROM local_list_tokens m WHERE m.list_id = l.id) AS size, l.created_at";

pub async fn create(pool: &PgPool, name: &str) -> Result<ListRecord, StoreError> {
    sqlx::query_as(
        "WITH l AS (INSERT INTO local_lists (id, name) VALUES ($1, $2) RETURNING *) \
         SELECT l.id, l.name, 0::bigint AS size, l.created_at FROM l",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .fetch_one(pool)
    .await
    .map_err(|e| StoreError::from_unique(e, "local_lists_name_key", "a list with this name exists"))
}

pub async fn all(pool: &PgPool) -> Result<Vec<ListRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {LIST_COLUMNS} FROM local_lists l ORDER BY l.name LIMIT 1000"
    ))
    .fetch_all(pool)
    .await?)
}

pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<ListRecord>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {LIST_COLUMNS} FROM local_lists l WHERE l.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// The tokens of a list, by token, at most `first`.
pub async fn tokens(pool: &PgPool, id: Uuid, first: i64) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id_tag FROM local_list_tokens WHERE list_id = $1 ORDER BY id_tag LIMIT $2",
    )
    .bind(id)
    .bind(first)
    .fetch_all(pool)
    .await?)
}

/// Adds tokens to a list; returns the ones that are no registered token (nothing is added then).
pub async fn add_tokens(
    pool: &PgPool,
    id: Uuid,
    id_tags: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut tx = pool.begin().await?;
    let unknown: Vec<String> = sqlx::query_scalar(
        "SELECT t FROM unnest($1::text[]) AS t WHERE NOT EXISTS (SELECT 1 FROM id_tags i WHERE i.id_tag = t)",
    )
    .bind(id_tags)
    .fetch_all(&mut *tx)
    .await?;
    if !unknown.is_empty() {
        return Ok(unknown);
    }
    sqlx::query(
        "INSERT INTO local_list_tokens (list_id, id_tag) SELECT $1, t FROM unnest($2::text[]) AS t \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(id_tags)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE local_lists SET updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Vec::new())
}

pub async fn remove_tokens(pool: &PgPool, id: Uuid, id_tags: &[String]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM local_list_tokens WHERE list_id = $1 AND id_tag = ANY($2)")
        .bind(id)
        .bind(id_tags)
        .execute(pool)
        .await?;
    Ok(())
}

/// Gives a charger a list (None: no list; its next push empties the charger's).
pub async fn assign(
    pool: &PgPool,
    charger_id: &str,
    list_id: Option<Uuid>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO charger_local_lists (charger_id, list_id) VALUES ($1, $2) \
         ON CONFLICT (charger_id) DO UPDATE SET list_id = EXCLUDED.list_id",
    )
    .bind(charger_id)
    .bind(list_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// What a charger holds and is given; the default when it never had a list.
pub async fn of_charger(pool: &PgPool, charger_id: &str) -> Result<ChargerList, StoreError> {
    type Row = (
        Option<Uuid>,
        i32,
        sqlx::types::Json<Entries>,
        Option<DateTime<Utc>>,
        Option<i32>,
        Option<DateTime<Utc>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT list_id, version, entries, synced_at, reported_version, reported_at \
         FROM charger_local_lists WHERE charger_id = $1",
    )
    .bind(charger_id)
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(
            |(list_id, version, entries, synced_at, reported_version, reported_at)| ChargerList {
                list_id,
                version,
                entries: entries.0,
                synced_at,
                reported_version,
                reported_at,
            },
        )
        .unwrap_or_default())
}

/// The entries a charger should hold now: its list's tokens with their current status.
pub async fn wanted(pool: &PgPool, charger_id: &str) -> Result<Entries, StoreError> {
    type Row = (
        String,
        String,
        String,
        Option<DateTime<Utc>>,
        bool,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.id_tag, t.token_type, t.status, t.expires_at, u.blocked, \
             COALESCE(t.group_id_tag, (SELECT COALESCE(a.group_id_tag, a.id_tag) FROM id_tags a \
                 WHERE a.user_id = t.user_id AND a.kind = 'APP' ORDER BY a.created_at LIMIT 1)) \
         FROM charger_local_lists c JOIN local_list_tokens m ON m.list_id = c.list_id \
         JOIN id_tags t ON t.id_tag = m.id_tag JOIN users u ON u.id = t.user_id \
         WHERE c.charger_id = $1",
    )
    .bind(charger_id)
    .fetch_all(pool)
    .await?;
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|(id_tag, token_type, status, expires_at, blocked, group)| {
            let status = if blocked || status == "BLOCKED" {
                "Blocked"
            } else if status == "EXPIRED" || expires_at.is_some_and(|e| e <= now) {
                "Expired"
            } else {
                "Accepted"
            };
            (
                id_tag,
                ListEntry {
                    token_type,
                    status: status.into(),
                    expires_at,
                    group,
                },
            )
        })
        .collect())
}

/// Records that the charger accepted `version` holding `entries` (never backwards: a slower
/// push from another replica does not overwrite a newer one).
pub async fn synced(
    pool: &PgPool,
    charger_id: &str,
    version: i32,
    entries: &Entries,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO charger_local_lists (charger_id, version, entries, synced_at, reported_version, reported_at) \
         VALUES ($1, $2, $3, now(), $2, now()) \
         ON CONFLICT (charger_id) DO UPDATE SET version = $2, entries = $3, synced_at = now(), \
             reported_version = $2, reported_at = now() \
         WHERE charger_local_lists.version < $2",
    )
    .bind(charger_id)
    .bind(version)
    .bind(sqlx::types::Json(entries))
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the version a charger reported (GetLocalListVersion).
pub async fn reported(pool: &PgPool, charger_id: &str, version: i32) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE charger_local_lists SET reported_version = $2, reported_at = now() WHERE charger_id = $1",
    )
    .bind(charger_id)
    .bind(version)
    .execute(pool)
    .await?;
    Ok(())
}

/// Online chargers whose list holds `id_tag` (to update after the token changed).
pub async fn online_chargers_with(pool: &PgPool, id_tag: &str) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT c.charger_id FROM charger_local_lists c JOIN chargers ch ON ch.id = c.charger_id \
         WHERE ch.online AND (c.entries ? $1 OR EXISTS (SELECT 1 FROM local_list_tokens m \
             WHERE m.list_id = c.list_id AND m.id_tag = $1))",
    )
    .bind(id_tag)
    .fetch_all(pool)
    .await?)
}

/// Online chargers given `list_id` (to update after the list changed).
pub async fn online_chargers_of(pool: &PgPool, list_id: Uuid) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT c.charger_id FROM charger_local_lists c JOIN chargers ch ON ch.id = c.charger_id \
         WHERE ch.online AND c.list_id = $1",
    )
    .bind(list_id)
    .fetch_all(pool)
    .await?)
}

/// Whether the charger has anything to do with local lists (a list given, or one held).
pub async fn involved(pool: &PgPool, charger_id: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM charger_local_lists WHERE charger_id = $1 \
             AND (list_id IS NOT NULL OR version > 0))",
    )
    .bind(charger_id)
    .fetch_one(pool)
    .await?)
}

/// The whole list as changes.
pub fn whole(wanted: &Entries) -> Vec<ListChange> {
    wanted
        .iter()
        .map(|(tag, entry)| ListChange {
            id_tag: tag.clone(),
            token_type: entry.token_type.clone(),
            entry: Some(entry.clone()),
        })
        .collect()
}

/// The difference from what a charger holds to what it should: changed or new entries with
/// their content, removed ones without.
pub fn difference(held: &Entries, wanted: &Entries) -> Vec<ListChange> {
    let mut out: Vec<ListChange> = wanted
        .iter()
        .filter(|(tag, entry)| held.get(*tag) != Some(entry))
        .map(|(tag, entry)| ListChange {
            id_tag: tag.clone(),
            token_type: entry.token_type.clone(),
            entry: Some(entry.clone()),
        })
        .collect();
    out.extend(
        held.iter()
            .filter(|(tag, _)| !wanted.contains_key(*tag))
            .map(|(tag, entry)| ListChange {
                id_tag: tag.clone(),
                token_type: entry.token_type.clone(),
                entry: None,
            }),
    );
    out.sort_by(|a, b| a.id_tag.cmp(&b.id_tag));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: &str) -> ListEntry {
        ListEntry {
            token_type: "ISO14443".into(),
            status: status.into(),
            expires_at: None,
            group: None,
        }
    }

    #[test]
    fn the_difference_names_new_changed_and_removed_tokens_only() {
        let held: Entries = [
            ("A".to_string(), entry("Accepted")),
            ("B".to_string(), entry("Accepted")),
            ("C".to_string(), entry("Accepted")),
        ]
        .into();
        let wanted: Entries = [
            ("A".to_string(), entry("Accepted")),
            ("B".to_string(), entry("Blocked")),
            ("D".to_string(), entry("Accepted")),
        ]
        .into();
        let change = |tag: &str, entry: Option<ListEntry>| ListChange {
            id_tag: tag.into(),
            token_type: "ISO14443".into(),
            entry,
        };
        assert_eq!(
            difference(&held, &wanted),
            vec![
                change("B", Some(entry("Blocked"))),
                change("C", None),
                change("D", Some(entry("Accepted"))),
            ]
        );
        assert!(difference(&wanted, &wanted).is_empty());
    }
}
