//! Money: exact decimals with a currency, never floating point.

use rust_decimal::Decimal;

use super::ValidationError;

/// An ISO 4217 currency code such as `EUR`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw.to_string()))
        } else {
            Err(ValidationError::new(
                "currency must be a three-letter ISO 4217 code",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A positive amount with at most two decimal places, e.g. a wallet top-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(Decimal);

impl Money {
    /// Parses a positive amount of at most `max`, with at most 2 decimals.
    pub fn parse_positive(amount: Decimal, max: Decimal) -> Result<Self, ValidationError> {
        if amount <= Decimal::ZERO {
            return Err(ValidationError::new("amount must be positive"));
        }
        if amount.normalize().scale() > 2 {
            return Err(ValidationError::new(
                "amount must have at most two decimal places",
            ));
        }
        if amount > max {
            return Err(ValidationError::new(format!(
                "amount must be at most {max}"
            )));
        }
        Ok(Self(amount.round_dp(2)))
    }

    pub fn amount(&self) -> Decimal {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap_or_default()
    }

    #[test]
    fn positive_amounts_with_two_decimals() {
        let max = dec("1000");
        assert!(Money::parse_positive(dec("12.34"), max).is_ok());
        assert!(Money::parse_positive(dec("12.340"), max).is_ok());
        assert!(Money::parse_positive(dec("12.345"), max).is_err());
        assert!(Money::parse_positive(dec("0"), max).is_err());
        assert!(Money::parse_positive(dec("-1"), max).is_err());
        assert!(Money::parse_positive(dec("1000.01"), max).is_err());
    }

    #[test]
    fn currency_codes() {
        assert!(Currency::parse("EUR").is_ok());
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
    }
}
