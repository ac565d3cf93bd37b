//! Domain newtypes and rules with no I/O. Values are parsed once at the boundary
//! (`Email::parse`, `IdTag::parse`, ...) and trusted everywhere inside.

pub mod allocation;
mod charge_point_id;
mod email;
mod id_tag;
mod money;
mod password;
pub mod reservation;
mod role;
pub mod tariff;
mod text;

pub use charge_point_id::ChargePointId;
pub use email::Email;
pub use id_tag::{IdTag, MAX_ID_TAG_CHARS, MAX_ID_TOKEN_CHARS};
pub use money::{Currency, Money};
pub use password::Password;
pub use role::Role;
pub use text::{PersonName, VehicleSpec};

/// Why a value from outside was not accepted; the message is safe to show to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

impl ValidationError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
