//! Charger transactions (the OCPP view of charging) and their meter values. Every write here is
//! committed before the charger gets its answer.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{StoreError, Tx};
use crate::events::outbox;
use crate::ocpp::meter::Sample;

/// A StartTransaction as received.
#[derive(Debug, Clone)]
pub struct StartRequest<'a> {
    pub charger_id: &'a str,
    pub connector_id: i32,
    pub id_tag: &'a str,
    pub started_at: DateTime<Utc>,
    pub meter_start_wh: Decimal,
    /// What the idTag resolved to (`Accepted`, `Blocked`, ...), kept with the transaction.
    pub id_tag_status: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Row id of `charger_transactions`.
    pub pk: i64,
    pub transaction_id: i32,
    pub id_tag_status: String,
    /// A repeated StartTransaction: the first answer is returned again.
    pub duplicate: bool,
}

/// Stores a 1.6 StartTransaction with a fresh transactionId from the sequence, or returns the
/// transaction of an identical earlier StartTransaction.
#[tracing::instrument(skip_all, fields(charger_id = %req.charger_id))]
pub async fn start_v16(tx: &mut Tx<'_>, req: &StartRequest<'_>) -> Result<Started, StoreError> {
    // the repeat check, the transactionId and the insert in one statement
    let row = sqlx::query_as::<_, (i64, i32, Option<String>, bool)>(
        "WITH dup AS ( \
             SELECT id, transaction_id, id_tag_status FROM charger_transactions \
             WHERE charger_id = $1 AND connector_id = $2 AND id_tag = $3 AND started_at = $4 \
               AND meter_start_wh = $5 AND transaction_id IS NOT NULL), \
         ins AS ( \
             INSERT INTO charger_transactions (charger_id, connector_id, transaction_id, id_tag, id_tag_status, started_at, meter_start_wh) \
             SELECT $1, $2, nextval('ocpp16_transaction_id_seq')::integer, $3, $6, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM dup) \
             ON CONFLICT DO NOTHING RETURNING id, transaction_id, id_tag_status) \
         SELECT id, transaction_id, id_tag_status, true FROM dup \
         UNION ALL SELECT id, transaction_id, id_tag_status, false FROM ins",
    )
    .bind(req.charger_id)
    .bind(req.connector_id)
    .bind(req.id_tag)
    .bind(req.started_at)
    .bind(req.meter_start_wh)
    .bind(req.id_tag_status)
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        Some((pk, transaction_id, status, duplicate)) => Ok(Started {
            pk,
            transaction_id,
            id_tag_status: status.unwrap_or_else(|| "Accepted".into()),
            duplicate,
        }),
        // a concurrent identical StartTransaction won the race
        None => find_duplicate_start(tx, req)
            .await?
            .ok_or(StoreError::NotFound),
    }
}

async fn find_duplicate_start(
    tx: &mut Tx<'_>,
    req: &StartRequest<'_>,
) -> Result<Option<Started>, StoreError> {
    let row = sqlx::query_as::<_, (i64, i32, Option<String>)>(
        "SELECT id, transaction_id, id_tag_status FROM charger_transactions \
         WHERE charger_id = $1 AND connector_id = $2 AND id_tag = $3 AND started_at = $4 \
           AND meter_start_wh = $5 AND transaction_id IS NOT NULL",
    )
    .bind(req.charger_id)
    .bind(req.connector_id)
    .bind(req.id_tag)
    .bind(req.started_at)
    .bind(req.meter_start_wh)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(pk, transaction_id, status)| Started {
        pk,
        transaction_id,
        id_tag_status: status.unwrap_or_else(|| "Accepted".into()),
        duplicate: true,
    }))
}

/// A transaction as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransactionRecord {
    pub id: i64,
    pub charger_id: String,
    pub connector_id: i32,
    pub transaction_id: Option<i32>,
    pub transaction_ref: Option<String>,
    pub id_tag: Option<String>,
    pub id_tag_status: Option<String>,
    pub session_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    pub meter_start_wh: Option<Decimal>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub meter_stop_wh: Option<Decimal>,
    pub stop_reason: Option<String>,
}

