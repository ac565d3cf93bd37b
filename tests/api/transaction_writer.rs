//! The group-committing transaction writer against the real database: many messages share a
//! commit and each gets its own answer, a bad message or a failing job fails alone, readings
//! of one session in one batch apply in message order, and SESSION_UPDATED is coalesced.

use chargegrid::ocpp::meter::{Reading, Sample};
use chargegrid::store::transaction_writer::{MeterOwner, MeterWrite};
use chargegrid::store::StoreError;
use chrono::Utc;
use futures_util::future::join_all;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp};

fn batches_run(app: &TestApp) -> u64 {
    app.ctx
        .metrics
        .store_batch_size
        .with_label_values(&["transactions"])
        .get_sample_count()
}

fn sample(wh: Decimal) -> Sample {
    Sample {
        sampled_at: Utc::now(),
        measurand: "Energy.Active.Import.Register".into(),
        phase: None,
        context: "Sample.Periodic".into(),
        location: None,
        unit: "Wh".into(),
        value: wh,
    }
}

fn meter(charger_id: &str, owner: MeterOwner, wh: Decimal) -> MeterWrite {
    MeterWrite {
        charger_id: charger_id.to_string(),
        connector_id: 1,
        owner,
        samples: vec![sample(wh), sample(wh)],
        reading: Reading {
            energy_wh: Some(wh),
            power_w: None,
        },
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db).await.unwrap()
}

#[actix_web::test]
async fn concurrent_meter_messages_share_commits_and_a_bad_one_fails_alone() {
    let app = spawn_app().await;
    let before = batches_run(&app);
    let mut writes: Vec<MeterWrite> = (0..300)
        .map(|i| meter(&format!("TW-{i}"), MeterOwner::None, Decimal::from(i)))
        .collect();
    // beyond NUMERIC(20, 4): this statement cannot take it
    for bad in [17, 211] {
        writes[bad].samples[1].value = Decimal::from(10u64.pow(17));
    }
    let results = join_all(writes.into_iter().map(|w| app.ctx.transactions.meter(w))).await;
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![17, 211]);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM meter_values WHERE charger_id LIKE 'TW-%'"
        )
        .await,
        298 * 2,
        "every good message stored, nothing of the bad ones"
    );
    let batches = batches_run(&app) - before;
    assert!(batches <= 10, "302 messages took {batches} batches");
}

#[actix_web::test]
async fn a_failing_job_is_rolled_back_alone_and_the_rest_of_its_batch_commits() {
    let app = spawn_app().await;
    let jobs = (0..50).map(|i| {
        let id = if i == 25 {
            "TJ-BAD".to_string()
        } else {
            format!("TJ-{i}")
        };
        app.ctx.transactions.run("TJ", move |tx| {
            let id = id.clone();
            Box::pin(async move {
                sqlx::query("INSERT INTO chargers (id) VALUES ($1)")
                    .bind(&id)
                    .execute(&mut **tx)
                    .await?;
                if id == "TJ-BAD" {
                    return Err(StoreError::Conflict("this job fails after writing".into()));
                }
                Ok(id)
            })
        })
    });
    let results = join_all(jobs).await;
    assert!(matches!(results[25], Err(StoreError::Conflict(_))));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 49);
    assert_eq!(results[3].as_deref().ok(), Some("TJ-3"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM chargers WHERE id LIKE 'TJ-%'").await,
        49
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM chargers WHERE id = 'TJ-BAD'").await,
        0
    );
}

/// An IN_PROGRESS session on charger `charger_id` with its transaction; (session, transaction pk).
async fn open_session(app: &TestApp, charger_id: &str) -> (Uuid, i64) {
    let (_, _, user_id) = app
        .register(
            &format!("{charger_id}@example.com"),
            "correct horse battery",
        )
        .await;
    let station = app.create_station("Writer station").await;
    sqlx::query("INSERT INTO chargers (id, station_id) VALUES ($1, $2)")
        .bind(charger_id)
        .bind(station)
        .execute(&app.db)
        .await
        .unwrap();
    let session = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, start_time, meter_start_wh) \
         VALUES ($1, $2::uuid, $3, $4, 1, 'TAG', 'IN_PROGRESS', 'CHARGER', now(), 0)",
    )
    .bind(session)
    .bind(&user_id)
    .bind(station)
    .bind(charger_id)
    .execute(&app.db)
    .await
    .unwrap();
    let pk: i64 = sqlx::query_scalar(
        "INSERT INTO charger_transactions (charger_id, connector_id, session_id, started_at, meter_start_wh) \
         VALUES ($1, 1, $2, now(), 0) RETURNING id",
    )
    .bind(charger_id)
    .bind(session)
    .fetch_one(&app.db)
    .await
    .unwrap();
    (session, pk)
}

