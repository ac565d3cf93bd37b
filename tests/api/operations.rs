//! The operator read models (`overview`, `sessions`, `invoices`, `users`, `stationPoints`,
//! `Charger.commands`, `Session.meterValues`): staff only, and what they count is what exists.

use serde_json::json;

use crate::charger_client::connect16;
use crate::helpers::{error_code, spawn_app, CHARGER_PASSWORD};

const STAFF_LISTS: &[&str] = &[
    "{ overview { chargersOnline } }",
    "{ sessions { id } }",
    "{ invoices { id } }",
    "{ users { id walletBalance } }",
    "{ stationPoints { id } }",
];

#[actix_web::test]
async fn the_operator_views_are_refused_to_drivers_and_anonymous_callers() {
    let app = spawn_app().await;
    let (driver, _, _) = app.register("driver@example.com", "driver password").await;
    for query in STAFF_LISTS {
        let response = app.graphql(query, json!({}), Some(&driver)).await;
        assert_eq!(
            error_code(&response).as_deref(),
            Some("FORBIDDEN"),
            "{query}: {response}"
        );
        let response = app.graphql(query, json!({}), None).await;
        assert_eq!(
            error_code(&response).as_deref(),
            Some("UNAUTHENTICATED"),
            "{query}: {response}"
        );
    }
    let operator = app.staff_token("OPERATOR").await;
    for query in STAFF_LISTS {
        let response = app.graphql(query, json!({}), Some(&operator)).await;
        assert!(response["errors"].is_null(), "{query}: {response}");
    }
    let response = app
        .graphql("{ sessions(first: 0) { id } }", json!({}), Some(&operator))
        .await;
    assert_eq!(error_code(&response).as_deref(), Some("BAD_USER_INPUT"));
    // a driver's idTag is a charging credential: an OPERATOR listing users does not read it,
    // an ADMIN and the driver do
    let list = "{ users(role: DRIVER) { email idTag } }";
    let response = app.graphql(list, json!({}), Some(&operator)).await;
    assert_eq!(
        error_code(&response).as_deref(),
        Some("FORBIDDEN"),
        "{response}"
    );
    let admin = app.staff_token("ADMIN").await;
    let response = app.graphql(list, json!({}), Some(&admin)).await;
    assert!(response["errors"].is_null(), "{response}");
    assert!(
        response["data"]["users"][0]["idTag"].is_string(),
        "{response}"
    );
    let mine = app
        .graphql("{ me { idTag } }", json!({}), Some(&driver))
        .await;
    assert!(mine["data"]["me"]["idTag"].is_string(), "{mine}");
}

#[actix_web::test]
async fn the_overview_counts_online_offline_and_faulted_chargers() {
    let app = spawn_app().await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Overview station").await;
    for id in ["CP-O1", "CP-O2", "CP-O3"] {
        app.register_charger(&operator, id, station, None).await;
    }
    let mut faulted = connect16(app.port, "CP-O1", Some(("CP-O1", CHARGER_PASSWORD))).await;
    faulted.boot().await;
    faulted
        .call(
            "StatusNotification",
            json!({ "connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted" }),
        )
        .await
        .unwrap();
    let mut fine = connect16(app.port, "CP-O2", Some(("CP-O2", CHARGER_PASSWORD))).await;
    fine.boot().await;
    let overview = || async {
        app.graphql(
            "{ overview { chargersOnline chargersOffline chargersFaulted sessionsRunning energyTodayKWh } }",
            json!({}),
            Some(&operator),
        )
        .await["data"]["overview"]
            .clone()
    };
    assert!(
        app.wait_until(std::time::Duration::from_secs(10), || async {
            overview().await
                == json!({ "chargersOnline": 2, "chargersOffline": 1, "chargersFaulted": 1, "sessionsRunning": 0, "energyTodayKWh": 0.0 })
        })
        .await,
        "{}",
        overview().await
    );
    let points = app
        .graphql(
            "{ stationPoints { name chargers chargersOnline } }",
            json!({}),
            Some(&operator),
        )
        .await;
    assert_eq!(
        points["data"]["stationPoints"][0],
        json!({ "name": "Overview station", "chargers": 3, "chargersOnline": 2 })
    );
}

