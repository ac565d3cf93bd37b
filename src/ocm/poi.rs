//! One OCM POI as received (compact or verbose form) and its normalised station: names come
//! from the POI's own nested reference objects when it has them (verbose form), else from the
//! shipped reference data by ID (compact form). A POI we cannot place on the map is rejected,
//! never guessed.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::geo::GeoPoint;
use super::reference::Reference;
use crate::store::stations::{OcmConnection, OcmStation};

/// Bumped whenever normalisation changes, so the next sync rewrites every station even though
/// OCM's data did not change (the version is part of the content hash).
const NORMALISATION_VERSION: &str = "ocm-normalisation-1";

/// The shape a POI arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoiForm {
    /// `compact=true`: reference data as IDs only.
    Compact,
    /// `compact=false&verbose=true`: nested reference objects (`ConnectionType`,
    /// `AddressInfo.Country`, ...).
    Verbose,
}

impl PoiForm {
    pub fn as_str(&self) -> &'static str {
        match self {
            PoiForm::Compact => "compact",
            PoiForm::Verbose => "verbose",
        }
    }
}

/// A POI that passed validation, with its normalised station.
#[derive(Debug, Clone)]
pub struct Poi {
    pub ocm_id: i32,
    /// The POI exactly as OCM sent it.
    pub raw: Map<String, Value>,
    pub form: PoiForm,
    pub position: GeoPoint,
    /// `DateLastStatusUpdate`: OCM's modification time (what `modifiedsince` filters on).
    pub modified_at: Option<DateTime<Utc>>,
    /// SHA-256 (hex) of the canonical raw POI and the normalisation version.
    pub content_hash: String,
    pub station: OcmStation,
}

/// A POI we could not use, and why (counted as failed by the sync).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Present when the POI had a usable ID: a held copy is then marked not live.
    pub ocm_id: Option<i32>,
    pub reason: &'static str,
}

/// Validates and normalises one POI.
pub fn parse(value: Value, reference: &Reference) -> Result<Poi, Rejected> {
    let Value::Object(raw) = value else {
        return Err(Rejected {
            ocm_id: None,
            reason: "not a JSON object",
        });
    };
    let ocm_id = raw.get("ID").and_then(as_i32).filter(|id| *id > 0);
    let reject = |reason| Rejected { ocm_id, reason };
    let Some(id) = ocm_id else {
        return Err(reject("missing or invalid ID"));
    };
    let address = raw
        .get("AddressInfo")
        .and_then(Value::as_object)
        .ok_or_else(|| reject("missing AddressInfo"))?;
    let latitude = address.get("Latitude").and_then(Value::as_f64);
    let longitude = address.get("Longitude").and_then(Value::as_f64);
    let (Some(latitude), Some(longitude)) = (latitude, longitude) else {
        return Err(reject("missing or non-numeric coordinates"));
    };
    let position = GeoPoint::plausible_station(latitude, longitude)
        .ok_or_else(|| reject("coordinates out of range or (0, 0)"))?;

    let form = detect_form(&raw, address);
    let modified_at = raw.get("DateLastStatusUpdate").and_then(parse_time);
    let status = lookup_status(&raw, "StatusType", "StatusTypeID", reference);
    let submission_live = match raw.get("SubmissionStatus").and_then(Value::as_object) {
        Some(nested) => nested.get("IsLive").and_then(Value::as_bool),
        None => raw
            .get("SubmissionStatusTypeID")
            .and_then(Value::as_i64)
            .and_then(|sid| reference.submission_live.get(&sid).copied()),
    };
    // published unless OCM says otherwise; operational unless OCM says it is not
    let is_live =
        submission_live.unwrap_or(true) && status.as_ref().and_then(|s| s.1) != Some(false);

    let station = OcmStation {
        ocm_id: id,
        name: text(address, "Title")
            .or_else(|| text(address, "AddressLine1"))
            .unwrap_or_else(|| format!("OCM POI {id}")),
        address_line: match (text(address, "AddressLine1"), text(address, "AddressLine2")) {
            (Some(a), Some(b)) => Some(format!("{a}, {b}")),
            (a, b) => a.or(b),
        },
        town: text(address, "Town"),
        state: text(address, "StateOrProvince"),
        postcode: text(address, "Postcode"),
        country: nested_or_reference(address, "Country", "ISOCode", "CountryID", |cid| {
            reference.countries.get(&cid).map(|c| c.iso_code.clone())
        }),
        latitude,
        longitude,
        operator: nested_or_reference(&raw, "OperatorInfo", "Title", "OperatorID", |oid| {
            reference.operators.get(&oid).cloned()
        }),
        status: status.map(|s| s.0),
        usage_type: nested_or_reference(&raw, "UsageType", "Title", "UsageTypeID", |uid| {
            reference.usage_types.get(&uid).cloned()
        }),
        usage_cost: text(&raw, "UsageCost"),
        number_of_points: raw.get("NumberOfPoints").and_then(as_i32),
        last_verified: raw
            .get("DateLastVerified")
            .or_else(|| raw.get("DateLastConfirmed"))
            .and_then(parse_time),
        ocm_modified_at: modified_at,
        is_live,
        connections: connections(&raw, reference),
    };
    let content_hash = content_hash(&raw);
    Ok(Poi {
        ocm_id: id,
        raw,
        form,
        position,
        modified_at,
        content_hash,
        station,
    })
}

