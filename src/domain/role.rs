//! User roles: drivers use the app; operators and admins run chargers.

use super::ValidationError;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    async_graphql::Enum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Driver,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Driver => "DRIVER",
            Role::Operator => "OPERATOR",
            Role::Admin => "ADMIN",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw.to_ascii_uppercase().as_str() {
            "DRIVER" => Ok(Role::Driver),
            "OPERATOR" => Ok(Role::Operator),
            "ADMIN" => Ok(Role::Admin),
            _ => Err(ValidationError::new(
                "role must be DRIVER, OPERATOR or ADMIN",
            )),
        }
    }

    /// Operators and admins manage chargers and may see every session.
    pub fn is_staff(&self) -> bool {
        matches!(self, Role::Operator | Role::Admin)
    }
}
