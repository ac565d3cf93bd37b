//! Decoding a CALL payload into its `rust-ocpp` type, with each failure mapped to the CallError
//! code the specification asks for.

use serde::de::DeserializeOwned;
use serde_json::Value;
use validator::Validate;

use super::error::{CallErrorCode, CallFailure};

/// Deserialises and validates `payload` as `T`.
pub fn decode<T: DeserializeOwned + Validate>(
    action: &str,
    payload: Value,
) -> Result<T, CallFailure> {
    let request: T = decode_shape(action, payload)?;
    check(action, &request)?;
    Ok(request)
}

/// Checks the field constraints of a decoded value (for nested `rust-ocpp` types whose parent
/// does not validate them).
pub fn check<T: Validate>(action: &str, value: &T) -> Result<(), CallFailure> {
    value.validate().map_err(|e| {
        CallFailure::new(
            CallErrorCode::PropertyConstraintViolation,
            format!("{action}: {}", e.to_string().replace('\n', "; ")),
        )
    })
}

/// Checks a string's length against the specification's maximum (OCPP-J reports a too long
/// value as a PropertyConstraintViolation).
pub fn check_len(action: &str, field: &str, value: &str, max: usize) -> Result<(), CallFailure> {
    if value.chars().count() > max {
        return Err(CallFailure::new(
            CallErrorCode::PropertyConstraintViolation,
            format!("{action}: {field} is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// Deserialises `payload` as `T`, for the `rust-ocpp` types that carry no field constraints.
pub fn decode_shape<T: DeserializeOwned>(action: &str, payload: Value) -> Result<T, CallFailure> {
    serde_json::from_value(payload).map_err(|e| classify(action, &e))
}

fn classify(action: &str, err: &serde_json::Error) -> CallFailure {
    let message = err.to_string();
    let code = if message.starts_with("missing field") {
        CallErrorCode::OccurrenceConstraintViolation
    } else if message.starts_with("unknown variant") {
        CallErrorCode::PropertyConstraintViolation
    } else if err.is_data() {
        CallErrorCode::TypeConstraintViolation
    } else {
        CallErrorCode::FormationViolation
    };
    CallFailure::new(code, format!("{action}: {message}"))
}

/// The largest connector (1.6) or EVSE (2.0.1) id a charger may report: each id is a stored
/// row, so a charger must not be able to create them without bound.
pub const MAX_CONNECTOR_ID: i64 = 256;

/// A connector or EVSE id within `0..=MAX_CONNECTOR_ID`, or PropertyConstraintViolation.
pub fn connector_id(action: &str, id: i64) -> Result<i32, CallFailure> {
    if !(0..=MAX_CONNECTOR_ID).contains(&id) {
        return Err(CallFailure::new(
            super::CallErrorCode::PropertyConstraintViolation,
            format!("{action}: connector/EVSE id {id} is outside 0..={MAX_CONNECTOR_ID}"),
        ));
    }
    i32::try_from(id).map_err(CallFailure::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_ocpp::v1_6::messages::boot_notification::BootNotificationRequest;
    use rust_ocpp::v1_6::messages::status_notification::StatusNotificationRequest;
    use serde_json::json;

    #[test]
    fn missing_fields_are_occurrence_violations() {
        let err = decode::<BootNotificationRequest>(
            "BootNotification",
            json!({ "chargePointVendor": "X" }),
        );
        assert_eq!(
            err.err().map(|e| e.code),
            Some(CallErrorCode::OccurrenceConstraintViolation)
        );
    }

    #[test]
    fn wrong_types_are_type_violations() {
        let err = decode::<BootNotificationRequest>(
            "BootNotification",
            json!({ "chargePointVendor": 5, "chargePointModel": "M" }),
        );
        assert_eq!(
            err.err().map(|e| e.code),
            Some(CallErrorCode::TypeConstraintViolation)
        );
    }

    #[test]
    fn bad_enum_values_and_lengths_are_property_violations() {
        let err = decode::<StatusNotificationRequest>(
            "StatusNotification",
            json!({ "connectorId": 1, "errorCode": "NoError", "status": "Dancing" }),
        );
        assert_eq!(
            err.err().map(|e| e.code),
            Some(CallErrorCode::PropertyConstraintViolation)
        );
        let err = decode::<BootNotificationRequest>(
            "BootNotification",
            json!({ "chargePointVendor": "V".repeat(21), "chargePointModel": "M" }),
        );
        assert_eq!(
            err.err().map(|e| e.code),
            Some(CallErrorCode::PropertyConstraintViolation)
        );
    }
}
