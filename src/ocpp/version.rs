//! OCPP versions and WebSocket subprotocol negotiation.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OcppVersion {
    V16,
    V201,
}

impl OcppVersion {
    /// The WebSocket subprotocol name.
    pub fn subprotocol(&self) -> &'static str {
        match self {
            OcppVersion::V16 => "ocpp1.6",
            OcppVersion::V201 => "ocpp2.0.1",
        }
    }

    /// The value stored in `chargers.protocol` and shown as the GraphQL `OcppVersion`.
    pub fn as_db(&self) -> &'static str {
        match self {
            OcppVersion::V16 => "OCPP16",
            OcppVersion::V201 => "OCPP201",
        }
    }

    fn from_subprotocol(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "ocpp1.6" => Some(OcppVersion::V16),
            "ocpp2.0.1" => Some(OcppVersion::V201),
            _ => None,
        }
    }
}

/// Picks the first subprotocol in the client's offered list (its order of preference) that the
/// server supports. `None` when nothing matches: the connection is refused, never defaulted.
pub fn negotiate(offered_header: Option<&str>, supported: &[OcppVersion]) -> Option<OcppVersion> {
    offered_header?
        .split(',')
        .filter_map(OcppVersion::from_subprotocol)
        .find(|v| supported.contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[OcppVersion] = &[OcppVersion::V16, OcppVersion::V201];

    #[test]
    fn honours_the_clients_order() {
        assert_eq!(
            negotiate(Some("ocpp2.0.1, ocpp1.6"), BOTH),
            Some(OcppVersion::V201)
        );
        assert_eq!(
            negotiate(Some("ocpp1.6,ocpp2.0.1"), BOTH),
            Some(OcppVersion::V16)
        );
    }

    #[test]
    fn skips_unsupported_and_refuses_when_none_match() {
        assert_eq!(
            negotiate(Some("ocpp2.0.1, ocpp1.6"), &[OcppVersion::V16]),
            Some(OcppVersion::V16)
        );
        assert_eq!(negotiate(Some("ocpp1.5, wamp"), BOTH), None);
        assert_eq!(negotiate(None, BOTH), None);
    }
}
