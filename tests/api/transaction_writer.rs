//! The group-committing transaction writer against the real database: many messages share a
//! commit and each gets its own answer, a bad message or a failing job fails alone, readings
//! of one session in one batch apply in message order, and SESSION_UPDATED is coalesced.

use chargegrid::ocpp::meter::{Reading, Sample};
use chargegrid::store::transaction_writer::{MeterOwner, MeterWrite};
use chargegrid::store::StoreError;
use chrono::Utc;
use futures_util::future::join_all;
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use crate::charger_client::{connect16, connect201, TestCharger};
use crate::helpers::{spawn_app, spawn_app_with, TestApp, CHARGER_PASSWORD};

/// Transaction messages of `kind` the writer stored by `path` ("set" or "job") so far.
fn stored(app: &TestApp, kind: &str, path: &str) -> u64 {
    app.ctx
        .metrics
        .transaction_messages_stored_total
        .with_label_values(&[kind, path])
        .get()
}

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
    share_commits_and_fail_alone(spawn_app().await).await;
}

/// The same with two shards (`ocpp.transaction_writer_shards`, one by default): each charger's
/// messages go to its own shard, and a bad message fails alone in either.
#[actix_web::test]
async fn with_two_shards_meter_messages_still_share_commits_and_a_bad_one_fails_alone() {
    let app = spawn_app_with(|s| s.ocpp.transaction_writer_shards = 2).await;
    share_commits_and_fail_alone(app).await;
}