/// The columns of a `TransactionRecord`.
pub(super) const COLUMNS: &str = "id, charger_id, connector_id, transaction_id, transaction_ref, id_tag, id_tag_status, \
                       session_id, started_at, meter_start_wh, stopped_at, meter_stop_wh, stop_reason";

/// Locks and returns the charger's 1.6 transaction `transaction_id`.
pub async fn lock_v16(
    tx: &mut Tx<'_>,
    charger_id: &str,
    transaction_id: i32,
) -> Result<Option<TransactionRecord>, StoreError> {
    Ok(sqlx::query_as::<_, TransactionRecord>(&format!(
        "SELECT {COLUMNS} FROM charger_transactions WHERE charger_id = $1 AND transaction_id = $2 FOR NO KEY UPDATE"
    ))
    .bind(charger_id)
    .bind(transaction_id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Looks up the charger's 1.6 transaction without locking.
pub async fn find_v16(
    pool: &PgPool,
    charger_id: &str,
    transaction_id: i32,
) -> Result<Option<TransactionRecord>, StoreError> {
    Ok(sqlx::query_as::<_, TransactionRecord>(&format!(
        "SELECT {COLUMNS} FROM charger_transactions WHERE charger_id = $1 AND transaction_id = $2"
    ))
    .bind(charger_id)
    .bind(transaction_id)
    .fetch_optional(pool)
    .await?)
}

/// Closes a transaction.
pub async fn stop(
    tx: &mut Tx<'_>,
    pk: i64,
    stopped_at: DateTime<Utc>,
    meter_stop_wh: Decimal,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE charger_transactions SET stopped_at = $2, meter_stop_wh = $3, stop_reason = $4, updated_at = now() WHERE id = $1",
    )
    .bind(pk)
    .bind(stopped_at)
    .bind(meter_stop_wh)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Where a batch of samples belongs.
#[derive(Debug, Clone, Copy)]
pub struct SampleOwner<'a> {
    pub charger_id: &'a str,
    pub connector_id: i32,
    pub transaction_pk: Option<i64>,
    pub session_id: Option<Uuid>,
}

/// Inserts normalised samples in one statement.
pub async fn insert_samples(
    tx: &mut Tx<'_>,
    owner: SampleOwner<'_>,
    samples: &[Sample],
) -> Result<(), StoreError> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut builder: QueryBuilder<Postgres> = QueryBuilder::new(
        "INSERT INTO meter_values (charger_id, connector_id, transaction_pk, session_id, sampled_at, \
         measurand, phase, context, location, unit, value) ",
    );
    builder.push_values(samples, |mut row, s| {
        row.push_bind(owner.charger_id)
            .push_bind(owner.connector_id)
            .push_bind(owner.transaction_pk)
            .push_bind(owner.session_id)
            .push_bind(s.sampled_at)
            .push_bind(&s.measurand)
            .push_bind(&s.phase)
            .push_bind(&s.context)
            .push_bind(&s.location)
            .push_bind(&s.unit)
            .push_bind(s.value);
    });
    builder.build().execute(&mut **tx).await?;
    Ok(())
}

/// The row id and session of 1.6 transactions, by (charger, our transactionId), in one
/// statement. A transactionId of another charger is not found.
pub async fn find_v16_many(
    tx: &mut Tx<'_>,
    keys: &[(String, i32)],
) -> Result<std::collections::HashMap<(String, i32), (i64, Option<Uuid>)>, StoreError> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let (chargers, ids): (Vec<&str>, Vec<i32>) = keys.iter().map(|(c, t)| (c.as_str(), *t)).unzip();
    let rows: Vec<(String, i32, i64, Option<Uuid>)> = sqlx::query_as(
        "SELECT t.charger_id, t.transaction_id, t.id, t.session_id FROM charger_transactions t \
         JOIN unnest($1::text[], $2::int4[]) AS k(charger_id, transaction_id) \
             ON t.transaction_id = k.transaction_id AND t.charger_id = k.charger_id",
    )
    .bind(&chargers)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(c, t, pk, session)| ((c, t), (pk, session)))
        .collect())
}

