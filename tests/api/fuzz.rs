//! Fuzzed frames over real sockets: generated and mutated frames (the generator of
//! `examples/fuzz_ocpp.rs`) sent by a 1.6 and a 2.0.1 charger. Every well-formed CALL gets an
//! answer with its id, nothing kills the connection, and the charger works afterwards.

use std::time::Duration;

use chargegrid::ocpp::fuzz::input;
use chargegrid::ocpp::OcppVersion;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::charger_client::{connect16, connect201, TestCharger};
use crate::helpers::{spawn_app, CHARGER_PASSWORD};

/// Frames per protocol version.
const FRAMES: usize = 1500;

/// Sends every frame; each well-formed CALL must be answered (CALLRESULT or CALLERROR) with its
/// id before the next one is sent.
async fn hammer(cp: &mut TestCharger, version: OcppVersion, seed: u64) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut calls, mut answered) = (0, 0);
    for _ in 0..FRAMES {
        let text = input(version, &mut rng);
        let call_id = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            (v.get(0).and_then(Value::as_u64) == Some(2)
                && v.as_array().is_some_and(|a| a.len() == 4))
            .then(|| v.get(1).and_then(Value::as_str).map(String::from))
            .flatten()
            .filter(|id| (1..=36).contains(&id.len()) && !id.contains('\\'))
        });
        cp.send_text(&text).await;
        let Some(id) = call_id else { continue };
        calls += 1;
        // the answer to this call, skipping answers to earlier damaged frames that still had
        // a readable id
        loop {
            let frame = cp
                .recv_within(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("no answer to {text}"));
            if frame[1] == id.as_str() && matches!(frame[0].as_u64(), Some(3 | 4)) {
                answered += 1;
                break;
            }
        }
    }
    (calls, answered)
}

#[actix_web::test]
async fn mutated_frames_over_a_socket_are_answered_and_the_socket_survives() {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Fuzz station").await;
    app.register_charger(&token, "CP-FUZZ-16", station, None)
        .await;
    app.register_charger(&token, "CP-FUZZ-201", station, None)
        .await;

    let mut cp = connect16(
        app.port,
        "CP-FUZZ-16",
        Some(("CP-FUZZ-16", CHARGER_PASSWORD)),
    )
    .await;
    cp.boot().await;
    let (calls, answered) = hammer(&mut cp, OcppVersion::V16, 16).await;
    assert!(calls > FRAMES / 10, "{calls} well-formed calls");
    assert_eq!(calls, answered);
    // answers to damaged frames may still be on their way: the heartbeat waits for its own
    assert!(
        matches!(cp.try_call("Heartbeat", json!({})).await, Some(Ok(_))),
        "the 1.6 socket survives"
    );

    let mut cs = connect201(
        app.port,
        "CP-FUZZ-201",
        Some(("CP-FUZZ-201", CHARGER_PASSWORD)),
    )
    .await;
    cs.boot201().await;
    let (calls, answered) = hammer(&mut cs, OcppVersion::V201, 201).await;
    assert!(calls > FRAMES / 10, "{calls} well-formed calls");
    assert_eq!(calls, answered);
    assert!(
        matches!(cs.try_call("Heartbeat", json!({})).await, Some(Ok(_))),
        "the 2.0.1 socket survives"
    );
    // the server is still whole
    let health = reqwest::get(format!("{}/healthz", app.address))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

/// Generated GraphQL documents (`api::graphql::fuzz`), anonymous and signed in: every answer is
/// a GraphQL response whose errors carry one of the contract's codes, nothing leaks an internal
/// error, and the server stays healthy. `examples/fuzz_graphql.rs` sends many more.
#[actix_web::test]
async fn generated_graphql_queries_get_coded_answers() {
    use chargegrid::api::graphql::fuzz::{document, CODES};
    let app = spawn_app().await;
    let (driver, _, _) = app
        .register("fuzz@example.com", "correct horse battery")
        .await;
    let operator = app.staff_token("OPERATOR").await;
    let mut rng = StdRng::seed_from_u64(2026);
    let mut coded = 0;
    for i in 0..1500 {
        let doc = document(&mut rng);
        let token = [
            None,
            Some(driver.as_str()),
            Some(operator.as_str()),
            Some("garbage"),
        ][i % 4];
        let mut request = app
            .http
            .post(format!("{}/graphql", app.address))
            .json(&json!({ "query": doc, "variables": { "x": [1, {"y": null}] } }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(
            [200, 400, 413, 429, 503].contains(&status),
            "{status} for {doc}"
        );
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e} for {doc}"));
        for error in body["errors"].as_array().into_iter().flatten() {
            let code = error["extensions"]["code"]
                .as_str()
                .unwrap_or_else(|| panic!("no code: {body} for {doc}"));
            assert!(CODES.contains(&code), "{code} for {doc}");
            assert_ne!(code, "INTERNAL", "an internal error for {doc}: {body}");
            coded += 1;
        }
    }
    assert!(coded > 500, "{coded} coded errors");
    let health = reqwest::get(format!("{}/healthz", app.address))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
