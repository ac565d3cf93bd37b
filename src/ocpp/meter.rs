//! Meter value normalisation shared by both protocol versions: units scaled to Wh, W, var, VA,
//! defaults applied (measurand `Energy.Active.Import.Register`, unit `Wh`, context
//! `Sample.Periodic`), and the energy register and power of a reading extracted.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// A sampled value as a charger sent it, protocol-neutral.
#[derive(Debug, Clone, Default)]
pub struct RawSample {
    pub value: String,
    pub measurand: Option<String>,
    pub phase: Option<String>,
    pub context: Option<String>,
    pub location: Option<String>,
    pub unit: Option<String>,
    /// 2.0.1 `unitOfMeasure.multiplier` (power of ten).
    pub multiplier: Option<i32>,
}

/// A sampled value in base units, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub sampled_at: DateTime<Utc>,
    pub measurand: String,
    pub phase: Option<String>,
    pub context: String,
    pub location: Option<String>,
    pub unit: String,
    pub value: Decimal,
}

pub const ENERGY_IMPORT: &str = "Energy.Active.Import.Register";
pub const POWER_IMPORT: &str = "Power.Active.Import";

/// Normalises one sampled value; `None` for values that are not numbers (e.g. signed data).
pub fn normalise(sampled_at: DateTime<Utc>, raw: &RawSample) -> Option<Sample> {
    let mut value = Decimal::from_str(raw.value.trim())
        .or_else(|_| Decimal::from_scientific(raw.value.trim()))
        .ok()?;
    if let Some(m) = raw.multiplier.filter(|m| *m != 0 && m.abs() <= 9) {
        let factor = Decimal::from(10i64.pow(m.unsigned_abs()));
        value = if m > 0 {
            value * factor
        } else {
            value / factor
        };
    }
    let unit = raw.unit.clone().unwrap_or_else(|| "Wh".into());
    let (unit, value) = match unit.as_str() {
        "kWh" => ("Wh".to_string(), value * Decimal::from(1000)),
        "kW" => ("W".to_string(), value * Decimal::from(1000)),
        "kvarh" => ("varh".to_string(), value * Decimal::from(1000)),
        "kvar" => ("var".to_string(), value * Decimal::from(1000)),
        "kVA" => ("VA".to_string(), value * Decimal::from(1000)),
        _ => (unit, value),
    };
    Some(Sample {
        sampled_at,
        measurand: raw
            .measurand
            .clone()
            .unwrap_or_else(|| ENERGY_IMPORT.into()),
        phase: raw.phase.clone(),
        context: raw
            .context
            .clone()
            .unwrap_or_else(|| "Sample.Periodic".into()),
        location: raw.location.clone(),
        unit,
        value,
    })
}

/// What a set of samples says about the charging: the energy register (Wh) and power (W).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    pub energy_wh: Option<Decimal>,
    pub power_w: Option<Decimal>,
}

/// Extracts the latest energy register and power: the phase-less value when present, else the
/// sum of the per-phase values (L1, L2, L3).
pub fn reading(samples: &[Sample]) -> Reading {
    let latest = samples.iter().map(|s| s.sampled_at).max();
    let Some(latest) = latest else {
        return Reading::default();
    };
    let at_latest: Vec<&Sample> = samples.iter().filter(|s| s.sampled_at == latest).collect();
    let pick = |measurand: &str, unit: &str| -> Option<Decimal> {
        let matching: Vec<&&Sample> = at_latest
            .iter()
            .filter(|s| {
                s.measurand == measurand
                    && s.unit == unit
                    && s.location.as_deref().unwrap_or("Outlet") != "Inlet"
            })
            .collect();
        if let Some(total) = matching.iter().find(|s| s.phase.is_none()) {
            return Some(total.value);
        }
        let phases: Vec<Decimal> = matching
            .iter()
            .filter(|s| matches!(s.phase.as_deref(), Some("L1" | "L2" | "L3")))
            .map(|s| s.value)
            .collect();
        (!phases.is_empty()).then(|| phases.iter().copied().sum())
    };
    Reading {
        energy_wh: pick(ENERGY_IMPORT, "Wh"),
        power_w: pick(POWER_IMPORT, "W"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(
        value: &str,
        measurand: Option<&str>,
        unit: Option<&str>,
        phase: Option<&str>,
    ) -> RawSample {
        RawSample {
            value: value.into(),
            measurand: measurand.map(String::from),
            unit: unit.map(String::from),
            phase: phase.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn kwh_is_scaled_to_wh_and_defaults_apply() {
        let now = Utc::now();
        let s = normalise(now, &raw("12.5", None, Some("kWh"), None));
        let s = s.unwrap_or_else(|| panic!("sample"));
        assert_eq!(s.unit, "Wh");
        assert_eq!(s.value, Decimal::from(12500));
        assert_eq!(s.measurand, ENERGY_IMPORT);
        assert_eq!(s.context, "Sample.Periodic");
    }

    #[test]
    fn non_numeric_values_are_skipped() {
        assert!(normalise(Utc::now(), &raw("abc", None, None, None)).is_none());
    }

    #[test]
    fn reading_prefers_totals_and_sums_phases() {
        let now = Utc::now();
        let samples: Vec<Sample> = [
            raw("1000", None, Some("Wh"), None),
            raw("3.6", Some(POWER_IMPORT), Some("kW"), Some("L1")),
            raw("3.6", Some(POWER_IMPORT), Some("kW"), Some("L2")),
            raw("3.6", Some(POWER_IMPORT), Some("kW"), Some("L3")),
        ]
        .iter()
        .filter_map(|r| normalise(now, r))
        .collect();
        let r = reading(&samples);
        assert_eq!(r.energy_wh, Some(Decimal::from(1000)));
        assert_eq!(r.power_w, Some(Decimal::from(10800)));
    }

    #[test]
    fn multiplier_scales_values() {
        let mut r = raw("5", None, Some("Wh"), None);
        r.multiplier = Some(3);
        assert_eq!(
            normalise(Utc::now(), &r).map(|s| s.value),
            Some(Decimal::from(5000))
        );
    }
}
