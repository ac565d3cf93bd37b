//! Events that are never lost: the outbox relay, billing and notification workers, retries,
//! dead letters and replay, and the cross-replica subscription fan-out — against the real
//! RabbitMQ, Postgres and Mosquitto.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rust_decimal::Decimal;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqlx::Connection as _;
use tokio::sync::mpsc;

use crate::charger_client::{connect16, TestCharger};
use crate::gql_ws::GqlSocket;
use crate::helpers::CHARGER_PASSWORD;
use crate::helpers::{
    error_code, spawn_app, spawn_app_with, spawn_app_with_workers, spawn_roles, TestApp,
};

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn amqp(app: &TestApp) -> Connection {
    Connection::connect(
        app.ctx.settings.amqp.url.expose_secret(),
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ")
}

/// A queue of its own (`<namespace>.<name>`, deleted with its consumer) bound to the events
/// exchange with `binding`, and a consumer on it; keep the connection while consuming.
async fn observe(app: &TestApp, name: &str, binding: &str) -> (Connection, lapin::Consumer) {
    let connection = amqp(app).await;
    let channel = connection.create_channel().await.unwrap();
    let topology = app.ctx.topology();
    let queue = format!("{}.{name}", topology.namespace);
    chargegrid::events::topology::Topology::declare_exchanges(&topology, &channel)
        .await
        .unwrap();
    let auto_delete = QueueDeclareOptions {
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(&queue, auto_delete, FieldTable::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            &queue,
            &topology.events_exchange(),
            binding,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let consumer = channel
        .basic_consume(&queue, name, no_ack, FieldTable::default())
        .await
        .unwrap();
    (connection, consumer)
}

/// Subscribes to a user's notification topic; messages arrive on the returned channel.
async fn mqtt_inbox(app: &TestApp, user_id: &str) -> mpsc::UnboundedReceiver<Value> {
    mqtt_topic_inbox(app, &format!("chargegrid/users/{user_id}/notifications")).await
}

/// Subscribes to `topic`; messages arrive on the returned channel.
pub async fn mqtt_topic_inbox(app: &TestApp, topic: &str) -> mpsc::UnboundedReceiver<Value> {
    let url = url::Url::parse(app.ctx.settings.mqtt.url.expose_secret()).unwrap();
    let mut options = rumqttc::MqttOptions::new(
        format!("test-{}", uuid::Uuid::new_v4().simple()),
        url.host_str().unwrap(),
        url.port().unwrap_or(1883),
    );
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
    client
        .subscribe(topic, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, mut subscribed) = mpsc::channel(1);
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    let _ = subscribed_tx.try_send(());
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    if let Ok(v) = serde_json::from_slice(&p.payload) {
                        let _ = tx.send(v);
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed.recv())
        .await
        .expect("SUBACK");
    rx
}

/// The next notification of `event_type` (others are skipped).
pub async fn notification(inbox: &mut mpsc::UnboundedReceiver<Value>, event_type: &str) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), inbox.recv())
            .await
            .unwrap_or_else(|_| panic!("no {event_type} notification"))
            .expect("inbox open");
        if message["eventType"] == event_type {
            return message;
        }
    }
}

async fn consumed(app: &TestApp, queue: &str, outcome: &str) -> u64 {
    app.ctx
        .metrics
        .events_consumed_total
        .with_label_values(&[queue, outcome])
        .get()
}

struct Billing {
    app: TestApp,
    driver: String,
    user_id: String,
    id_tag: String,
    station: uuid::Uuid,
}

async fn billing_fixture(
    top_up: &str,
    usage_cost: &str,
    customize: impl FnOnce(&mut chargegrid::configuration::Settings),
) -> Billing {
    let app = spawn_app_with_workers(customize).await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Billing station").await;
    sqlx::query("UPDATE stations SET usage_cost = $2 WHERE id = $1")
        .bind(station)
        .bind(usage_cost)
        .execute(&app.db)
        .await
        .unwrap();
    app.register_charger(&operator, "CP-BILL", station, None)
        .await;
    let (driver, _, user_id) = app
        .register("payer@example.com", "correct horse battery")
        .await;
    let me = app.fund(&driver, top_up).await;
    let id_tag = me["idTag"].as_str().unwrap().to_string();
    Billing {
        app,
        driver,
        user_id,
        id_tag,
        station,
    }
}

/// Runs a whole RFID-started session delivering `wh` over `minutes`.
async fn charge(cp: &mut TestCharger, id_tag: &str, wh: i64, minutes: i64) -> i64 {
    let start = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": "2026-11-21T10:00:00Z" }))
        .await
        .unwrap();
    let tid = start["transactionId"].as_i64().unwrap();
    let end = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap()
        + chrono::Duration::minutes(minutes);
    cp.call(
        "StopTransaction",
        json!({ "transactionId": tid, "meterStop": wh, "timestamp": end.to_rfc3339() }),
    )
    .await
    .unwrap();
    tid
}

async fn wait_invoice(app: &TestApp) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        let rows: Vec<(String, Decimal, Decimal, bool)> =
            sqlx::query_as("SELECT status, amount, cost_amount, covered_by_plan FROM invoices")
                .fetch_all(&app.db)
                .await
                .unwrap();
        if let [(status, amount, cost, covered)] = rows.as_slice() {
            return json!({ "status": status, "amount": amount.to_string(), "cost": cost.to_string(), "covered": covered });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no invoice was written");
}

