//! OCPP-J framing as a charger sees it: parsing what the CSMS sends (CALL, CALLRESULT,
//! CALLERROR) and building what the charger sends. Payloads stay `serde_json::Value` here; the
//! version modules check them against the `rust-ocpp` types.

use serde_json::{json, Value};

/// A frame received from the CSMS.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A CSMS-initiated call the charger must answer.
    Call {
        /// Message id to echo in the answer.
        id: String,
        /// OCPP action name.
        action: String,
        /// The request payload.
        payload: Value,
    },
    /// The answer to one of our calls.
    Result {
        /// Message id of our call.
        id: String,
        /// The response payload.
        payload: Value,
    },
    /// The CSMS refused or failed one of our calls.
    Error {
        /// Message id of our call.
        id: String,
        /// OCPP error code (`FormationViolation`, `NotImplemented`, ...).
        code: String,
        /// Free text from the CSMS.
        description: String,
    },
}

/// Parses one text frame from the CSMS; the error says what was wrong with it.
pub fn parse(text: &str) -> Result<Incoming, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = value
        .as_array()
        .ok_or_else(|| "not a JSON array".to_string())?;
    let kind = items
        .first()
        .and_then(Value::as_u64)
        .ok_or_else(|| "no message type".to_string())?;
    let id = items
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| "no message id".to_string())?
        .to_string();
    match (kind, items.len()) {
        (2, 4) => Ok(Incoming::Call {
            id,
            action: items[2]
                .as_str()
                .ok_or_else(|| "action is not a string".to_string())?
                .to_string(),
            payload: items[3].clone(),
        }),
        (3, 3) => Ok(Incoming::Result {
            id,
            payload: items[2].clone(),
        }),
        (4, 5) => Ok(Incoming::Error {
            id,
            code: items[2].as_str().unwrap_or_default().to_string(),
            description: items[3].as_str().unwrap_or_default().to_string(),
        }),
        (kind, len) => Err(format!("message type {kind} with {len} elements")),
    }
}

/// A CALL frame.
pub fn call(id: &str, action: &str, payload: &Value) -> String {
    json!([2, id, action, payload]).to_string()
}

/// A CALLRESULT frame.
pub fn result(id: &str, payload: &Value) -> String {
    json!([3, id, payload]).to_string()
}

/// A CALLERROR frame.
pub fn error(id: &str, code: &str, description: &str) -> String {
    json!([4, id, code, description, {}]).to_string()
}

/// The kinds of deliberately broken frames the fault injector sends, in rotation.
pub const MALFORMED_KINDS: usize = 4;

/// A deliberately malformed frame of kind `kind % MALFORMED_KINDS`, and whether the CSMS can read
/// its message id (and so is expected to answer with a CALLERROR).
pub fn malformed(kind: usize, id: &str) -> (String, bool) {
    match kind % MALFORMED_KINDS {
        // payload of the wrong type for the action
        0 => (
            format!(
                r#"[2,"{id}","StatusNotification",{{"connectorId":"one","errorCode":"NoError","status":"Available"}}]"#
            ),
            true,
        ),
        // an action nobody knows
        1 => (format!(r#"[2,"{id}","SelfDestruct",{{}}]"#), true),
        // a CALL without its payload
        2 => (format!(r#"[2,"{id}","Heartbeat"]"#), true),
        // not JSON at all: nothing to answer
        _ => ("[2, \"unterminated".to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_frame_kinds() {
        assert_eq!(
            parse(r#"[2,"7","Reset",{"type":"Soft"}]"#),
            Ok(Incoming::Call {
                id: "7".into(),
                action: "Reset".into(),
                payload: json!({"type": "Soft"})
            })
        );
        assert_eq!(
            parse(r#"[3,"a1",{"currentTime":"2026-01-01T00:00:00Z"}]"#),
            Ok(Incoming::Result {
                id: "a1".into(),
                payload: json!({"currentTime": "2026-01-01T00:00:00Z"})
            })
        );
        assert_eq!(
            parse(r#"[4,"a2","NotImplemented","no",{}]"#),
            Ok(Incoming::Error {
                id: "a2".into(),
                code: "NotImplemented".into(),
                description: "no".into()
            })
        );
    }

    #[test]
    fn rejects_frames_that_are_not_ocpp_j() {
        assert!(parse("hello").is_err());
        assert!(parse("{}").is_err());
        assert!(parse(r#"[2,"1","Reset"]"#).is_err());
        assert!(parse(r#"[9,"1",{}]"#).is_err());
    }

    #[test]
    fn builds_frames_that_parse_back() {
        let text = call("m1", "Heartbeat", &json!({}));
        assert_eq!(
            parse(&text),
            Ok(Incoming::Call {
                id: "m1".into(),
                action: "Heartbeat".into(),
                payload: json!({})
            })
        );
        assert!(matches!(
            parse(&error("x", "GenericError", "d")),
            Ok(Incoming::Error { .. })
        ));
    }

    #[test]
    fn malformed_frames_are_really_malformed() {
        for kind in 0..MALFORMED_KINDS {
            let (text, readable_id) = malformed(kind, "bad-1");
            let parsed = parse(&text);
            if readable_id {
                // the envelope may be readable, but the frame is not a valid call
                if let Ok(Incoming::Call {
                    action, payload, ..
                }) = parsed
                {
                    assert!(action == "SelfDestruct" || payload["connectorId"] == "one");
                }
            } else {
                assert!(parsed.is_err());
            }
        }
    }
}