#[actix_web::test]
async fn a_chargers_command_history_shows_each_command_and_how_it_ended() {
    let app = spawn_app().await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("History station").await;
    app.register_charger(&operator, "CP-H1", station, None)
        .await;
    let mut cp = connect16(app.port, "CP-H1", Some(("CP-H1", CHARGER_PASSWORD))).await;
    cp.boot().await;
    let command = app.graphql(
        "mutation { sendChargerCommand(chargerId: \"CP-H1\", action: \"ClearCache\", payload: {}) }",
        json!({}),
        Some(&operator),
    );
    let charger = async {
        let (id, action, _) = cp.next_server_call().await;
        assert_eq!(action, "ClearCache");
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (answer, ()) = tokio::join!(command, charger);
    assert_eq!(
        answer["data"]["sendChargerCommand"]["status"], "Accepted",
        "{answer}"
    );
    drop(cp);
    let offline = app
        .graphql(
            "mutation { resetCharger(chargerId: \"CP-H1\") }",
            json!({}),
            Some(&operator),
        )
        .await;
    assert_eq!(error_code(&offline).as_deref(), Some("CHARGER_OFFLINE"));

    let history = app
        .graphql(
            "{ charger(id: \"CP-H1\") { commands { action ocppAction outcome } } }",
            json!({}),
            Some(&operator),
        )
        .await;
    let commands = &history["data"]["charger"]["commands"];
    assert_eq!(
        commands[0],
        json!({ "action": "resetCharger", "ocppAction": null, "outcome": "CHARGER_OFFLINE" }),
        "{history}"
    );
    assert_eq!(
        commands[1],
        json!({ "action": "sendChargerCommand", "ocppAction": "ClearCache", "outcome": "ok" }),
        "{history}"
    );
    assert_eq!(commands[2]["action"], "registerCharger", "{history}");
}

/// Publishes a SESSION_ENDED envelope without its fields, which billing dead-letters at once.
pub async fn dead_letter_one(app: &crate::helpers::TestApp) {
    use lapin::options::BasicPublishOptions;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    use secrecy::ExposeSecret;
    let connection = Connection::connect(
        app.ctx.settings.amqp.url.expose_secret(),
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ");
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            &app.ctx.topology().events_exchange(),
            "session.ended",
            BasicPublishOptions::default(),
            br#"{"eventId":"0192aaaa-0000-7000-8000-000000000001","eventType":"SESSION_ENDED"}"#,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let _ = connection.close(200, "").await;
}

pub const DEAD_LETTERS: &str =
    "{ deadLetterQueues { queue depth first { eventType eventId reason bytes } } }";

#[actix_web::test]
async fn an_admin_sees_dead_letters_without_taking_them_and_replays_them() {
    let app = crate::helpers::spawn_app_with_workers(|_| {}).await;
    let admin = app.staff_token("ADMIN").await;
    let operator = app.staff_token("OPERATOR").await;
    let billing = app
        .ctx
        .topology()
        .queue(&chargegrid::events::topology::BILLING);
    let refused = app.graphql(DEAD_LETTERS, json!({}), Some(&operator)).await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{refused}"
    );
    // the worker declares its queues as it starts consuming
    let declared = app
        .wait_until(std::time::Duration::from_secs(10), || async {
            app.graphql(DEAD_LETTERS, json!({}), Some(&admin)).await["data"]["deadLetterQueues"]
                .as_array()
                .is_some_and(|qs| qs.iter().any(|q| q["queue"] == billing.as_str()))
        })
        .await;
    assert!(declared);

    dead_letter_one(&app).await;
    let depth = |response: &serde_json::Value| {
        response["data"]["deadLetterQueues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["queue"] == billing.as_str()).cloned())
            .unwrap_or_default()
    };
    let dead = app
        .wait_until(std::time::Duration::from_secs(15), || async {
            depth(&app.graphql(DEAD_LETTERS, json!({}), Some(&admin)).await)["depth"] == 1
        })
        .await;
    assert!(dead, "the malformed event reached the dead letters");
    // reading twice shows the same letter: peeking takes nothing away
    for _ in 0..2 {
        let queue = depth(&app.graphql(DEAD_LETTERS, json!({}), Some(&admin)).await);
        assert_eq!(queue["depth"], 1, "{queue}");
        assert_eq!(queue["first"][0]["eventType"], "SESSION_ENDED", "{queue}");
        assert_eq!(
            queue["first"][0]["eventId"], "0192aaaa-0000-7000-8000-000000000001",
            "{queue}"
        );
        assert_eq!(queue["first"][0]["bytes"], 78, "{queue}");
        assert!(queue["first"][0]["reason"].is_string(), "{queue}");
    }

    let unknown = app
        .graphql(
            "mutation { replayDeadLetters(queue: \"nope\") }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(error_code(&unknown).as_deref(), Some("BAD_USER_INPUT"));
    let replayed = app
        .graphql(
            "mutation($q: String!) { replayDeadLetters(queue: $q) }",
            json!({ "q": billing }),
            Some(&admin),
        )
        .await;
    assert_eq!(replayed["data"]["replayDeadLetters"], 1, "{replayed}");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'replayDeadLetters' AND target = $1",
    )
    .bind(&billing)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}
