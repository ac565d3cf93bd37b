//! idTags: the token a charger presents for a user (RFID card UID, the app's virtual token).

use rand::Rng;

use super::ValidationError;

/// OCPP 1.6 `IdToken` is a CiString20.
pub const MAX_ID_TAG_CHARS: usize = 20;
/// OCPP 2.0.1 `IdTokenType.idToken` is a string of up to 36 (a 1.6 charger takes 20 of them).
pub const MAX_ID_TOKEN_CHARS: usize = 36;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdTag(String);

impl IdTag {
    /// Accepts 1..=20 printable ASCII characters (what chargers can send).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.len() > MAX_ID_TAG_CHARS {
            return Err(ValidationError::new("idTag must have 1 to 20 characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "idTag must be printable ASCII without spaces",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// Accepts a token a driver registers: 1..=36 printable ASCII characters (2.0.1's limit).
    pub fn parse_token(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.len() > MAX_ID_TOKEN_CHARS {
            return Err(ValidationError::new("idToken must have 1 to 36 characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "idToken must be printable ASCII without spaces",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// A fresh random app token: `CG` and 16 hex digits (18 characters, 64 random bits).
    pub fn generate() -> Self {
        let bits: u64 = rand::thread_rng().gen();
        Self(format!("CG{bits:016X}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tags_are_valid_and_distinct() {
        let a = IdTag::generate();
        let b = IdTag::generate();
        assert_ne!(a, b);
        assert!(IdTag::parse(a.as_str()).is_ok());
        assert_eq!(a.as_str().len(), 18);
    }

    #[test]
    fn rejects_bad_tags() {
        assert!(IdTag::parse("").is_err());
        assert!(IdTag::parse("has space").is_err());
        assert!(IdTag::parse(&"A".repeat(21)).is_err());
        assert!(IdTag::parse("04A2B3C4D5E6").is_ok());
    }
}
