//! OCPP-J RPC frames: `[2, id, action, payload]` (CALL), `[3, id, payload]` (CALLRESULT),
//! `[4, id, code, description, details]` (CALLERROR). Parsing tells apart frames that can be
//! answered with a CallError (a message id is readable) from frames that can only be dropped.

use serde_json::{json, Value};

use super::error::CallErrorCode;

/// Longest message id (OCPP-J: 36 characters).
pub const MAX_MESSAGE_ID_CHARS: usize = 36;

/// A charger-initiated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: String,
    pub action: String,
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Call(Call),
    CallResult {
        id: String,
        payload: Value,
    },
    CallError {
        id: String,
        code: String,
        description: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum FrameError {
    /// No message id can be read: log and drop, the connection stays up.
    Unreadable(String),
    /// A CALL-like frame with a readable id: answer with this CallError.
    Invalid {
        id: String,
        code: CallErrorCode,
        description: String,
    },
    /// A malformed CALLRESULT / CALLERROR: answers are never answered, so only log it.
    InvalidReply { id: String, description: String },
}

/// Reads the message id from the start of a frame without parsing the rest, for frames that are
/// not valid JSON or too large to parse.
pub fn peek_id(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('[')?.trim_start();
    let rest = rest
        .strip_prefix(|c: char| c.is_ascii_digit())?
        .trim_start();
    let rest = rest.strip_prefix(',')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    let id = &rest[..end];
    if id.is_empty() || id.len() > MAX_MESSAGE_ID_CHARS || id.contains('\\') {
        return None;
    }
    Some(id.to_string())
}

fn invalid(id: &str, code: CallErrorCode, description: impl Into<String>) -> FrameError {
    FrameError::Invalid {
        id: id.to_string(),
        code,
        description: description.into(),
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Frame, FrameError> {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            return Err(match peek_id(text) {
                Some(id) => invalid(
                    &id,
                    CallErrorCode::FormationViolation,
                    format!("frame is not valid JSON: {e}"),
                ),
                None => FrameError::Unreadable(format!("frame is not valid JSON: {e}")),
            })
        }
    };
    let Value::Array(mut items) = value else {
        return Err(FrameError::Unreadable("frame is not a JSON array".into()));
    };
    let id = match items.get(1) {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_MESSAGE_ID_CHARS => id.clone(),
        _ => {
            return Err(FrameError::Unreadable(
                "frame has no valid message id".into(),
            ))
        }
    };
    // JSON allows U+0000 in strings, PostgreSQL stores it in neither text nor jsonb: a
    // payload carrying one could never be stored, so a transaction message would never be
    // answered. No OCPP string means anything by it; it becomes U+FFFD.
    let has_nul = text.contains("\\u0000");
    let message_type = items.first().and_then(Value::as_u64);
    match message_type {
        Some(2) => {
            if items.len() != 4 {
                return Err(invalid(
                    &id,
                    CallErrorCode::ProtocolError,
                    format!("a CALL has 4 elements, this one has {}", items.len()),
                ));
            }
            let Some(action) = items[2].as_str().map(str::to_string) else {
                return Err(invalid(
                    &id,
                    CallErrorCode::ProtocolError,
                    "the action must be a string",
                ));
            };
            if !items[3].is_object() {
                return Err(invalid(
                    &id,
                    CallErrorCode::FormationViolation,
                    "the payload must be a JSON object",
                ));
            }
            Ok(Frame::Call(Call {
                id,
                action,
                payload: take_payload(&mut items, 3, has_nul),
            }))
        }
        Some(3) if items.len() == 3 && items[2].is_object() => Ok(Frame::CallResult {
            id,
            payload: take_payload(&mut items, 2, has_nul),
        }),
        Some(3) => Err(FrameError::InvalidReply {
            id,
            description: "a CALLRESULT is [3, id, {payload}]".into(),
        }),
        Some(4) => match (
            items.get(2).and_then(Value::as_str),
            items.get(3).and_then(Value::as_str),
        ) {
            (Some(code), Some(description)) if items.len() == 5 => Ok(Frame::CallError {
                id,
                code: code.to_string(),
                description: description.to_string(),
            }),
            _ => Err(FrameError::InvalidReply {
                id,
                description: "a CALLERROR is [4, id, code, description, {details}]".into(),
            }),
        },
        _ => Err(invalid(
            &id,
            CallErrorCode::MessageTypeNotSupported,
            "message type must be 2 (CALL), 3 (CALLRESULT) or 4 (CALLERROR)",
        )),
    }
}

/// The payload at `items[i]`, taken (not copied: the frame is not read again), its U+0000
/// characters replaced when the frame has any. An answer's too: none is stored today, but none
/// can carry one to a store.
fn take_payload(items: &mut [Value], i: usize, has_nul: bool) -> Value {
    let mut payload = items[i].take();
    if has_nul {
        without_nul(&mut payload);
    }
    payload
}

/// Replaces U+0000 in every string and key of `value` with U+FFFD.
fn without_nul(value: &mut Value) {
    const NUL: char = '\u{0}';
    match value {
        Value::String(s) if s.contains(NUL) => *s = s.replace(NUL, "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(without_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains(NUL)) {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    without_nul(&mut v);
                    map.insert(k.replace(NUL, "\u{FFFD}"), v);
                }
            } else {
                map.values_mut().for_each(without_nul);
            }
        }
        _ => {}
    }
}

