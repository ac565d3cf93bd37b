//! Stations and their connections in Postgres, normalised from the OCM mirror. Upserts go by
//! `ocm_id` and keep the internal UUIDs a station (and its connections) got when first seen, so
//! sessions and chargers keep pointing at the right station across syncs. Writes are batched
//! with `UNNEST` (one statement per table per batch).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{StoreError, Tx};

/// A station as normalised from one OCM POI (the input of [`upsert_ocm`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OcmStation {
    pub ocm_id: i32,
    pub name: String,
    pub address_line: Option<String>,
    pub town: Option<String>,
    pub state: Option<String>,
    pub postcode: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    pub operator: Option<String>,
    pub status: Option<String>,
    pub usage_type: Option<String>,
    pub usage_cost: Option<String>,
    pub number_of_points: Option<i32>,
    pub last_verified: Option<DateTime<Utc>>,
    pub ocm_modified_at: Option<DateTime<Utc>>,
    pub is_live: bool,
    pub connections: Vec<OcmConnection>,
}

/// One OCM connection (a connector type at a station, possibly several of it).
#[derive(Debug, Clone, PartialEq)]
pub struct OcmConnection {
    pub ocm_connection_id: Option<i32>,
    /// The connection type title, e.g. "CCS (Type 2)".
    pub connection_type: String,
    pub connection_type_id: Option<i32>,
    pub level: Option<i32>,
    pub power_kw: Option<f64>,
    pub current_type: Option<String>,
    pub amps: Option<i32>,
    pub voltage: Option<i32>,
    pub quantity: Option<i32>,
    pub status: Option<String>,
}

/// A station as the API shows it; also the JSON cached in Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationDetails {
    pub id: Uuid,
    pub ocm_id: Option<i32>,
    pub name: String,
    pub address: Option<String>,
    pub town: Option<String>,
    pub country: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    pub operator: Option<String>,
    pub status: Option<String>,
    pub usage_type: Option<String>,
    pub usage_cost: Option<String>,
    pub is_live: bool,
    pub connectors: Vec<ConnectorDetails>,
}

/// A connector of a station as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorDetails {
    pub connector_type: String,
    pub power_kw: Option<f64>,
    pub quantity: Option<i32>,
}

/// What Postgres holds for an OCM POI: enough to tell whether a sync must rewrite it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldStation {
    pub content_hash: Option<String>,
    pub is_live: bool,
}

