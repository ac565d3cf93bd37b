//! Billing a finished session, exactly once in effect: the consumer's de-duplication row, the
//! invoice (unique per session), the wallet debit and the resulting events commit together.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{array_params, wallet, StoreError, Tx};
use crate::domain::tariff::{parse_usage_cost, Tariff};
use crate::events::{outbox, Event};

/// What billing needs besides the session.
pub struct BillingPolicy<'a> {
    pub currency: &'a str,
    pub payment_due_days: i64,
    /// Used when neither the station nor the tariffs table say anything.
    pub fallback: &'a Tariff,
    pub source: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingOutcome {
    /// This event (or another one for the same session) was billed already.
    Duplicate,
    Invoiced {
        invoice_id: Uuid,
        status: String,
    },
}

#[derive(sqlx::FromRow)]
struct SessionToBill {
    user_id: Uuid,
    station_id: Uuid,
    status: String,
    energy_kwh: Decimal,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TariffRow {
    id: Uuid,
    currency: String,
    price_per_kwh: Decimal,
    price_per_minute: Decimal,
    grace_minutes: i32,
    session_fee: Decimal,
}

/// A tariff read through an outer join (`t.id AS tariff_id, t.currency::text AS
/// tariff_currency, t.price_per_kwh, ...`): every column NULL when there is none.
#[derive(sqlx::FromRow)]
struct JoinedTariff {
    tariff_id: Option<Uuid>,
    tariff_currency: Option<String>,
    price_per_kwh: Option<Decimal>,
    price_per_minute: Option<Decimal>,
    grace_minutes: Option<i32>,
    session_fee: Option<Decimal>,
}

impl JoinedTariff {
    /// The tariff, if the join found one.
    fn row(&self) -> Option<TariffRow> {
        Some(TariffRow {
            id: self.tariff_id?,
            currency: self.tariff_currency.clone()?,
            price_per_kwh: self.price_per_kwh?,
            price_per_minute: self.price_per_minute?,
            grace_minutes: self.grace_minutes?,
            session_fee: self.session_fee?,
        })
    }
}

impl From<&TariffRow> for Tariff {
    fn from(row: &TariffRow) -> Self {
        Tariff {
            currency: row.currency.clone(),
            price_per_kwh: row.price_per_kwh,
            price_per_minute: row.price_per_minute,
            grace_minutes: i64::from(row.grace_minutes),
            session_fee: row.session_fee,
        }
    }
}

const TARIFF_COLUMNS: &str =
    "id, currency::text AS currency, price_per_kwh, price_per_minute, grace_minutes, session_fee";

/// The tariff of a station: its own tariff, else a clear per-kWh price in its OCM `UsageCost`
/// (in the billing currency), else the default tariff, else `policy.fallback`.
async fn tariff_for(
    tx: &mut Tx<'_>,
    station_id: Uuid,
    policy: &BillingPolicy<'_>,
) -> Result<(Tariff, Option<Uuid>, &'static str), StoreError> {
    let station: Option<(Option<Uuid>, Option<String>)> =
        sqlx::query_as("SELECT tariff_id, usage_cost FROM stations WHERE id = $1")
            .bind(station_id)
            .fetch_optional(&mut **tx)
            .await?;
    let (tariff_id, usage_cost) = station.unwrap_or((None, None));
    if let Some(id) = tariff_id {
        if let Some(row) = sqlx::query_as::<_, TariffRow>(&format!(
            "SELECT {TARIFF_COLUMNS} FROM tariffs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        {
            return Ok(((&row).into(), Some(row.id), "station tariff"));
        }
    }
    if let Some((price, currency)) = usage_cost.as_deref().and_then(parse_usage_cost) {
        if currency.is_empty() || currency == policy.currency {
            return Ok((
                Tariff {
                    currency: policy.currency.to_string(),
                    price_per_kwh: price,
                    price_per_minute: Decimal::ZERO,
                    grace_minutes: 0,
                    session_fee: Decimal::ZERO,
                },
                None,
                "OCM usage cost",
            ));
        }
    }
    if let Some(row) = sqlx::query_as::<_, TariffRow>(&format!(
        "SELECT {TARIFF_COLUMNS} FROM tariffs WHERE is_default"
    ))
    .fetch_optional(&mut **tx)
    .await?
    {
        return Ok(((&row).into(), Some(row.id), "default tariff"));
    }
    Ok((policy.fallback.clone(), None, "built-in tariff"))
}

/// The tariff a session at `station_id` is billed with (as `bill_session` chooses it), and
/// the plan of `user_id` (`None` for an unknown user), in one statement.
pub async fn station_tariff_and_plan(
    pool: &PgPool,
    station_id: Uuid,
    user_id: Uuid,
    policy: &BillingPolicy<'_>,
) -> Result<(Tariff, Option<String>), StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        usage_cost: Option<String>,
        #[sqlx(flatten)]
        station: JoinedTariff,
        default_id: Option<Uuid>,
        default_currency: Option<String>,
        default_per_kwh: Option<Decimal>,
        default_per_minute: Option<Decimal>,
        default_grace_minutes: Option<i32>,
        default_session_fee: Option<Decimal>,
        plan: Option<String>,
    }
    let row = sqlx::query_as::<_, Row>(
        "SELECT st.usage_cost, t.id AS tariff_id, t.currency::text AS tariff_currency, \
             t.price_per_kwh, t.price_per_minute, t.grace_minutes, t.session_fee, \
             d.id AS default_id, d.currency::text AS default_currency, \
             d.price_per_kwh AS default_per_kwh, d.price_per_minute AS default_per_minute, \
             d.grace_minutes AS default_grace_minutes, d.session_fee AS default_session_fee, \
             (SELECT u.plan::text FROM users u WHERE u.id = $2) AS plan \
         FROM (SELECT 1) AS one \
             LEFT JOIN stations st ON st.id = $1 \
             LEFT JOIN tariffs t ON t.id = st.tariff_id \
             LEFT JOIN tariffs d ON d.is_default",
    )
    .bind(station_id)
    .bind(user_id)
    .fetch_one(pool)
    .await?;
    let station = row.station.row();
    let default = JoinedTariff {
        tariff_id: row.default_id,
        tariff_currency: row.default_currency,
        price_per_kwh: row.default_per_kwh,
        price_per_minute: row.default_per_minute,
        grace_minutes: row.default_grace_minutes,
        session_fee: row.default_session_fee,
    }
    .row();
    let (tariff, _, _) = pick_tariff(
        station.as_ref(),
        row.usage_cost.as_deref(),
        default.as_ref(),
        policy,
    );
    Ok((tariff, row.plan))
}

