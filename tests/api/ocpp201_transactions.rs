//! OCPP 2.0.1 TransactionEvent delivery as it happens in the field: repeated, late and missing
//! seqNos, offline-queued events with old timestamps, and transactions first seen mid-way.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::charger_client::TestCharger;
use crate::helpers::TestApp;
use crate::ocpp201::{app_with_station, booted, driver, event, with_meter, with_token};

/// (last_seq_no, seq_gaps, offline_events) of a transaction.
async fn bookkeeping(app: &TestApp, transaction_ref: &str) -> (i32, Vec<i32>, i32) {
    sqlx::query_as(
        "SELECT last_seq_no, seq_gaps, offline_events FROM charger_transactions WHERE transaction_ref = $1",
    )
    .bind(transaction_ref)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db).await.unwrap()
}

/// (status, energy_kwh, start_time, end_time) of the only session.
async fn the_session(app: &TestApp) -> (String, Decimal, Option<String>, Option<String>) {
    sqlx::query_as(
        "SELECT status, energy_kwh, to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'), \
             to_char(end_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM sessions",
    )
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// A Started event of `reference` for `id_tag` at `at`, its meter at 0 Wh (Transaction.Begin).
fn started(reference: &str, id_tag: &str, at: &str) -> Value {
    with_meter(
        with_token(event("Started", 0, reference, at), id_tag),
        0,
        None,
        "Transaction.Begin",
    )
}

/// A station with `charger_id` registered and a default tariff: 1.00 a session and 0.50 a kWh.
async fn costed_station(app: &TestApp, name: &str, charger_id: &str) {
    let token = app.staff_token("ADMIN").await;
    let station = app.create_station(name).await;
    app.register_charger(&token, charger_id, station, Some(crate::ocpp201::PASSWORD))
        .await;
    sqlx::query(
        "INSERT INTO tariffs (id, name, currency, price_per_kwh, price_per_minute, grace_minutes, session_fee, is_default) \
         VALUES ($1, 'Default', 'EUR', 0.50, 0, 0, 1.00, TRUE)",
    )
    .bind(uuid::Uuid::new_v4())
    .execute(&app.db)
    .await
    .unwrap();
}

async fn send(cs: &mut TestCharger, event: Value) -> Value {
    cs.call("TransactionEvent", event)
        .await
        .expect("TransactionEvent is always answered with a result")
}

#[actix_web::test]
async fn repeated_late_and_missing_seq_nos_are_handled_idempotently() {
    let (app, _) = app_with_station("CS-SEQ").await;
    let (_, id_tag) = driver(&app, "seq@example.com").await;
    let mut cs = booted(&app, "CS-SEQ").await;
    let started = started("TX-SEQ", &id_tag, "2026-11-21T10:00:00Z");
    send(&mut cs, started.clone()).await;
    let update = |seq: i64, wh: i64, at: &str| {
        with_meter(
            event("Updated", seq, "TX-SEQ", at),
            wh,
            Some(7_000),
            "Sample.Periodic",
        )
    };
    send(&mut cs, update(1, 2_000, "2026-11-21T10:10:00Z")).await;
    let samples = "SELECT count(*) FROM meter_values WHERE charger_id = 'CS-SEQ'";
    let stored = count(&app, samples).await;
    let updates = "SELECT count(*) FROM outbox WHERE event_type = 'SESSION_UPDATED'";
    let updated = count(&app, updates).await;

    // the same seqNo again (a re-send after a lost answer), even with other content: answered, no change
    let repeat = send(&mut cs, update(1, 9_999, "2026-11-21T10:10:00Z")).await;
    assert_eq!(repeat, json!({}));
    let again = send(&mut cs, started).await;
    assert_eq!(
        again["idTokenInfo"]["status"], "Accepted",
        "a repeat gets the same answer"
    );
    assert_eq!(count(&app, samples).await, stored);
    assert_eq!(count(&app, updates).await, updated);
    assert_eq!(the_session(&app).await.1, Decimal::new(2000, 3));
    assert_eq!(bookkeeping(&app, "TX-SEQ").await, (1, vec![], 0));

    // 2 and 3 go missing
    send(&mut cs, update(4, 5_000, "2026-11-21T10:40:00Z")).await;
    assert_eq!(bookkeeping(&app, "TX-SEQ").await, (4, vec![2, 3], 0));
    // 2 arrives late: its gap closes, its samples are kept, the newer reading stays
    send(&mut cs, update(2, 3_000, "2026-11-21T10:20:00Z")).await;
    assert_eq!(bookkeeping(&app, "TX-SEQ").await, (4, vec![3], 0));
    assert_eq!(the_session(&app).await.1, Decimal::new(5000, 3));
    let late_sample = count(
        &app,
        "SELECT count(*) FROM meter_values WHERE charger_id = 'CS-SEQ' AND value = 3000",
    )
    .await;
    assert_eq!(late_sample, 1);
    // and a repeat of the late one changes nothing either
    send(&mut cs, update(2, 3_000, "2026-11-21T10:20:00Z")).await;
    assert_eq!(bookkeeping(&app, "TX-SEQ").await, (4, vec![3], 0));

    send(
        &mut cs,
        with_meter(
            event("Ended", 5, "TX-SEQ", "2026-11-21T10:50:00Z"),
            6_000,
            None,
            "Transaction.End",
        ),
    )
    .await;
    let (status, energy, _, _) = the_session(&app).await;
    assert_eq!(
        (status.as_str(), energy),
        ("COMPLETED", Decimal::new(6000, 3))
    );
    assert_eq!(bookkeeping(&app, "TX-SEQ").await, (5, vec![3], 0));
    let ended = "SELECT count(*) FROM outbox WHERE event_type = 'SESSION_ENDED'";
    assert_eq!(count(&app, ended).await, 1);
    // a second Ended with a new seqNo does not end it twice
    send(
        &mut cs,
        with_meter(
            event("Ended", 6, "TX-SEQ", "2026-11-21T11:00:00Z"),
            9_000,
            None,
            "Transaction.End",
        ),
    )
    .await;
    assert_eq!(count(&app, ended).await, 1);
    assert_eq!(the_session(&app).await.1, Decimal::new(6000, 3));
}

#[actix_web::test]
async fn offline_events_with_old_timestamps_are_stored_and_billed_by_charger_time() {
    let (app, _) = app_with_station("CS-OFF").await;
    let (_, id_tag) = driver(&app, "offline@example.com").await;
    let mut cs = booted(&app, "CS-OFF").await;
    let offline = |mut e: Value| {
        e["offline"] = json!(true);
        e
    };
    // a whole transaction that happened while the station had no connection, two days ago
    send(
        &mut cs,
        offline(with_meter(
            with_token(
                event("Started", 0, "TX-OFF", "2026-11-19T08:00:00Z"),
                &id_tag,
            ),
            10_000,
            None,
            "Transaction.Begin",
        )),
    )
    .await;
    send(
        &mut cs,
        offline(with_meter(
            event("Updated", 1, "TX-OFF", "2026-11-19T08:30:00Z"),
            14_000,
            Some(8_000),
            "Sample.Periodic",
        )),
    )
    .await;
    send(
        &mut cs,
        offline(with_meter(
            event("Ended", 2, "TX-OFF", "2026-11-19T09:15:00Z"),
            19_500,
            None,
            "Transaction.End",
        )),
    )
    .await;
    assert_eq!(bookkeeping(&app, "TX-OFF").await, (2, vec![], 3));
    let (status, energy, start, end) = the_session(&app).await;
    assert_eq!(status, "COMPLETED");
    assert_eq!(energy, Decimal::new(9500, 3));
    assert_eq!(start.as_deref(), Some("2026-11-19T08:00:00"));
    assert_eq!(end.as_deref(), Some("2026-11-19T09:15:00"));
    let body: String =
        sqlx::query_scalar("SELECT body FROM outbox WHERE event_type = 'SESSION_ENDED'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let ended: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ended["durationMinutes"], 75,
        "charger time, not arrival time"
    );
    assert_eq!(ended["endedAt"], "2026-11-19T09:15:00Z");
    assert_eq!(ended["timestamp"], "2026-11-19T09:15:00Z");
    let stamps: Vec<String> = sqlx::query_scalar(
        "SELECT to_char(sampled_at AT TIME ZONE 'UTC', 'HH24:MI') FROM meter_values WHERE charger_id = 'CS-OFF' \
         AND measurand = 'Energy.Active.Import.Register' ORDER BY sampled_at",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(stamps, ["08:00", "08:30", "09:15"]);

    // an offline Updated delivered after the Ended is kept but does not reopen the session
    send(
        &mut cs,
        offline(with_meter(
            event("Updated", 3, "TX-OFF", "2026-11-19T09:10:00Z"),
            19_000,
            None,
            "Sample.Periodic",
        )),
    )
    .await;
    let (status, energy, _, _) = the_session(&app).await;
    assert_eq!(
        (status.as_str(), energy),
        ("COMPLETED", Decimal::new(9500, 3))
    );
    assert_eq!(bookkeeping(&app, "TX-OFF").await, (3, vec![], 4));
}

#[actix_web::test]
async fn a_transaction_first_seen_through_an_updated_event_starts_its_session() {
    let (app, _) = app_with_station("CS-MID").await;
    let (_, id_tag) = driver(&app, "mid@example.com").await;
    let mut cs = booted(&app, "CS-MID").await;
    // the Started (seqNo 0, plugged in without a token) is lost; the first event we see is an
    // Updated that carries the token once the driver badges
    let first = with_meter(
        with_token(
            event("Updated", 1, "TX-MID", "2026-11-21T12:05:00Z"),
            &id_tag,
        ),
        4_000,
        None,
        "Sample.Periodic",
    );
    let answer = send(&mut cs, first).await;
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted");
    let (status, energy, start, _) = the_session(&app).await;
    assert_eq!((status.as_str(), energy), ("IN_PROGRESS", Decimal::ZERO));
    assert_eq!(start.as_deref(), Some("2026-11-21T12:05:00"));
    send(
        &mut cs,
        with_meter(
            event("Updated", 2, "TX-MID", "2026-11-21T12:20:00Z"),
            6_500,
            None,
            "Sample.Periodic",
        ),
    )
    .await;
    assert_eq!(the_session(&app).await.1, Decimal::new(2500, 3));
    // the lost Started turns up: it is kept as the real start of the transaction
    send(
        &mut cs,
        event("Started", 0, "TX-MID", "2026-11-21T12:00:00Z"),
    )
    .await;
    let started: String = sqlx::query_scalar(
        "SELECT to_char(started_at AT TIME ZONE 'UTC', 'HH24:MI') FROM charger_transactions WHERE transaction_ref = 'TX-MID'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(started, "12:00");
    assert_eq!(bookkeeping(&app, "TX-MID").await, (2, vec![], 0));
    let sessions = count(&app, "SELECT count(*) FROM sessions").await;
    assert_eq!(sessions, 1);
}

#[actix_web::test]
async fn a_transaction_without_a_known_token_is_stored_without_a_session() {
    let (app, _) = app_with_station("CS-ANON").await;
    let mut cs = booted(&app, "CS-ANON").await;
    let answer = send(
        &mut cs,
        with_token(
            event("Started", 0, "TX-ANON", "2026-11-21T10:00:00Z"),
            "STRANGER-CARD",
        ),
    )
    .await;
    assert_eq!(answer["idTokenInfo"]["status"], "Invalid");
    send(
        &mut cs,
        event("Ended", 1, "TX-ANON", "2026-11-21T10:01:00Z"),
    )
    .await;
    let (status, stopped): (Option<String>, bool) = sqlx::query_as(
        "SELECT id_tag_status, stopped_at IS NOT NULL FROM charger_transactions WHERE transaction_ref = 'TX-ANON'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(status.as_deref(), Some("Invalid"));
    assert!(stopped);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0);
}

#[actix_web::test]
async fn an_ended_event_without_a_register_ends_on_the_newest_reading_even_one_not_yet_in_the_row()
{
    let (app, _) = app_with_station("CS-HELD").await;
    let (_, id_tag) = driver(&app, "held@example.com").await;
    let mut cs = booted(&app, "CS-HELD").await;
    let started = started("TX-HELD", &id_tag, "2026-11-21T13:00:00Z");
    send(&mut cs, started).await;
    for (seq, wh) in [(1, 1_000), (2, 4_000)] {
        send(
            &mut cs,
            with_meter(
                event("Updated", seq, "TX-HELD", "2026-11-21T13:10:00Z"),
                wh,
                None,
                "Sample.Periodic",
            ),
        )
        .await;
    }
    // the two readings came within a second: the row may still show the first one
    send(
        &mut cs,
        event("Ended", 3, "TX-HELD", "2026-11-21T13:20:00Z"),
    )
    .await;
    let (status, energy, _, _) = the_session(&app).await;
    assert_eq!(
        (status.as_str(), energy),
        ("COMPLETED", Decimal::new(4000, 3))
    );
}

/// TC_I_01 / TC_I_02: the answers to a running transaction's events carry what it costs so far
/// under the station's tariff, and the answer to its end the final cost, which is what the
/// invoice then says.
#[actix_web::test]
async fn transaction_answers_carry_the_running_and_the_final_cost() {
    let app = crate::helpers::spawn_app_with_workers(|_| {}).await;
    costed_station(&app, "Cost station", "CS-COST").await;
    let (driver, _, _) = app
        .register("cost@example.com", "correct horse battery")
        .await;
    let id_tag = app.fund(&driver, "50.00").await["idTag"]
        .as_str()
        .unwrap()
        .to_string();
    let mut cs = booted(&app, "CS-COST").await;
    let started = send(&mut cs, started("TX-COST", &id_tag, "2026-11-21T10:00:00Z")).await;
    assert_eq!(started["idTokenInfo"]["status"], "Accepted", "{started}");
    assert!(started.get("totalCost").is_none(), "{started}");
    // a reading the session row takes (at most one a second): its answer has the cost so far
    let mut running = None;
    for (seq, wh) in [(1, 2000), (2, 2000), (3, 2000)] {
        let answer = send(
            &mut cs,
            with_meter(
                event("Updated", seq, "TX-COST", "2026-11-21T10:10:00Z"),
                wh,
                None,
                "Sample.Periodic",
            ),
        )
        .await;
        if let Some(cost) = answer.get("totalCost") {
            running = Some(cost.clone());
            break;
        }
        // the row took a reading less than a second ago: the next one lands after it
        let taken = app
            .wait_until(std::time::Duration::from_secs(3), || async {
                count(&app, "SELECT count(*) FROM sessions WHERE energy_kwh = 2 AND updated_at < now() - interval '1 second'").await == 1
            })
            .await;
        assert!(taken, "the session never took the reading");
    }
    // 1.00 fee + 2 kWh * 0.50
    assert_eq!(running, Some(json!(2.0)));
    let ended = send(
        &mut cs,
        with_meter(
            event("Ended", 4, "TX-COST", "2026-11-21T10:20:00Z"),
            5000,
            None,
            "Transaction.End",
        ),
    )
    .await;
    // 1.00 fee + 5 kWh * 0.50
    assert_eq!(ended["totalCost"], json!(3.5), "{ended}");
    let invoiced = app
        .wait_until(std::time::Duration::from_secs(20), || async {
            count(&app, "SELECT count(*) FROM invoices WHERE amount = 3.50").await == 1
        })
        .await;
    assert!(
        invoiced,
        "the invoice does not say what the charger was told"
    );
}

/// The commit that creates a charger's session leaves it stamped with its creation time, the
/// Started event's own reading included: the session supervisor recognises that snapshot as the
/// creating commit's and starts the session's actor from it without reading it back. A later
/// reading stamps the row later.
#[actix_web::test]
async fn a_session_created_with_its_reading_keeps_its_creation_stamp_until_a_later_write() {
    let (app, _) = app_with_station("CS-STAMP").await;
    let (_, id_tag) = driver(&app, "stamp@example.com").await;
    let mut cs = booted(&app, "CS-STAMP").await;
    let started = send(
        &mut cs,
        with_meter(
            with_token(
                event("Started", 0, "TX-STAMP", "2026-11-21T10:00:00Z"),
                &id_tag,
            ),
            1000,
            Some(7400),
            "Transaction.Begin",
        ),
    )
    .await;
    assert_eq!(started["idTokenInfo"]["status"], "Accepted", "{started}");
    let stamps = || async {
        sqlx::query_as::<_, (bool, Option<f64>)>(
            "SELECT created_at = updated_at, power_kw FROM sessions WHERE charger_id = 'CS-STAMP'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap()
    };
    // the reading reached the row in the creating commit, which kept its stamp
    assert_eq!(stamps().await, (true, Some(7.4)));
    send(
        &mut cs,
        with_meter(
            event("Updated", 1, "TX-STAMP", "2026-11-21T10:05:00Z"),
            2000,
            Some(3700),
            "Sample.Periodic",
        ),
    )
    .await;
    assert_eq!(stamps().await, (false, Some(3.7)));
}

/// The running cost is a display figure: when it takes longer than its budget (the tariffs are
/// locked here), the Ended event is stored and answered at once, without `totalCost`.
#[actix_web::test]
async fn a_running_cost_that_is_late_is_left_out_of_a_stored_events_answer() {
    let app = crate::helpers::spawn_app_with(|s| s.ocpp.running_cost_timeout_ms = 300).await;
    costed_station(&app, "Late cost station", "CS-LATE").await;
    let (_, id_tag) = driver(&app, "late@example.com").await;
    let mut cs = booted(&app, "CS-LATE").await;
    let started = send(&mut cs, started("TX-LATE", &id_tag, "2026-11-21T10:00:00Z")).await;
    assert_eq!(started["idTokenInfo"]["status"], "Accepted", "{started}");
    let mut blocker = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db_url)
        .await
        .unwrap();
    let mut lock = sqlx::Connection::begin(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE tariffs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        send(
            &mut cs,
            with_meter(
                event("Ended", 1, "TX-LATE", "2026-11-21T10:20:00Z"),
                5000,
                None,
                "Transaction.End",
            ),
        ),
    )
    .await
    .expect("answered within the cost's budget, not when the lock goes");
    assert!(ended.get("totalCost").is_none(), "{ended}");
    // stored before it was answered
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM sessions WHERE status = 'COMPLETED' AND energy_kwh = 5"
        )
        .await,
        1
    );
    lock.rollback().await.unwrap();
}

/// TC_E_31: an Ended event that skips seqNos makes the CSMS ask the station about that
/// transaction (GetTransactionStatus with its id); the queued events that follow fill the gap.
#[actix_web::test]
async fn a_seq_no_gap_makes_the_csms_ask_for_the_transactions_status() {
    let (app, _) = app_with_station("CS-GAP").await;
    let (_, id_tag) = driver(&app, "gap@example.com").await;
    let mut cs = booted(&app, "CS-GAP").await;
    send(
        &mut cs,
        with_token(
            event("Started", 0, "TX-GAP", "2026-11-21T10:00:00Z"),
            &id_tag,
        ),
    )
    .await;
    send(
        &mut cs,
        event("Updated", 1, "TX-GAP", "2026-11-21T10:01:00Z"),
    )
    .await;
    let mut ended = event("Ended", 4, "TX-GAP", "2026-11-21T10:05:00Z");
    ended["offline"] = json!(true);
    send(&mut cs, ended).await;
    let (id, action, payload) = cs.next_server_call().await;
    assert_eq!(action, "GetTransactionStatus");
    assert_eq!(payload, json!({ "transactionId": "TX-GAP" }));
    cs.reply(
        &id,
        json!({ "ongoingIndicator": false, "messagesInQueue": true }),
    )
    .await;
    assert_eq!(bookkeeping(&app, "TX-GAP").await.1, vec![2, 3]);
    for seq in [2, 3] {
        let mut queued = event("Updated", seq, "TX-GAP", "2026-11-21T10:03:00Z");
        queued["offline"] = json!(true);
        send(&mut cs, queued).await;
    }
    assert_eq!(bookkeeping(&app, "TX-GAP").await.1, Vec::<i32>::new());
    // filling a gap asks nothing more: the next call the station sees is the operator's
    let admin = app.staff_token("ADMIN").await;
    let reset = app.graphql(
        "mutation { resetCharger(chargerId: \"CS-GAP\", type: SOFT) }",
        json!({}),
        Some(&admin),
    );
    let station = async {
        let (id, action, _) = cs.next_server_call().await;
        cs.reply(&id, json!({ "status": "Accepted" })).await;
        action
    };
    let (_, action) = tokio::join!(reset, station);
    assert_eq!(action, "Reset");
}

/// The writer remembers a running transaction's seqNo after its first in-sequence update and
/// moves it on in the batch's last statement. When something else moved the stored seqNo on
/// meanwhile (another replica's writer, say), what is stored wins: the batch runs again item by
/// item, and an event the stored bookkeeping has seen changes nothing.
#[actix_web::test]
async fn a_remembered_seq_no_that_moved_on_elsewhere_yields_to_the_stored_one() {
    let (app, _) = app_with_station("CS-MEM").await;
    let (_, id_tag) = driver(&app, "mem@example.com").await;
    let mut cs = booted(&app, "CS-MEM").await;
    let started = started("TX-MEM", &id_tag, "2026-11-21T10:00:00Z");
    send(&mut cs, started).await;
    let update = |seq: i64, wh: i64, at: &str| {
        with_meter(
            event("Updated", seq, "TX-MEM", at),
            wh,
            Some(7_000),
            "Sample.Periodic",
        )
    };
    // the first update is looked up, the next ones are remembered
    for (seq, wh, at) in [
        (1, 1_000, "2026-11-21T10:10:00Z"),
        (2, 2_000, "2026-11-21T10:20:00Z"),
        (3, 3_000, "2026-11-21T10:30:00Z"),
    ] {
        send(&mut cs, update(seq, wh, at)).await;
    }
    assert_eq!(bookkeeping(&app, "TX-MEM").await, (3, vec![], 0));
    let with_value = |wh: i64| {
        format!("SELECT count(*) FROM meter_values WHERE charger_id = 'CS-MEM' AND value = {wh}")
    };
    assert_eq!(count(&app, &with_value(3_000)).await, 1);

    // another writer moves the transaction on to 6
    sqlx::query("UPDATE charger_transactions SET last_seq_no = 6 WHERE transaction_ref = 'TX-MEM'")
        .execute(&app.db)
        .await
        .unwrap();
    // 4 is the next one for the writer's memory, but the stored bookkeeping has seen it: a
    // repeat, answered without its cost
    assert_eq!(
        send(&mut cs, update(4, 4_444, "2026-11-21T10:40:00Z")).await,
        json!({})
    );
    assert_eq!(
        count(&app, &with_value(4_444)).await,
        0,
        "a seen seqNo stored samples"
    );
    assert_eq!(bookkeeping(&app, "TX-MEM").await, (6, vec![], 0));
    // and the next one after the stored seqNo goes on normally
    send(&mut cs, update(7, 7_777, "2026-11-21T10:50:00Z")).await;
    assert_eq!(count(&app, &with_value(7_777)).await, 1);
    assert_eq!(bookkeeping(&app, "TX-MEM").await, (7, vec![], 0));
    send(&mut cs, update(8, 8_888, "2026-11-21T11:00:00Z")).await;
    assert_eq!(count(&app, &with_value(8_888)).await, 1);
    assert_eq!(bookkeeping(&app, "TX-MEM").await, (8, vec![], 0));
}

/// A late Started with the driver's token links the transaction to a session without moving
/// its seqNo; the updates after it belong to that session, though the writer remembered the
/// transaction without one.
#[actix_web::test]
async fn updates_after_a_late_start_linked_a_session_reach_that_session() {
    let (app, _) = app_with_station("CS-LATE").await;
    let (_, id_tag) = driver(&app, "late@example.com").await;
    let mut cs = booted(&app, "CS-LATE").await;
    let update = |seq: i64, wh: i64, at: &str| {
        with_meter(
            event("Updated", seq, "TX-LATE", at),
            wh,
            None,
            "Sample.Periodic",
        )
    };
    // the Started is held up; the first updates carry no token: no session yet
    send(&mut cs, update(1, 1_000, "2026-11-21T10:10:00Z")).await;
    send(&mut cs, update(2, 2_000, "2026-11-21T10:20:00Z")).await;
    send(&mut cs, update(3, 3_000, "2026-11-21T10:30:00Z")).await;
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0);
    send(&mut cs, started("TX-LATE", &id_tag, "2026-11-21T10:00:00Z")).await;
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 1);
    assert_eq!(bookkeeping(&app, "TX-LATE").await.0, 3);
    send(&mut cs, update(4, 5_555, "2026-11-21T10:40:00Z")).await;
    let in_session = count(
        &app,
        "SELECT count(*) FROM meter_values m JOIN sessions s ON s.id = m.session_id \
         WHERE m.charger_id = 'CS-LATE' AND m.value = 5555",
    )
    .await;
    assert_eq!(
        in_session, 1,
        "the reading after the late start has no session"
    );
    assert_eq!(bookkeeping(&app, "TX-LATE").await.0, 4);
}
