//! The batching charger writer against the real database: many writes share a commit, each
//! caller still gets its own answer, one bad write fails alone, and a charger's writes keep
//! their order inside a batch (with their events in the same order).

use chargegrid::store::charger_writer::{ChargerWrite, WriteResult};
use chargegrid::store::chargers::StatusReport;
use chrono::Utc;
use futures_util::future::join_all;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp};

async fn insert_chargers(app: &TestApp, prefix: &str, n: usize) {
    sqlx::query(
        "INSERT INTO chargers (id) SELECT $1 || i::text FROM generate_series(1, $2::int) AS i",
    )
    .bind(prefix)
    .bind(n as i32)
    .execute(&app.db)
    .await
    .unwrap();
}

fn status(charger_id: &str, connector_id: i32, status: &str) -> ChargerWrite {
    ChargerWrite::Status {
        charger_id: charger_id.to_string(),
        report: StatusReport {
            connector_id,
            status: status.to_string(),
            error_code: None,
            info: None,
            vendor_error_code: None,
            reported_at: Some(Utc::now()),
        },
    }
}

/// The (event type, aggregate) of every outbox event of chargers starting with `prefix`.
async fn outbox_of(app: &TestApp, prefix: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT event_type, aggregate_id FROM outbox WHERE aggregate_id LIKE 'charger:' || $1 || '%' ORDER BY id",
    )
    .bind(prefix)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

fn batches_run(app: &TestApp) -> u64 {
    app.ctx
        .metrics
        .store_batch_size
        .with_label_values(&["charger_writes"])
        .get_sample_count()
}

#[actix_web::test]
async fn concurrent_writes_share_batches_and_one_bad_write_fails_alone() {
    let app = spawn_app().await;
    insert_chargers(&app, "CW-", 200).await;
    let before = batches_run(&app);
    // queued all at once: 200 good reports and two bad ones (an unknown charger, a negative
    // connector) somewhere in the middle
    let mut writes: Vec<_> = (1..=200)
        .map(|i| {
            app.ctx
                .charger_store
                .write(status(&format!("CW-{i}"), 1, "AVAILABLE"))
        })
        .collect();
    writes.insert(
        50,
        app.ctx
            .charger_store
            .write(status("CW-NOPE", 1, "AVAILABLE")),
    );
    writes.insert(
        120,
        app.ctx.charger_store.write(status("CW-7", -1, "AVAILABLE")),
    );
    let results: Vec<WriteResult> = join_all(writes).await;

    assert!(results[50].is_err(), "unknown charger: {:?}", results[50]);
    assert!(
        results[120].is_err(),
        "negative connector: {:?}",
        results[120]
    );
    let good: Vec<&WriteResult> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 50 && *i != 120)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(good.len(), 200);
    assert!(good.iter().all(|r| matches!(r, Ok(true))), "{good:?}");
    let batches = batches_run(&app) - before;
    assert!(
        batches <= 20,
        "202 queued writes should share batches, took {batches}"
    );

    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM connector_status WHERE charger_id LIKE 'CW-%' AND status = 'AVAILABLE'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, 200);
    let events = outbox_of(&app, "CW-").await;
    assert_eq!(events.len(), 200);
    assert!(events.iter().all(|(t, _)| t == "CONNECTOR_STATUS_CHANGED"));

    // the same status again changes nothing and emits nothing
    let again = join_all((1..=200).map(|i| {
        app.ctx
            .charger_store
            .write(status(&format!("CW-{i}"), 1, "AVAILABLE"))
    }))
    .await;
    assert!(again.iter().all(|r| matches!(r, Ok(false))));
    assert_eq!(outbox_of(&app, "CW-").await.len(), 200);
}