/// Bills `session_id` for SESSION_ENDED `event_id`, in a transaction of its own.
pub async fn bill_session(
    pool: &PgPool,
    event_id: Uuid,
    session_id: Uuid,
    policy: &BillingPolicy<'_>,
) -> Result<BillingOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = bill_session_in(&mut tx, event_id, session_id, policy).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Bills `session_id` for SESSION_ENDED `event_id` within `tx` (the billing worker's group
/// commit): exactly one invoice and one debit per session, whatever the deliveries.
#[tracing::instrument(skip_all, fields(session_id = %session_id))]
pub async fn bill_session_in(
    tx: &mut Tx<'_>,
    event_id: Uuid,
    session_id: Uuid,
    policy: &BillingPolicy<'_>,
) -> Result<BillingOutcome, StoreError> {
    let first = sqlx::query("INSERT INTO processed_events (consumer, event_id) VALUES ('billing', $1) ON CONFLICT DO NOTHING")
        .bind(event_id)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        == 1;
    let already: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM invoices WHERE session_id = $1)")
            .bind(session_id)
            .fetch_one(&mut **tx)
            .await?;
    if !first || already {
        return Ok(BillingOutcome::Duplicate);
    }
    let session = sqlx::query_as::<_, SessionToBill>(
        "SELECT user_id, station_id, status, energy_kwh, start_time, end_time FROM sessions WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(session_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    if session.status != "COMPLETED" {
        return Err(StoreError::Conflict(format!(
            "session is {}, not COMPLETED",
            session.status
        )));
    }
    let duration_minutes = match (session.start_time, session.end_time) {
        (Some(start), Some(end)) => ((end - start).num_seconds().max(0) + 59) / 60,
        _ => 0,
    };
    let (tariff, tariff_id, tariff_source) = tariff_for(tx, session.station_id, policy).await?;
    let charge = tariff.charge(session.energy_kwh, duration_minutes);
    let (plan,): (String,) = sqlx::query_as("SELECT plan FROM users WHERE id = $1")
        .bind(session.user_id)
        .fetch_one(&mut **tx)
        .await?;
    let covered = plan == "FLAT_RATE";
    let amount = if covered { Decimal::ZERO } else { charge.total };
    let invoice_id = Uuid::now_v7();
    let now = Utc::now();
    let due = now + Duration::days(policy.payment_due_days);

    // pay from the wallet when it covers the amount; otherwise the invoice waits
    let paid = if amount.is_zero() {
        true
    } else {
        match wallet::apply_in(
            tx,
            session.user_id,
            -amount,
            Some(&tariff.currency),
            "INVOICE_PAYMENT",
            &format!("invoice:{invoice_id}"),
            Some(invoice_id),
        )
        .await
        {
            Ok(_) => true,
            Err(StoreError::InsufficientFunds) => false,
            // never 1:1 across currencies: the invoice stays PENDING for another way to pay
            Err(StoreError::CurrencyMismatch { amount, wallet }) => {
                tracing::warn!(%invoice_id, %amount, %wallet, "invoice and wallet currencies differ: not debited");
                false
            }
            Err(e) => return Err(e),
        }
    };
    let status = if paid { "PAID" } else { "PENDING" };
    let breakdown = json!({
        "tariffSource": tariff_source,
        "pricePerKwh": tariff.price_per_kwh.to_string(),
        "pricePerMinute": tariff.price_per_minute.to_string(),
        "graceMinutes": tariff.grace_minutes,
        "energy": charge.energy.to_string(),
        "time": charge.time.to_string(),
        "sessionFee": charge.fee.to_string(),
    });
    sqlx::query(
        "INSERT INTO invoices (id, session_id, user_id, amount, cost_amount, currency, energy_kwh, duration_minutes, \
             tariff_id, breakdown, covered_by_plan, status, due_date, paid_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(invoice_id)
    .bind(session_id)
    .bind(session.user_id)
    .bind(amount)
    .bind(charge.total)
    .bind(&tariff.currency)
    .bind(session.energy_kwh)
    .bind(duration_minutes as i32)
    .bind(tariff_id)
    .bind(&breakdown)
    .bind(covered)
    .bind(status)
    .bind(due)
    .bind(paid.then_some(now))
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE sessions SET cost = $2, currency = $3, updated_at = now() WHERE id = $1")
        .bind(session_id)
        .bind(charge.total)
        .bind(&tariff.currency)
        .execute(&mut **tx)
        .await?;
    let event = if paid {
        Event::PaymentCompleted {
            invoice_id,
            user_id: session.user_id,
            amount,
            currency: tariff.currency.clone(),
            paid_at: Some(now),
        }
    } else {
        Event::InvoiceGenerated {
            invoice_id,
            session_id,
            user_id: session.user_id,
            amount,
            currency: tariff.currency.clone(),
            due_date: due,
        }
    };
    outbox::enqueue(tx, event, now, policy.source).await?;
    tracing::debug!(%invoice_id, status, covered, "session billed (committed with its batch)");
    Ok(BillingOutcome::Invoiced {
        invoice_id,
        status: status.to_string(),
    })
}

/// One SESSION_ENDED event to bill, for `bill_sessions_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToBill {
    pub event_id: Uuid,
    pub session_id: Uuid,
}

