//! The `ocm_pois` collection: one document per OCM POI with its raw structure, `externalId` (the
//! OCM ID, unique), a GeoJSON `location` (2dsphere) and sync metadata
//! (`sync: { modifiedAt, syncedAt, contentHash, live, form }`). Writes are unordered bulk
//! upserts (the 8.0 `bulkWrite` command), falling back to concurrent single upserts on servers
//! without it. Only POIs whose content hash or liveness changed are written, so a re-sync of
//! unchanged data writes nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{IndexOptions, ReplaceOneModel, Sphere2DIndexVersion, WriteModel};
use mongodb::{Collection, Database, IndexModel};
use serde_json::Value;

use super::poi::Poi;

/// Name of the mirror collection.
pub const COLLECTION: &str = "ocm_pois";

/// `$in` lists longer than this are split: some servers (SecantusDB) slow down sharply on long
/// `$in` lists, while range queries stay cheap.
const IN_CHUNK: usize = 100;

/// Writes per bulk request.
const BULK_CHUNK: usize = 1000;

/// Concurrent single upserts when `bulkWrite` is unavailable.
const FALLBACK_CONCURRENCY: usize = 16;

pub fn collection(db: &Database) -> Collection<Document> {
    db.collection(COLLECTION)
}

/// Creates the mirror's indexes (idempotent).
pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    let pois = collection(db);
    pois.create_index(
        IndexModel::builder()
            .keys(doc! { "externalId": 1 })
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("externalId_unique".to_string())
                    .build(),
            )
            .build(),
    )
    .await?;
    pois.create_index(
        IndexModel::builder()
            .keys(doc! { "location": "2dsphere" })
            .options(
                IndexOptions::builder()
                    .name("location_2dsphere".to_string())
                    // stated explicitly so re-creating the index is a no-op on every server
                    .sphere_2d_index_version(Sphere2DIndexVersion::V3)
                    .build(),
            )
            .build(),
    )
    .await?;
    pois.create_index(
        IndexModel::builder()
            .keys(doc! { "sync.modifiedAt": 1 })
            .options(
                IndexOptions::builder()
                    .name("sync_modified".to_string())
                    .build(),
            )
            .build(),
    )
    .await?;
    Ok(())
}

/// What the mirror holds for a POI: enough to tell whether a sync must rewrite it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldDoc {
    pub content_hash: Option<String>,
    pub live: bool,
}

/// The mirror collection and how to write to it.
pub struct Mirror {
    pois: Collection<Document>,
    db: Database,
    /// Cleared after the server refuses `bulkWrite` (before MongoDB 8.0).
    bulk_write: AtomicBool,
}

impl Mirror {
    pub fn new(db: &Database) -> Self {
        Self {
            pois: collection(db),
            db: db.clone(),
            bulk_write: AtomicBool::new(true),
        }
    }

    /// The held state of (at least) the POIs with these IDs; with `range` (lo, hi], of every
    /// POI held with an ID in that range instead (an ID-ordered page covers its whole range, so
    /// held POIs missing from it are gone from OCM). `ids` must lie within `range`.
    pub async fn held(
        &self,
        ids: &[i32],
        range: Option<(i32, Option<i32>)>,
    ) -> Result<HashMap<i32, HeldDoc>, mongodb::error::Error> {
        let projection = doc! { "_id": 0, "externalId": 1, "sync.contentHash": 1, "sync.live": 1 };
        let mut filters = Vec::new();
        if let Some((lo, hi)) = range {
            let mut bounds = doc! { "$gt": lo };
            if let Some(hi) = hi {
                bounds.insert("$lte", hi);
            }
            filters.push(doc! { "externalId": bounds });
        } else if let (Some(&lo), Some(&hi)) = (ids.iter().min(), ids.iter().max()) {
            // dense IDs (dumps and synthetic data are ID-ordered): one range query
            let span = i64::from(hi) - i64::from(lo) + 1;
            if span <= 4 * ids.len() as i64 + 100 {
                filters.push(doc! { "externalId": { "$gte": lo, "$lte": hi } });
            } else {
                for chunk in ids.chunks(IN_CHUNK) {
                    filters.push(doc! { "externalId": { "$in": chunk } });
                }
            }
        }
        let mut held = HashMap::with_capacity(ids.len());
        for filter in filters {
            let mut cursor = self
                .pois
                .find(filter)
                .projection(projection.clone())
                .await?;
            while let Some(doc) = cursor.try_next().await? {
                let Some(id) = doc.get("externalId").and_then(bson_i32) else {
                    continue;
                };
                let sync = doc.get_document("sync").ok();
                held.insert(
                    id,
                    HeldDoc {
                        content_hash: sync
                            .and_then(|s| s.get_str("contentHash").ok())
                            .map(String::from),
                        live: sync.and_then(|s| s.get_bool("live").ok()).unwrap_or(true),
                    },
                );
            }
        }
        Ok(held)
    }

