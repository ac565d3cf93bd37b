//! What the fuzzer checks for each frame a charger could send: the same steps the charger actor
//! takes before anything is stored (the size limit, `frame::parse`, then the version's
//! `precheck`), as a verdict. `examples/fuzz_ocpp.rs` drives millions of generated and mutated
//! frames through it.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::frame::{self, Frame, FrameError};
use super::{v16, v201, OcppVersion};

/// How the actor ends a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answered: `ok` (the handler would run) or the CALLERROR code.
    Answered(String),
    /// A CALLRESULT / CALLERROR: matched to a call in flight, or dropped.
    Reply,
    /// No readable message id: nothing can be answered; dropped (and logged).
    Dropped(String),
}

/// The verdict on one text frame from a charger speaking `version`.
pub fn check_frame(version: OcppVersion, text: &str, max_frame_bytes: usize) -> Verdict {
    if text.len() > max_frame_bytes {
        return match frame::peek_id(text) {
            Some(_) => Verdict::Answered(
                super::CallErrorCode::FormationViolation
                    .as_str(version)
                    .into(),
            ),
            None => Verdict::Dropped("oversized".into()),
        };
    }
    match frame::parse(text) {
        Ok(Frame::Call(call)) => {
            let checked = match version {
                OcppVersion::V16 => v16::precheck(&call.action, call.payload),
                OcppVersion::V201 => v201::precheck(&call.action, call.payload),
            };
            match checked {
                Ok(()) => Verdict::Answered("ok".into()),
                Err(failure) => Verdict::Answered(failure.code.as_str(version).into()),
            }
        }
        Ok(Frame::CallResult { .. } | Frame::CallError { .. }) => Verdict::Reply,
        Err(FrameError::Invalid { code, .. }) => Verdict::Answered(code.as_str(version).into()),
        Err(FrameError::InvalidReply { .. }) => Verdict::Reply,
        Err(FrameError::Unreadable(reason)) => Verdict::Dropped(reason),
    }
}

// ---- input generation (shared by the fuzz command and the socket-level fuzz test) -----------

/// One fuzz input for `version`: a valid frame with values replaced, removed or added (60 %),
/// a valid frame with its bytes damaged (30 %), or a frame generated from scratch (10 %).
pub fn input(version: OcppVersion, rng: &mut StdRng) -> String {
    let (seeds, actions) = match version {
        OcppVersion::V16 => (seeds_16(), v16::ACTIONS),
        OcppVersion::V201 => (seeds_201(), v201::ACTIONS),
    };
    match rng.gen_range(0..10) {
        0..=5 => {
            let mut frame = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(1..4) {
                mutate_value(&mut frame, rng, 0);
            }
            frame.to_string()
        }
        6..=8 => mutate_text(&seeds[rng.gen_range(0..seeds.len())].to_string(), rng),
        _ => generated(rng, actions),
    }
}

pub fn seeds_16() -> Vec<Value> {
    vec![
        json!([2, "1", "BootNotification", { "chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1.0" }]),
        json!([2, "2", "Heartbeat", {}]),
        json!([2, "3", "StatusNotification", { "connectorId": 1, "errorCode": "NoError", "status": "Available" }]),
        json!([2, "4", "Authorize", { "idTag": "TAG-1" }]),
        json!([2, "5", "StartTransaction", { "connectorId": 1, "idTag": "TAG-1", "meterStart": 100, "timestamp": "2026-12-03T10:00:00Z" }]),
        json!([2, "6", "MeterValues", { "connectorId": 1, "transactionId": 7, "meterValue": [{ "timestamp": "2026-12-03T10:01:00Z", "sampledValue": [
            { "value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh" },
            { "value": "7.2", "measurand": "Power.Active.Import", "unit": "kW" },
            { "value": "230", "measurand": "Voltage", "phase": "L1-N", "unit": "V" },
            { "value": "16", "measurand": "Current.Import", "phase": "L1", "unit": "A" }]}]}]),
        json!([2, "7", "StopTransaction", { "transactionId": 7, "meterStop": 5000, "timestamp": "2026-12-03T11:00:00Z", "idTag": "TAG-1", "reason": "Local",
            "transactionData": [{ "timestamp": "2026-12-03T11:00:00Z", "sampledValue": [{ "value": "5", "unit": "kWh" }] }] }]),
        json!([2, "8", "DataTransfer", { "vendorId": "X", "messageId": "m", "data": "d" }]),
        json!([2, "9", "DiagnosticsStatusNotification", { "status": "Uploaded" }]),
        json!([2, "10", "FirmwareStatusNotification", { "status": "Installed" }]),
        json!([3, "11", { "status": "Accepted" }]),
        json!([4, "12", "NotImplemented", "no", {}]),
    ]
}