/// A session with everything billing reads about it, locked (one statement for a batch).
#[derive(sqlx::FromRow)]
struct BatchRow {
    session_id: Uuid,
    user_id: Uuid,
    status: String,
    energy_kwh: Decimal,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    usage_cost: Option<String>,
    #[sqlx(flatten)]
    tariff: JoinedTariff,
    plan: String,
    wallet_balance: Decimal,
    wallet_currency: String,
    invoiced: bool,
}

impl BatchRow {
    fn station_tariff(&self) -> Option<TariffRow> {
        self.tariff.row()
    }
}

/// The tariff rule of `tariff_for`, on what a batch read: the station's own tariff, a clear
/// per-kWh price in its OCM `UsageCost`, the default tariff, the built-in one.
fn pick_tariff(
    station: Option<&TariffRow>,
    usage_cost: Option<&str>,
    default: Option<&TariffRow>,
    policy: &BillingPolicy<'_>,
) -> (Tariff, Option<Uuid>, &'static str) {
    if let Some(row) = station {
        return (row.into(), Some(row.id), "station tariff");
    }
    if let Some((price, currency)) = usage_cost.and_then(parse_usage_cost) {
        if currency.is_empty() || currency == policy.currency {
            return (
                Tariff {
                    currency: policy.currency.to_string(),
                    price_per_kwh: price,
                    price_per_minute: Decimal::ZERO,
                    grace_minutes: 0,
                    session_fee: Decimal::ZERO,
                },
                None,
                "OCM usage cost",
            );
        }
    }
    if let Some(row) = default {
        return (row.into(), Some(row.id), "default tariff");
    }
    (policy.fallback.clone(), None, "built-in tariff")
}

