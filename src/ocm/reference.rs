//! OCM reference data (connection types, operators, status types, usage types, countries,
//! current types, charger levels), shipped with the binary from `data/ocm/reference.json`.
//! Compact POIs carry only IDs; this names them. Verbose POIs carry nested objects, whose
//! titles win (they are newer than our copy for operators added since, e.g. AmpUp, 3619).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// The OCM reference export this build ships (Aug 2021, `openchargemap/ocm-data`).
const EMBEDDED: &str = include_str!("../../data/ocm/reference.json");

/// A POI or connection status.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusType {
    pub title: String,
    /// `false` for "Not Operational", "Planned", "Removed ..."; `None` for "Unknown".
    pub is_operational: Option<bool>,
}

/// A country: its ISO 3166-1 alpha-2 code and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct Country {
    pub iso_code: String,
    pub title: String,
}

/// The lookups the normaliser needs, keyed by OCM ID.
#[derive(Debug, Default)]
pub struct Reference {
    pub connection_types: HashMap<i64, String>,
    pub operators: HashMap<i64, String>,
    pub status_types: HashMap<i64, StatusType>,
    /// Submission status -> whether OCM shows such POIs (published) at all.
    pub submission_live: HashMap<i64, bool>,
    pub usage_types: HashMap<i64, String>,
    pub countries: HashMap<i64, Country>,
    pub current_types: HashMap<i64, String>,
    /// `LevelID` -> "Level 2 : Medium (Over 2kW)" (OCM calls these ChargerTypes).
    pub levels: HashMap<i64, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    connection_types: Vec<Titled>,
    operators: Vec<Titled>,
    status_types: Vec<RawStatus>,
    submission_status_types: Vec<RawSubmission>,
    usage_types: Vec<Titled>,
    countries: Vec<RawCountry>,
    current_types: Vec<Titled>,
    charger_types: Vec<Titled>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Titled {
    #[serde(rename = "ID")]
    id: i64,
    title: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawStatus {
    #[serde(rename = "ID")]
    id: i64,
    title: Option<String>,
    is_operational: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawSubmission {
    #[serde(rename = "ID")]
    id: i64,
    is_live: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawCountry {
    #[serde(rename = "ID")]
    id: i64,
    title: Option<String>,
    #[serde(rename = "ISOCode")]
    iso_code: Option<String>,
}

fn titles(items: Vec<Titled>) -> HashMap<i64, String> {
    items
        .into_iter()
        .filter_map(|t| Some((t.id, t.title?.trim().to_string())))
        .collect()
}

/// Why reference data could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("OCM reference data does not parse: {0}")]
pub struct ReferenceError(String);

impl Reference {
    /// Parses an OCM reference export (`/v3/referencedata` or `reference.json`).
    pub fn parse(json: &str) -> Result<Self, ReferenceError> {
        let raw: Raw = serde_json::from_str(json).map_err(|e| ReferenceError(e.to_string()))?;
        Ok(Self {
            connection_types: titles(raw.connection_types),
            operators: titles(raw.operators),
            status_types: raw
                .status_types
                .into_iter()
                .map(|s| {
                    let title = s.title.unwrap_or_default().trim().to_string();
                    (
                        s.id,
                        StatusType {
                            title,
                            is_operational: s.is_operational,
                        },
                    )
                })
                .collect(),
            submission_live: raw
                .submission_status_types
                .into_iter()
                .map(|s| (s.id, s.is_live.unwrap_or(false)))
                .collect(),
            usage_types: titles(raw.usage_types),
            countries: raw
                .countries
                .into_iter()
                .filter_map(|c| {
                    Some((
                        c.id,
                        Country {
                            iso_code: c.iso_code?.trim().to_string(),
                            title: c.title.unwrap_or_default().trim().to_string(),
                        },
                    ))
                })
                .collect(),
            current_types: titles(raw.current_types),
            levels: titles(raw.charger_types),
        })
    }

    /// The reference data compiled into this binary, parsed once.
    pub fn embedded() -> Result<&'static Reference, ReferenceError> {
        static PARSED: LazyLock<Result<Reference, ReferenceError>> =
            LazyLock::new(|| Reference::parse(EMBEDDED));
        PARSED.as_ref().map_err(Clone::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_reference_data_names_the_common_ids() {
        let reference = Reference::embedded();
        assert!(reference.is_ok(), "{:?}", reference.err());
        let Ok(reference) = reference else { return };
        assert_eq!(reference.connection_types.len(), 41);
        assert_eq!(reference.connection_types[&33], "CCS (Type 2)");
        // the export has a trailing space here
        assert_eq!(
            reference.connection_types[&1036],
            "Type 2 (Tethered Connector)"
        );
        assert_eq!(reference.countries[&1].iso_code, "GB");
        assert_eq!(reference.status_types[&50].is_operational, Some(true));
        assert_eq!(reference.status_types[&200].is_operational, Some(false));
        assert_eq!(reference.submission_live.get(&100), Some(&true));
        assert_eq!(reference.submission_live.get(&1000), Some(&false));
        assert_eq!(reference.usage_types[&1], "Public");
        assert_eq!(reference.current_types[&30], "DC");
        assert!(reference.levels[&3].starts_with("Level 3"));
    }
}
