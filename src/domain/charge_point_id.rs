//! Charge point identities as they appear in the OCPP URL `/ocpp/{chargePointId}`.

use super::ValidationError;

/// Longest identity accepted (OCPP `identifierString` of a charging station, 48 characters).
pub const MAX_CHARGE_POINT_ID_CHARS: usize = 48;

/// A validated charge point identity: 1..=48 characters of the OCPP `identifierString` set
/// (`a-z A-Z 0-9 * - _ = + | @ .`), without `:` because it separates user and password in
/// HTTP Basic auth.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChargePointId(String);

impl ChargePointId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::new("charge point id must not be empty"));
        }
        if raw.chars().count() > MAX_CHARGE_POINT_ID_CHARS {
            return Err(ValidationError::new(format!(
                "charge point id must be at most {MAX_CHARGE_POINT_ID_CHARS} characters"
            )));
        }
        if raw.contains(':') {
            return Err(ValidationError::new("charge point id must not contain ':'"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "*-_=+|@.".contains(c);
        if !raw.chars().all(allowed) {
            return Err(ValidationError::new(
                "charge point id may only contain letters, digits and * - _ = + | @ .",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChargePointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_identifier_strings() {
        for ok in ["CP-0001", "de.berlin*42", "a", "X_Y=Z+1|2@3"] {
            assert!(ChargePointId::parse(ok).is_ok(), "{ok}");
        }
        assert!(ChargePointId::parse(&"A".repeat(48)).is_ok());
    }

    #[test]
    fn rejects_colons_length_and_odd_characters() {
        for bad in ["", "CP:1", "CP 1", "CP/1", "CP\n1", "é"] {
            assert!(ChargePointId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ChargePointId::parse(&"A".repeat(49)).is_err());
    }
}