/// Bills a batch of SESSION_ENDED events in `tx` with a fixed number of statements, whatever
/// the batch size: the same rules and guarantees as `bill_session_in` for each (one invoice
/// and at most one debit per session, per-event de-duplication, a user's sessions paid in the
/// batch's order from the balance the earlier ones left). Any item that cannot be billed (its
/// session missing or not COMPLETED) fails the whole call with that item's error, so that the
/// caller runs the items again one by one and only that one fails.
pub async fn bill_sessions_in(
    tx: &mut Tx<'_>,
    items: &[ToBill],
    policy: &BillingPolicy<'_>,
) -> Result<Vec<BillingOutcome>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    // in key order: two batches holding the same events (a redelivery while the first
    // consumer still runs) wait for each other instead of deadlocking on the unique keys
    let mut event_ids: Vec<Uuid> = items.iter().map(|i| i.event_id).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let first: std::collections::HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO processed_events (consumer, event_id) SELECT 'billing', e FROM unnest($1::uuid[]) AS e \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(&event_ids)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    // the sessions this batch may bill: first delivery of the event, first event of the session
    let mut wanted: Vec<Uuid> = Vec::new();
    for item in items {
        if first.contains(&item.event_id) && !wanted.contains(&item.session_id) {
            wanted.push(item.session_id);
        }
    }
    let rows: Vec<BatchRow> = if wanted.is_empty() {
        Vec::new()
    } else {
        // users and sessions locked in key order: concurrent billing batches cannot deadlock
        sqlx::query_as(
            "SELECT s.id AS session_id, s.user_id, s.status, s.energy_kwh, s.start_time, s.end_time, \
                 st.usage_cost, t.id AS tariff_id, t.currency::text AS tariff_currency, t.price_per_kwh, \
                 t.price_per_minute, t.grace_minutes, t.session_fee, u.plan, u.wallet_balance, \
                 u.wallet_currency::text AS wallet_currency, \
                 EXISTS (SELECT 1 FROM invoices i WHERE i.session_id = s.id) AS invoiced \
             FROM sessions s JOIN users u ON u.id = s.user_id \
                 LEFT JOIN stations st ON st.id = s.station_id \
                 LEFT JOIN tariffs t ON t.id = st.tariff_id \
             WHERE s.id = ANY($1) ORDER BY u.id, s.id FOR NO KEY UPDATE OF s, u",
        )
        .bind(&wanted)
        .fetch_all(&mut **tx)
        .await?
    };
    let by_session: std::collections::HashMap<Uuid, &BatchRow> =
        rows.iter().map(|r| (r.session_id, r)).collect();
    let default = if rows.iter().any(|r| r.station_tariff().is_none()) {
        sqlx::query_as::<_, TariffRow>(&format!(
            "SELECT {TARIFF_COLUMNS} FROM tariffs WHERE is_default"
        ))
        .fetch_optional(&mut **tx)
        .await?
    } else {
        None
    };

    let now = Utc::now();
    let due = now + Duration::days(policy.payment_due_days);
    let mut balances: std::collections::HashMap<Uuid, Decimal> = std::collections::HashMap::new();
    let mut billed: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    let mut outcomes = Vec::with_capacity(items.len());
    let mut invoices = InvoiceColumns::default();
    let mut ledger = LedgerColumns::default();
    let mut events = Vec::new();
    for item in items {
        if !first.contains(&item.event_id) || billed.contains(&item.session_id) {
            outcomes.push(BillingOutcome::Duplicate);
            continue;
        }
        let row = by_session
            .get(&item.session_id)
            .ok_or(StoreError::NotFound)?;
        if row.invoiced {
            outcomes.push(BillingOutcome::Duplicate);
            continue;
        }
        if row.status != "COMPLETED" {
            return Err(StoreError::Conflict(format!(
                "session is {}, not COMPLETED",
                row.status
            )));
        }
        billed.insert(item.session_id);
        let duration_minutes = match (row.start_time, row.end_time) {
            (Some(start), Some(end)) => ((end - start).num_seconds().max(0) + 59) / 60,
            _ => 0,
        };
        let station = row.station_tariff();
        let (tariff, tariff_id, tariff_source) = pick_tariff(
            station.as_ref(),
            row.usage_cost.as_deref(),
            default.as_ref(),
            policy,
        );
        let charge = tariff.charge(row.energy_kwh, duration_minutes);
        let covered = row.plan == "FLAT_RATE";
        let amount = if covered { Decimal::ZERO } else { charge.total };
        let invoice_id = Uuid::now_v7();
        // pay from the wallet when it covers the amount (never 1:1 across currencies)
        let balance = *balances.entry(row.user_id).or_insert(row.wallet_balance);
        let same_currency = tariff
            .currency
            .trim()
            .eq_ignore_ascii_case(row.wallet_currency.trim());
        let paid = if amount.is_zero() {
            true
        } else if !same_currency {
            tracing::warn!(%invoice_id, amount = %tariff.currency.trim(), wallet = %row.wallet_currency.trim(), "invoice and wallet currencies differ: not debited");
            false
        } else {
            match balance.checked_sub(amount) {
                Some(after) if after >= Decimal::ZERO => {
                    balances.insert(row.user_id, after);
                    ledger.push(
                        row.user_id,
                        -amount,
                        &row.wallet_currency,
                        invoice_id,
                        after,
                    );
                    true
                }
                _ => false,
            }
        };
        let status = if paid { "PAID" } else { "PENDING" };
        invoices.push(InvoiceRow {
            id: invoice_id,
            session_id: item.session_id,
            user_id: row.user_id,
            amount,
            cost: charge.total,
            currency: tariff.currency.clone(),
            energy_kwh: row.energy_kwh,
            duration_minutes: i32::try_from(duration_minutes).unwrap_or(i32::MAX),
            tariff_id,
            breakdown: json!({
                "tariffSource": tariff_source,
                "pricePerKwh": tariff.price_per_kwh.to_string(),
                "pricePerMinute": tariff.price_per_minute.to_string(),
                "graceMinutes": tariff.grace_minutes,
                "energy": charge.energy.to_string(),
                "time": charge.time.to_string(),
                "sessionFee": charge.fee.to_string(),
            }),
            covered,
            status,
            due,
            paid_at: paid.then_some(now),
        });
        events.push((
            if paid {
                Event::PaymentCompleted {
                    invoice_id,
                    user_id: row.user_id,
                    amount,
                    currency: tariff.currency.clone(),
                    paid_at: Some(now),
                }
            } else {
                Event::InvoiceGenerated {
                    invoice_id,
                    session_id: item.session_id,
                    user_id: row.user_id,
                    amount,
                    currency: tariff.currency.clone(),
                    due_date: due,
                }
            },
            now,
        ));
        outcomes.push(BillingOutcome::Invoiced {
            invoice_id,
            status: status.to_string(),
        });
    }
    write_billed(tx, &ledger, &balances, &invoices, events, policy.source).await?;
    Ok(outcomes)
}