pub fn seeds_201() -> Vec<Value> {
    vec![
        json!([2, "1", "BootNotification", { "reason": "PowerUp", "chargingStation": { "vendorName": "V", "model": "M" } }]),
        json!([2, "2", "Heartbeat", {}]),
        json!([2, "3", "StatusNotification", { "timestamp": "2026-12-03T10:00:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1 }]),
        json!([2, "4", "Authorize", { "idToken": { "idToken": "TAG-1", "type": "ISO14443" } }]),
        json!([2, "5", "TransactionEvent", { "eventType": "Started", "timestamp": "2026-12-03T10:00:00Z", "triggerReason": "Authorized", "seqNo": 0,
            "transactionInfo": { "transactionId": "T-1" }, "evse": { "id": 1, "connectorId": 1 }, "idToken": { "idToken": "TAG-1", "type": "ISO14443" },
            "meterValue": [{ "timestamp": "2026-12-03T10:00:00Z", "sampledValue": [{ "value": 100.0, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": { "unit": "Wh", "multiplier": 0 } }] }] }]),
        json!([2, "6", "TransactionEvent", { "eventType": "Ended", "timestamp": "2026-12-03T11:00:00Z", "triggerReason": "EVDeparted", "seqNo": 3,
            "transactionInfo": { "transactionId": "T-1", "stoppedReason": "EVDisconnected" },
            "meterValue": [{ "timestamp": "2026-12-03T11:00:00Z", "sampledValue": [{ "value": 5.0, "unitOfMeasure": { "unit": "kWh", "multiplier": 3 } }] }] }]),
        json!([2, "7", "MeterValues", { "evseId": 1, "meterValue": [{ "timestamp": "2026-12-03T10:01:00Z", "sampledValue": [{ "value": 7200.0, "measurand": "Power.Active.Import" }] }] }]),
        json!([2, "8", "NotifyReport", { "requestId": 1, "generatedAt": "2026-12-03T10:00:00Z", "seqNo": 0, "reportData": [
            { "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "HeartbeatInterval" }, "variableAttribute": [{ "value": "300" }] }] }]),
        json!([2, "9", "DataTransfer", { "vendorId": "X" }]),
        json!([2, "10", "NotifyEvent", { "generatedAt": "2026-12-03T10:00:00Z", "seqNo": 0, "eventData": [] }]),
        json!([2, "11", "SecurityEventNotification", { "type": "StartupOfTheDevice", "timestamp": "2026-12-03T10:00:00Z" }]),
        json!([2, "12", "FirmwareStatusNotification", { "status": "Installed" }]),
        json!([2, "13", "LogStatusNotification", { "status": "Uploaded" }]),
    ]
}

/// Values that break naive code: huge, tiny, negative, fractional, wrong type, long, deep.
pub fn absurd(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..20) {
        0 => json!("79228162514264337593543950335"),
        1 => json!(-1),
        2 => json!(i64::MAX),
        3 => json!(i64::MIN),
        4 => json!(u64::MAX),
        5 => json!(1e308),
        6 => json!(-1e-308),
        7 => json!("NaN"),
        8 => json!(""),
        9 => json!(null),
        10 => json!(true),
        11 => json!("x".repeat(rng.gen_range(1..5000))),
        12 => json!([]),
        13 => json!({}),
        14 => json!("2026-02-30T25:61:61Z"),
        15 => json!("\u{0}\u{202e}\u{1F50C}"),
        16 => json!(rng.gen_range(-10..10)),
        17 => json!(format!(
            "{}",
            rng.gen::<f64>() * 10f64.powi(rng.gen_range(-30..30))
        )),
        18 => {
            let mut v = json!(1);
            for _ in 0..rng.gen_range(1..200) {
                v = json!([v]);
            }
            v
        }
        _ => json!(rng.gen::<f64>() * 1e6 - 5e5),
    }
}

/// Replaces, removes or adds one thing somewhere in the value.
pub fn mutate_value(value: &mut Value, rng: &mut StdRng, depth: usize) {
    match value {
        Value::Object(map) if !map.is_empty() && depth < 12 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[rng.gen_range(0..keys.len())].clone();
            match rng.gen_range(0..6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(format!("extra{}", rng.gen::<u8>()), absurd(rng));
                }
                2 => {
                    map.insert(key, absurd(rng));
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate_value(child, rng, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 12 => match rng.gen_range(0..5) {
            0 => {
                items.clear();
            }
            1 => {
                let copy = items[0].clone();
                for _ in 0..rng.gen_range(1..50) {
                    items.push(copy.clone());
                }
            }
            _ => {
                let i = rng.gen_range(0..items.len());
                mutate_value(&mut items[i], rng, depth + 1);
            }
        },
        other => *other = absurd(rng),
    }
}

/// Byte-level damage to a frame's text.
pub fn mutate_text(text: &str, rng: &mut StdRng) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.gen_range(1..6) {
        if bytes.is_empty() {
            break;
        }
        let i = rng.gen_range(0..bytes.len());
        match rng.gen_range(0..5) {
            0 => bytes[i] = rng.gen(),
            1 => {
                bytes.remove(i);
            }
            2 => bytes.insert(i, b"{}[],:\"\\0123456789e-.nultr"[rng.gen_range(0..26)]),
            3 => bytes.truncate(i),
            _ => {
                let j = rng.gen_range(0..bytes.len());
                bytes.swap(i, j);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn generated(rng: &mut StdRng, actions: &[&str]) -> String {
    let kind = [0u64, 1, 2, 2, 2, 3, 4, 5, 9][rng.gen_range(0..9)];
    let id = match rng.gen_range(0..4) {
        0 => json!(""),
        1 => json!("x".repeat(rng.gen_range(1..80))),
        2 => absurd(rng),
        _ => json!(format!("m{}", rng.gen::<u32>())),
    };
    let action = if rng.gen_bool(0.8) {
        json!(actions[rng.gen_range(0..actions.len())])
    } else {
        absurd(rng)
    };
    let mut payload = json!({});
    for _ in 0..rng.gen_range(0..6) {
        payload[format!("k{}", rng.gen_range(0..5))] = absurd(rng);
    }
    let frame = match rng.gen_range(0..4) {
        0 => json!([kind, id, action, payload]),
        1 => json!([kind, id, payload]),
        2 => json!([kind, id, action, payload, absurd(rng)]),
        _ => json!([kind, id]),
    };
    frame.to_string()
}
