//! Email addresses: syntactically valid, at most 254 characters, compared case-insensitively.

use std::str::FromStr;

use super::ValidationError;

/// A validated email address, trimmed; `normalized()` is the case-insensitive key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.len() > 254 {
            return Err(ValidationError::new("email is longer than 254 characters"));
        }
        let parsed = email_address::EmailAddress::from_str(trimmed)
            .map_err(|_| ValidationError::new("email is not a valid address"))?;
        // Require a dot in the domain: "user@localhost" is valid RFC 5322 but no driver has it.
        if !parsed.domain().contains('.') {
            return Err(ValidationError::new("email is not a valid address"));
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-cased form used for uniqueness and look-ups.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses() {
        assert!(Email::parse("driver@example.com").is_ok());
        assert_eq!(
            Email::parse("  Ana.Lopez+ev@Example.ORG ")
                .map(|e| e.normalized())
                .ok(),
            Some("ana.lopez+ev@example.org".to_string())
        );
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@localhost",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }
}
