//! Passwords as users choose them: length rules only (NIST 800-63B), never logged.

use secrecy::{ExposeSecret, SecretString};

use super::ValidationError;

/// Minimum length; longer passphrases are encouraged, composition rules are not imposed.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Upper bound keeps argon2 hashing cost bounded.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// A password that satisfies the length rules. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.chars().count() < MIN_PASSWORD_CHARS {
            return Err(ValidationError::new(format!(
                "password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(ValidationError::new(format!(
                "password must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        if raw.trim().is_empty() {
            return Err(ValidationError::new("password must not be blank"));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforces_length() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("long enough pass").is_ok());
        assert!(Password::parse(&"x".repeat(300)).is_err());
        assert!(Password::parse("        ").is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let p = Password::parse("hunter2hunter2").map(|p| format!("{p:?}"));
        assert_eq!(p.ok().as_deref(), Some("Password(***)"));
    }
}