#[actix_web::test]
async fn readings_of_one_session_in_one_batch_apply_in_order_and_their_events_are_coalesced() {
    let app = spawn_app().await;
    let (session, pk) = open_session(&app, "TW-SESSION").await;
    let owner = || MeterOwner::Known {
        transaction_pk: pk,
        session_id: Some(session),
    };
    let before = batches_run(&app);
    // queued together: one batch, the session three times in it
    let results = join_all([1_000, 2_000, 1_500].map(|wh| {
        app.ctx
            .transactions
            .meter(meter("TW-SESSION", owner(), Decimal::from(wh)))
    }))
    .await;
    assert_eq!(
        batches_run(&app) - before,
        1,
        "the three messages shared one batch"
    );
    let energy: Vec<Option<f64>> = results
        .iter()
        .map(|r| r.as_ref().unwrap().as_ref().map(|s| s.energy_kwh_f64()))
        .collect();
    // merged in order (the register only moves forward: 2 kWh, not the older 1.5): the row
    // takes it once, answered to the batch's last message of the session
    assert_eq!(energy, vec![None, None, Some(2.0)]);
    let (last, kwh): (Decimal, Decimal) =
        sqlx::query_as("SELECT meter_last_wh, energy_kwh FROM sessions WHERE id = $1")
            .bind(session)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((last, kwh), (Decimal::from(2_000), Decimal::from(2)));
    assert_eq!(
        count(&app, "SELECT count(*) FROM meter_values WHERE charger_id = 'TW-SESSION' AND transaction_pk IS NOT NULL").await,
        6
    );
    // one SESSION_UPDATED for the batch
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM outbox WHERE event_type = 'SESSION_UPDATED'"
        )
        .await,
        1
    );
}

/// The row's meter reading and energy.
async fn row(app: &TestApp, session: Uuid) -> (Decimal, Decimal) {
    sqlx::query_as("SELECT meter_last_wh, energy_kwh FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_reading_within_a_second_of_the_last_is_held_and_written_by_the_flush() {
    let app = spawn_app().await;
    let (session, pk) = open_session(&app, "TW-HOLD").await;
    let owner = || MeterOwner::Known {
        transaction_pk: pk,
        session_id: Some(session),
    };
    let writer = &app.ctx.transactions;
    let first = writer
        .meter(meter("TW-HOLD", owner(), Decimal::from(1_000)))
        .await
        .unwrap();
    assert_eq!(first.map(|s| s.energy_kwh), Some(Decimal::ONE));
    // the next message, a moment later: its samples are stored, the row waits
    let second = writer
        .meter(meter("TW-HOLD", owner(), Decimal::from(3_000)))
        .await
        .unwrap();
    assert!(second.is_none(), "the row took no reading: {second:?}");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM meter_values WHERE charger_id = 'TW-HOLD'"
        )
        .await,
        4,
        "every sample is stored before the answer"
    );
    assert_eq!(
        row(&app, session).await,
        (Decimal::from(1_000), Decimal::ONE)
    );
    assert_eq!(
        writer.pending_energy("TW-HOLD", session),
        Some(Decimal::from(3_000))
    );
    // no further message: the shard's flush writes the held reading once it is due
    let flushed = app
        .wait_until(std::time::Duration::from_secs(5), || async {
            row(&app, session).await == (Decimal::from(3_000), Decimal::from(3))
        })
        .await;
    assert!(flushed, "the held reading reached the row");
    assert_eq!(writer.pending_energy("TW-HOLD", session), None);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM outbox WHERE event_type = 'SESSION_UPDATED'"
        )
        .await,
        2,
        "one event per refresh of the row"
    );
}