/// Samples of many messages as the columns of one insert (arrays, so its text is the same
/// whatever the number of rows and it is prepared once). The transaction writer gathers a
/// whole batch's samples (readings, stops' `transactionData`) here and inserts them with its
/// events in the batch's last statement.
#[derive(Default)]
pub struct SampleRows {
    chargers: Vec<String>,
    connectors: Vec<i32>,
    pks: Vec<Option<i64>>,
    sessions: Vec<Option<Uuid>>,
    at: Vec<DateTime<Utc>>,
    measurands: Vec<String>,
    phases: Vec<Option<String>>,
    contexts: Vec<String>,
    locations: Vec<Option<String>>,
    units: Vec<String>,
    values: Vec<Decimal>,
}

impl SampleRows {
    pub fn push(&mut self, owner: SampleOwner<'_>, s: &Sample) {
        self.chargers.push(owner.charger_id.to_string());
        self.connectors.push(owner.connector_id);
        self.pks.push(owner.transaction_pk);
        self.sessions.push(owner.session_id);
        self.at.push(s.sampled_at);
        self.measurands.push(s.measurand.clone());
        self.phases.push(s.phase.clone());
        self.contexts.push(s.context.clone());
        self.locations.push(s.location.clone());
        self.units.push(s.unit.clone());
        self.values.push(s.value);
    }

    pub fn is_empty(&self) -> bool {
        self.chargers.is_empty()
    }

    pub fn len(&self) -> usize {
        self.chargers.len()
    }

    /// How many arrays `statement` takes.
    pub const ARRAYS: usize = Self::TYPES.len();
    const TYPES: [&'static str; 11] = [
        "text",
        "int4",
        "int8",
        "uuid",
        "timestamptz",
        "text",
        "text",
        "text",
        "text",
        "text",
        "numeric",
    ];

    /// The insert, its arrays numbered from `$first`.
    pub fn statement(first: usize) -> String {
        let arrays = super::array_params(first, &Self::TYPES);
        format!(
            "INSERT INTO meter_values (charger_id, connector_id, transaction_pk, session_id, sampled_at, \
                 measurand, phase, context, location, unit, value) \
             SELECT * FROM unnest({arrays})"
        )
    }

    /// Binds the arrays, in the statement's order.
    pub fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.chargers)
            .bind(&self.connectors)
            .bind(&self.pks)
            .bind(&self.sessions)
            .bind(&self.at)
            .bind(&self.measurands)
            .bind(&self.phases)
            .bind(&self.contexts)
            .bind(&self.locations)
            .bind(&self.units)
            .bind(&self.values)
    }
}

/// `SampleRows::statement(1)`, built once.
static SAMPLES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| SampleRows::statement(1));

/// Samples and events in one statement (a data-modifying CTE runs whether or not anything
/// reads it), built once.
static SAMPLES_AND_EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH samples AS ({}) {}",
        SampleRows::statement(1),
        outbox::Columns::statement(SampleRows::ARRAYS + 1)
    )
});

