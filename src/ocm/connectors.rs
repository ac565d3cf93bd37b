//! Connector type names a search may filter on. A filter matches OCM connection type titles
//! ("CCS (Type 2)", "Type 2 (Socket Only)", "CHAdeMO", ...) ignoring case, spaces and
//! punctuation, so "ccs type 2" and "CCS (Type 2)" are the same. A few common names stand for a
//! family of titles:
//!
//! | alias | connection type titles |
//! |---|---|
//! | `CCS` | CCS (Type 1), CCS (Type 2) |
//! | `CCS1`, `COMBO1` | CCS (Type 1) |
//! | `CCS2`, `COMBO2` | CCS (Type 2) |
//! | `TYPE2`, `MENNEKES` | Type 2 (Socket Only), Type 2 (Tethered Connector) |
//! | `TYPE1`, `J1772` | Type 1 (J1772) |
//! | `CHADEMO` | CHAdeMO |
//! | `TESLA` | Tesla (Model S/X), Tesla (Roadster), Tesla Supercharger |
//! | `NACS` | Tesla (Model S/X), Tesla Supercharger |
//! | `SCHUKO` | CEE 7/4 - Schuko - Type F |
//! | `GBT` | GB-T AC - GB/T 20234.2 (Socket), GB-T AC - GB/T 20234.2 (Tethered Cable), GB-T DC - GB/T 20234.3 |

/// The aliases above, as (normalised alias, titles).
const ALIASES: &[(&str, &[&str])] = &[
    ("CCS", &["CCS (Type 1)", "CCS (Type 2)"]),
    ("CCS1", &["CCS (Type 1)"]),
    ("COMBO1", &["CCS (Type 1)"]),
    ("CCS2", &["CCS (Type 2)"]),
    ("COMBO2", &["CCS (Type 2)"]),
    (
        "TYPE2",
        &["Type 2 (Socket Only)", "Type 2 (Tethered Connector)"],
    ),
    (
        "MENNEKES",
        &["Type 2 (Socket Only)", "Type 2 (Tethered Connector)"],
    ),
    ("TYPE1", &["Type 1 (J1772)"]),
    ("J1772", &["Type 1 (J1772)"]),
    ("CHADEMO", &["CHAdeMO"]),
    (
        "TESLA",
        &[
            "Tesla (Model S/X)",
            "Tesla (Roadster)",
            "Tesla Supercharger",
        ],
    ),
    ("NACS", &["Tesla (Model S/X)", "Tesla Supercharger"]),
    ("SCHUKO", &["CEE 7/4 - Schuko - Type F"]),
    (
        "GBT",
        &[
            "GB-T AC - GB/T 20234.2 (Socket)",
            "GB-T AC - GB/T 20234.2 (Tethered Cable)",
            "GB-T DC - GB/T 20234.3",
        ],
    ),
];

/// Upper-case ASCII letters and digits only: the form names are compared in.
pub fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The normalised titles a filter stands for: the title itself if `is_title` knows it, else an
/// alias's titles; `None` when the name means nothing.
pub fn resolve(filter: &str, is_title: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    let key = normalise(filter);
    if key.is_empty() {
        return None;
    }
    if is_title(&key) {
        return Some(vec![key]);
    }
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map(|(_, titles)| titles.iter().map(|t| normalise(t)).collect())
}

/// The aliases, for error messages.
pub fn alias_names() -> String {
    ALIASES
        .iter()
        .map(|(alias, _)| *alias)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_match_ignoring_case_and_punctuation() {
        let known = |k: &str| k == "CCSTYPE2" || k == "CHADEMO";
        assert_eq!(
            resolve("ccs (type 2)", known),
            Some(vec!["CCSTYPE2".into()])
        );
        assert_eq!(resolve("CHAdeMO", known), Some(vec!["CHADEMO".into()]));
        assert_eq!(
            resolve("CCS", known),
            Some(vec!["CCSTYPE1".into(), "CCSTYPE2".into()])
        );
        assert_eq!(
            resolve("Type2", known),
            Some(vec![
                "TYPE2SOCKETONLY".into(),
                "TYPE2TETHEREDCONNECTOR".into()
            ])
        );
        assert_eq!(resolve("warp drive", known), None);
        assert_eq!(resolve(" - ", known), None);
    }

    #[test]
    fn alias_targets_are_real_ocm_titles() {
        let Ok(reference) = super::super::reference::Reference::embedded() else {
            panic!("reference data parses")
        };
        let titles: Vec<String> = reference
            .connection_types
            .values()
            .map(|t| normalise(t))
            .collect();
        for (alias, targets) in ALIASES {
            for target in *targets {
                assert!(titles.contains(&normalise(target)), "{alias}: {target}");
            }
        }
    }
}