struct InvoiceRow {
    id: Uuid,
    session_id: Uuid,
    user_id: Uuid,
    amount: Decimal,
    cost: Decimal,
    currency: String,
    energy_kwh: Decimal,
    duration_minutes: i32,
    tariff_id: Option<Uuid>,
    breakdown: serde_json::Value,
    covered: bool,
    status: &'static str,
    due: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct InvoiceColumns {
    rows: Vec<InvoiceRow>,
}

impl InvoiceColumns {
    fn push(&mut self, row: InvoiceRow) {
        self.rows.push(row);
    }

    /// The invoices and their sessions' cost: two CTEs of `write_billed`'s statement, their
    /// arrays numbered from `$first` (17 of them).
    fn statement(first: usize) -> String {
        let invoices = array_params(
            first,
            &[
                "uuid",
                "uuid",
                "uuid",
                "numeric",
                "numeric",
                "text",
                "numeric",
                "int4",
                "uuid",
                "jsonb",
                "bool",
                "text",
                "timestamptz",
                "timestamptz",
            ],
        );
        let costs = array_params(first + 14, &["uuid", "numeric", "text"]);
        format!(
            "inv AS (INSERT INTO invoices (id, session_id, user_id, amount, cost_amount, currency, energy_kwh, duration_minutes, \
                 tariff_id, breakdown, covered_by_plan, status, due_date, paid_at) \
             SELECT * FROM unnest({invoices})), \
             cost AS (UPDATE sessions s SET cost = c.cost, currency = c.currency, updated_at = now() \
             FROM unnest({costs}) AS c(id, cost, currency) WHERE s.id = c.id)"
        )
    }

    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        let r = &self.rows;
        let sessions: Vec<Uuid> = r.iter().map(|i| i.session_id).collect();
        let costs: Vec<Decimal> = r.iter().map(|i| i.cost).collect();
        let currencies: Vec<&str> = r.iter().map(|i| i.currency.as_str()).collect();
        query
            .bind(r.iter().map(|i| i.id).collect::<Vec<Uuid>>())
            .bind(sessions.clone())
            .bind(r.iter().map(|i| i.user_id).collect::<Vec<Uuid>>())
            .bind(r.iter().map(|i| i.amount).collect::<Vec<Decimal>>())
            .bind(costs.clone())
            .bind(currencies.clone())
            .bind(r.iter().map(|i| i.energy_kwh).collect::<Vec<Decimal>>())
            .bind(r.iter().map(|i| i.duration_minutes).collect::<Vec<i32>>())
            .bind(r.iter().map(|i| i.tariff_id).collect::<Vec<Option<Uuid>>>())
            .bind(
                r.iter()
                    .map(|i| i.breakdown.clone())
                    .collect::<Vec<serde_json::Value>>(),
            )
            .bind(r.iter().map(|i| i.covered).collect::<Vec<bool>>())
            .bind(r.iter().map(|i| i.status).collect::<Vec<&str>>())
            .bind(r.iter().map(|i| i.due).collect::<Vec<DateTime<Utc>>>())
            .bind(
                r.iter()
                    .map(|i| i.paid_at)
                    .collect::<Vec<Option<DateTime<Utc>>>>(),
            )
            .bind(sessions)
            .bind(costs)
            .bind(currencies)
    }
}