    /// Writes these POIs' documents: `held` ones are replaced (upsert), the others inserted —
    /// an insert is much cheaper than an upsert that misses on some servers (SecantusDB: about
    /// twice as fast). Unordered throughout.
    pub async fn write(
        &self,
        pois: &[&Poi],
        held: &HashMap<i32, HeldDoc>,
    ) -> Result<(), mongodb::error::Error> {
        let now = bson_time(Utc::now());
        let (known, new): (Vec<&&Poi>, Vec<&&Poi>) =
            pois.iter().partition(|p| held.contains_key(&p.ocm_id));
        let docs = |list: Vec<&&Poi>| -> Vec<(i32, Document)> {
            list.into_iter()
                .map(|poi| (poi.ocm_id, document(poi, now)))
                .collect()
        };
        for chunk in docs(new).chunks(BULK_CHUNK) {
            let inserted = self
                .pois
                .insert_many(chunk.iter().map(|(_, doc)| doc))
                .ordered(false)
                .await;
            match inserted {
                Ok(_) => {}
                // someone wrote some of them meanwhile: replacing is idempotent
                Err(e) if matches!(e.kind.as_ref(), ErrorKind::InsertMany(_)) => {
                    tracing::info!(error = %e, "insert collided; replacing instead");
                    self.replace(chunk).await?;
                }
                Err(e) => return Err(e),
            }
        }
        for chunk in docs(known).chunks(BULK_CHUNK) {
            self.replace(chunk).await?;
        }
        Ok(())
    }