/// The held state of the stations with these OCM IDs.
#[tracing::instrument(skip_all, fields(count = ocm_ids.len()))]
pub async fn held(pool: &PgPool, ocm_ids: &[i32]) -> Result<HashMap<i32, HeldStation>, StoreError> {
    let rows = sqlx::query(
        "SELECT ocm_id, ocm_content_hash, is_live FROM stations WHERE ocm_id = ANY($1)",
    )
    .bind(ocm_ids)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get("ocm_id")?,
                HeldStation {
                    content_hash: row.try_get("ocm_content_hash")?,
                    is_live: row.try_get("is_live")?,
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Inserts or updates stations by `ocm_id` (ids of existing stations never change), then makes
/// their connections match: upserted by (station, OCM connection id), the vanished deleted.
/// Returns the internal id of every station written, keyed by OCM ID.
#[tracing::instrument(skip_all, fields(count = stations.len()))]
pub async fn upsert_ocm(
    tx: &mut Tx<'_>,
    stations: &[(&OcmStation, &str)],
) -> Result<HashMap<i32, Uuid>, StoreError> {
    if stations.is_empty() {
        return Ok(HashMap::new());
    }
    let col = |f: fn(&OcmStation) -> Option<String>| -> Vec<Option<String>> {
        stations.iter().map(|(s, _)| f(s)).collect()
    };
    let rows = sqlx::query(
        r#"
        INSERT INTO stations (id, ocm_id, name, address_line, town, state, postcode, country,
            latitude, longitude, operator, status, usage_type, usage_cost, number_of_points,
            last_verified, ocm_modified_at, is_live, ocm_content_hash)
        SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::float8[], $10::float8[], $11::text[],
            $12::text[], $13::text[], $14::text[], $15::int[], $16::timestamptz[],
            $17::timestamptz[], $18::bool[], $19::text[])
        ON CONFLICT (ocm_id) DO UPDATE SET
            name = EXCLUDED.name, address_line = EXCLUDED.address_line, town = EXCLUDED.town,
            state = EXCLUDED.state, postcode = EXCLUDED.postcode, country = EXCLUDED.country,
            latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude,
            operator = EXCLUDED.operator, status = EXCLUDED.status,
            usage_type = EXCLUDED.usage_type, usage_cost = EXCLUDED.usage_cost,
            number_of_points = EXCLUDED.number_of_points, last_verified = EXCLUDED.last_verified,
            ocm_modified_at = EXCLUDED.ocm_modified_at, is_live = EXCLUDED.is_live,
            ocm_content_hash = EXCLUDED.ocm_content_hash, updated_at = now()
        RETURNING id, ocm_id
        "#,
    )
    .bind(stations.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(stations.iter().map(|(s, _)| s.ocm_id).collect::<Vec<_>>())
    .bind(
        stations
            .iter()
            .map(|(s, _)| s.name.clone())
            .collect::<Vec<_>>(),
    )
    .bind(col(|s| s.address_line.clone()))
    .bind(col(|s| s.town.clone()))
    .bind(col(|s| s.state.clone()))
    .bind(col(|s| s.postcode.clone()))
    .bind(col(|s| s.country.clone()))
    .bind(stations.iter().map(|(s, _)| s.latitude).collect::<Vec<_>>())
    .bind(
        stations
            .iter()
            .map(|(s, _)| s.longitude)
            .collect::<Vec<_>>(),
    )
    .bind(col(|s| s.operator.clone()))
    .bind(col(|s| s.status.clone()))
    .bind(col(|s| s.usage_type.clone()))
    .bind(col(|s| s.usage_cost.clone()))
    .bind(
        stations
            .iter()
            .map(|(s, _)| s.number_of_points)
            .collect::<Vec<_>>(),
    )
    .bind(
        stations
            .iter()
            .map(|(s, _)| s.last_verified)
            .collect::<Vec<_>>(),
    )
    .bind(
        stations
            .iter()
            .map(|(s, _)| s.ocm_modified_at)
            .collect::<Vec<_>>(),
    )
    .bind(stations.iter().map(|(s, _)| s.is_live).collect::<Vec<_>>())
    .bind(
        stations
            .iter()
            .map(|(_, h)| h.to_string())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut ids = HashMap::with_capacity(rows.len());
    for row in rows {
        ids.insert(
            row.try_get::<i32, _>("ocm_id")?,
            row.try_get::<Uuid, _>("id")?,
        );
    }
    replace_connections(tx, stations, &ids).await?;
    Ok(ids)
}

async fn replace_connections(
    tx: &mut Tx<'_>,
    stations: &[(&OcmStation, &str)],
    ids: &HashMap<i32, Uuid>,
) -> Result<(), StoreError> {
    let mut keep: Vec<(Uuid, &OcmConnection)> = Vec::new();
    for (station, _) in stations {
        if let Some(&sid) = ids.get(&station.ocm_id) {
            keep.extend(station.connections.iter().map(|c| (sid, c)));
        }
    }
    let station_ids: Vec<Uuid> = ids.values().copied().collect();
    // connections without an OCM id cannot be matched, so they are always replaced
    let kept_keys: Vec<(Uuid, i32)> = keep
        .iter()
        .filter_map(|(sid, c)| c.ocm_connection_id.map(|cid| (*sid, cid)))
        .collect();
    sqlx::query(
        r#"
        DELETE FROM connections c
        WHERE c.station_id = ANY($1)
          AND NOT EXISTS (SELECT 1 FROM UNNEST($2::uuid[], $3::int[]) AS k(sid, cid)
                          WHERE k.sid = c.station_id AND k.cid = c.ocm_connection_id)
        "#,
    )
    .bind(&station_ids)
    .bind(kept_keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind(kept_keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    if keep.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&OcmConnection) -> Option<String>| -> Vec<Option<String>> {
        keep.iter().map(|(_, c)| f(c)).collect()
    };
    let int = |f: fn(&OcmConnection) -> Option<i32>| -> Vec<Option<i32>> {
        keep.iter().map(|(_, c)| f(c)).collect()
    };
    sqlx::query(
        r#"
        INSERT INTO connections (id, station_id, ocm_connection_id, type, connection_type_id,
            level, power_kw, current_type, amps, voltage, quantity, status)
        SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::int[],
            $6::int[], $7::float8[], $8::text[], $9::int[], $10::int[], $11::int[], $12::text[])
        ON CONFLICT (station_id, ocm_connection_id) DO UPDATE SET
            type = EXCLUDED.type, connection_type_id = EXCLUDED.connection_type_id,
            level = EXCLUDED.level, power_kw = EXCLUDED.power_kw,
            current_type = EXCLUDED.current_type, amps = EXCLUDED.amps,
            voltage = EXCLUDED.voltage, quantity = EXCLUDED.quantity, status = EXCLUDED.status
        "#,
    )
    .bind(keep.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(keep.iter().map(|(sid, _)| *sid).collect::<Vec<_>>())
    .bind(int(|c| c.ocm_connection_id))
    .bind(
        keep.iter()
            .map(|(_, c)| c.connection_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(int(|c| c.connection_type_id))
    .bind(int(|c| c.level))
    .bind(keep.iter().map(|(_, c)| c.power_kw).collect::<Vec<_>>())
    .bind(text(|c| c.current_type.clone()))
    .bind(int(|c| c.amps))
    .bind(int(|c| c.voltage))
    .bind(int(|c| c.quantity))
    .bind(text(|c| c.status.clone()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the live stations with these OCM IDs as not live; returns the OCM IDs that changed.
#[tracing::instrument(skip_all, fields(count = ocm_ids.len()))]
pub async fn mark_not_live(tx: &mut Tx<'_>, ocm_ids: &[i32]) -> Result<Vec<i32>, StoreError> {
    if ocm_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar(
        "UPDATE stations SET is_live = FALSE, updated_at = now()
         WHERE ocm_id = ANY($1) AND is_live RETURNING ocm_id",
    )
    .bind(ocm_ids)
    .fetch_all(&mut **tx)
    .await?)
}

/// Marks live stations with an OCM ID in (lo, hi] (no upper bound when `hi` is `None`) that
/// are not in `present` as not live: OCM returned that ID range without them. Returns the OCM
/// IDs that changed.
#[tracing::instrument(skip_all, fields(lo, hi))]
pub async fn retire_missing(
    tx: &mut Tx<'_>,
    lo: i32,
    hi: Option<i32>,
    present: &[i32],
) -> Result<Vec<i32>, StoreError> {
    // two statements rather than `$2 IS NULL OR ocm_id <= $2`: `chargegrid all` syncs on the
    // charger side's pool, which plans a statement once without its values (ADR 024), and
    // that plan could not bound the range by the index
    let query = match hi {
        Some(hi) => sqlx::query_scalar(
            "UPDATE stations SET is_live = FALSE, updated_at = now()
             WHERE ocm_id > $1 AND ocm_id <= $2 AND is_live AND NOT (ocm_id = ANY($3))
             RETURNING ocm_id",
        )
        .bind(lo)
        .bind(hi),
        None => sqlx::query_scalar(
            "UPDATE stations SET is_live = FALSE, updated_at = now()
             WHERE ocm_id > $1 AND is_live AND NOT (ocm_id = ANY($2))
             RETURNING ocm_id",
        )
        .bind(lo),
    };
    Ok(query.bind(present).fetch_all(&mut **tx).await?)
}

/// The counter every write to stations or connections bumps (see the `ocm_sync` migration).
pub async fn generation(pool: &PgPool) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT generation FROM station_generation")
            .fetch_one(pool)
            .await?,
    )
}

const DETAILS_SELECT: &str = r#"
    SELECT s.id, s.ocm_id, s.name, s.address_line, s.town, s.country, s.latitude, s.longitude,
           s.operator, s.status, s.usage_type, s.usage_cost, s.is_live,
           COALESCE(c.types, '{}') AS types, COALESCE(c.powers, '{}') AS powers,
           COALESCE(c.quantities, '{}') AS quantities
    FROM stations s
    LEFT JOIN LATERAL (
        SELECT array_agg(type ORDER BY ocm_connection_id NULLS LAST, id) AS types,
               array_agg(power_kw ORDER BY ocm_connection_id NULLS LAST, id) AS powers,
               array_agg(quantity ORDER BY ocm_connection_id NULLS LAST, id) AS quantities
        FROM connections WHERE station_id = s.id
    ) c ON TRUE
"#;

fn details(row: &sqlx::postgres::PgRow) -> Result<StationDetails, sqlx::Error> {
    let types: Vec<String> = row.try_get("types")?;
    let powers: Vec<Option<f64>> = row.try_get("powers")?;
    let quantities: Vec<Option<i32>> = row.try_get("quantities")?;
    Ok(StationDetails {
        id: row.try_get("id")?,
        ocm_id: row.try_get("ocm_id")?,
        name: row.try_get("name")?,
        address: row.try_get("address_line")?,
        town: row.try_get("town")?,
        country: row.try_get("country")?,
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        operator: row.try_get("operator")?,
        status: row.try_get("status")?,
        usage_type: row.try_get("usage_type")?,
        usage_cost: row.try_get("usage_cost")?,
        is_live: row.try_get("is_live")?,
        connectors: types
            .into_iter()
            .zip(powers)
            .zip(quantities)
            .map(|((connector_type, power_kw), quantity)| ConnectorDetails {
                connector_type,
                power_kw,
                quantity,
            })
            .collect(),
    })
}

/// One station with its connectors, live or not (sessions may point at a retired one).
#[tracing::instrument(skip_all, fields(station_id = %id))]
pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<StationDetails>, StoreError> {
    let row = sqlx::query(&format!("{DETAILS_SELECT} WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(details).transpose()?)
}

/// Streams every live station to `each` (the search index load; constant memory here).
#[tracing::instrument(skip_all)]
pub async fn for_each_live(
    pool: &PgPool,
    mut each: impl FnMut(StationDetails),
) -> Result<u64, StoreError> {
    let sql = format!("{DETAILS_SELECT} WHERE s.is_live");
    let mut rows = sqlx::query(&sql).fetch(pool);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        each(details(&row)?);
        count += 1;
    }
    Ok(count)
}