/// The wallet debits of a batch: ledger entries in order, each with the balance after it.
#[derive(Default)]
struct LedgerColumns {
    users: Vec<Uuid>,
    amounts: Vec<Decimal>,
    currencies: Vec<String>,
    keys: Vec<String>,
    references: Vec<Uuid>,
    balances_after: Vec<Decimal>,
}

impl LedgerColumns {
    fn push(&mut self, user: Uuid, amount: Decimal, currency: &str, invoice: Uuid, after: Decimal) {
        self.users.push(user);
        self.amounts.push(amount);
        self.currencies.push(currency.to_string());
        // the key `pay_invoice` uses too: one debit per invoice, whichever path pays it
        self.keys.push(format!("invoice:{invoice}"));
        self.references.push(invoice);
        self.balances_after.push(after);
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The entries and the users' final balances: two CTEs of `write_billed`'s statement, their
    /// arrays numbered from `$first` (8 of them).
    fn statement(first: usize) -> String {
        let entries = array_params(
            first,
            &["uuid", "numeric", "text", "text", "uuid", "numeric"],
        );
        let balances = array_params(first + 6, &["uuid", "numeric"]);
        format!(
            "ledger AS (INSERT INTO wallet_ledger (user_id, amount, currency, kind, idempotency_key, reference_id, balance_after) \
             SELECT l.user_id, l.amount, l.currency, 'INVOICE_PAYMENT', l.key, l.reference_id, l.balance_after \
             FROM unnest({entries}) \
                 WITH ORDINALITY AS l(user_id, amount, currency, key, reference_id, balance_after, n) ORDER BY l.n), \
             wallet AS (UPDATE users u SET wallet_balance = b.balance, updated_at = now() \
             FROM unnest({balances}) AS b(id, balance) WHERE u.id = b.id)"
        )
    }

    fn bind<'q>(
        &'q self,
        query: PgQuery<'q>,
        balances: &std::collections::HashMap<Uuid, Decimal>,
    ) -> PgQuery<'q> {
        let mut debited: Vec<Uuid> = self.users.clone();
        debited.sort();
        debited.dedup();
        let finals: Vec<Decimal> = debited
            .iter()
            .map(|u| balances.get(u).copied().unwrap_or_default())
            .collect();
        query
            .bind(&self.users)
            .bind(&self.amounts)
            .bind(&self.currencies)
            .bind(&self.keys)
            .bind(&self.references)
            .bind(&self.balances_after)
            .bind(debited)
            .bind(finals)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// `write_billed`'s statement without wallet debits, built once.
static BILLED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH {} {}",
        InvoiceColumns::statement(1),
        outbox::Columns::statement(18)
    )
});