async fn debits(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM wallet_ledger WHERE kind = 'INVOICE_PAYMENT'")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn balance(app: &TestApp, user_id: &str) -> Decimal {
    sqlx::query_scalar("SELECT wallet_balance FROM users WHERE id = $1::uuid")
        .bind(user_id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// A SESSION_ENDED of `session_id` for the billing fixture's driver, as the relay publishes it.
fn session_ended(b: &Billing, session_id: uuid::Uuid, event_id: uuid::Uuid) -> Value {
    json!({
        "eventId": event_id, "eventType": "SESSION_ENDED", "version": 1,
        "timestamp": "2026-11-21T11:00:00Z", "source": "test", "sessionId": session_id,
        "userId": b.user_id, "stationId": b.station, "chargerId": "CP-BILL", "energyKwh": 10.0,
        "durationMinutes": 30, "endedAt": "2026-11-21T11:00:00Z", "stopReason": "Local"
    })
}

/// Publishes `body` to the events exchange under `session.ended`, with a confirm.
async fn publish_ended(channel: &lapin::Channel, exchange: &str, body: &[u8]) {
    publish_confirmed(channel, exchange, "session.ended", body).await;
}

/// Publishes `body` and waits for the broker's confirm (on a channel in confirm mode).
async fn publish_confirmed(channel: &lapin::Channel, exchange: &str, key: &str, body: &[u8]) {
    channel
        .basic_publish(
            exchange,
            key,
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

#[actix_web::test]
async fn a_finished_session_is_billed_once_paid_from_the_wallet_and_notified() {
    let b = billing_fixture("50.00", "€0.40/kWh", |_| {}).await;
    let mut inbox = mqtt_inbox(&b.app, &b.user_id).await;
    let mut cp = connect16(b.app.port, "CP-BILL", Some(("CP-BILL", CHARGER_PASSWORD))).await;
    cp.boot().await;
    charge(&mut cp, &b.id_tag, 10_000, 45).await;

    let invoice = wait_invoice(&b.app).await;
    assert_eq!(invoice["status"], "PAID");
    assert_eq!(dec(invoice["amount"].as_str().unwrap()), dec("4.00"));
    assert_eq!(balance(&b.app, &b.user_id).await, dec("46.00"));
    assert_eq!(debits(&b.app).await, 1);

    let paid = notification(&mut inbox, "PAYMENT_COMPLETED").await;
    assert_eq!(paid["title"], "Payment received");
    assert!(paid["invoiceId"].is_string());
    assert!(paid["eventId"].is_string() && paid["timestamp"].is_string());
    let session = b
        .app
        .graphql(
            "{ mySessions { cost currency invoice { status amount } } }",
            json!({}),
            Some(&b.driver),
        )
        .await;
    assert_eq!(
        session["data"]["mySessions"][0]["cost"], "4.00",
        "{session}"
    );
    assert_eq!(
        session["data"]["mySessions"][0]["invoice"]["status"],
        "PAID"
    );

    // the same SESSION_ENDED delivered three more times: still one invoice, one debit
    let body: String =
        sqlx::query_scalar("SELECT body FROM outbox WHERE event_type = 'SESSION_ENDED'")
            .fetch_one(&b.app.db)
            .await
            .unwrap();
    let connection = amqp(&b.app).await;
    let channel = connection.create_channel().await.unwrap();
    let exchange = b.app.ctx.topology().events_exchange();
    let before = consumed(&b.app, "billing", "ok").await;
    for _ in 0..3 {
        channel
            .basic_publish(
                &exchange,
                "session.ended",
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let handled = b
        .app
        .wait_until(Duration::from_secs(15), || async {
            consumed(&b.app, "billing", "ok").await >= before + 3
        })
        .await;
    assert!(handled, "the duplicates were not consumed");
    let invoices: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices")
        .fetch_one(&b.app.db)
        .await
        .unwrap();
    assert_eq!(invoices, 1);
    assert_eq!(debits(&b.app).await, 1);
    assert_eq!(balance(&b.app, &b.user_id).await, dec("46.00"));
}

/// An invoice in euros is never debited 1:1 from a wallet in dollars: it stays PENDING, and
/// paying it from the wallet is refused with a clear error.
#[actix_web::test]
async fn an_invoice_in_another_currency_is_not_debited_from_the_wallet() {
    let b = billing_fixture("50.00", "€0.40/kWh", |_| {}).await;
    sqlx::query("UPDATE users SET wallet_currency = 'USD' WHERE id = $1::uuid")
        .bind(&b.user_id)
        .execute(&b.app.db)
        .await
        .unwrap();
    let mut cp = connect16(b.app.port, "CP-BILL", Some(("CP-BILL", CHARGER_PASSWORD))).await;
    cp.boot().await;
    charge(&mut cp, &b.id_tag, 10_000, 45).await;
    let invoice = wait_invoice(&b.app).await;
    assert_eq!(invoice["status"], "PENDING");
    assert_eq!(balance(&b.app, &b.user_id).await, dec("50.00"));
    assert_eq!(debits(&b.app).await, 0);
    let invoice_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM invoices")
        .fetch_one(&b.app.db)
        .await
        .unwrap();
    let pay = b
        .app
        .graphql(
            "mutation($id: ID!) { payInvoice(invoiceId: $id, idempotencyKey: \"p\") { status } }",
            json!({ "id": invoice_id }),
            Some(&b.driver),
        )
        .await;
    assert_eq!(error_code(&pay).as_deref(), Some("BAD_USER_INPUT"), "{pay}");
    assert_eq!(balance(&b.app, &b.user_id).await, dec("50.00"));
}

#[actix_web::test]
async fn insufficient_funds_leave_the_invoice_pending_and_pay_invoice_pays_once() {
    let b = billing_fixture("10.00", "€0.50/kWh", |_| {}).await;
    let mut inbox = mqtt_inbox(&b.app, &b.user_id).await;
    let mut cp = connect16(b.app.port, "CP-BILL", Some(("CP-BILL", CHARGER_PASSWORD))).await;
    cp.boot().await;
    charge(&mut cp, &b.id_tag, 40_000, 60).await;
    let invoice = wait_invoice(&b.app).await;
    assert_eq!(invoice["status"], "PENDING");
    assert_eq!(dec(invoice["amount"].as_str().unwrap()), dec("20.00"));
    assert_eq!(
        notification(&mut inbox, "INVOICE_GENERATED").await["title"],
        "Invoice ready"
    );
    assert_eq!(balance(&b.app, &b.user_id).await, dec("10.00"));

    // an unpaid invoice stops new charging, by RFID and from the app, until it is paid
    let authorize = cp
        .call("Authorize", json!({ "idTag": b.id_tag }))
        .await
        .unwrap();
    assert_eq!(authorize["idTagInfo"]["status"], "Blocked");
    let start = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": b.id_tag, "meterStart": 0, "timestamp": "2026-11-21T12:00:00Z" }))
        .await
        .unwrap();
    assert_eq!(start["idTagInfo"]["status"], "Blocked");
    let operator = b.app.staff_token("OPERATOR").await;
    b.app
        .register_charger(&operator, "CP-BILL-201", b.station, None)
        .await;
    let mut cs = crate::charger_client::connect201(
        b.app.port,
        "CP-BILL-201",
        Some(("CP-BILL-201", CHARGER_PASSWORD)),
    )
    .await;
    cs.boot201().await;
    let no_credit = cs
        .call(
            "Authorize",
            json!({ "idToken": { "idToken": b.id_tag, "type": "Central" } }),
        )
        .await
        .unwrap();
    assert_eq!(no_credit["idTokenInfo"]["status"], "NoCredit");
    let app_start = b
        .app
        .graphql(
            "mutation($s: ID!) { startSession(input: { stationId: $s, chargerId: \"CP-BILL\" }) { id } }",
            json!({ "s": b.station.to_string() }),
            Some(&b.driver),
        )
        .await;
    assert_eq!(
        error_code(&app_start).as_deref(),
        Some("INSUFFICIENT_FUNDS"),
        "{app_start}"
    );
    assert!(app_start["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("unpaid invoices"));

    let invoice_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM invoices")
        .fetch_one(&b.app.db)
        .await
        .unwrap();
    const PAY: &str = "mutation($id: ID!, $k: String!) { payInvoice(invoiceId: $id, idempotencyKey: $k) { status amount paidAt } }";
    let short = b
        .app
        .graphql(
            PAY,
            json!({ "id": invoice_id, "k": "pay-1" }),
            Some(&b.driver),
        )
        .await;
    assert_eq!(
        error_code(&short).as_deref(),
        Some("INSUFFICIENT_FUNDS"),
        "{short}"
    );
    assert_eq!(
        notification(&mut inbox, "PAYMENT_FAILED").await["title"],
        "Payment failed"
    );

    b.app.fund(&b.driver, "15").await;
    let retries = (0..5).map(|_| {
        b.app.graphql(
            PAY,
            json!({ "id": invoice_id, "k": "pay-2" }),
            Some(&b.driver),
        )
    });
    for response in futures_util::future::join_all(retries).await {
        assert_eq!(
            response["data"]["payInvoice"]["status"], "PAID",
            "{response}"
        );
    }
    assert_eq!(debits(&b.app).await, 1);
    assert_eq!(balance(&b.app, &b.user_id).await, dec("5.00"));
    // paid: charging may start again
    let authorize = cp
        .call("Authorize", json!({ "idTag": b.id_tag }))
        .await
        .unwrap();
    assert_eq!(authorize["idTagInfo"]["status"], "Accepted");
    let mine = b
        .app
        .graphql(
            "{ myInvoices(status: PAID) { amount currency } }",
            json!({}),
            Some(&b.driver),
        )
        .await;
    assert_eq!(
        mine["data"]["myInvoices"],
        json!([{ "amount": "20.00", "currency": "EUR" }])
    );

    let (stranger, _, _) = b
        .app
        .register("other@example.com", "correct horse battery")
        .await;
    let r = b
        .app
        .graphql(PAY, json!({ "id": invoice_id, "k": "x" }), Some(&stranger))
        .await;
    assert_eq!(error_code(&r).as_deref(), Some("FORBIDDEN"));
}

#[actix_web::test]
async fn flat_rate_users_are_covered_and_the_cost_is_recorded() {
    let b = billing_fixture("10.00", "0,59 EUR/kWh", |_| {}).await;
    sqlx::query("UPDATE users SET plan = 'FLAT_RATE' WHERE id = $1::uuid")
        .bind(&b.user_id)
        .execute(&b.app.db)
        .await
        .unwrap();
    let mut cp = connect16(b.app.port, "CP-BILL", Some(("CP-BILL", CHARGER_PASSWORD))).await;
    cp.boot().await;
    charge(&mut cp, &b.id_tag, 10_000, 30).await;
    let invoice = wait_invoice(&b.app).await;
    assert_eq!(invoice["status"], "PAID");
    assert_eq!(invoice["covered"], true);
    assert_eq!(dec(invoice["amount"].as_str().unwrap()), Decimal::ZERO);
    assert_eq!(dec(invoice["cost"].as_str().unwrap()), dec("5.90"));
    assert_eq!(balance(&b.app, &b.user_id).await, dec("10.00"));
    assert_eq!(debits(&b.app).await, 0);
}

#[actix_web::test]
async fn the_default_tariff_charges_time_after_the_grace_period_and_a_fee() {
    let b = billing_fixture("50.00", "Pay at location", |_| {}).await;
    sqlx::query(
        "INSERT INTO tariffs (id, name, currency, price_per_kwh, price_per_minute, grace_minutes, session_fee, is_default) \
         VALUES ($1, 'Default', 'EUR', 0.39, 0.05, 60, 0.50, TRUE)",
    )
    .bind(uuid::Uuid::new_v4())
    .execute(&b.app.db)
    .await
    .unwrap();
    let mut cp = connect16(b.app.port, "CP-BILL", Some(("CP-BILL", CHARGER_PASSWORD))).await;
    cp.boot().await;
    charge(&mut cp, &b.id_tag, 22_400, 90).await;
    let invoice = wait_invoice(&b.app).await;
    // 22.4 kWh * 0.39 = 8.74, 30 min * 0.05 = 1.50, fee 0.50
    assert_eq!(dec(invoice["amount"].as_str().unwrap()), dec("10.74"));
}

#[actix_web::test]
async fn unpaid_invoices_past_due_become_overdue() {
    let b = billing_fixture("10.00", "€1.00/kWh", |_| {}).await;
    let mut cp = connect16(b.app.port, "CP-BILL", Some(("CP-BILL", CHARGER_PASSWORD))).await;
    cp.boot().await;
    charge(&mut cp, &b.id_tag, 30_000, 30).await;
    assert_eq!(wait_invoice(&b.app).await["status"], "PENDING");
    sqlx::query("UPDATE invoices SET due_date = now() - interval '1 day'")
        .execute(&b.app.db)
        .await
        .unwrap();
    let overdue = b
        .app
        .wait_until(Duration::from_secs(10), || async {
            let status: String = sqlx::query_scalar("SELECT status FROM invoices")
                .fetch_one(&b.app.db)
                .await
                .unwrap();
            status == "OVERDUE"
        })
        .await;
    assert!(overdue);
}

async fn dlq_depth(app: &TestApp, queue: &str) -> u32 {
    let connection = amqp(app).await;
    let channel = connection.create_channel().await.unwrap();
    let q = channel
        .queue_declare(
            &format!("{queue}.dlq"),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "").await;
    q.message_count()
}

#[actix_web::test]
async fn poison_messages_are_dead_lettered_after_retries_and_can_be_replayed() {
    let b = billing_fixture("50.00", "€0.30/kWh", |_| {}).await;
    let queue = b
        .app
        .ctx
        .topology()
        .queue(&chargegrid::events::topology::BILLING);
    let connection = amqp(&b.app).await;
    let channel = connection.create_channel().await.unwrap();
    let exchange = b.app.ctx.topology().events_exchange();

    // malformed: straight to the dead letters
    publish_ended(&channel, &exchange, b"{not json").await;
    // a SESSION_ENDED whose session does not exist (yet): retried, then dead-lettered
    let session_id = uuid::Uuid::new_v4();
    let poison = session_ended(&b, session_id, uuid::Uuid::new_v4());
    publish_ended(&channel, &exchange, poison.to_string().as_bytes()).await;
    let dead = b
        .app
        .wait_until(Duration::from_secs(20), || async {
            dlq_depth(&b.app, &queue).await == 2
        })
        .await;
    assert!(dead, "the poison message did not reach the DLQ");
    assert_eq!(
        consumed(&b.app, "billing", "retry").await,
        4,
        "4 retries before the 5th attempt gave up"
    );

    // the data shows up; an operator replays the dead letters
    sqlx::query("INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, start_time, end_time, energy_kwh) \
                 VALUES ($1, $2::uuid, $3, 'CP-BILL', 1, $4, 'COMPLETED', 'CHARGER', now() - interval '30 minutes', now(), 10)")
        .bind(session_id)
        .bind(&b.user_id)
        .bind(b.station)
        .bind(&b.id_tag)
        .execute(&b.app.db)
        .await
        .unwrap();
    let mut settings = (*b.app.ctx.settings).clone();
    settings.events.retry_base_ms = 50;
    let moved = chargegrid::events::dlq::replay(&settings, &queue)
        .await
        .unwrap();
    assert_eq!(moved, 2);
    let invoice = wait_invoice(&b.app).await;
    assert_eq!(dec(invoice["amount"].as_str().unwrap()), dec("3.00"));
    // the malformed one is dead again, the replayed poison is not
    let settled = b
        .app
        .wait_until(Duration::from_secs(10), || async {
            dlq_depth(&b.app, &queue).await == 1
        })
        .await;
    assert!(settled);
}

#[actix_web::test]
async fn events_survive_the_broker_closing_the_connection_mid_stream() {
    let app = spawn_app_with_workers(|s| s.auth.login_max_per_client = 1000).await;
    app.wait_until(Duration::from_secs(10), || async {
        app.ctx.amqp.is_connected()
    })
    .await;
    // an observer queue that sees every event of this deployment
    let (_connection, mut consumer) = observe(&app, "observer", "#").await;

    let registrations = async {
        for i in 0..40 {
            app.register(&format!("flow{i}@example.com"), "correct horse battery")
                .await;
            if i == 20 {
                // the broker drops our connection (as the management UI's "close connection" does)
                let name = format!(
                    "{}/{}",
                    app.ctx.settings.events.namespace, app.ctx.settings.node_id
                );
                close_connection_named(&name).await;
            }
        }
    };
    registrations.await;
    let expected: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT event_id FROM outbox ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(expected.len() >= 40);
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < expected.len() {
        let delivery = tokio::time::timeout_at(deadline, consumer.next())
            .await
            .expect("every event arrives after the broker came back")
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_slice(&delivery.data).unwrap();
        seen.insert(
            body["eventId"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        );
    }
    assert!(expected.iter().all(|id| seen.contains(id)));
    // the relay marks a batch published right after the broker confirms it
    let all_marked = app
        .wait_until(Duration::from_secs(10), || async {
            let unpublished: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    .fetch_one(&app.db)
                    .await
                    .unwrap();
            unpublished == 0
        })
        .await;
    assert!(all_marked, "events stayed unpublished in the outbox");
}

#[actix_web::test]
async fn billing_resumes_after_the_broker_closes_the_in_process_workers_connection() {
    let b = billing_fixture("50.00", "0,59 EUR/kWh", |_| {}).await;
    let app = &b.app;
    // under `chargegrid all` the workers hold a connection of their own (not the server's)
    let workers_up = app
        .wait_until(Duration::from_secs(10), || async {
            app.ctx.worker_amqp.get().is_some_and(|w| w.is_connected())
        })
        .await;
    assert!(workers_up, "the workers never connected");
    let workers = app.ctx.worker_amqp.get().expect("workers run in process");
    let opened = workers.connections_opened();
    close_connection_named(&format!(
        "{}/{}/workers",
        app.ctx.settings.events.namespace, app.ctx.settings.node_id
    ))
    .await;
    let reconnected = app
        .wait_until(Duration::from_secs(10), || async {
            workers.connections_opened() > opened && workers.is_connected()
        })
        .await;
    assert!(reconnected, "the workers did not connect again");
    // a session that ends after that is invoiced: the workers connected again and consume their
    // queues again (its SESSION_ENDED waits in the durable billing queue until they do)
    let mut cp = connect16(app.port, "CP-BILL", Some(("CP-BILL", CHARGER_PASSWORD))).await;
    cp.boot().await;
    charge(&mut cp, &b.id_tag, 10_000, 30).await;
    let invoice = wait_invoice(app).await;
    assert_eq!(dec(invoice["amount"].as_str().unwrap()), dec("5.90"));
    assert_eq!(debits(app).await, 1);
}

/// Closes the broker-side connection with this client-provided name, through the management API
/// (or rabbitmqctl when the API is not enabled).
async fn close_connection_named(name: &str) {
    let http = reqwest::Client::new();
    let listing = http
        .get("http://127.0.0.1:15672/api/connections")
        .basic_auth("guest", Some("guest"))
        .send()
        .await;
    if let Ok(response) = listing {
        if response.status().is_success() {
            // the management API lists new connections with a delay: look until it shows ours
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let id = loop {
                let connections: Vec<Value> = http
                    .get("http://127.0.0.1:15672/api/connections")
                    .basic_auth("guest", Some("guest"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if let Some(found) = connections
                    .iter()
                    .find(|c| c["client_properties"]["connection_name"] == name)
                {
                    break found["name"].as_str().unwrap().to_string();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no broker connection named {name}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            let id = id.as_str();
            let encoded =
                percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
            let closed = http
                .delete(format!("http://127.0.0.1:15672/api/connections/{encoded}"))
                .basic_auth("guest", Some("guest"))
                .send()
                .await
                .unwrap();
            assert!(
                closed.status().is_success(),
                "closing the connection failed: {}",
                closed.status()
            );
            return;
        }
    }
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties"])
        .output()
        .await
        .expect("rabbitmqctl");
    let text = String::from_utf8_lossy(&output.stdout);
    let pid = text
        .lines()
        .find(|l| l.contains(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no broker connection named {name}"))
        .to_string();
    let status = tokio::process::Command::new("rabbitmqctl")
        .args(["close_connection", &pid, "test closes the connection"])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

#[actix_web::test]
async fn a_subscriber_on_one_replica_sees_session_changes_made_on_another() {
    // replica A holds the charger; replica B only serves the subscriber
    let a = spawn_app_with_workers(|s| s.node_id = "replica-a".into()).await;
    let mut b_settings = (*a.ctx.settings).clone();
    b_settings.node_id = "replica-b".into();
    b_settings.http.bind = "127.0.0.1:0".into();
    let b = spawn_roles(b_settings, &[]).await;

    let operator = a.staff_token("OPERATOR").await;
    let station = a.create_station("Fan-out station").await;
    a.register_charger(&operator, "CP-FAN", station, None).await;
    let (driver, _, _) = a.register("fan@example.com", "correct horse battery").await;
    let id_tag = a.fund(&driver, "20").await["idTag"]
        .as_str()
        .unwrap()
        .to_string();
    let mut cp = connect16(a.port, "CP-FAN", Some(("CP-FAN", CHARGER_PASSWORD))).await;
    cp.boot().await;
    let start = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": "2026-11-21T10:00:00Z" }))
        .await
        .unwrap();
    let tid = start["transactionId"].as_i64().unwrap();
    let session_id = a
        .graphql("{ mySessions { id } }", json!({}), Some(&driver))
        .await["data"]["mySessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut sub = GqlSocket::connect(b.port, Some(&driver), false)
        .await
        .expect("ack on replica B");
    sub.subscribe(
        "s",
        "subscription($id: ID!) { onSessionStatusChanged(sessionId: $id) { status energyKWh } }",
        json!({ "id": session_id }),
    )
    .await;
    assert_eq!(
        sub.next().await.unwrap()["onSessionStatusChanged"]["status"],
        "IN_PROGRESS"
    );
    cp.call(
        "StopTransaction",
        json!({ "transactionId": tid, "meterStop": 7_000, "timestamp": "2026-11-21T10:30:00Z" }),
    )
    .await
    .unwrap();
    loop {
        let update = sub.next().await.unwrap();
        if update["onSessionStatusChanged"]["status"] == "COMPLETED" {
            assert_eq!(update["onSessionStatusChanged"]["energyKWh"], 7.0);
            break;
        }
    }
}

/// Publishes (confirmed) a SESSION_UPDATED of `session` as another replica would.
async fn another_replicas_session_update(
    app: &TestApp,
    channel: &lapin::Channel,
    session: uuid::Uuid,
) {
    // the test topology's exchange goes with its last binding
    app.ctx.topology().declare_exchanges(channel).await.unwrap();
    let event_id = uuid::Uuid::new_v4();
    let body = json!({
        "eventId": event_id, "eventType": "SESSION_UPDATED", "version": 1,
        "timestamp": "2026-12-06T19:00:00Z", "source": "chargegrid-serve/another-replica",
        "sessionId": session, "userId": uuid::Uuid::new_v4(), "energyKwh": 1.0,
        "powerKw": 7.0, "status": "IN_PROGRESS"
    });
    publish_confirmed(
        channel,
        &app.ctx.topology().events_exchange(),
        "session.updated",
        body.to_string().as_bytes(),
    )
    .await;
}

#[actix_web::test]
async fn the_fanout_takes_other_replicas_events_only_while_someone_listens() {
    use chargegrid::live::{Fanout, LiveEvent, Topic};
    let app = spawn_app_with(|s| s.events.fanout_linger_secs = 1).await;
    let received = || app.ctx.metrics.live_fanout_received_total.get();
    let connection = amqp(&app).await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let session = uuid::Uuid::new_v4();
    // nobody on the replica listens: what other replicas publish is not routed to it
    for _ in 0..20 {
        another_replicas_session_update(&app, &channel, session).await;
    }
    let next_change = |mut rx: chargegrid::live::LiveReceiver| async move {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("another replica's change within 10 s")
            .unwrap();
        assert!(matches!(event, LiveEvent::Session { id, .. } if id == session));
        rx
    };
    // a subscriber binds the queue before it reads, and then hears the other replica
    let rx = app.ctx.live.subscribe(Topic::Session(session));
    app.ctx.live.listening().await;
    assert_eq!(app.ctx.live.fanout().state(), Fanout::Bound);
    another_replicas_session_update(&app, &channel, session).await;
    let rx = next_change(rx).await;
    // the queue delivers in order: those published while unbound would have come first
    assert_eq!(
        received(),
        1,
        "events published while nobody listened reached the replica"
    );
    // the last subscriber goes: after the linger the queue is unbound again
    drop(rx);
    let unbound = app
        .wait_until(Duration::from_secs(15), || async {
            app.ctx.live.fanout().state() == Fanout::Unbound
        })
        .await;
    assert!(unbound, "the fan-out stayed bound with nobody listening");
    for _ in 0..5 {
        another_replicas_session_update(&app, &channel, session).await;
    }
    let rx = app.ctx.live.subscribe(Topic::Session(session));
    app.ctx.live.listening().await;
    assert_eq!(app.ctx.live.fanout().state(), Fanout::Bound);
    another_replicas_session_update(&app, &channel, session).await;
    drop(next_change(rx).await);
    assert_eq!(
        received(),
        2,
        "events published after the unbinding reached the replica"
    );
}

async fn next_event(consumer: &mut lapin::Consumer) -> Value {
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .unwrap();
    serde_json::from_slice::<Value>(&delivery.data).unwrap()
}

/// Inserts an outbox row of `aggregate` straight into the table; returns its event id.
async fn raw_outbox_row(app: &TestApp, aggregate: &str, n: u32) -> uuid::Uuid {
    let event_id = uuid::Uuid::new_v4();
    let body = json!({ "eventId": event_id, "aggregate": aggregate, "n": n }).to_string();
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) VALUES ($1, 'TEST_EVENT', $2, 'test.event', $3)",
    )
    .bind(event_id)
    .bind(aggregate)
    .bind(body)
    .execute(&app.db)
    .await
    .unwrap();
    event_id
}

/// `observe`s the test events (`test.#`) as `name`, once the relay has published a warm-up
/// event of aggregate `warmup` to it: the relay's first read (a sweep) is behind the test.
async fn observe_after_warmup(
    app: &TestApp,
    name: &str,
    warmup: &str,
) -> (Connection, lapin::Consumer) {
    let (connection, mut consumer) = observe(app, name, "test.#").await;
    raw_outbox_row(app, warmup, 0).await;
    assert_eq!(next_event(&mut consumer).await["aggregate"], warmup);
    (connection, consumer)
}

#[actix_web::test]
async fn the_relay_keeps_each_aggregates_order_across_small_batches() {
    // as deployed: no retention, a confirmed event is deleted
    let app = spawn_app_with_workers(|s| {
        s.events.relay_batch_size = 2;
        s.events.outbox_retention_hours = 0;
    })
    .await;
    let (_connection, mut consumer) = observe(&app, "order-observer", "test.#").await;
    // two aggregates interleaved, relayed two rows per batch: each keeps its own order
    for n in 1..=4 {
        raw_outbox_row(&app, "agg-a", n).await;
        if n <= 3 {
            raw_outbox_row(&app, "agg-b", n).await;
        }
    }
    let mut seen: std::collections::HashMap<String, Vec<u64>> = Default::default();
    for _ in 0..7 {
        let event = next_event(&mut consumer).await;
        seen.entry(event["aggregate"].as_str().unwrap().to_string())
            .or_default()
            .push(event["n"].as_u64().unwrap());
    }
    assert_eq!(seen["agg-a"], vec![1, 2, 3, 4], "{seen:?}");
    assert_eq!(seen["agg-b"], vec![1, 2, 3], "{seen:?}");
    // and each leaves the outbox once its batch is confirmed (no retention by default: ADR
    // 016, fourth amendment), neither left pending nor kept as published
    let gone = app
        .wait_until(Duration::from_secs(10), || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM outbox WHERE aggregate_id LIKE 'agg-%'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap()
                == 0
        })
        .await;
    assert!(gone, "relayed events were left in the outbox");
}

#[actix_web::test]
async fn a_backlog_goes_out_once_each_in_order_with_batches_in_flight() {
    // published events are kept (marked with their attempts), so that each is seen marked once
    let app = spawn_app_with_workers(|s| {
        s.events.relay_batch_size = 2;
        s.events.outbox_retention_hours = 72;
    })
    .await;
    let (_connection, mut consumer) = observe(&app, "backlog-observer", "test.#").await;
    // 60 events of three aggregates committed at once: 30 batches of two, published up to four
    // batches ahead of their confirms; a batch on its way must not be read again
    sqlx::query(
        "WITH r AS (SELECT i, gen_random_uuid() AS e FROM generate_series(0, 59) i) \
         INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) \
         SELECT e, 'TEST_EVENT', 'backlog-' || (i % 3), 'test.event', \
             json_build_object('eventId', e, 'aggregate', 'backlog-' || (i % 3), 'n', i / 3)::text \
         FROM r ORDER BY i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let mut seen: std::collections::HashMap<String, Vec<u64>> = Default::default();
    for _ in 0..60 {
        let event = next_event(&mut consumer).await;
        seen.entry(event["aggregate"].as_str().unwrap().to_string())
            .or_default()
            .push(event["n"].as_u64().unwrap());
    }
    let each: Vec<u64> = (0..20).collect();
    for aggregate in ["backlog-0", "backlog-1", "backlog-2"] {
        assert_eq!(seen[aggregate], each, "{aggregate}: {seen:?}");
    }
    let marked = app
        .wait_until(Duration::from_secs(10), || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM outbox WHERE aggregate_id LIKE 'backlog-%' \
                 AND (published_at IS NULL OR attempts <> 1)",
            )
            .fetch_one(&app.db)
            .await
            .unwrap()
                == 0
        })
        .await;
    assert!(
        marked,
        "relayed events were left unmarked, or marked more than once"
    );
}

#[actix_web::test]
async fn billing_in_the_same_process_keeps_working_while_charger_traffic_holds_the_servers_pool() {
    // a small pool whose waiters wait longer than this test looks for the invoice, so nothing the
    // server holds is released in time by a pool time-out
    let b = billing_fixture("50.00", "€0.40/kWh", |s| {
        s.database.max_connections = 4;
        s.database.connect_timeout_secs = 30;
    })
    .await;
    // a finished session, written from outside the server's pool
    let mut side = sqlx::PgConnection::connect(&b.app.db_url).await.unwrap();
    let session_id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, start_time, end_time, energy_kwh) \
         VALUES ($1, $2::uuid, $3, 'CP-BILL', 1, $4, 'COMPLETED', 'CHARGER', '2026-11-21T10:00:00Z', '2026-11-21T10:30:00Z', 10)",
    )
    .bind(session_id)
    .bind(&b.user_id)
    .bind(b.station)
    .bind(&b.id_tag)
    .execute(&mut side)
    .await
    .unwrap();

    // every connection of the server's pool is busy (as under a flood of charger messages)
    // (the relay's LISTEN connection already holds one of the four for good)
    let mut held = Vec::new();
    while let Ok(conn) =
        tokio::time::timeout(Duration::from_millis(500), b.app.ctx.db.acquire()).await
    {
        held.push(conn.unwrap());
    }
    assert!(!held.is_empty() && b.app.ctx.db.num_idle() == 0);
    let ended = json!({
        "eventId": uuid::Uuid::new_v4(), "eventType": "SESSION_ENDED", "version": 1,
        "timestamp": "2026-11-21T10:30:00Z", "source": "test", "sessionId": session_id,
        "userId": b.user_id, "stationId": b.station, "chargerId": "CP-BILL", "energyKwh": 10.0,
        "durationMinutes": 30, "endedAt": "2026-11-21T10:30:00Z", "stopReason": "Local"
    });
    let connection = amqp(&b.app).await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            &b.app.ctx.topology().events_exchange(),
            "session.ended",
            BasicPublishOptions::default(),
            ended.to_string().as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    // billed and paid through the workers' own pool while the server's stays exhausted
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM invoices WHERE session_id = $1")
                .bind(session_id)
                .fetch_optional(&mut side)
                .await
                .unwrap();
        if let Some(status) = status {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no invoice while the server's pool was busy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, "PAID");
    assert!(
        b.app.ctx.db.try_acquire().is_none(),
        "the server's pool was exhausted throughout"
    );
    drop(held);
}

#[actix_web::test]
async fn sessions_ending_together_are_billed_in_shared_commits_once_each_whatever_the_deliveries() {
    const SESSIONS: usize = 40;
    let b = billing_fixture("500.00", "€0.30/kWh", |_| {}).await;
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        let id = uuid::Uuid::new_v4();
        sqlx::query("INSERT INTO sessions (id, user_id, station_id, charger_id, id_tag, status, origin, start_time, end_time, energy_kwh) \
                     VALUES ($1, $2::uuid, $3, 'CP-BILL', 'TAG', 'COMPLETED', 'CHARGER', now() - interval '30 minutes', now(), 10)")
            .bind(id)
            .bind(&b.user_id)
            .bind(b.station)
            .execute(&b.app.db)
            .await
            .unwrap();
        sessions.push(id);
    }
    let connection = amqp(&b.app).await;
    let channel = connection.create_channel().await.unwrap();
    let exchange = b.app.ctx.topology().events_exchange();
    let ended =
        |session_id: uuid::Uuid, event_id: uuid::Uuid| session_ended(&b, session_id, event_id);
    // every event delivered twice, and a second event for the first ten sessions
    let mut messages = Vec::new();
    for (i, session) in sessions.iter().enumerate() {
        let event = ended(*session, uuid::Uuid::new_v4());
        messages.push(event.clone());
        messages.push(event);
        if i < 10 {
            messages.push(ended(*session, uuid::Uuid::new_v4()));
        }
    }
    // published together (not each after the last one's confirm): they arrive while a batch
    // commits, however fast a commit is on this machine
    let bodies: Vec<String> = messages.iter().map(|m| m.to_string()).collect();
    futures_util::future::join_all(
        bodies
            .iter()
            .map(|body| publish_ended(&channel, &exchange, body.as_bytes())),
    )
    .await;
    let handled = b
        .app
        .wait_until(Duration::from_secs(20), || async {
            consumed(&b.app, "billing", "ok").await >= messages.len() as u64
        })
        .await;
    assert!(handled, "not every delivery was handled");
    let invoices: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT session_id, count(*) FROM invoices GROUP BY session_id")
            .fetch_all(&b.app.db)
            .await
            .unwrap();
    assert_eq!(invoices.len(), SESSIONS);
    assert!(invoices.iter().all(|(_, n)| *n == 1), "{invoices:?}");
    assert_eq!(debits(&b.app).await, SESSIONS as i64);
    // 10 kWh at 0.30 each: 3.00 per session
    assert_eq!(
        balance(&b.app, &b.user_id).await,
        Decimal::new(50000, 2) - Decimal::new(300 * SESSIONS as i64, 2)
    );
    let commits = b
        .app
        .ctx
        .metrics
        .store_batch_size
        .with_label_values(&["billing"])
        .get_sample_count();
    assert!(
        commits < messages.len() as u64,
        "{} deliveries took {commits} commits",
        messages.len()
    );
}

#[actix_web::test]
async fn critical_security_events_reach_the_operators_over_mqtt() {
    let app = spawn_app_with_workers(|_| {}).await;
    let mut inbox = mqtt_topic_inbox(&app, "chargegrid/operators/security").await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Security").await;
    app.register_charger(&token, "SEC-MQTT", station, None)
        .await;
    let mut cs = crate::charger_client::connect201(
        app.port,
        "SEC-MQTT",
        Some(("SEC-MQTT", crate::helpers::CHARGER_PASSWORD)),
    )
    .await;
    cs.boot201().await;
    cs.call(
        "SecurityEventNotification",
        json!({ "type": "TamperDetectionActivated", "timestamp": "2026-12-03T10:00:00Z", "techInfo": "cabinet opened" }),
    )
    .await
    .unwrap();
    let message = notification(&mut inbox, "SECURITY_EVENT").await;
    assert_eq!(message["chargerId"], "SEC-MQTT");
    assert_eq!(message["title"], "Security event: TamperDetectionActivated");
    assert!(message["body"].as_str().unwrap().contains("cabinet opened"));
}

#[actix_web::test]
async fn published_outbox_events_past_their_retention_are_deleted_and_unpublished_ones_never() {
    let app = crate::helpers::spawn_app_with(|s| s.events.outbox_retention_hours = 72).await;
    // a stopped relay's leftovers: three old published events, one recent, two old unpublished
    // (what the relay still owes, however old)
    for (aggregate, published, created) in [
        ("old-1", Some("5 days"), "6 days"),
        ("old-2", Some("4 days"), "6 days"),
        ("old-3", Some("73 hours"), "74 hours"),
        ("recent", Some("1 hour"), "2 hours"),
        ("owed-1", None, "30 days"),
        ("owed-2", None, "2 hours"),
    ] {
        sqlx::query(
            "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body, created_at, published_at) \
             VALUES ($1, 'RETENTION_TEST', $2, 'retention.test', '{}', now() - $3::interval, now() - $4::interval)",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(aggregate)
        .bind(created)
        .bind(published)
        .execute(&app.db)
        .await
        .unwrap();
    }
    let retention = Duration::from_secs(app.ctx.settings.events.outbox_retention_hours * 3600);
    chargegrid::events::outbox::prune_published(&app.db, retention)
        .await
        .unwrap();
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM outbox WHERE event_type = 'RETENTION_TEST' ORDER BY aggregate_id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(left, vec!["owed-1", "owed-2", "recent"]);
    // nothing more is due
    let again = chargegrid::events::outbox::prune_published(&app.db, retention)
        .await
        .unwrap();
    assert_eq!(again, 0);
}

/// A channel on `connection`, once the notification worker consumes its queue (published
/// before it has bound its queue, events would go nowhere).
async fn notifications_consumed(app: &TestApp, connection: &lapin::Connection) -> lapin::Channel {
    let mut channel = connection.create_channel().await.unwrap();
    let queue = app
        .ctx
        .topology()
        .queue(&chargegrid::events::topology::NOTIFICATIONS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let declared = channel
            .queue_declare(
                &queue,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(q) if q.consumer_count() > 0 => return channel,
            Ok(_) => {}
            // a passive declaration of a missing queue closes the channel
            Err(_) => channel = connection.create_channel().await.unwrap(),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the notification worker never consumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An event delivered again (the relay republishes what it could not mark, a consumer's ack is
/// lost) is notified once: the worker looks each event up before it publishes and records it
/// after, and those share statements with other events' look-ups and records.
#[actix_web::test]
async fn an_event_delivered_three_times_is_notified_once() {
    let app = spawn_app_with_workers(|_| {}).await;
    let user_id = uuid::Uuid::new_v4();
    let mut inbox = mqtt_inbox(&app, &user_id.to_string()).await;
    let connection = amqp(&app).await;
    let channel = notifications_consumed(&app, &connection).await;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = app.ctx.topology().events_exchange();
    let event = |event_id: uuid::Uuid| {
        json!({
            "eventId": event_id, "eventType": "SESSION_STARTED", "version": 1,
            "timestamp": "2026-12-05T12:00:00Z", "source": "test",
            "sessionId": uuid::Uuid::new_v4(), "userId": user_id,
            "stationId": uuid::Uuid::new_v4(), "chargerId": "CP-DUP",
            "connectorId": 1, "startedAt": "2026-12-05T12:00:00Z"
        })
        .to_string()
    };
    let publish = |body: String| {
        let channel = channel.clone();
        let exchange = exchange.clone();
        async move {
            channel
                .basic_publish(
                    &exchange,
                    "session.started",
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    let repeated = uuid::Uuid::new_v4();
    let before = consumed(&app, "notifications", "ok").await;
    for n in 0..3 {
        publish(event(repeated)).await;
        // each copy is handled before the next is sent: the later ones find the record
        let handled = app
            .wait_until(Duration::from_secs(15), || async {
                consumed(&app, "notifications", "ok").await > before + n
            })
            .await;
        assert!(handled, "copy {n} was not handled");
    }
    // a last, different event: the subscriber gets messages in the order they were published
    let last = uuid::Uuid::new_v4();
    publish(event(last)).await;
    let mut got = Vec::new();
    loop {
        let message = notification(&mut inbox, "SESSION_STARTED").await;
        let id = message["eventId"].as_str().unwrap_or_default().to_string();
        got.push(id.clone());
        if id == last.to_string() {
            break;
        }
    }
    assert_eq!(got, vec![repeated.to_string(), last.to_string()]);
    // each is recorded once it was published
    let recorded = app
        .wait_until(Duration::from_secs(15), || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM processed_events WHERE consumer = 'notifications' AND event_id = ANY($1)",
            )
            .bind(vec![repeated, last])
            .fetch_one(&app.db)
            .await
            .unwrap();
            n == 2
        })
        .await;
    assert!(recorded, "the notified events were not recorded");
}

#[actix_web::test]
async fn a_burst_of_notifications_is_delivered_whole_with_hundreds_in_hand() {
    // 512 in hand (the default): five times the MQTT client's window of unacknowledged
    // publishes, so the handlers queue for it
    let app = spawn_app_with_workers(|s| s.worker.concurrency = 512).await;
    let user_id = uuid::Uuid::new_v4();
    let mut inbox = mqtt_inbox(&app, &user_id.to_string()).await;
    let connection = amqp(&app).await;
    let channel = notifications_consumed(&app, &connection).await;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = app.ctx.topology().events_exchange();
    const BURST: usize = 700;
    let mut confirms = Vec::with_capacity(BURST);
    let mut sent = std::collections::HashSet::new();
    for n in 0..BURST {
        let event_id = uuid::Uuid::new_v4();
        sent.insert(event_id.to_string());
        let body = json!({
            "eventId": event_id, "eventType": "SESSION_STARTED", "version": 1,
            "timestamp": "2026-12-05T12:00:00Z", "source": "test",
            "sessionId": uuid::Uuid::new_v4(), "userId": user_id,
            "stationId": uuid::Uuid::new_v4(), "chargerId": format!("CP-BURST-{n}"),
            "connectorId": 1, "startedAt": "2026-12-05T12:00:00Z"
        });
        confirms.push(
            channel
                .basic_publish(
                    &exchange,
                    "session.started",
                    BasicPublishOptions::default(),
                    body.to_string().as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .unwrap(),
        );
    }
    for confirm in confirms {
        confirm.await.unwrap();
    }
    let mut received = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while received.len() < BURST {
        let message = tokio::time::timeout_at(deadline, inbox.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {BURST} notifications arrived in 40 s ({} published)",
                    received.len(),
                    app.ctx.metrics.notifications_published_total.get()
                )
            })
            .expect("inbox open");
        if let Some(id) = message["eventId"].as_str() {
            received.insert(id.to_string());
        }
    }
    assert_eq!(received, sent, "every event notified, and only those");
}

#[actix_web::test]
async fn the_mqtt_publisher_takes_more_publishes_at_once_than_its_client_queues() {
    // the client's window (100 unacknowledged) and queue (256) hold 356 publishes: thousands
    // at once are what 500 session ends/s put in the notification worker's hands. The task
    // that polls the client's event loop must never wait for room in that queue: when it did,
    // every publish after the queue filled hung, and the worker took no more deliveries.
    let app = spawn_app().await;
    let mut settings = (*app.ctx.settings).clone();
    settings.node_id = format!("burst-{}", uuid::Uuid::new_v4().simple());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let publisher =
        chargegrid::workers::mqtt::MqttPublisher::start(&settings, shutdown.clone()).unwrap();
    // a topic the client refuses (a user id with a wildcard) fails its own publish, and only it
    let refused = publisher
        .publish("chargegrid/users/#/notifications".into(), b"{}".to_vec())
        .await;
    assert!(refused.is_err(), "a wildcard topic was published");
    const AT_ONCE: usize = 4_000;
    let topic = format!("chargegrid/test/{}", settings.node_id);
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publishes = (0..AT_ONCE).map(|n| {
        let (publisher, topic, acknowledged) =
            (publisher.clone(), topic.clone(), acknowledged.clone());
        tokio::spawn(async move {
            let result = publisher
                .publish(topic, format!("{{\"n\":{n}}}").into_bytes())
                .await;
            if result.is_ok() {
                acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            result
        })
    });
    let all = futures_util::future::join_all(publishes);
    let results = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} of {AT_ONCE} publishes acknowledged in 60 s",
                acknowledged.load(std::sync::atomic::Ordering::Relaxed)
            )
        });
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.unwrap().err())
        .collect();
    assert!(
        failed.is_empty(),
        "publishes failed: {:?}",
        &failed[..failed.len().min(3)]
    );
    shutdown.cancel();
}

#[actix_web::test]
async fn an_event_committed_after_a_newer_one_goes_out_without_waiting_for_the_poll() {
    // the poll a minute away: the older event must go out on its own commit's notification,
    // though the relay has already read (and published) ids above it
    let app = spawn_app_with_workers(|s| s.events.relay_poll_interval_ms = 60_000).await;
    // the relay has read once (its first read is a sweep) before the rows below exist
    let (_connection, mut consumer) =
        observe_after_warmup(&app, "late-observer", "late-warmup").await;
    let event = |aggregate: &str| {
        let event_id = uuid::Uuid::new_v4();
        (
            event_id,
            json!({ "eventId": event_id, "aggregate": aggregate, "n": 1 }).to_string(),
        )
    };
    let insert = "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) \
                  VALUES ($1, 'TEST_EVENT', $2, 'test.event', $3)";
    // the older id's transaction stays open while a newer one commits and is relayed
    let mut older = app.db.begin().await.unwrap();
    let (older_id, older_body) = event("late-older");
    sqlx::query(insert)
        .bind(older_id)
        .bind("late-older")
        .bind(older_body)
        .execute(&mut *older)
        .await
        .unwrap();
    raw_outbox_row(&app, "late-newer", 1).await;
    assert_eq!(next_event(&mut consumer).await["aggregate"], "late-newer");
    older.commit().await.unwrap();
    // next_event waits 10 s at most, the poll a minute
    let relayed = next_event(&mut consumer).await;
    assert_eq!(relayed["aggregate"], "late-older");
    assert_eq!(relayed["eventId"], json!(older_id));
}

#[actix_web::test]
async fn a_burst_of_commits_shares_the_relays_reads_and_marks() {
    // Sixty events, each committed on its own as fast as the test can: each commit wakes the
    // relay, which used to read once per wake-up and mark (a commit) once per batch read. It
    // now waits READ_LINGER (2 ms) after a wake-up before it reads and marks at most every
    // MARK_EVERY (20 ms), so over the burst's span D it reads at most D / 2 ms + a few times
    // (its first read, a lag tick) and marks at most D / 20 ms + 1 times. (The reads' bound is
    // loose: `wake`'s unit test checks that the commits of the linger share its read.)
    let app = spawn_app_with_workers(|s| s.events.relay_poll_interval_ms = 60_000).await;
    let (_connection, mut consumer) =
        observe_after_warmup(&app, "burst-observer", "burst-warmup").await;
    // the tests keep published events (retention): marked is published_at set
    let outbox_empty = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&app.db)
            .await
            .unwrap()
            == 0
    };
    assert!(
        app.wait_until(Duration::from_secs(10), outbox_empty).await,
        "the warm-up event was never marked"
    );
    let statements = &app.ctx.metrics.outbox_relay_statements_total;
    let (reads, marks) = (
        statements.with_label_values(&["read"]),
        statements.with_label_values(&["mark"]),
    );
    // the warm-up's mark is counted once its statement has answered, a moment after it commits
    assert!(
        app.wait_until(Duration::from_secs(10), || async { marks.get() >= 1 })
            .await,
        "the warm-up's mark was never counted"
    );
    let (reads_before, marks_before) = (reads.get(), marks.get());
    let began = std::time::Instant::now();
    for n in 1..=60 {
        raw_outbox_row(&app, "burst", n).await;
    }
    let last_commit = std::time::Instant::now();
    for n in 1..=60 {
        let event = next_event(&mut consumer).await;
        assert_eq!(event["aggregate"], "burst");
        assert_eq!(event["n"], n, "the burst left out of order");
    }
    // a wake-up the linger lost would leave the last events to the lag tick, 5 s later
    let delivered = last_commit.elapsed();
    assert!(
        delivered < Duration::from_secs(2),
        "the burst's last events left {delivered:?} after their commit"
    );
    let read = reads.get() - reads_before;
    let read_span_ms = u64::try_from(began.elapsed().as_millis()).unwrap();
    assert!(
        read <= read_span_ms / 2 + 3,
        "{read} reads in {read_span_ms} ms: more than one every 2 ms after a wake-up"
    );
    assert!(
        app.wait_until(Duration::from_secs(10), outbox_empty).await,
        "the burst was never marked"
    );
    assert!(
        app.wait_until(Duration::from_secs(10), || async {
            marks.get() > marks_before
        })
        .await,
        "the burst's marks were never counted"
    );
    let marked = marks.get() - marks_before;
    let span_ms = u64::try_from(began.elapsed().as_millis()).unwrap();
    assert!(
        marked <= span_ms / 20 + 1,
        "{marked} marks in {span_ms} ms: more than one every 20 ms"
    );
}

#[actix_web::test]
async fn an_event_rabbitmq_refuses_stays_pending_is_retried_with_a_growing_wait_and_goes_out_once_taken(
) {
    // A queue bound to the events exchange that is full and rejects publishes (x-max-length 0,
    // x-overflow reject-publish) makes RabbitMQ nack every event routed to it, as a consumer's
    // queue does when it is full. The refused event must stay in the outbox and go out once the
    // broker takes it; the relay must wait longer after each refusal (it used to retry at once,
    // as fast as it could read and publish), and an event confirmed in the same round must be
    // marked, not published again with each retry.
    let app = spawn_app_with_workers(|s| {
        s.events.relay_batch_size = 1;
        s.events.relay_poll_interval_ms = 60_000;
    })
    .await;
    let topology = app.ctx.topology();
    let wall_connection = amqp(&app).await;
    let wall_channel = wall_connection.create_channel().await.unwrap();
    let wall = format!("{}.nack-wall", topology.namespace);
    let mut full = FieldTable::default();
    full.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(0));
    full.insert(
        "x-overflow".into(),
        lapin::types::AMQPValue::LongString("reject-publish".into()),
    );
    // exclusive: gone with the test's connection, whatever the test's end
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    wall_channel
        .queue_declare(&wall, exclusive, full)
        .await
        .unwrap();
    wall_channel
        .queue_bind(
            &wall,
            &topology.events_exchange(),
            "test.refused",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (_connection, mut consumer) =
        observe_after_warmup(&app, "nack-observer", "nack-warmup").await;
    // one commit: an event the broker takes, then one it refuses (a batch each)
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) VALUES \
         ($1, 'TEST_EVENT', 'nack-taken', 'test.event', json_build_object('eventId', $1::uuid, 'aggregate', 'nack-taken')::text), \
         ($2, 'TEST_EVENT', 'nack-refused', 'test.refused', json_build_object('eventId', $2::uuid, 'aggregate', 'nack-refused')::text)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(uuid::Uuid::new_v4())
    .execute(&app.db)
    .await
    .unwrap();
    let nacks = app
        .ctx
        .metrics
        .outbox_relay_failures_total
        .with_label_values(&["nack"]);
    assert!(
        app.wait_until(Duration::from_secs(10), || async { nacks.get() >= 1 })
            .await,
        "RabbitMQ's refusal was never counted"
    );
    let first_refusal = std::time::Instant::now();
    assert!(
        app.wait_until(Duration::from_secs(10), || async { nacks.get() >= 4 })
            .await,
        "the relay stopped retrying the refused event"
    );
    // after the first refusal it waits 100 ms, after the second 200, after the third 400: at
    // least 700 ms from the first to the fourth (the first was seen up to a poll late). A wait
    // that did not grow (150 ms each) would take 450 ms, none a few milliseconds.
    let retried_within = first_refusal.elapsed();
    assert!(
        retried_within >= Duration::from_millis(600),
        "three more refusals within {retried_within:?}: the relay's wait did not grow"
    );
    let state = |aggregate: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_as::<_, (bool, i32)>(
                "SELECT published_at IS NOT NULL, attempts FROM outbox WHERE aggregate_id = $1",
            )
            .bind(aggregate)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        state("nack-refused").await,
        (false, 0),
        "a refused event was marked published"
    );
    assert_eq!(state("nack-taken").await, (true, 1));
    // the broker takes it again: the refused event goes out and is marked once
    wall_channel
        .queue_delete(&wall, lapin::options::QueueDeleteOptions::default())
        .await
        .unwrap();
    assert!(
        app.wait_until(Duration::from_secs(15), || async {
            state("nack-refused").await == (true, 1)
        })
        .await,
        "the refused event never went out once RabbitMQ took it"
    );
    // everything published before a later event has reached the observer by then (one channel,
    // one queue): the taken event went out once, however often the refused one was retried
    raw_outbox_row(&app, "nack-after", 0).await;
    let mut seen: std::collections::HashMap<String, u32> = Default::default();
    loop {
        let event = next_event(&mut consumer).await;
        let aggregate = event["aggregate"].as_str().unwrap().to_string();
        if aggregate == "nack-after" {
            break;
        }
        *seen.entry(aggregate).or_default() += 1;
    }
    assert_eq!(seen.get("nack-taken"), Some(&1), "{seen:?}");
    assert!(
        seen.get("nack-refused").is_some_and(|n| *n >= 1),
        "{seen:?}"
    );
}

#[actix_web::test]
async fn an_event_whose_transaction_was_open_when_the_relay_took_over_goes_out_in_order() {
    // The relay reads after a cursor once it knows that every id below it is final. A relay that
    // takes over while a transaction still holds an older id must wait for that transaction
    // (sweeping meanwhile), or the older event would be behind its cursor and never published.
    let app = spawn_app_with_workers(|s| s.events.relay_poll_interval_ms = 60_000).await;
    let (_connection, mut consumer) =
        observe_after_warmup(&app, "takeover-observer", "takeover-warmup").await;
    // an older event's transaction opens
    let mut older = app.db.begin().await.unwrap();
    let older_id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) \
         VALUES ($1, 'TEST_EVENT', 'takeover-older', 'test.event', $2)",
    )
    .bind(older_id)
    .bind(json!({ "eventId": older_id, "aggregate": "takeover-older", "n": 1 }).to_string())
    .execute(&mut *older)
    .await
    .unwrap();
    // the publishing relay loses its connection (and its lock with it): the round that takes
    // over begins while the older transaction is open
    let relay_lock: i64 = 0x0063_6772_656c_6179;
    let terminated: bool = sqlx::query_scalar(
        "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND classid = ($1 >> 32)::oid AND objid = ($1 & 4294967295)::oid",
    )
    .bind(relay_lock)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(terminated, "no relay held the publishing lock");
    // a newer event commits and is published by the round that took over
    raw_outbox_row(&app, "takeover-newer", 1).await;
    assert_eq!(
        next_event(&mut consumer).await["aggregate"],
        "takeover-newer"
    );
    // the older one commits, then its aggregate's next event: both go out, in their order
    older.commit().await.unwrap();
    raw_outbox_row(&app, "takeover-older", 2).await;
    let first = next_event(&mut consumer).await;
    assert_eq!(
        (first["aggregate"].as_str(), first["n"].as_u64()),
        (Some("takeover-older"), Some(1)),
        "{first}"
    );
    let second = next_event(&mut consumer).await;
    assert_eq!(
        (second["aggregate"].as_str(), second["n"].as_u64()),
        (Some("takeover-older"), Some(2)),
        "{second}"
    );
}

/// Inserts an event of `aggregate` and waits for the relay to publish it (the read it takes
/// moves the relay's cursor and settles its gaps).
async fn relay_one(app: &TestApp, consumer: &mut lapin::Consumer, aggregate: &str, n: u32) {
    raw_outbox_row(app, aggregate, n).await;
    let event = next_event(consumer).await;
    assert_eq!(event["aggregate"], aggregate, "{event}");
}

/// Relays events of `aggregate` one at a time (numbering them on from `n`) until `done` says so
/// or `within` has passed.
async fn relay_until(
    app: &TestApp,
    consumer: &mut lapin::Consumer,
    aggregate: &str,
    n: &mut u32,
    within: Duration,
    done: impl Fn() -> bool,
) {
    let deadline = std::time::Instant::now() + within;
    while !done() && std::time::Instant::now() < deadline {
        *n += 1;
        relay_one(app, consumer, aggregate, *n).await;
    }
}

/// Inserts `count` events of `aggregate` in the open transaction `tx`.
async fn insert_events(tx: &mut sqlx::PgConnection, aggregate: &str, count: i32) {
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) \
         SELECT gen_random_uuid(), 'TEST_EVENT', $1, 'test.event', \
             json_build_object('aggregate', $1::text, 'n', i)::text \
         FROM generate_series(1, $2) i",
    )
    .bind(aggregate)
    .bind(count)
    .execute(tx)
    .await
    .unwrap();
}

#[actix_web::test]
async fn ids_of_a_rolled_back_transaction_are_forgotten_and_an_open_ones_kept_until_it_commits() {
    // ids drawn by a transaction that rolls back never appear: the relay passes them and drops
    // them once every transaction writing when it looked has ended; an id whose transaction is
    // still open stays a gap (and goes out when it commits), however long that takes
    let app = spawn_app_with_workers(|s| s.events.relay_poll_interval_ms = 60_000).await;
    let (_connection, mut consumer) = observe(&app, "gaps-observer", "test.#").await;
    let metrics = app.ctx.metrics.clone();
    let mut n = 0;
    let within = Duration::from_secs(10);
    relay_until(&app, &mut consumer, "gaps-warmup", &mut n, within, || {
        metrics.outbox_relay_cursor.get() == 1
    })
    .await;
    assert_eq!(
        metrics.outbox_relay_cursor.get(),
        1,
        "the relay never read after a cursor"
    );
    let mut rolled_back = app.db.begin().await.unwrap();
    insert_events(&mut rolled_back, "gaps-rolled-back", 5).await;
    rolled_back.rollback().await.unwrap();
    // the cursor passes all five, and drops them once their writer is known to have ended
    relay_one(&app, &mut consumer, "gaps-after", 0).await;
    assert_eq!(metrics.outbox_relay_gaps.get(), 5);
    let mut n = 0;
    relay_until(&app, &mut consumer, "gaps-after", &mut n, within, || {
        metrics.outbox_relay_gaps.get() == 0
    })
    .await;
    assert_eq!(
        metrics.outbox_relay_gaps.get(),
        0,
        "the rolled-back ids were kept"
    );
    // an open transaction's id is kept through several settling rounds (every 250 ms)
    let mut late = app.db.begin().await.unwrap();
    insert_events(&mut late, "gaps-late", 1).await;
    let through = std::time::Instant::now() + Duration::from_millis(1_000);
    while std::time::Instant::now() < through {
        n += 1;
        relay_one(&app, &mut consumer, "gaps-after", n).await;
        assert_eq!(
            metrics.outbox_relay_gaps.get(),
            1,
            "the open transaction's id was forgotten"
        );
    }
    late.commit().await.unwrap();
    let event = next_event(&mut consumer).await;
    assert_eq!(event["aggregate"], "gaps-late", "{event}");
    assert_eq!(metrics.outbox_relay_gaps.get(), 0);
}

/// The relay's reads are prepared once on its connection and run with one generic plan that
/// follows the pending index (ADR 024, second amendment), also when that plan was made while the
/// outbox was small and the outbox has grown since without new statistics: PostgreSQL plans such
/// a small table with sequential scans, and a cached plan keeps them.
#[actix_web::test]
async fn the_relays_reads_are_planned_once_and_follow_the_index_after_the_outbox_grew() {
    use chargegrid::events::relay::{read_after, read_sweep, reader_connection};
    let settings = crate::helpers::isolated_settings().await;
    let db = sqlx::PgPool::connect(settings.database.url.expose_secret())
        .await
        .unwrap();
    // no statistics but those taken below (an analyze would make PostgreSQL plan again)
    sqlx::query("ALTER TABLE outbox SET (autovacuum_enabled = off)")
        .execute(&db)
        .await
        .unwrap();
    let insert = |from: i32, to: i32, published: bool| {
        format!(
            "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body, published_at) \
             SELECT gen_random_uuid(), 'TEST_EVENT', 'grown', 'test.event', '{{}}', \
             CASE WHEN {published} THEN now() END FROM generate_series({from}, {to})"
        )
    };
    sqlx::query(&insert(1, 5, false))
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("ANALYZE outbox").execute(&db).await.unwrap();
    let mut conn = reader_connection(&db).await.unwrap();
    for _ in 0..6 {
        assert_eq!(read_sweep(&mut conn, 100, &[]).await.unwrap().len(), 5);
        assert_eq!(read_after(&mut conn, &[], 0, 100).await.unwrap().len(), 5);
    }
    // the outbox grows: 20,000 published events, then 3 pending ones
    sqlx::query(&insert(1, 20_000, true))
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(&insert(1, 3, false))
        .execute(&db)
        .await
        .unwrap();
    let first: i64 = sqlx::query_scalar("SELECT min(id) FROM outbox")
        .fetch_one(&db)
        .await
        .unwrap();
    for _ in 0..6 {
        let ids: Vec<i64> = read_after(&mut conn, &[first], first, 100)
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(
            ids.len(),
            8,
            "the gap asked for and every pending event after it"
        );
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order: {ids:?}");
        assert_eq!(
            read_sweep(&mut conn, 100, &ids[..2]).await.unwrap().len(),
            6
        );
    }
    let prepared: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT name, statement, generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE 'SELECT id, event_id, %'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(prepared.len(), 2, "both reads are prepared: {prepared:?}");
    for (name, statement, generic, custom) in prepared {
        assert_eq!(
            (generic, custom),
            (12, 0),
            "generic plans only: {statement}"
        );
        let arguments = if statement.contains("<> ALL") {
            "(100, '{}')"
        } else {
            "('{}', 0, 100)"
        };
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}{arguments}"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan using outbox_pending_idx")
                && !plan.contains("Seq Scan")
                && !plan.contains("Bitmap"),
            "the cached plan follows the pending index: {plan}"
        );
    }
}

#[actix_web::test]
async fn outbox_inserts_on_a_writers_connection_send_no_notification() {
    // PostgreSQL serializes the commits of notifying transactions; the writers' pools insert
    // events without a NOTIFY and wake the relay themselves (ADR 016, fifth amendment)
    let app = spawn_app().await;
    let writers = chargegrid::store::postgres::connect_writer_pool(&app.ctx.settings.database)
        .await
        .unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(&app.db)
        .await
        .unwrap();
    listener.listen("chargegrid_outbox").await.unwrap();
    let insert = "INSERT INTO outbox (event_id, event_type, aggregate_id, routing_key, body) \
                  SELECT $1, 'TEST_EVENT', $2, 'test.event', '{}' WHERE $3";
    let row = |aggregate: &'static str, write: bool| {
        sqlx::query(insert)
            .bind(uuid::Uuid::new_v4())
            .bind(aggregate)
            .bind(write)
    };
    // in commit order: an ordinary statement that inserts no row, a writer's row, a marker,
    // an ordinary row; only the last two may notify
    row("nothing", false).execute(&app.db).await.unwrap();
    row("from-a-writer", true).execute(&writers).await.unwrap();
    sqlx::query("SELECT pg_notify('chargegrid_outbox', 'marker')")
        .execute(&app.db)
        .await
        .unwrap();
    row("from-elsewhere", true).execute(&app.db).await.unwrap();
    let mut payloads = Vec::new();
    for _ in 0..2 {
        let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a notification within 10 s")
            .unwrap();
        payloads.push(notification.payload().to_string());
    }
    assert_eq!(
        payloads,
        ["marker", ""],
        "an insert of no row or a writer's insert notified, or an ordinary insert did not"
    );
}

