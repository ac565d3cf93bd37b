//! Meter value normalisation shared by both protocol versions: units scaled to Wh, W, var, VA,
//! defaults applied (measurand `Energy.Active.Import.Register`, unit `Wh`, context
//! `Sample.Periodic`), and the energy register and power of a reading extracted.
//!
//! Every number here was chosen by a charger: arithmetic is checked (the module denies
//! `clippy::arithmetic_side_effects`), and a value outside what any meter can show is refused
//! with `OutOfRange`, which the adapters answer with a PropertyConstraintViolation CallError.
#![deny(clippy::arithmetic_side_effects)]

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

/// The largest magnitude a sample may have in base units: 10^12 (1 TWh, 1 TW). No charger's
/// meter reads more; sums of three phases and register differences stay far inside both
/// `Decimal` and the `NUMERIC` columns that store them.
pub const MAX_ABS_VALUE: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

/// A sampled value no meter can show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sampled value {value:?} ({unit}) is outside what a meter can report (|value| <= 10^12 in base units)")]
pub struct OutOfRange {
    pub value: String,
    pub unit: String,
}

impl From<OutOfRange> for crate::ocpp::CallFailure {
    fn from(e: OutOfRange) -> Self {
        crate::ocpp::CallFailure::new(
            crate::ocpp::CallErrorCode::PropertyConstraintViolation,
            e.to_string(),
        )
    }
}

/// Normalises one sampled value; `Ok(None)` for values that are not numbers (e.g. signed data),
/// `Err` for numbers beyond `MAX_ABS_VALUE` once scaled to base units.
pub fn normalise(sampled_at: DateTime<Utc>, raw: &RawSample) -> Result<Option<Sample>, OutOfRange> {
    let unit = raw.unit.clone().unwrap_or_else(|| "Wh".into());
    let out_of_range = || OutOfRange {
        value: raw.value.chars().take(64).collect(),
        unit: unit.chars().take(16).collect(),
    };
    let Ok(mut value) =
        Decimal::from_str(raw.value.trim()).or_else(|_| Decimal::from_scientific(raw.value.trim()))
    else {
        return Ok(None);
    };
    if let Some(m) = raw.multiplier.filter(|m| *m != 0) {
        // a multiplier beyond +-9 cannot describe a real meter (10^9 times its unit)
        if m.unsigned_abs() > 9 {
            return Err(out_of_range());
        }
        let factor = Decimal::from(
            10i64
                .checked_pow(m.unsigned_abs())
                .ok_or_else(out_of_range)?,
        );
        value = if m > 0 {
            value.checked_mul(factor)
        } else {
            value.checked_div(factor)
        }
        .ok_or_else(out_of_range)?;
    }
    let (unit, value) = match unit.as_str() {
        "kWh" => ("Wh".to_string(), kilo(value)),
        "kW" => ("W".to_string(), kilo(value)),
        "kvarh" => ("varh".to_string(), kilo(value)),
        "kvar" => ("var".to_string(), kilo(value)),
        "kVA" => ("VA".to_string(), kilo(value)),
        _ => (unit.clone(), Some(value)),
    };
    let value = value
        .filter(|v| v.abs() <= MAX_ABS_VALUE)
        .ok_or_else(out_of_range)?;
    Ok(Some(Sample {
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
    }))
}

fn kilo(value: Decimal) -> Option<Decimal> {
    value.checked_mul(Decimal::ONE_THOUSAND)
}

/// Normalises every sampled value, dropping (and logging) those out of range: for the
/// messages that end a transaction, which must not be refused for one absurd sample (the
/// charger would give up on them and the session would never end).
pub fn normalise_lenient<'a>(
    raws: impl IntoIterator<Item = (DateTime<Utc>, RawSample)> + 'a,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    for (at, raw) in raws {
        match normalise(at, &raw) {
            Ok(Some(sample)) => samples.push(sample),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "sample dropped from a transaction's end"),
        }
    }
    samples
}

