//! Tariffs and what a session costs: a session fee, an energy price per kWh, and a time price
//! per minute after a grace period. Also reads a clear per-kWh price out of OCM `UsageCost` text.

use std::str::FromStr;
use std::sync::OnceLock;

use regex::Regex;
use rust_decimal::{Decimal, RoundingStrategy};

/// A price list in one currency.
#[derive(Debug, Clone, PartialEq)]
pub struct Tariff {
    pub currency: String,
    pub price_per_kwh: Decimal,
    pub price_per_minute: Decimal,
    pub grace_minutes: i64,
    pub session_fee: Decimal,
}

/// What a session costs, by component, rounded to cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub energy: Decimal,
    pub time: Decimal,
    pub fee: Decimal,
    pub total: Decimal,
}

fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

impl Tariff {
    /// The price list used when neither the station nor the tariffs table have one: 0.39 per
    /// kWh.
    pub fn fallback(currency: &str) -> Self {
        Self {
            currency: currency.to_string(),
            price_per_kwh: Decimal::new(39, 2),
            price_per_minute: Decimal::ZERO,
            grace_minutes: 0,
            session_fee: Decimal::ZERO,
        }
    }

    pub fn charge(&self, energy_kwh: Decimal, duration_minutes: i64) -> Charge {
        let billable_minutes = (duration_minutes - self.grace_minutes).max(0);
        let energy = cents(energy_kwh.max(Decimal::ZERO) * self.price_per_kwh);
        let time = cents(Decimal::from(billable_minutes) * self.price_per_minute);
        let fee = cents(self.session_fee);
        Charge {
            energy,
            time,
            fee,
            total: energy + time + fee,
        }
    }
}

fn currency_code(token: &str) -> Option<(&'static str, Decimal)> {
    let one = Decimal::ONE;
    let hundredth = Decimal::new(1, 2);
    match token.to_ascii_lowercase().as_str() {
        "€" | "eur" | "euro" | "euros" => Some(("EUR", one)),
        "£" | "gbp" => Some(("GBP", one)),
        "p" | "pence" => Some(("GBP", hundredth)),
        "$" | "usd" => Some(("USD", one)),
        "nok" => Some(("NOK", one)),
        "sek" => Some(("SEK", one)),
        "dkk" => Some(("DKK", one)),
        "chf" => Some(("CHF", one)),
        "pln" | "zł" => Some(("PLN", one)),
        _ => None,
    }
}

// the patterns are constants, exercised by the unit tests below: failing to compile one is a bug
#[allow(clippy::expect_used)]
fn patterns() -> &'static [Regex; 3] {
    static PATTERNS: OnceLock<[Regex; 3]> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let cur = r"(€|£|\$|eur|euros?|gbp|usd|nok|sek|dkk|chf|pln|zł|pence|p)";
        let num = r"(\d{1,4}(?:[.,]\d{1,4})?)";
        let per_kwh = r"\s*(?:/|per|a|pro)\s*kwh";
        [
            // "€0.39/kWh", "EUR 0,59 per kWh"
            Regex::new(&format!(r"(?i){cur}\s*{num}{per_kwh}")).expect("static regex"),
            // "0,59 EUR/kWh", "0,42€/kWh", "30p/kWh"
            Regex::new(&format!(r"(?i){num}\s*{cur}{per_kwh}")).expect("static regex"),
            // "Volume (/kWh)\t€ 0.34"
            Regex::new(&format!(r"(?i)/kwh\)?\s*{cur}\s*{num}")).expect("static regex"),
        ]
    })
}

/// A clear per-kWh price stated in OCM `UsageCost` text: `Some((price, currency))` when the text
/// names exactly one per-kWh price with a currency (`"€0.39/kWh"`, `"0,59 EUR/kWh"`), or says it
/// is free. Several different per-kWh prices (day/night tariffs) are not clear: `None`.
pub fn parse_usage_cost(text: &str) -> Option<(Decimal, String)> {
    let trimmed = text.trim().trim_end_matches(['.', '!']).trim();
    if trimmed.eq_ignore_ascii_case("free") || trimmed.eq_ignore_ascii_case("free of charge") {
        // free in any currency
        return Some((Decimal::ZERO, String::new()));
    }
    let mut found: Vec<(Decimal, &'static str)> = Vec::new();
    for (i, pattern) in patterns().iter().enumerate() {
        for caps in pattern.captures_iter(text) {
            let (cur, num) = match i {
                0 | 2 => (caps.get(1), caps.get(2)),
                _ => (caps.get(2), caps.get(1)),
            };
            let (Some(cur), Some(num)) = (cur, num) else {
                continue;
            };
            let Some((code, scale)) = currency_code(cur.as_str()) else {
                continue;
            };
            let Ok(amount) = Decimal::from_str(&num.as_str().replace(',', ".")) else {
                continue;
            };
            let price = amount * scale;
            if !found.iter().any(|(p, c)| *p == price && *c == code) {
                found.push((price, code));
            }
        }
    }
    match found.as_slice() {
        [(price, code)] => Some((*price, code.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap_or_default()
    }

    #[test]
    fn charges_energy_time_after_grace_and_fee() {
        let tariff = Tariff {
            currency: "EUR".into(),
            price_per_kwh: dec("0.39"),
            price_per_minute: dec("0.05"),
            grace_minutes: 60,
            session_fee: dec("0.50"),
        };
        let charge = tariff.charge(dec("22.4"), 90);
        assert_eq!(charge.energy, dec("8.74"));
        assert_eq!(charge.time, dec("1.50"));
        assert_eq!(charge.fee, dec("0.50"));
        assert_eq!(charge.total, dec("10.74"));
        assert_eq!(tariff.charge(dec("1"), 30).time, Decimal::ZERO);
    }

    #[test]
    fn reads_clear_per_kwh_prices() {
        let cases = [
            ("€0.39/kWh", Some(("0.39", "EUR"))),
            ("0,59 EUR/kWh", Some(("0.59", "EUR"))),
            ("Volume (/kWh)\t€ 0.34", Some(("0.34", "EUR"))),
            (
                " 0,42€/kWh (0,05€/min parked without charging)",
                Some(("0.42", "EUR")),
            ),
            ("30p/kWh", Some(("0.30", "GBP"))),
            ("£0.65 per kWh", Some(("0.65", "GBP"))),
        ];
        for (text, expected) in cases {
            let got = parse_usage_cost(text).map(|(p, c)| (p.normalize(), c));
            let want = expected.map(|(p, c)| (dec(p).normalize(), c.to_string()));
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn unclear_texts_give_no_price() {
        for text in [
            "",
            "0",
            "1",
            "Pay at location",
            "Day (07:00-00:00): £0.65/kWh Night (00:00-0700): £0.29/kWh ",
            "0.39",
        ] {
            assert_eq!(parse_usage_cost(text), None, "{text:?}");
        }
        assert_eq!(
            parse_usage_cost("Free. ").map(|(p, _)| p),
            Some(Decimal::ZERO)
        );
    }
}
