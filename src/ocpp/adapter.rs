//! The version switch: one charger actor, one adapter per protocol version. The actor calls
//! these with its negotiated version and never touches a version's payloads itself.

use serde_json::Value;

use super::command::{ChargerCommand, CommandError};
use super::error::CallFailure;
use super::handler::{CallContext, Handled};
use super::{v16, v201, OcppVersion};

/// Handles one charger-initiated CALL with the adapter of `version`.
pub async fn handle(
    version: OcppVersion,
    ctx: CallContext,
    action: &str,
    payload: Value,
) -> Result<Handled, CallFailure> {
    match version {
        OcppVersion::V16 => v16::handle(ctx, action, payload).await,
        OcppVersion::V201 => v201::handle(ctx, action, payload).await,
    }
}

/// The action and payload of `command` in `version`, checked against its `rust-ocpp` type.
pub fn to_call(
    version: OcppVersion,
    command: &ChargerCommand,
) -> Result<(String, Value), CommandError> {
    match version {
        OcppVersion::V16 => v16::commands::to_call(command),
        OcppVersion::V201 => v201::commands::to_call(command),
    }
}

/// Checks a charger's CALLRESULT payload for `action` in `version`.
pub fn check_reply(
    version: OcppVersion,
    action: &str,
    payload: &Value,
) -> Result<(), CommandError> {
    match version {
        OcppVersion::V16 => v16::commands::check_reply(action, payload),
        OcppVersion::V201 => v201::commands::check_reply(action, payload),
    }
}

/// Whether `action` is a charger-initiated action `version` answers (used for metric labels, so
/// that arbitrary action names from chargers cannot grow the label set).
pub fn is_known_action(version: OcppVersion, action: &str) -> bool {
    match version {
        OcppVersion::V16 => v16::ACTIONS.contains(&action),
        OcppVersion::V201 => v201::ACTIONS.contains(&action),
    }
}
