//! A station says how much it takes in one message (DeviceDataCtrlr.ItemsPerMessage and
//! BytesPerMessage, per action, in its device model). GetVariables and SetVariables requests
//! longer than that are split into several (TC_B_08); their results are put back together in
//! the order they were asked for, so the caller sees one answer. The parts go one after the
//! other; when one fails the caller gets its error, and for SetVariables the parts before it
//! are already applied (their results are in the station's device model, not in the error).

use serde_json::{json, Value};

use super::registry;
use crate::context::AppContext;
use crate::ocpp::command::{ChargerCommand, CommandError};

/// The OCPP-J CALL frame around a payload: `[2,"` a 36-character message id `","` the action
/// `",` and `]`, with room to spare.
const FRAME_BYTES: usize = 64;

/// The request list and the result list of an action the station may limit.
fn lists(action: &str) -> Option<(&'static str, &'static str)> {
    match action {
        "GetVariables" => Some(("getVariableData", "getVariableResult")),
        "SetVariables" => Some(("setVariableData", "setVariableResult")),
        _ => None,
    }
}

/// Splits `items` (in order) so that no part has more than `max_items` items nor serialises,
/// inside `{"<list>": [...]}`, to more than `max_bytes`. An item too big on its own goes alone
/// (the station answers it as it sees fit).
pub fn split(
    list: &str,
    items: &[Value],
    max_items: Option<usize>,
    max_bytes: Option<usize>,
) -> Vec<Vec<Value>> {
    let max_items = max_items.unwrap_or(usize::MAX).max(1);
    // {"<list>":[ ... ]} around the items, a comma between two of them, and the OCPP-J frame
    // around the payload ([2,"<uuid>","SetVariables",...]) for a station that counts it
    let overhead = list.len() + 7 + FRAME_BYTES;
    let mut parts: Vec<Vec<Value>> = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut bytes = overhead;
    for item in items {
        let size = item.to_string().len() + usize::from(!current.is_empty());
        let too_many = current.len() >= max_items;
        let too_big = max_bytes.is_some_and(|max| bytes + size > max);
        if !current.is_empty() && (too_many || too_big) {
            parts.push(std::mem::take(&mut current));
            bytes = overhead;
        }
        bytes += item.to_string().len() + usize::from(!current.is_empty());
        current.push(item.clone());
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

/// Sends `command` to the charger; a GetVariables or SetVariables longer than the station
/// takes goes as several requests, one after the other, answered as one.
pub async fn execute(
    app: &AppContext,
    charger_id: &str,
    command: ChargerCommand,
) -> Result<Value, CommandError> {
    let ChargerCommand::Raw { action, payload } = &command else {
        return registry::execute(app, charger_id, command).await;
    };
    let Some((list, results)) = lists(action) else {
        return registry::execute(app, charger_id, command).await;
    };
    let items = payload[list].as_array().cloned().unwrap_or_default();
    let (max_items, max_bytes) =
        crate::store::device_model::message_limits(&app.db, charger_id, action)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, %charger_id, "message limits not read: sent whole");
                (None, None)
            });
    let parts = split(list, &items, max_items, max_bytes);
    if parts.len() <= 1 {
        return registry::execute(app, charger_id, command).await;
    }
    tracing::info!(%charger_id, action = %action, items = items.len(), parts = parts.len(), "request split by the station's message limits");
    let mut answered = Vec::with_capacity(items.len());
    for part in parts {
        let mut request = payload.clone();
        request[list] = Value::Array(part);
        let reply = registry::execute(
            app,
            charger_id,
            ChargerCommand::Raw {
                action: action.clone(),
                payload: request,
            },
        )
        .await?;
        if let Some(found) = reply[results].as_array() {
            answered.extend(found.iter().cloned());
        }
    }
    Ok(json!({ results: answered }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({ "component": { "name": "C" }, "variable": { "name": format!("V{i}") } }))
            .collect()
    }

    #[test]
    fn items_per_message_bounds_every_part_and_keeps_the_order() {
        let parts = split("getVariableData", &items(10), Some(4), None);
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        let flat: Vec<Value> = parts.into_iter().flatten().collect();
        assert_eq!(flat, items(10));
    }

    #[test]
    fn bytes_per_message_bounds_every_part() {
        let all = items(10);
        let max = 200;
        let parts = split("getVariableData", &all, None, Some(max));
        assert!(parts.len() > 1);
        for part in &parts {
            let size = json!({ "getVariableData": part }).to_string().len();
            assert!(size <= max, "{size} > {max}");
        }
        assert_eq!(parts.into_iter().flatten().count(), 10);
    }

    #[test]
    fn without_limits_or_within_them_nothing_is_split() {
        assert_eq!(split("getVariableData", &items(3), None, None).len(), 1);
        assert_eq!(split("getVariableData", &items(3), Some(3), None).len(), 1);
        assert_eq!(
            split("getVariableData", &[], Some(3), None),
            vec![Vec::<Value>::new()]
        );
        // an item bigger than the limit on its own still goes, alone
        assert_eq!(split("getVariableData", &items(2), None, Some(10)).len(), 2);
    }
}