#[actix_web::test]
async fn a_chargers_writes_in_one_batch_apply_in_order_with_their_events() {
    let app = spawn_app().await;
    insert_chargers(&app, "CO-", 1).await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let connected = |connection_id| ChargerWrite::Connected {
        charger_id: "CO-1".into(),
        connection_id,
        protocol: "OCPP16",
    };
    let disconnected = |connection_id| ChargerWrite::Disconnected {
        charger_id: "CO-1".into(),
        connection_id,
        last_seen: Utc::now(),
    };
    let store = &app.ctx.charger_store;
    // queued back to back: connect, drop, reconnect, then the first connection's late close
    let writes = vec![
        store.write(connected(first)),
        store.write(status("CO-1", 1, "AVAILABLE")),
        store.write(disconnected(first)),
        store.write(connected(second)),
        store.write(status("CO-1", 1, "OCCUPIED")),
        store.write(disconnected(first)),
    ];
    let results: Vec<bool> = join_all(writes)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(results, vec![true, true, true, true, true, false]);

    let (online, connection_id): (bool, Option<Uuid>) =
        sqlx::query_as("SELECT online, connection_id FROM chargers WHERE id = 'CO-1'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(
        online,
        "the stale close must not take the newer connection offline"
    );
    assert_eq!(connection_id, Some(second));
    let status: String = sqlx::query_scalar(
        "SELECT status FROM connector_status WHERE charger_id = 'CO-1' AND connector_id = 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(status, "OCCUPIED");
    let events: Vec<String> = outbox_of(&app, "CO-")
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        events,
        vec![
            "CHARGER_CONNECTED",
            "CONNECTOR_STATUS_CHANGED",
            "CHARGER_DISCONNECTED",
            "CHARGER_CONNECTED",
            "CONNECTOR_STATUS_CHANGED",
        ]
    );
}

/// A connection the server ended (as a restart of PostgreSQL ends every open one) says the
/// database is unreachable, so a failed batch is not re-run item by item against it; a wrong
/// statement is an error of that statement.
#[actix_web::test]
async fn a_connection_the_server_ended_is_unreachable_and_a_wrong_statement_is_not() {
    use chargegrid::store::StoreError;
    let app = spawn_app().await;
    let mut conn = app.db.acquire().await.unwrap();
    let ended = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
        .execute(&mut *conn)
        .await
        .expect_err("the server ends the connection it runs on");
    let ended = StoreError::from(ended);
    assert!(ended.is_unreachable(), "{ended:?}");
    let wrong = sqlx::query("SELECT 1 / 0")
        .execute(&app.db)
        .await
        .expect_err("division by zero");
    let wrong = StoreError::from(wrong);
    assert!(!wrong.is_unreachable(), "{wrong:?}");
}

/// A StatusNotification that changes nothing writes no event and wakes no outbox relay (a
/// status batch's one statement always runs its outbox insert, which then writes nothing); one
/// that changes the status wakes it once its batch committed. The writers' inserts send no
/// NOTIFY (ADR 016, fifth amendment): the writer tells the relay itself.
#[actix_web::test]
async fn a_status_that_changes_nothing_wakes_no_relay() {
    let app = spawn_app().await;
    insert_chargers(&app, "CQ-", 1).await;
    let store = &app.ctx.charger_store;
    let wake = &app.ctx.outbox_wake;
    let before = wake.commits_told();
    assert!(matches!(
        store.write(status("CQ-1", 1, "AVAILABLE")).await,
        Ok(true)
    ));
    assert_eq!(
        wake.commits_told(),
        before + 1,
        "a new status wakes the relay"
    );
    // the same status again: nothing written, nobody woken
    assert!(matches!(
        store.write(status("CQ-1", 1, "AVAILABLE")).await,
        Ok(false)
    ));
    assert_eq!(
        wake.commits_told(),
        before + 1,
        "an unchanged status woke the relay"
    );
    // a status that changes wakes it
    assert!(matches!(
        store.write(status("CQ-1", 1, "OCCUPIED")).await,
        Ok(true)
    ));
    assert_eq!(wake.commits_told(), before + 2);
}