/// Inserts samples of many messages in one statement.
pub async fn insert_samples_many(
    tx: &mut Tx<'_>,
    rows: &[(SampleOwner<'_>, &Sample)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut columns = SampleRows::default();
    for (owner, sample) in rows {
        columns.push(*owner, sample);
    }
    columns
        .bind(sqlx::query(&SAMPLES))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// 2.0.1 transactions whose seqNo a batch moves on in its last statement (the writer shard
/// remembered them, so no statement looked them up): the transaction's row, the new seqNo.
/// Each claim also names the session the shard remembers: a transaction linked to another
/// session meanwhile (a late event with an idToken links it without moving its seqNo) fails the
/// claim like a seqNo that moved on.
#[derive(Default)]
pub struct SeqClaims {
    transactions: Vec<i64>,
    seqs: Vec<i32>,
    sessions: Vec<Option<Uuid>>,
}

impl SeqClaims {
    /// Claims `seq_no` of the transaction whose row is `transaction_pk` (the shard remembers it
    /// by its charger and transactionId, which a row never changes).
    pub fn push(&mut self, transaction_pk: i64, seq_no: i32, session_id: Option<Uuid>) {
        self.transactions.push(transaction_pk);
        self.seqs.push(seq_no);
        self.sessions.push(session_id);
    }

    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }
}

/// The claims' update: it moves a transaction only from the seqNo before its claim, and only
/// while it names the remembered session.
///
/// It finds each row by its primary key: joining on (charger_id, transaction_ref) compared two
/// text columns through the wider unique index for every claim.
const CLAIMS: &str =
    "UPDATE charger_transactions t SET last_seq_no = k.seq_no, updated_at = now() \
     FROM unnest($1::int8[], $2::int4[], $3::uuid[]) AS k(id, seq_no, session_id) \
     WHERE t.id = k.id \
         AND t.first_seq_no IS NOT NULL AND t.last_seq_no::int8 + 1 = k.seq_no::int8 \
         AND t.session_id IS NOT DISTINCT FROM k.session_id \
     RETURNING 1";

/// The arrays `CLAIMS` binds ($1 to $3); the samples' and events' arrays are numbered after them.
const CLAIM_ARRAYS: usize = 3;

/// The claims, samples and events in one statement; it answers how many claims held.
static CLAIMS_SAMPLES_AND_EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH seq AS ({CLAIMS}), samples AS ({}), events AS ({}) SELECT count(*) FROM seq",
        SampleRows::statement(CLAIM_ARRAYS + 1),
        outbox::Columns::statement(CLAIM_ARRAYS + SampleRows::ARRAYS + 1)
    )
});

/// The claims and samples, for a batch without events (an outbox insert of nothing would still
/// notify the relays: its trigger is per statement).
static CLAIMS_AND_SAMPLES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH seq AS ({CLAIMS}), samples AS ({}) SELECT count(*) FROM seq",
        SampleRows::statement(CLAIM_ARRAYS + 1)
    )
});

/// What a batch writes last, in one statement: the seqNo claims, the samples and the events its
/// statements gathered.
#[derive(Default)]
pub struct Tail {
    pub events: outbox::Queued,
    pub samples: SampleRows,
    pub claims: SeqClaims,
}

impl Tail {
    /// Inserts them (nothing when all are empty); answers how many claims held.
    pub async fn write(self, tx: &mut Tx<'_>, source: &str) -> Result<usize, StoreError> {
        if self.claims.is_empty() {
            insert_samples_and_events(tx, &self.samples, self.events, source).await?;
            return Ok(0);
        }
        let events = outbox::Columns::new(self.events, source)?;
        let sql: &str = if events.is_empty() {
            &CLAIMS_AND_SAMPLES
        } else {
            &CLAIMS_SAMPLES_AND_EVENTS
        };
        let query = sqlx::query(sql)
            .bind(&self.claims.transactions)
            .bind(&self.claims.seqs)
            .bind(&self.claims.sessions);
        let query = self.samples.bind(query);
        let query = if events.is_empty() {
            query
        } else {
            events.bind(query)
        };
        let held: i64 = sqlx::Row::try_get(&query.fetch_one(&mut **tx).await?, 0)?;
        Ok(usize::try_from(held).unwrap_or(0))
    }
}

/// A batch's last statement: its samples and its events, inserted together (one round trip;
/// either may be empty).
pub async fn insert_samples_and_events(
    tx: &mut Tx<'_>,
    samples: &SampleRows,
    events: outbox::Queued,
    source: &str,
) -> Result<(), StoreError> {
    let events = outbox::Columns::new(events, source)?;
    let sql: &str = match (samples.is_empty(), events.is_empty()) {
        (true, true) => return Ok(()),
        (false, true) => &SAMPLES,
        (true, false) => &outbox::EVENTS,
        (false, false) => &SAMPLES_AND_EVENTS,
    };
    let mut query = sqlx::query(sql);
    if !samples.is_empty() {
        query = samples.bind(query);
    }
    if !events.is_empty() {
        query = events.bind(query);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