#[actix_web::test]
async fn the_writers_wake_the_relay_after_their_commits() {
    // the poll a minute away, and the writers' inserts send no NOTIFY: a status change (the
    // charger writer) and a session start (the transaction writer) go out within seconds only
    // because each writer wakes the relay once its batch committed
    let b = billing_fixture("50.00", "€0.40/kWh", |s| {
        s.events.relay_poll_interval_ms = 60_000
    })
    .await;
    let (_connection, mut statuses) = observe(&b.app, "woken-statuses", "connector.#").await;
    let (_connection2, mut sessions) = observe(&b.app, "woken-sessions", "session.started").await;
    let mut cp = connect16(b.app.port, "CP-BILL", Some(("CP-BILL", CHARGER_PASSWORD))).await;
    cp.boot().await;
    // the relay also reads every 5 s (its lag tick), within the 10 s next_event waits: the
    // writers' wakes are counted too, each before its message is answered
    let wake = &b.app.ctx.outbox_wake;
    // the relay of the app publishes (took the lock), so the writers' wakes go to it in process
    let leading = b
        .app
        .wait_until(Duration::from_secs(10), || async { wake.is_leading() })
        .await;
    assert!(leading, "the relay never took the lock");
    let told = wake.commits_told();
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Preparing" }),
    )
    .await
    .unwrap();
    assert!(
        wake.commits_told() > told,
        "the charger writer did not wake the relay"
    );
    let status = next_event(&mut statuses).await;
    assert_eq!(status["eventType"], "CONNECTOR_STATUS_CHANGED", "{status}");
    assert_eq!(status["status"], "PREPARING", "{status}");
    let told = wake.commits_told();
    cp.call("StartTransaction", json!({ "connectorId": 1, "idTag": b.id_tag, "meterStart": 0, "timestamp": "2026-11-21T10:00:00Z" }))
        .await
        .unwrap();
    assert!(
        wake.commits_told() > told,
        "the transaction writer did not wake the relay"
    );
    let started = next_event(&mut sessions).await;
    assert_eq!(started["eventType"], "SESSION_STARTED", "{started}");
    assert_eq!(started["chargerId"], "CP-BILL", "{started}");
}