async fn share_commits_and_fail_alone(app: TestApp) {
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
    // no further message: the shard's flush writes the held reading once it is due, and lets
    // go of it once its commit returned (a moment after the row is visible)
    let flushed = app
        .wait_until(std::time::Duration::from_secs(5), || async {
            row(&app, session).await == (Decimal::from(3_000), Decimal::from(3))
                && writer.pending_energy("TW-HOLD", session).is_none()
        })
        .await;
    assert!(flushed, "the held reading reached the row and was let go");
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

/// `n` drivers (their idTags) and `n` chargers with `CHARGER_PASSWORD` at one station, inserted
/// directly (registering each through the API would hash `n` passwords).
async fn fleet(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    use chargegrid::domain::{Email, PersonName, Role};
    use chargegrid::store::users;
    let station = app.create_station("Batch station").await;
    let hash = chargegrid::auth::password::hash(CHARGER_PASSWORD.to_string())
        .await
        .unwrap();
    let name = PersonName::parse("Batch Driver").unwrap();
    let mut tags = Vec::with_capacity(n);
    for i in 0..n {
        let email = Email::parse(&format!("{prefix}-{i}@example.com")).unwrap();
        let mut tx = app.db.begin().await.unwrap();
        let user = users::insert(
            &mut tx,
            users::NewUser {
                email: &email,
                name: &name,
                password_hash: "not-a-login",
                role: Role::Driver,
                currency: "EUR",
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        tags.push(users::app_id_tag(&app.db, user.id).await.unwrap());
        sqlx::query("INSERT INTO chargers (id, station_id, password_hash) VALUES ($1, $2, $3)")
            .bind(format!("{prefix}-{i}"))
            .bind(station)
            .bind(&hash)
            .execute(&app.db)
            .await
            .unwrap();
    }
    tags
}

/// The `n` chargers of `fleet(app, prefix, n)` connected with their passwords and booted, over
/// OCPP 2.0.1 or 1.6.
async fn online(app: &TestApp, prefix: &str, n: usize, v201: bool) -> Vec<TestCharger> {
    let mut cps = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let basic = Some((id.as_str(), CHARGER_PASSWORD));
        let cp = if v201 {
            let mut cp = connect201(app.port, &id, basic).await;
            cp.boot201().await;
            cp
        } else {
            let mut cp = connect16(app.port, &id, basic).await;
            cp.boot().await;
            cp
        };
        cps.push(cp);
    }
    cps
}

/// A PENDING app session (as `startSession` leaves it) of fleet driver `i` on charger `i`.
async fn app_session(
    app: &TestApp,
    prefix: &str,
    i: usize,
    tag: &str,
    connector: Option<i32>,
    remote_start_id: Option<i32>,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, remote_start_id, pending_expires_at) \
         SELECT gen_random_uuid(), u.id, c.station_id, c.id, $3, $2, 'PENDING', 'APP', $5, now() + interval '5 minutes' \
         FROM chargers c, users u WHERE c.id = $1 AND lower(u.email) = lower($4) RETURNING id",
    )
    .bind(format!("{prefix}-{i}"))
    .bind(tag)
    .bind(connector)
    .bind(format!("{prefix}-{i}@example.com"))
    .bind(remote_start_id)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

#[actix_web::test]
async fn starts_and_stops_of_many_chargers_share_batches_and_each_keeps_its_own_session() {
    let app = spawn_app().await;
    let n = 24;
    let tags = fleet(&app, "SET", n).await;
    // the last charger belongs to no station: its transaction is stored without a session
    let loose = n - 1;
    // (an odd one: the even ones have app sessions waiting, which need a station)
    assert_eq!(loose % 2, 1);
    sqlx::query("UPDATE chargers SET station_id = NULL WHERE id = $1")
        .bind(format!("SET-{loose}"))
        .execute(&app.db)
        .await
        .unwrap();
    let mut cps = online(&app, "SET", n, false).await;
    let start = |i: usize| json!({ "connectorId": 1, "idTag": tags[i], "meterStart": 1000 * i, "timestamp": "2026-12-04T08:00:00Z" });
    // every other driver started from the app (startSession): a PENDING session waits for the
    // charger's start, on connector 1 or on whichever connector the charger picks
    let mut pending = std::collections::HashMap::new();
    for i in (0..n).step_by(2) {
        let id = app_session(&app, "SET", i, &tags[i], (i % 4 == 2).then_some(1), None).await;
        pending.insert(i, id);
    }

    // every charger starts at once: the starts share batches, each gets its own transaction
    let before = batches_run(&app);
    let answers = join_all(
        cps.iter_mut()
            .enumerate()
            .map(|(i, cp)| cp.call("StartTransaction", start(i))),
    )
    .await;
    assert!(
        batches_run(&app) - before < n as u64,
        "the starts did not share a batch"
    );
    let mut ids = Vec::with_capacity(n);
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert_eq!(answer["idTagInfo"]["status"], "Accepted", "charger {i}");
        let id = answer["transactionId"].as_i64().unwrap();
        if i == loose {
            let (charger, session): (String, Option<Uuid>) = sqlx::query_as(
                "SELECT charger_id, session_id FROM charger_transactions WHERE transaction_id = $1",
            )
            .bind(id as i32)
            .fetch_one(&app.db)
            .await
            .unwrap();
            assert_eq!(
                (charger.as_str(), session),
                (format!("SET-{i}").as_str(), None)
            );
            ids.push(id);
            continue;
        }
        // the transaction answered is this charger's, and its session is this charger's and
        // driver's, started with this charger's register
        let (charger, session_charger, tag, meter_start, session, status, connector): (
            String,
            String,
            String,
            Decimal,
            Uuid,
            String,
            Option<i32>,
        ) = sqlx::query_as(
                "SELECT t.charger_id, s.charger_id, s.id_tag, s.meter_start_wh, s.id, s.status, s.connector_id \
                 FROM charger_transactions t JOIN sessions s ON s.id = t.session_id WHERE t.transaction_id = $1",
            )
            .bind(id as i32)
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!(
            (charger.as_str(), session_charger.as_str(), tag.as_str()),
            (
                format!("SET-{i}").as_str(),
                format!("SET-{i}").as_str(),
                tags[i].as_str()
            )
        );
        assert_eq!(meter_start, Decimal::from(1000 * i));
        assert_eq!((status.as_str(), connector), ("IN_PROGRESS", Some(1)));
        if let Some(app_session) = pending.get(&i) {
            assert_eq!(
                session, *app_session,
                "charger {i}: the app's session was not taken over"
            );
        }
        ids.push(id);
    }

    // a repeated start (all at once again) is answered with its first transactionId
    let again = join_all(
        cps.iter_mut()
            .enumerate()
            .map(|(i, cp)| cp.call("StartTransaction", start(i))),
    )
    .await;
    let repeated: Vec<i64> = again
        .into_iter()
        .map(|a| a.unwrap()["transactionId"].as_i64().unwrap())
        .collect();
    assert_eq!(repeated, ids);

    // every charger stops at once, charger i having delivered i + 1 kWh; and one stop of a
    // transaction nobody knows, which goes the general way and is recorded
    let mut answers = join_all(cps.iter_mut().enumerate().map(|(i, cp)| {
        cp.call(
            "StopTransaction",
            json!({ "transactionId": ids[i], "meterStop": 1000 * i + 1000 * (i + 1), "timestamp": "2026-12-04T09:00:00Z",
                    "transactionData": [{ "timestamp": "2026-12-04T09:00:00Z", "sampledValue": [{ "value": (1000 * i + 1000 * (i + 1)).to_string() }] }] }),
        )
    }))
    .await;
    assert!(answers.iter_mut().all(|a| a.is_ok()));
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != loose) {
        let (status, energy, samples): (String, Decimal, i64) = sqlx::query_as(
            "SELECT s.status, s.energy_kwh, (SELECT count(*) FROM meter_values m WHERE m.transaction_pk = t.id AND m.session_id = s.id) \
             FROM charger_transactions t JOIN sessions s ON s.id = t.session_id WHERE t.transaction_id = $1",
        )
        .bind(*id as i32)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(
            (status.as_str(), energy, samples),
            ("COMPLETED", Decimal::from(i + 1), 1),
            "charger {i}"
        );
    }
    assert_eq!(
        count(&app, &format!("SELECT count(*) FROM charger_transactions WHERE charger_id = 'SET-{loose}' AND stopped_at IS NOT NULL AND session_id IS NULL")).await,
        1,
        "the station-less charger's transaction was not stopped"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM sessions WHERE charger_id LIKE 'SET-%'"
        )
        .await,
        n as i64 - 1
    );
    // one SESSION_STARTED and one SESSION_ENDED per session, none for the repeats
    let events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, count(*) FROM outbox WHERE event_type IN ('SESSION_STARTED', 'SESSION_ENDED') \
         GROUP BY event_type ORDER BY event_type",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        events,
        vec![
            ("SESSION_ENDED".to_string(), n as i64 - 1),
            ("SESSION_STARTED".to_string(), n as i64 - 1)
        ]
    );

    // repeated stops change nothing; a stop nobody knows is recorded for reconciliation
    let unknown = cps[0]
        .call("StopTransaction", json!({ "transactionId": 999_999, "meterStop": 1, "timestamp": "2026-12-04T09:00:00Z" }))
        .await;
    assert!(unknown.is_ok());
    let repeats = join_all(cps.iter_mut().enumerate().map(|(i, cp)| {
        cp.call(
            "StopTransaction",
            json!({ "transactionId": ids[i], "meterStop": 99_999_999, "timestamp": "2026-12-04T10:00:00Z" }),
        )
    }))
    .await;
    assert!(repeats.iter().all(|a| a.is_ok()));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM sessions WHERE charger_id LIKE 'SET-%' AND energy_kwh > 24"
        )
        .await,
        0,
        "a repeated stop moved a register"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM charger_reports WHERE charger_id = 'SET-0' AND kind = 'UnknownStopTransaction'").await,
        1
    );
}

