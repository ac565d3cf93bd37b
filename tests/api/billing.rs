//! Set-based billing against the real database: a batch of SESSION_ENDED events bills each
//! session once, pays one user's sessions in the batch's order from what the earlier ones left,
//! and a redelivered batch changes nothing.

use chargegrid::domain::tariff::Tariff;
use chargegrid::store::billing::{self, BillingOutcome, BillingPolicy, ToBill};
use chargegrid::store::StoreError;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp};

fn tariff() -> Tariff {
    Tariff {
        currency: "EUR".into(),
        price_per_kwh: Decimal::new(39, 2),
        price_per_minute: Decimal::ZERO,
        grace_minutes: 0,
        session_fee: Decimal::ZERO,
    }
}

/// A session of `user` at `station` in `status` with `kwh` delivered.
async fn session(app: &TestApp, user: &str, station: Uuid, status: &str, kwh: i64) -> Uuid {
    let id = Uuid::new_v4();
    let charger = format!("BILL-{}", id.simple());
    sqlx::query("INSERT INTO chargers (id, station_id) VALUES ($1, $2)")
        .bind(&charger)
        .bind(station)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, station_id, charger_id, connector_id, id_tag, status, origin, start_time, end_time, energy_kwh) \
         VALUES ($1, $2::uuid, $3, $6, 1, 'TAG', $4, 'APP', now() - interval '30 minutes', \
             CASE WHEN $4 = 'COMPLETED' THEN now() END, $5)",
    )
    .bind(id)
    .bind(user)
    .bind(station)
    .bind(status)
    .bind(Decimal::from(kwh))
    .bind(&charger)
    .execute(&app.db)
    .await
    .unwrap();
    id
}

async fn bill(app: &TestApp, items: &[ToBill]) -> Result<Vec<BillingOutcome>, StoreError> {
    let fallback = tariff();
    let policy = BillingPolicy {
        currency: "EUR",
        payment_due_days: 14,
        fallback: &fallback,
        source: "billing-test",
    };
    let mut tx = app.db.begin().await.unwrap();
    let outcomes = billing::bill_sessions_in(&mut tx, items, &policy).await?;
    tx.commit().await.unwrap();
    Ok(outcomes)
}

fn status(outcome: &BillingOutcome) -> &str {
    match outcome {
        BillingOutcome::Duplicate => "DUPLICATE",
        BillingOutcome::Invoiced { status, .. } => status,
    }
}