pub fn call(id: &str, action: &str, payload: &Value) -> String {
    json!([2, id, action, payload]).to_string()
}

pub fn call_result(id: &str, payload: &Value) -> String {
    json!([3, id, payload]).to_string()
}

pub fn call_error(id: &str, code: &str, description: &str) -> String {
    // descriptions are capped so a long parser message cannot bloat the answer
    let description: String = description.chars().take(255).collect();
    json!([4, id, code, description, {}]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_in_a_payload_become_replacement_characters() {
        let Ok(Frame::Call(call)) =
            parse(r#"[2,"a\u0000","Authorize",{"idTag":"T\u0000G","x\u0000":["\u0000"]}]"#)
        else {
            panic!("not a call");
        };
        assert_eq!(call.id, "a\u{0}", "the id is answered as sent");
        assert_eq!(
            call.payload,
            json!({ "idTag": "T\u{FFFD}G", "x\u{FFFD}": ["\u{FFFD}"] })
        );
    }

    #[test]
    fn nul_characters_in_an_answer_become_replacement_characters() {
        let Ok(Frame::CallResult { payload, .. }) =
            parse(r#"[3,"9",{"status":"Accepted","certificate":"A\u0000B"}]"#)
        else {
            panic!("not a result");
        };
        assert_eq!(
            payload,
            json!({ "status": "Accepted", "certificate": "A\u{FFFD}B" })
        );
    }

    #[test]
    fn a_call_and_a_result_keep_their_whole_payload() {
        let Ok(Frame::Call(call)) = parse(
            r#"[2,"7","MeterValues",{"connectorId":1,"meterValue":[{"sampledValue":[{"value":"5"}]}]}]"#,
        ) else {
            panic!("not a call");
        };
        assert_eq!(
            (call.id.as_str(), call.action.as_str()),
            ("7", "MeterValues")
        );
        assert_eq!(
            call.payload,
            json!({ "connectorId": 1, "meterValue": [{ "sampledValue": [{ "value": "5" }] }] })
        );
        let Ok(Frame::CallResult { id, payload }) =
            parse(r#"[3,"8",{"status":"Accepted","n":[1,2]}]"#)
        else {
            panic!("not a result");
        };
        assert_eq!(id, "8");
        assert_eq!(payload, json!({ "status": "Accepted", "n": [1, 2] }));
    }

    #[test]
    fn parses_the_three_message_types() {
        assert!(matches!(
            parse(r#"[2,"1","Heartbeat",{}]"#),
            Ok(Frame::Call(Call { ref action, .. })) if action == "Heartbeat"
        ));
        assert!(matches!(
            parse(r#"[3,"1",{"status":"Accepted"}]"#),
            Ok(Frame::CallResult { .. })
        ));
        assert!(matches!(
            parse(r#"[4,"1","NotImplemented","nope",{}]"#),
            Ok(Frame::CallError { ref code, .. }) if code == "NotImplemented"
        ));
    }

    #[test]
    fn invalid_json_with_a_readable_id_is_a_formation_violation() {
        match parse(r#"[2, "abc-1", "Heartbeat", {"#) {
            Err(FrameError::Invalid { id, code, .. }) => {
                assert_eq!(id, "abc-1");
                assert_eq!(code, CallErrorCode::FormationViolation);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn frames_without_an_id_are_unreadable() {
        for text in [
            "garbage",
            "{}",
            "[2]",
            "[2, 5, \"Heartbeat\", {}]",
            &format!("[2,\"{}\",\"A\",{{}}]", "x".repeat(37)),
        ] {
            assert!(
                matches!(parse(text), Err(FrameError::Unreadable(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn structural_errors_are_protocol_errors() {
        assert!(matches!(
            parse(r#"[2,"1","Heartbeat"]"#),
            Err(FrameError::Invalid {
                code: CallErrorCode::ProtocolError,
                ..
            })
        ));
        assert!(matches!(
            parse(r#"[2,"1","Heartbeat",[]]"#),
            Err(FrameError::Invalid {
                code: CallErrorCode::FormationViolation,
                ..
            })
        ));
        assert!(matches!(
            parse(r#"[7,"1","Heartbeat",{}]"#),
            Err(FrameError::Invalid {
                code: CallErrorCode::MessageTypeNotSupported,
                ..
            })
        ));
    }

    #[test]
    fn peek_id_reads_only_the_prefix() {
        assert_eq!(
            peek_id(r#" [ 2 , "m-9", "X", {"a": "#).as_deref(),
            Some("m-9")
        );
        assert_eq!(peek_id("[2, 9"), None);
    }

    #[test]
    fn serialises_frames() {
        assert_eq!(call_result("7", &json!({})), r#"[3,"7",{}]"#);
        assert_eq!(
            call_error("7", "NotImplemented", "x"),
            r#"[4,"7","NotImplemented","x",{}]"#
        );
        assert_eq!(
            call("7", "Reset", &json!({"type":"Soft"})),
            r#"[2,"7","Reset",{"type":"Soft"}]"#
        );
    }
}