/// Normalises every sampled value, refusing the whole message if one is out of range.
pub fn normalise_all<'a>(
    raws: impl IntoIterator<Item = (DateTime<Utc>, RawSample)> + 'a,
) -> Result<Vec<Sample>, OutOfRange> {
    let mut samples = Vec::new();
    for (at, raw) in raws {
        if let Some(sample) = normalise(at, &raw)? {
            samples.push(sample);
        }
    }
    Ok(samples)
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
        // several totals at the same instant (an Ended event's last periodic sample and its
        // Transaction.End reading): the end reading, else the last one the charger listed
        let totals: Vec<&&&Sample> = matching.iter().filter(|s| s.phase.is_none()).collect();
        if let Some(total) = totals
            .iter()
            .find(|s| s.context == "Transaction.End")
            .or(totals.last())
        {
            return Some(total.value);
        }
        let phases: Vec<Decimal> = matching
            .iter()
            .filter(|s| matches!(s.phase.as_deref(), Some("L1" | "L2" | "L3")))
            .map(|s| s.value)
            .collect();
        // bounded samples cannot overflow, but the sum is checked all the same
        phases
            .iter()
            .try_fold(None::<Decimal>, |acc, v| {
                acc.unwrap_or_default().checked_add(*v).map(Some)
            })
            .flatten()
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
        let s = s.ok().flatten().unwrap_or_else(|| panic!("sample"));
        assert_eq!(s.unit, "Wh");
        assert_eq!(s.value, Decimal::from(12500));
        assert_eq!(s.measurand, ENERGY_IMPORT);
        assert_eq!(s.context, "Sample.Periodic");
    }

    #[test]
    fn non_numeric_values_are_skipped() {
        assert_eq!(
            normalise(Utc::now(), &raw("abc", None, None, None)),
            Ok(None)
        );
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
        .filter_map(|r| normalise(now, r).ok().flatten())
        .collect();
        let r = reading(&samples);
        assert_eq!(r.energy_wh, Some(Decimal::from(1000)));
        assert_eq!(r.power_w, Some(Decimal::from(10800)));
    }

    #[test]
    fn of_totals_at_one_instant_the_end_reading_counts_else_the_last_listed() {
        let now = Utc::now();
        let energy = |value: &str, context: &str| {
            let mut r = raw(value, None, Some("Wh"), None);
            r.context = Some(context.into());
            normalise(now, &r)
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("sample"))
        };
        let periodic_then_end = [
            energy("3200", "Sample.Periodic"),
            energy("3400", "Transaction.End"),
        ];
        assert_eq!(
            reading(&periodic_then_end).energy_wh,
            Some(Decimal::from(3400))
        );
        let end_then_periodic = [
            energy("3400", "Transaction.End"),
            energy("3200", "Sample.Periodic"),
        ];
        assert_eq!(
            reading(&end_then_periodic).energy_wh,
            Some(Decimal::from(3400))
        );
        let two_periodic = [
            energy("3200", "Sample.Periodic"),
            energy("3300", "Sample.Periodic"),
        ];
        assert_eq!(reading(&two_periodic).energy_wh, Some(Decimal::from(3300)));
    }

    #[test]
    fn multiplier_scales_values() {
        let mut r = raw("5", None, Some("Wh"), None);
        r.multiplier = Some(3);
        assert_eq!(
            normalise(Utc::now(), &r).map(|s| s.map(|s| s.value)),
            Ok(Some(Decimal::from(5000)))
        );
    }

    #[test]
    fn the_bound_is_ten_to_the_twelfth() {
        assert_eq!(MAX_ABS_VALUE, Decimal::from(1_000_000_000_000i64));
    }

    #[test]
    fn values_that_would_overflow_are_out_of_range_not_a_panic() {
        let now = Utc::now();
        // Decimal::MAX in kWh: times 1000 overflows rust_decimal
        let huge = "79228162514264337593543950335";
        assert!(normalise(now, &raw(huge, None, Some("kWh"), None)).is_err());
        assert!(normalise(now, &raw(huge, Some(POWER_IMPORT), Some("kW"), Some("L1"))).is_err());
        let mut r = raw(huge, None, Some("Wh"), None);
        r.multiplier = Some(9);
        assert!(normalise(now, &r).is_err());
        r.multiplier = Some(i32::MIN);
        assert!(normalise(now, &r).is_err());
        // in range before scaling, out of range after
        assert!(normalise(now, &raw("1000000000.5", None, Some("kWh"), None)).is_err());
        assert!(normalise(now, &raw("-1e13", None, Some("Wh"), None)).is_err());
        // the largest plausible register is fine
        assert!(matches!(
            normalise(now, &raw("1000000000", None, Some("kWh"), None)),
            Ok(Some(_))
        ));
    }
}