async fn scalar<T>(app: &TestApp, sql: &str, user: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql)
        .bind(user)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_batch_pays_a_users_sessions_in_order_until_the_wallet_runs_out_and_bills_each_once() {
    let app = spawn_app().await;
    let (_, _, user) = app
        .register("batch-billing@example.com", "correct horse battery")
        .await;
    sqlx::query("UPDATE users SET wallet_balance = 10 WHERE id = $1::uuid")
        .bind(&user)
        .execute(&app.db)
        .await
        .unwrap();
    let station = app.create_station("Billing station").await;
    // 10 kWh at 0.39: 3.90 each; a 10.00 wallet pays two and leaves 2.20
    let sessions = [
        session(&app, &user, station, "COMPLETED", 10).await,
        session(&app, &user, station, "COMPLETED", 10).await,
        session(&app, &user, station, "COMPLETED", 10).await,
    ];
    let events: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let items = vec![
        ToBill {
            event_id: events[0],
            session_id: sessions[0],
        },
        ToBill {
            event_id: events[1],
            session_id: sessions[1],
        },
        ToBill {
            event_id: events[2],
            session_id: sessions[2],
        },
        // the same event twice in one batch, and a second event for a billed session
        ToBill {
            event_id: events[0],
            session_id: sessions[0],
        },
        ToBill {
            event_id: events[3],
            session_id: sessions[1],
        },
    ];
    let outcomes = bill(&app, &items).await.unwrap();
    let statuses: Vec<&str> = outcomes.iter().map(status).collect();
    assert_eq!(
        statuses,
        ["PAID", "PAID", "PENDING", "DUPLICATE", "DUPLICATE"]
    );

    let balance: Decimal = scalar(
        &app,
        "SELECT wallet_balance FROM users WHERE id = $1::uuid",
        &user,
    )
    .await;
    assert_eq!(balance, Decimal::new(220, 2));
    let after: Vec<Decimal> = sqlx::query_scalar(
        "SELECT balance_after FROM wallet_ledger WHERE user_id = $1::uuid AND kind = 'INVOICE_PAYMENT' ORDER BY id",
    )
    .bind(&user)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(after, [Decimal::new(610, 2), Decimal::new(220, 2)]);
    let invoices: Vec<(Uuid, Decimal, String)> = sqlx::query_as(
        "SELECT session_id, amount, status FROM invoices WHERE user_id = $1::uuid ORDER BY created_at, id",
    )
    .bind(&user)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(invoices.len(), 3, "one invoice per session: {invoices:?}");
    for (session_id, amount, _) in &invoices {
        assert!(sessions.contains(session_id));
        assert_eq!(*amount, Decimal::new(390, 2));
    }
    let costs: i64 = scalar(
        &app,
        "SELECT count(*) FROM sessions WHERE user_id = $1::uuid AND cost = 3.90 AND currency = 'EUR'",
        &user,
    )
    .await;
    assert_eq!(costs, 3);
    let events_out: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM outbox WHERE event_type IN ('PAYMENT_COMPLETED', 'INVOICE_GENERATED') \
             AND body::jsonb ->> 'userId' = $1 ORDER BY id",
    )
    .bind(&user)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        events_out,
        [
            "PAYMENT_COMPLETED",
            "PAYMENT_COMPLETED",
            "INVOICE_GENERATED"
        ]
    );

    // delivered again: nothing changes
    let again = bill(&app, &items).await.unwrap();
    assert!(
        again.iter().all(|o| *o == BillingOutcome::Duplicate),
        "{again:?}"
    );
    let invoices_after: i64 = scalar(
        &app,
        "SELECT count(*) FROM invoices WHERE user_id = $1::uuid",
        &user,
    )
    .await;
    assert_eq!(invoices_after, 3);
    let balance: Decimal = scalar(
        &app,
        "SELECT wallet_balance FROM users WHERE id = $1::uuid",
        &user,
    )
    .await;
    assert_eq!(balance, Decimal::new(220, 2));
}

#[actix_web::test]
async fn a_session_that_is_not_completed_fails_the_batch_and_a_new_event_for_a_billed_session_is_a_duplicate(
) {
    let app = spawn_app().await;
    let (_, _, user) = app
        .register("batch-billing-2@example.com", "correct horse battery")
        .await;
    let station = app.create_station("Billing station").await;
    let done = session(&app, &user, station, "COMPLETED", 5).await;
    let running = session(&app, &user, station, "IN_PROGRESS", 5).await;
    let failed = bill(
        &app,
        &[
            ToBill {
                event_id: Uuid::new_v4(),
                session_id: done,
            },
            ToBill {
                event_id: Uuid::new_v4(),
                session_id: running,
            },
        ],
    )
    .await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
    let missing = bill(
        &app,
        &[ToBill {
            event_id: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
        }],
    )
    .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");

    // billed by one event, a later event for the same session (another delivery path) is a duplicate
    let first = bill(
        &app,
        &[ToBill {
            event_id: Uuid::new_v4(),
            session_id: done,
        }],
    )
    .await
    .unwrap();
    assert_eq!(status(&first[0]), "PENDING");
    let second = bill(
        &app,
        &[ToBill {
            event_id: Uuid::new_v4(),
            session_id: done,
        }],
    )
    .await
    .unwrap();
    assert_eq!(second, [BillingOutcome::Duplicate]);
    let invoices: i64 = scalar(
        &app,
        "SELECT count(*) FROM invoices WHERE user_id = $1::uuid",
        &user,
    )
    .await;
    assert_eq!(invoices, 1);
}