fn connections(raw: &Map<String, Value>, reference: &Reference) -> Vec<OcmConnection> {
    let mut seen = std::collections::HashSet::new();
    raw.get("Connections")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter_map(|c| {
            let ocm_connection_id = c.get("ID").and_then(as_i32);
            // a repeated connection ID would make the upsert touch one row twice
            if let Some(cid) = ocm_connection_id {
                if !seen.insert(cid) {
                    return None;
                }
            }
            let type_id = c.get("ConnectionTypeID").and_then(as_i32);
            let title =
                nested_or_reference(c, "ConnectionType", "Title", "ConnectionTypeID", |t| {
                    reference.connection_types.get(&t).cloned()
                });
            Some(OcmConnection {
                ocm_connection_id,
                connection_type: title.unwrap_or_else(|| match type_id {
                    Some(t) if t != 0 => format!("Connection type {t}"),
                    _ => "Unknown".to_string(),
                }),
                connection_type_id: type_id,
                level: c.get("LevelID").and_then(as_i32),
                power_kw: c
                    .get("PowerKW")
                    .and_then(Value::as_f64)
                    .filter(|p| p.is_finite() && *p >= 0.0),
                current_type: nested_or_reference(
                    c,
                    "CurrentType",
                    "Title",
                    "CurrentTypeID",
                    |t| reference.current_types.get(&t).cloned(),
                ),
                amps: c.get("Amps").and_then(as_i32),
                voltage: c.get("Voltage").and_then(as_i32),
                quantity: c.get("Quantity").and_then(as_i32),
                status: lookup_status(c, "StatusType", "StatusTypeID", reference).map(|s| s.0),
            })
        })
        .collect()
}

/// Verbose if any nested reference object is present (they never occur in compact form).
fn detect_form(raw: &Map<String, Value>, address: &Map<String, Value>) -> PoiForm {
    let nested = |m: &Map<String, Value>, key: &str| m.get(key).is_some_and(Value::is_object);
    let poi_level = ["DataProvider", "OperatorInfo", "UsageType", "StatusType"]
        .iter()
        .any(|k| nested(raw, k));
    let connection_level = raw
        .get("Connections")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .any(|c| nested(c, "ConnectionType") || nested(c, "Level"));
    if poi_level || connection_level || nested(address, "Country") {
        PoiForm::Verbose
    } else {
        PoiForm::Compact
    }
}

/// (title, is_operational) from a nested `StatusType` or the reference data.
fn lookup_status(
    object: &Map<String, Value>,
    nested_key: &str,
    id_key: &str,
    reference: &Reference,
) -> Option<(String, Option<bool>)> {
    if let Some(nested) = object.get(nested_key).and_then(Value::as_object) {
        let title = text(nested, "Title")?;
        return Some((title, nested.get("IsOperational").and_then(Value::as_bool)));
    }
    let id = object.get(id_key).and_then(Value::as_i64)?;
    reference
        .status_types
        .get(&id)
        .map(|s| (s.title.clone(), s.is_operational))
}

/// `object[nested_key][field]` when the nested object is there, else `by_id(object[id_key])`.
fn nested_or_reference(
    object: &Map<String, Value>,
    nested_key: &str,
    field: &str,
    id_key: &str,
    by_id: impl Fn(i64) -> Option<String>,
) -> Option<String> {
    object
        .get(nested_key)
        .and_then(Value::as_object)
        .and_then(|nested| text(nested, field))
        .or_else(|| object.get(id_key).and_then(Value::as_i64).and_then(by_id))
}

/// A trimmed, non-empty string field.
fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    let value = object.get(key)?.as_str()?.trim();
    (!value.is_empty()).then(|| value.to_string())
}

fn as_i32(value: &Value) -> Option<i32> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .and_then(|v| i32::try_from(v).ok()),
        _ => None,
    }
}

/// OCM timestamps: RFC 3339 (`2019-04-06T05:06:00Z`), or without a zone (then UTC).
pub fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    let s = value.as_str()?.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// SHA-256 of the normalisation version and the POI with its keys sorted at every level, so
/// the hash does not depend on field order.
pub fn content_hash(raw: &Map<String, Value>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(NORMALISATION_VERSION.as_bytes());
    hasher.update([0]);
    hash_object(&mut hasher, raw);
    hex::encode(hasher.finalize())
}