/// `write_billed`'s statement with wallet debits, built once.
static BILLED_AND_DEBITED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH {}, {} {}",
        LedgerColumns::statement(1),
        InvoiceColumns::statement(9),
        outbox::Columns::statement(26)
    )
});

/// A billing batch's writes in one statement: the wallet debits and balances (when any), the
/// invoices and their sessions' cost, and the events. Foreign keys (an invoice's session, a
/// debit's user) are checked at the end of the statement.
async fn write_billed(
    tx: &mut Tx<'_>,
    ledger: &LedgerColumns,
    balances: &std::collections::HashMap<Uuid, Decimal>,
    invoices: &InvoiceColumns,
    events: outbox::Queued,
    source: &str,
) -> Result<(), StoreError> {
    if invoices.rows.is_empty() {
        // nothing billed: only debits come with invoices, and events with either
        return outbox::enqueue_many(tx, events, source).await;
    }
    let events = outbox::Columns::new(events, source)?;
    let sql: &str = if ledger.is_empty() {
        &BILLED
    } else {
        &BILLED_AND_DEBITED
    };
    let mut query = sqlx::query(sql);
    if !ledger.is_empty() {
        query = ledger.bind(query, balances);
    }
    query = events.bind(invoices.bind(query));
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Why an invoice could not be paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayError {
    NotFound,
    NotYours,
    Void,
    InsufficientFunds,
    /// The invoice is in another currency than the wallet.
    Currency {
        invoice: String,
        wallet: String,
    },
}

/// Pays a PENDING (or OVERDUE) invoice from the wallet, once per invoice whatever the retries.
pub async fn pay_invoice(
    pool: &PgPool,
    invoice_id: Uuid,
    user_id: Uuid,
    idempotency_key: &str,
    source: &str,
) -> Result<Result<(), PayError>, StoreError> {
    let mut tx = pool.begin().await?;
    let row: Option<(Uuid, String, Decimal, String)> = sqlx::query_as(
        "SELECT user_id, status, amount, currency::text FROM invoices WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(invoice_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((owner, status, amount, currency)) = row else {
        return Ok(Err(PayError::NotFound));
    };
    if owner != user_id {
        return Ok(Err(PayError::NotYours));
    }
    match status.as_str() {
        "PAID" => return Ok(Ok(())),
        "VOID" => return Ok(Err(PayError::Void)),
        _ => {}
    }
    // one debit per invoice, whichever path pays it (the automatic debit uses the same key)
    tracing::debug!(%invoice_id, key_len = idempotency_key.len(), "paying invoice");
    match wallet::apply_in(
        &mut tx,
        user_id,
        -amount,
        Some(&currency),
        "INVOICE_PAYMENT",
        &format!("invoice:{invoice_id}"),
        Some(invoice_id),
    )
    .await
    {
        Ok(_) => {}
        Err(StoreError::CurrencyMismatch { wallet, .. }) => {
            return Ok(Err(PayError::Currency {
                invoice: currency,
                wallet,
            }))
        }
        Err(StoreError::InsufficientFunds) => {
            drop(tx);
            let mut failed = pool.begin().await?;
            outbox::enqueue(
                &mut failed,
                Event::PaymentFailed {
                    invoice_id,
                    user_id,
                    reason: "insufficient funds".into(),
                },
                Utc::now(),
                source,
            )
            .await?;
            failed.commit().await?;
            return Ok(Err(PayError::InsufficientFunds));
        }
        Err(e) => return Err(e),
    }
    let now = Utc::now();
    sqlx::query(
        "UPDATE invoices SET status = 'PAID', paid_at = $2, updated_at = now() WHERE id = $1",
    )
    .bind(invoice_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    outbox::enqueue(
        &mut tx,
        Event::PaymentCompleted {
            invoice_id,
            user_id,
            amount,
            currency,
            paid_at: Some(now),
        },
        now,
        source,
    )
    .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// Marks unpaid invoices past their due date OVERDUE; returns how many.
pub async fn mark_overdue(pool: &PgPool) -> Result<u64, StoreError> {
    Ok(sqlx::query("UPDATE invoices SET status = 'OVERDUE', updated_at = now() WHERE status = 'PENDING' AND due_date < now()")
        .execute(pool)
        .await?
        .rows_affected())
}