/// Counts each event's deliveries; keeps the first delivery of `held` in hand for good.
struct Holding {
    held: uuid::Uuid,
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<uuid::Uuid, u32>>>,
}

impl chargegrid::events::consumer::EventHandler for Holding {
    fn handle(
        &self,
        event: chargegrid::events::consumer::ReceivedEvent,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<(), chargegrid::events::consumer::HandleError>,
    > {
        let deliveries = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(event.event_id).or_default();
            *n += 1;
            *n
        };
        let hold = event.event_id == self.held && deliveries == 1;
        Box::pin(async move {
            if hold {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

/// `messages_ready` and `messages_unacknowledged` of `queue` as the management API reports them
/// (its figures are refreshed every few seconds).
async fn ready_and_unacknowledged(queue: &str) -> Option<(u64, u64)> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:15672/api/queues/%2F/{queue}"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .ok()?;
    let queue: Value = response.json().await.ok()?;
    Some((
        queue["messages_ready"].as_u64()?,
        queue["messages_unacknowledged"].as_u64()?,
    ))
}

#[actix_web::test]
async fn a_consumer_acknowledges_nothing_past_a_delivery_it_is_still_handling() {
    use chargegrid::events::consumer::{self, ConsumerOptions};
    use chargegrid::events::topology::BILLING;

    let settings = crate::helpers::isolated_settings().await;
    let topology = chargegrid::context::topology_of(&settings);
    let queue = topology.queue(&BILLING);
    let connection = Connection::connect(
        settings.amqp.url.expose_secret(),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    topology.declare_consumer(&channel, &BILLING).await.unwrap();

    // the first event is still being handled when the twenty after it are done
    let held = uuid::Uuid::new_v4();
    let others: Vec<uuid::Uuid> = (0..20).map(|_| uuid::Uuid::new_v4()).collect();
    for id in std::iter::once(held).chain(others.iter().copied()) {
        let body = json!({
            "eventId": id, "eventType": "SESSION_ENDED", "version": 1,
            "timestamp": "2026-12-06T12:00:00Z", "source": "test"
        });
        publish_ended(
            &channel,
            &topology.events_exchange(),
            body.to_string().as_bytes(),
        )
        .await;
    }
    let name = format!("acks-{}", uuid::Uuid::new_v4().simple());
    let amqp = chargegrid::store::amqp::Amqp::start(&settings.amqp, name.clone());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let handler = std::sync::Arc::new(Holding {
        held,
        seen: seen.clone(),
    });
    let options = ConsumerOptions {
        queue: BILLING,
        metrics: std::sync::Arc::new(chargegrid::metrics::Metrics::new().unwrap()),
        topology: topology.clone(),
        prefetch: 64,
        concurrency: 64,
    };
    let consuming = tokio::spawn(consumer::run(
        amqp.clone(),
        options,
        handler,
        tokio_util::sync::CancellationToken::new(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 21 {
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer did not take all 21 events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the twenty are acknowledged; the one in hand is not (and nothing waits to be delivered:
    // a figure from before the deliveries would say 1 unacknowledged too)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts = ready_and_unacknowledged(&queue).await;
        if counts == Some((0, 1)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the broker reports {counts:?} (ready, unacknowledged), not only the one in hand"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // a worker that dies now hands the event in hand to the next one, and only that one
    consuming.abort();
    close_connection_named(&name).await;
    amqp.close().await;
    let mut returned = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match channel
            .basic_get(&queue, lapin::options::BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(message) => {
                let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
                returned.push(body["eventId"].as_str().unwrap().to_string());
            }
            None if !returned.is_empty() => break,
            None => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "nothing came back to the queue"
                );
                tokio::time::sleep(Duration::from_millis(50)).await
            }
        }
    }
    assert_eq!(returned, vec![held.to_string()]);
    let _ = connection.close(200, "done").await;
}