fn hash_value(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Object(map) => hash_object(hasher, map),
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                hash_value(hasher, item);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        // scalars in their JSON spelling (strings quoted and escaped)
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

fn hash_object(hasher: &mut Sha256, map: &Map<String, Value>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    hasher.update(b"{");
    for key in keys {
        hasher.update(Value::String(key.clone()).to_string().as_bytes());
        hasher.update(b":");
        if let Some(value) = map.get(key) {
            hash_value(hasher, value);
        }
        hasher.update(b",");
    }
    hasher.update(b"}");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reference() -> &'static Reference {
        match Reference::embedded() {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn compact() -> Value {
        json!({"ID": 42, "OperatorID": 3, "UsageTypeID": 1, "StatusTypeID": 50,
               "SubmissionStatusTypeID": 200, "DateLastStatusUpdate": "2024-08-22T10:11:00Z",
               "AddressInfo": {"Title": " Town Hall ", "AddressLine1": "1 Main St", "Town": "Oslo",
                               "CountryID": 168, "Latitude": 59.91, "Longitude": 10.75},
               "Connections": [{"ID": 7, "ConnectionTypeID": 33, "PowerKW": 150, "LevelID": 3,
                                "CurrentTypeID": 30, "Quantity": 2}]})
    }

    #[test]
    fn compact_poi_is_named_from_reference_data() {
        let poi = parse(compact(), reference()).map_err(|r| r.reason);
        let Ok(poi) = poi else { panic!("{poi:?}") };
        assert_eq!(poi.form, PoiForm::Compact);
        assert_eq!(poi.station.name, "Town Hall");
        assert_eq!(poi.station.country.as_deref(), Some("NO"));
        assert_eq!(poi.station.status.as_deref(), Some("Operational"));
        assert_eq!(poi.station.usage_type.as_deref(), Some("Public"));
        assert!(poi.station.is_live);
        let c = &poi.station.connections[0];
        assert_eq!(c.connection_type, "CCS (Type 2)");
        assert_eq!(c.current_type.as_deref(), Some("DC"));
        assert_eq!(c.power_kw, Some(150.0));
    }

    #[test]
    fn verbose_titles_win_over_reference_data() {
        let mut value = compact();
        value["OperatorID"] = json!(3619);
        value["OperatorInfo"] = json!({"ID": 3619, "Title": "AmpUp"});
        value["AddressInfo"]["Country"] = json!({"ID": 168, "ISOCode": "NO", "Title": "Norway"});
        let poi = parse(value, reference()).map_err(|r| r.reason);
        let Ok(poi) = poi else { panic!("{poi:?}") };
        assert_eq!(poi.form, PoiForm::Verbose);
        assert_eq!(poi.station.operator.as_deref(), Some("AmpUp"));
    }

    #[test]
    fn bad_coordinates_are_rejected_with_the_id() {
        for (lat, lon) in [
            (json!(999), json!(10)),
            (json!(0), json!(0)),
            (json!("x"), json!(1)),
        ] {
            let mut value = compact();
            value["AddressInfo"]["Latitude"] = lat;
            value["AddressInfo"]["Longitude"] = lon;
            let rejected = parse(value, reference()).err();
            assert_eq!(rejected.map(|r| r.ocm_id), Some(Some(42)));
        }
        let mut value = compact();
        if let Some(map) = value.as_object_mut() {
            map.remove("AddressInfo");
        }
        assert_eq!(
            parse(value, reference()).err().map(|r| r.reason),
            Some("missing AddressInfo")
        );
    }

    #[test]
    fn removed_and_delisted_pois_are_not_live() {
        let mut removed = compact();
        removed["StatusTypeID"] = json!(200);
        assert!(parse(removed, reference()).is_ok_and(|p| !p.station.is_live));
        let mut delisted = compact();
        delisted["SubmissionStatusTypeID"] = json!(1000);
        assert!(parse(delisted, reference()).is_ok_and(|p| !p.station.is_live));
        let mut unknown = compact();
        unknown["StatusTypeID"] = json!(0);
        assert!(parse(unknown, reference()).is_ok_and(|p| p.station.is_live));
    }

    #[test]
    fn content_hash_ignores_key_order_but_not_values() {
        let a = json!({"ID": 1, "A": {"x": 1, "y": [1, 2]}});
        let b = json!({"A": {"y": [1, 2], "x": 1}, "ID": 1});
        let c = json!({"A": {"y": [2, 1], "x": 1}, "ID": 1});
        let hash = |v: &Value| v.as_object().map(content_hash).unwrap_or_default();
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&c));
    }
}