    /// Replaces (upserts) documents by `externalId`.
    async fn replace(&self, chunk: &[(i32, Document)]) -> Result<(), mongodb::error::Error> {
        if self.bulk_write.load(Ordering::Relaxed) {
            match self.bulk(chunk).await {
                Ok(()) => return Ok(()),
                Err(e) if bulk_write_unsupported(&e) => {
                    tracing::info!(
                        "the MongoDB server has no bulkWrite command; using single upserts"
                    );
                    self.bulk_write.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        self.one_by_one(chunk).await
    }

    async fn bulk(&self, docs: &[(i32, Document)]) -> Result<(), mongodb::error::Error> {
        let models = docs.iter().map(|(id, doc)| {
            WriteModel::ReplaceOne(
                ReplaceOneModel::builder()
                    .namespace(self.pois.namespace())
                    .filter(doc! { "externalId": id })
                    .replacement(doc.clone())
                    .upsert(true)
                    .build(),
            )
        });
        self.db.client().bulk_write(models).ordered(false).await?;
        Ok(())
    }

    async fn one_by_one(&self, docs: &[(i32, Document)]) -> Result<(), mongodb::error::Error> {
        let mut pending = FuturesUnordered::new();
        for (id, doc) in docs {
            let (pois, id, doc) = (self.pois.clone(), *id, doc.clone());
            pending.push(async move {
                pois.replace_one(doc! { "externalId": id }, doc)
                    .upsert(true)
                    .await
            });
            if pending.len() >= FALLBACK_CONCURRENCY {
                if let Some(done) = pending.next().await {
                    done?;
                }
            }
        }
        while let Some(done) = pending.next().await {
            done?;
        }
        Ok(())
    }

    /// Marks the live documents with these IDs as not live; returns how many changed.
    pub async fn mark_not_live(&self, ids: &[i32]) -> Result<u64, mongodb::error::Error> {
        let now = bson_time(Utc::now());
        let mut changed = 0;
        for chunk in ids.chunks(IN_CHUNK) {
            let result = self
                .pois
                .update_many(
                    doc! { "externalId": { "$in": chunk }, "sync.live": true },
                    doc! { "$set": { "sync.live": false, "sync.syncedAt": now } },
                )
                .await?;
            changed += result.modified_count;
        }
        Ok(changed)
    }
}

fn bulk_write_unsupported(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::IncompatibleServer { .. } => true,
        // CommandNotFound
        ErrorKind::Command(command) => command.code == 59,
        _ => false,
    }
}

fn bson_time(t: chrono::DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

fn bson_i32(value: &Bson) -> Option<i32> {
    match value {
        Bson::Int32(v) => Some(*v),
        Bson::Int64(v) => i32::try_from(*v).ok(),
        Bson::Double(v) if v.fract() == 0.0 => Some(*v as i32),
        _ => None,
    }
}

/// The mirror document of a POI: its raw fields, then ours.
fn document(poi: &Poi, synced_at: bson::DateTime) -> Document {
    let mut doc: Document = poi
        .raw
        .iter()
        .map(|(key, value)| (key.clone(), to_bson(value)))
        .collect();
    doc.insert("externalId", poi.ocm_id);
    doc.insert(
        "location",
        doc! {
            "type": "Point",
            "coordinates": [poi.position.longitude(), poi.position.latitude()],
        },
    );
    doc.insert(
        "sync",
        doc! {
            "modifiedAt": poi.modified_at.map(bson_time),
            "syncedAt": synced_at,
            "contentHash": &poi.content_hash,
            "live": poi.station.is_live,
            "form": poi.form.as_str(),
        },
    );
    doc
}

/// JSON to BSON by hand: serde_json is built with `arbitrary_precision` here, and its numbers
/// would otherwise serialise as `{"$serde_json::private::Number": "..."}` documents. Integers
/// become Int32 (Int64 when larger), other numbers doubles.
fn to_bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
            (None, Some(f)) => Bson::Double(f),
            (None, None) => Bson::String(n.to_string()),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect()),
        Value::Object(map) => Bson::Document(
            map.iter()
                .map(|(key, value)| (key.clone(), to_bson(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_numbers_become_bson_numbers() {
        let value: Value = serde_json::from_str(r#"{"ID": 2738, "Lat": 45.419827, "P": 3, "Q": 3.5, "Big": 5000000000, "N": null, "A": [1, "x"]}"#).unwrap_or_default();
        let Bson::Document(doc) = to_bson(&value) else {
            panic!("a document")
        };
        assert_eq!(doc.get("ID"), Some(&Bson::Int32(2738)));
        assert_eq!(doc.get("Lat"), Some(&Bson::Double(45.419827)));
        assert_eq!(doc.get("P"), Some(&Bson::Int32(3)));
        assert_eq!(doc.get("Q"), Some(&Bson::Double(3.5)));
        assert_eq!(doc.get("Big"), Some(&Bson::Int64(5_000_000_000)));
        assert_eq!(doc.get("N"), Some(&Bson::Null));
        assert_eq!(
            doc.get("A"),
            Some(&Bson::Array(vec![Bson::Int32(1), Bson::String("x".into())]))
        );
        assert_eq!(to_bson(&json!(true)), Bson::Boolean(true));
    }
}