/// A 2.0.1 TransactionEvent of `transaction_ref` with one energy register sample.
fn event(kind: &str, transaction_ref: &str, seq_no: i32, wh: usize, at: &str) -> serde_json::Value {
    let context = match kind {
        "Started" => "Transaction.Begin",
        "Ended" => "Transaction.End",
        _ => "Sample.Periodic",
    };
    json!({ "eventType": kind, "timestamp": at, "triggerReason": "MeterValuePeriodic", "seqNo": seq_no,
            "transactionInfo": { "transactionId": transaction_ref, "stoppedReason": "EVDisconnected" },
            "meterValue": [{ "timestamp": at, "sampledValue": [{ "value": wh as f64, "context": context,
                "measurand": "Energy.Active.Import.Register" }] }] })
}

#[actix_web::test]
async fn started_and_ended_events_of_many_stations_share_batches_and_each_keeps_its_own_session() {
    let app = spawn_app().await;
    let n = 24;
    let tags = fleet(&app, "SEV", n).await;
    let mut cps = online(&app, "SEV", n, true).await;
    let pending = |i: usize, remote_start_id: Option<i32>, connector: Option<i32>| {
        app_session(&app, "SEV", i, &tags[i], connector, remote_start_id)
    };
    // a third of the drivers started from the app twice: the station echoes the remoteStartId
    // of the newer request, which names its session although an older one waits for the same
    // idToken; a third started once from the app (found by idToken); a third at the station
    let mut app_sessions = std::collections::HashMap::new();
    for i in 0..n {
        match i % 3 {
            0 => {
                pending(i, None, None).await;
                app_sessions.insert(i, pending(i, Some(100 + i as i32), None).await);
            }
            1 => {
                app_sessions.insert(i, pending(i, None, Some(1)).await);
            }
            _ => {}
        }
    }
    // the last station's transaction names no idToken: it is stored without a session
    let anonymous = n - 1;
    let reference = |i: usize| format!("SEV-TX-{i}");

    let before = batches_run(&app);
    let answers = join_all(cps.iter_mut().enumerate().map(|(i, cp)| {
        let mut started = event(
            "Started",
            &reference(i),
            0,
            1000 * i,
            "2026-12-04T08:00:00Z",
        );
        started["evse"] = json!({ "id": 1, "connectorId": 1 });
        if i != anonymous {
            started["idToken"] = json!({ "idToken": tags[i], "type": "ISO14443" });
        }
        if i % 3 == 0 {
            started["transactionInfo"]["remoteStartId"] = json!(100 + i);
        }
        cp.call("TransactionEvent", started)
    }))
    .await;
    assert!(
        batches_run(&app) - before < n as u64,
        "the starts did not share a batch"
    );
    // every start created its transaction, so the set-based statements stored each of them
    assert_eq!(
        (
            stored(&app, "transaction_event_started", "set"),
            stored(&app, "transaction_event_started", "job")
        ),
        (n as u64, 0)
    );
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        if i == anonymous {
            assert!(answer.get("idTokenInfo").is_none());
            continue;
        }
        assert_eq!(answer["idTokenInfo"]["status"], "Accepted", "station {i}");
        let (charger, session_charger, tag, meter_start, session, status, connector): (
            String,
            String,
            String,
            Decimal,
            Uuid,
            String,
            Option<i32>,
        ) = sqlx::query_as(
            "SELECT t.charger_id, s.charger_id, s.id_tag, s.meter_start_wh, s.id, s.status, s.connector_id \
             FROM charger_transactions t JOIN sessions s ON s.id = t.session_id \
             WHERE t.transaction_ref = $1 AND t.id_tag = $2 AND t.id_tag_status = 'Accepted' \
                 AND t.first_seq_no = 0 AND t.last_seq_no = 0",
        )
        .bind(reference(i))
        .bind(&tags[i])
        .fetch_one(&app.db)
        .await
        .unwrap();
        let station = format!("SEV-{i}");
        assert_eq!(
            (charger.as_str(), session_charger.as_str(), tag.as_str()),
            (station.as_str(), station.as_str(), tags[i].as_str())
        );
        assert_eq!(meter_start, Decimal::from(1000 * i), "station {i}");
        assert_eq!((status.as_str(), connector), ("IN_PROGRESS", Some(1)));
        if let Some(app_session) = app_sessions.get(&i) {
            assert_eq!(
                session, *app_session,
                "station {i}: the app's session was not taken over"
            );
        }
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM sessions WHERE charger_id LIKE 'SEV-%' AND status = 'PENDING'"
        )
        .await,
        8,
        "only the older app requests of the first third still wait"
    );

    let answers = join_all(cps.iter_mut().enumerate().map(|(i, cp)| {
        cp.call(
            "TransactionEvent",
            event(
                "Updated",
                &reference(i),
                1,
                1000 * i + 500,
                "2026-12-04T08:30:00Z",
            ),
        )
    }))
    .await;
    assert!(answers.iter().all(|a| a.is_ok()));

    // every station ends at once, station i having delivered i + 1 kWh
    let before = batches_run(&app);
    let ended = |i: usize| {
        event(
            "Ended",
            &reference(i),
            2,
            1000 * i + 1000 * (i + 1),
            "2026-12-04T09:00:00Z",
        )
    };
    let answers = join_all(
        cps.iter_mut()
            .enumerate()
            .map(|(i, cp)| cp.call("TransactionEvent", ended(i))),
    )
    .await;
    assert!(
        batches_run(&app) - before < n as u64,
        "the ends did not share a batch"
    );
    assert!(answers.iter().all(|a| a.is_ok()));
    assert_eq!(
        (
            stored(&app, "transaction_event_ended", "set"),
            stored(&app, "transaction_event_ended", "job")
        ),
        (n as u64, 0)
    );
    for i in 0..n {
        let (stopped, last_seq, meter_stop, reason, samples, session): (
            bool,
            i32,
            Decimal,
            String,
            i64,
            Option<(String, Decimal)>,
        ) = sqlx::query_as(
            "SELECT t.stopped_at = '2026-12-04T09:00:00Z', t.last_seq_no, t.meter_stop_wh, t.stop_reason, \
                 (SELECT count(*) FROM meter_values m WHERE m.transaction_pk = t.id \
                     AND m.session_id IS NOT DISTINCT FROM t.session_id), \
                 (SELECT (s.status, s.energy_kwh) FROM sessions s WHERE s.id = t.session_id) \
             FROM charger_transactions t WHERE t.transaction_ref = $1",
        )
        .bind(reference(i))
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(
            (stopped, last_seq, meter_stop, reason.as_str(), samples),
            (
                true,
                2,
                Decimal::from(1000 * i + 1000 * (i + 1)),
                "EVDisconnected",
                3
            ),
            "station {i}"
        );
        let expected = (i != anonymous).then(|| ("COMPLETED".to_string(), Decimal::from(i + 1)));
        assert_eq!(session, expected, "station {i}");
    }
    // one SESSION_STARTED and one SESSION_ENDED per session
    let events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, count(*) FROM outbox WHERE event_type IN ('SESSION_STARTED', 'SESSION_ENDED') \
         GROUP BY event_type ORDER BY event_type",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let sessions = n as i64 - 1;
    assert_eq!(
        events,
        vec![
            ("SESSION_ENDED".to_string(), sessions),
            ("SESSION_STARTED".to_string(), sessions)
        ]
    );

    // a repeated Ended (the same seqNo, a higher register) is answered and changes nothing
    let repeats = join_all(cps.iter_mut().enumerate().map(|(i, cp)| {
        let mut repeat = ended(i);
        repeat["meterValue"][0]["sampledValue"][0]["value"] = json!(99_999_999.0);
        cp.call("TransactionEvent", repeat)
    }))
    .await;
    assert!(repeats.iter().all(|a| a.is_ok()));
    // a repeat is no running transaction's next seqNo: the general path answers it
    assert_eq!(stored(&app, "transaction_event_ended", "job"), n as u64);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM charger_transactions WHERE charger_id LIKE 'SEV-%' AND meter_stop_wh > 48000"
        )
        .await,
        0,
        "a repeated end moved a register"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM outbox WHERE event_type = 'SESSION_ENDED'"
        )
        .await,
        sessions
    );
}
