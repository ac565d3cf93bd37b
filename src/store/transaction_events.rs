//! OCPP 2.0.1 transactions as `charger_transactions` rows keyed by the charger's own
//! transactionId (`transaction_ref`), and the TransactionEvent `seqNo` bookkeeping that makes
//! repeated, late and missing events visible: a repeated seqNo changes nothing, a late one fills
//! its gap, a missing one is listed in `seq_gaps`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::sessions::{self, SessionRecord};
use super::starts_and_stops;
use super::transactions::{TransactionRecord, COLUMNS};
use super::{StoreError, Tx};
use crate::events::outbox;
use crate::ocpp::meter::Sample;

/// A jump in seqNo larger than this is not enumerated into `seq_gaps` (a broken or hostile
/// charger must not make us store millions of numbers); it is logged instead.
pub const MAX_GAP_SPAN: i32 = 1024;

/// Which seqNos of a transaction have been received: every number from `first` to `last`
/// except the `gaps`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeqState {
    pub first: Option<i32>,
    pub last: Option<i32>,
    pub gaps: Vec<i32>,
}

impl SeqState {
    /// Whether an event with `seq_no` was already received.
    pub fn seen(&self, seq_no: i32) -> bool {
        match (self.first, self.last) {
            (Some(first), Some(last)) => {
                (first..=last).contains(&seq_no) && self.gaps.binary_search(&seq_no).is_err()
            }
            _ => false,
        }
    }

    /// The state after receiving `seq_no`, or `None` when it is a repeat.
    pub fn receive(&self, seq_no: i32) -> Option<SeqState> {
        if self.seen(seq_no) {
            return None;
        }
        let mut next = self.clone();
        match (self.first, self.last) {
            (Some(first), Some(last)) => {
                if seq_no > last {
                    next.gaps.extend(missing(last, seq_no));
                    next.last = Some(seq_no);
                } else if seq_no < first {
                    next.gaps.extend(missing(seq_no, first));
                    next.first = Some(seq_no);
                } else {
                    next.gaps.retain(|gap| *gap != seq_no);
                }
            }
            _ => {
                next.first = Some(seq_no);
                next.last = Some(seq_no);
            }
        }
        next.gaps.sort_unstable();
        next.gaps.dedup();
        Some(next)
    }
}

/// The numbers strictly between `low` and `high`, unless there are too many of them.
fn missing(low: i32, high: i32) -> std::ops::Range<i32> {
    let (from, to) = (low.saturating_add(1), high);
    if to.saturating_sub(from) > MAX_GAP_SPAN {
        tracing::warn!(
            from,
            to,
            "TransactionEvent seqNo jumped too far; the gap is not enumerated"
        );
        return 0..0;
    }
    from..to
}

/// A 2.0.1 transaction as stored, with its seqNo bookkeeping.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventTransaction {
    #[sqlx(flatten)]
    pub record: TransactionRecord,
    pub first_seq_no: Option<i32>,
    pub last_seq_no: Option<i32>,
    pub seq_gaps: Vec<i32>,
    pub offline_events: i32,
}

impl EventTransaction {
    pub fn seq(&self) -> SeqState {
        SeqState {
            first: self.first_seq_no,
            last: self.last_seq_no,
            gaps: self.seq_gaps.clone(),
        }
    }
}

fn select() -> String {
    format!(
        "SELECT {COLUMNS}, first_seq_no, last_seq_no, seq_gaps, offline_events FROM charger_transactions"
    )
}

/// What the first event of a transaction says about it.
#[derive(Debug, Clone)]
pub struct FirstEvent<'a> {
    pub charger_id: &'a str,
    pub transaction_ref: &'a str,
    /// The EVSE id (0 when the event named none).
    pub connector_id: i32,
    pub started_at: DateTime<Utc>,
    pub meter_start_wh: Option<Decimal>,
}

/// Locks the transaction `transaction_ref` of the charger, creating it from `first` when this
/// is its first event. The flag says whether it was created.
#[tracing::instrument(skip_all, fields(charger_id = %first.charger_id))]
pub async fn lock_or_create(
    tx: &mut Tx<'_>,
    first: &FirstEvent<'_>,
) -> Result<(EventTransaction, bool), StoreError> {
    if let Some(existing) = lock(tx, first.charger_id, first.transaction_ref).await? {
        return Ok((existing, false));
    }
    let created = sqlx::query_scalar::<_, i64>(
        "INSERT INTO charger_transactions (charger_id, connector_id, transaction_ref, started_at, meter_start_wh) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (charger_id, transaction_ref) WHERE transaction_ref IS NOT NULL DO NOTHING RETURNING id",
    )
    .bind(first.charger_id)
    .bind(first.connector_id)
    .bind(first.transaction_ref)
    .bind(first.started_at)
    .bind(first.meter_start_wh)
    .fetch_optional(&mut **tx)
    .await?;
    // a concurrent first event (a reconnect racing the old socket) may have won the insert
    let row = lock(tx, first.charger_id, first.transaction_ref)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok((row, created.is_some()))
}

async fn lock(
    tx: &mut Tx<'_>,
    charger_id: &str,
    transaction_ref: &str,
) -> Result<Option<EventTransaction>, StoreError> {
    Ok(sqlx::query_as::<_, EventTransaction>(&format!(
        "{} WHERE charger_id = $1 AND transaction_ref = $2 FOR NO KEY UPDATE",
        select()
    ))
    .bind(charger_id)
    .bind(transaction_ref)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Records a received event: the new seqNo state, whether it was queued offline, and for a
/// `Started` event the real start: its time and energy register win over those of events that
/// arrived before it.
pub async fn record_event(
    tx: &mut Tx<'_>,
    pk: i64,
    seq: &SeqState,
    offline: bool,
    started: Option<(DateTime<Utc>, Option<Decimal>)>,
) -> Result<(), StoreError> {
    let (started_at, meter_start_wh) = started.unzip();
    sqlx::query(
        "UPDATE charger_transactions SET first_seq_no = $2, last_seq_no = $3, seq_gaps = $4, \
             offline_events = offline_events + $5, \
             started_at = LEAST(started_at, COALESCE($6, started_at)), \
             meter_start_wh = COALESCE($7, meter_start_wh), updated_at = now() WHERE id = $1",
    )
    .bind(pk)
    .bind(seq.first)
    .bind(seq.last)
    .bind(&seq.gaps)
    .bind(i32::from(offline))
    .bind(started_at)
    .bind(meter_start_wh.flatten())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records who the transaction is for, the first time the charger names an idToken.
pub async fn identify(
    tx: &mut Tx<'_>,
    pk: i64,
    id_token: &str,
    status: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE charger_transactions SET id_tag = $2, id_tag_status = $3 WHERE id = $1 AND id_tag IS NULL",
    )
    .bind(pk)
    .bind(id_token)
    .bind(status)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Closes the transaction; without a final energy register the column stays empty.
pub async fn stop(
    tx: &mut Tx<'_>,
    pk: i64,
    stopped_at: DateTime<Utc>,
    meter_stop_wh: Option<Decimal>,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE charger_transactions SET stopped_at = $2, meter_stop_wh = $3, stop_reason = $4, \
             updated_at = now() WHERE id = $1",
    )
    .bind(pk)
    .bind(stopped_at)
    .bind(meter_stop_wh)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The running 2.0.1 transaction on an EVSE (for MeterValues, which name no transaction).
pub async fn running_on_evse(
    pool: &PgPool,
    charger_id: &str,
    evse_id: i32,
) -> Result<Option<TransactionRecord>, StoreError> {
    Ok(sqlx::query_as::<_, TransactionRecord>(&format!(
        "SELECT {COLUMNS} FROM charger_transactions WHERE charger_id = $1 AND connector_id = $2 \
         AND transaction_ref IS NOT NULL AND stopped_at IS NULL ORDER BY started_at DESC LIMIT 1"
    ))
    .bind(charger_id)
    .bind(evse_id)
    .fetch_optional(pool)
    .await?)
}

/// A 2.0.1 TransactionEvent(Started), not queued offline, as the transaction writer stores it
/// set-based (ADR 015's approach for 2.0.1): settled there when it creates its transaction.
#[derive(Debug, Clone)]
pub struct EventStarted {
    pub charger_id: String,
    pub transaction_ref: String,
    /// The EVSE id (0 when the event named none).
    pub connector_id: i32,
    pub seq_no: i32,
    pub started_at: DateTime<Utc>,
    pub meter_start_wh: Option<Decimal>,
    /// The idToken and its status as answered, when the event named one.
    pub id_token: Option<(String, String)>,
    /// The driver whose session the transaction starts: set only for an accepted idToken of a
    /// user.
    pub user_id: Option<uuid::Uuid>,
    pub remote_start_id: Option<i32>,
}

/// A 2.0.1 TransactionEvent(Ended) with a final energy register, no idToken and not queued
/// offline, as the transaction writer stores it set-based: settled there when it is its
/// running transaction's next seqNo.
#[derive(Debug, Clone)]
pub struct EventEnded {
    pub charger_id: String,
    pub transaction_ref: String,
    pub seq_no: i32,
    pub stopped_at: DateTime<Utc>,
    pub meter_stop_wh: Decimal,
    pub reason: String,
    pub samples: Vec<Sample>,
}

/// Creates the transactions of `starts` (at most one per charger) with their first seqNo and
/// idToken, each inserted already linked to the session of an accepted user's token (found or
/// created as `starts_and_stops::LINKING_SESSIONS` says), in one statement; their
/// SESSION_STARTED events are added to `events` (written by the caller before it commits), as
/// the one-by-one path does for an event that creates its transaction. Per item: the
/// transaction's key and the session it started, or `None` when its transaction already existed
/// (events before the Started, a repeat): the general path settles those. A transaction another
/// writer inserted meanwhile fails the statement (a unique violation), and with it the batch,
/// whose items then run one by one.
pub async fn started_many(
    tx: &mut Tx<'static>,
    starts: &[&EventStarted],
    source: &str,
    events: &mut outbox::Queued,
) -> Result<Vec<Option<(i64, Option<SessionRecord>)>>, StoreError> {
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    let chargers: Vec<&str> = starts.iter().map(|s| s.charger_id.as_str()).collect();
    let refs: Vec<&str> = starts.iter().map(|s| s.transaction_ref.as_str()).collect();
    let connectors: Vec<i32> = starts.iter().map(|s| s.connector_id).collect();
    let at: Vec<DateTime<Utc>> = starts.iter().map(|s| s.started_at).collect();
    let registers: Vec<Option<Decimal>> = starts.iter().map(|s| s.meter_start_wh).collect();
    let seqs: Vec<i32> = starts.iter().map(|s| s.seq_no).collect();
    let tags: Vec<Option<&str>> = starts
        .iter()
        .map(|s| s.id_token.as_ref().map(|(t, _)| t.as_str()))
        .collect();
    let statuses: Vec<Option<&str>> = starts
        .iter()
        .map(|s| s.id_token.as_ref().map(|(_, st)| st.as_str()))
        .collect();
    // a session only for a user's token
    let users: Vec<Option<Uuid>> = starts
        .iter()
        .map(|s| s.user_id.filter(|_| s.id_token.is_some()))
        .collect();
    let ids: Vec<Uuid> = starts.iter().map(|_| Uuid::now_v7()).collect();
    let remote_starts: Vec<Option<i32>> = starts.iter().map(|s| s.remote_start_id).collect();
    let linking = starts_and_stops::LINKING_SESSIONS.as_str();
    let rows = sqlx::query(&format!(
        "WITH k AS ( \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::timestamptz[], $5::numeric[], $6::int4[], $7::text[], \
                 $8::text[], $9::uuid[], $10::uuid[], $11::int4[]) \
                 AS k(charger_id, transaction_ref, connector_id, started_at, meter_start_wh, seq_no, id_tag, id_tag_status, \
                     user_id, session_id, remote_start_id)), \
         n AS ( \
             SELECT k.* FROM k WHERE NOT EXISTS (SELECT 1 FROM charger_transactions t \
                 WHERE t.charger_id = k.charger_id AND t.transaction_ref = k.transaction_ref)), \
         {linking}, \
         ins AS ( \
             INSERT INTO charger_transactions (charger_id, connector_id, transaction_ref, started_at, meter_start_wh, \
                 first_seq_no, last_seq_no, id_tag, id_tag_status, session_id) \
             SELECT n.charger_id, n.connector_id, n.transaction_ref, n.started_at, n.meter_start_wh, n.seq_no, n.seq_no, \
                 n.id_tag, n.id_tag_status, x.id \
             FROM n LEFT JOIN x ON x.charger_id = n.charger_id \
             RETURNING charger_id, id) \
         SELECT ins.charger_id AS item, ins.id AS t_pk, p.charger_id IS NOT NULL AS t_pending, x.* \
         FROM ins LEFT JOIN p ON p.charger_id = ins.charger_id LEFT JOIN x ON x.charger_id = ins.charger_id"
    ))
    .bind(&chargers)
    .bind(&refs)
    .bind(&connectors)
    .bind(&at)
    .bind(&registers)
    .bind(&seqs)
    .bind(&tags)
    .bind(&statuses)
    .bind(&users)
    .bind(&ids)
    .bind(&remote_starts)
    .fetch_all(&mut **tx)
    .await?;
    let mut created: HashMap<String, (i64, Option<SessionRecord>, bool)> =
        HashMap::with_capacity(rows.len());
    for row in rows {
        let session = sessions::joined(&row)?;
        created.insert(
            row.try_get("item")?,
            (row.try_get("t_pk")?, session, row.try_get("t_pending")?),
        );
    }
    let mut outcomes = Vec::with_capacity(starts.len());
    for (s, user_id) in starts.iter().zip(users) {
        let Some((pk, linked, pending)) = created.remove(&s.charger_id) else {
            outcomes.push(None);
            continue;
        };
        let session = match (user_id, &s.id_token) {
            (Some(user_id), Some((id_tag, _))) => {
                let start = sessions::TransactionStart {
                    charger_id: &s.charger_id,
                    connector_id: s.connector_id,
                    id_tag,
                    user_id,
                    started_at: s.started_at,
                    meter_start_wh: s.meter_start_wh,
                    transaction_pk: pk,
                    remote_start_id: s.remote_start_id,
                    source,
                };
                starts_and_stops::settle_link(tx, &start, linked, pending, events).await?
            }
            _ => None,
        };
        outcomes.push(Some((pk, session)));
    }
    Ok(outcomes)
}

/// Ends the running transactions of `ends` (at most one per charger) whose next seqNo they
/// carry: each transaction closed with its seqNo advanced, its open session completed on the
/// final register with the rules of `sessions::complete`, its samples and its SESSION_ENDED
/// event added to `tail` (written by the caller before it commits). Per item: the session it completed (`Some(None)` when the
/// transaction had no open session), or `None` when the general path must settle it (unknown or
/// stopped transaction, a seqNo that is not the next one).
pub async fn ended_many(
    tx: &mut Tx<'static>,
    ends: &[&EventEnded],
    tail: &mut super::transactions::Tail,
) -> Result<Vec<Option<Option<SessionRecord>>>, StoreError> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let chargers: Vec<&str> = ends.iter().map(|e| e.charger_id.as_str()).collect();
    let refs: Vec<&str> = ends.iter().map(|e| e.transaction_ref.as_str()).collect();
    let seqs: Vec<i32> = ends.iter().map(|e| e.seq_no).collect();
    let at: Vec<DateTime<Utc>> = ends.iter().map(|e| e.stopped_at).collect();
    let registers: Vec<Decimal> = ends.iter().map(|e| e.meter_stop_wh).collect();
    let reasons: Vec<&str> = ends.iter().map(|e| e.reason.as_str()).collect();
    let rows = sqlx::query(&starts_and_stops::completing(
        "WITH k AS ( \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::timestamptz[], $5::numeric[], $6::text[]) \
                 AS k(charger_id, transaction_ref, seq_no, stopped_at, meter_stop_wh, reason)), \
         t AS ( \
             UPDATE charger_transactions ct SET last_seq_no = k.seq_no, stopped_at = k.stopped_at, \
                 meter_stop_wh = k.meter_stop_wh, stop_reason = k.reason, updated_at = now() \
             FROM k WHERE ct.charger_id = k.charger_id AND ct.transaction_ref = k.transaction_ref \
                 AND ct.first_seq_no IS NOT NULL AND ct.last_seq_no::int8 + 1 = k.seq_no::int8 AND ct.stopped_at IS NULL \
             RETURNING ct.id, ct.charger_id, ct.connector_id, ct.session_id, k.stopped_at, k.meter_stop_wh, k.reason)",
    ))
    .bind(&chargers)
    .bind(&refs)
    .bind(&seqs)
    .bind(&at)
    .bind(&registers)
    .bind(&reasons)
    .fetch_all(&mut **tx)
    .await?;
    let closes: Vec<starts_and_stops::Close<'_>> = ends
        .iter()
        .map(|e| starts_and_stops::Close {
            charger_id: &e.charger_id,
            stopped_at: e.stopped_at,
            reason: &e.reason,
            samples: &e.samples,
        })
        .collect();
    starts_and_stops::closed(rows, &closes, tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(numbers: &[i32]) -> SeqState {
        numbers.iter().fold(SeqState::default(), |state, n| {
            state.receive(*n).unwrap_or(state)
        })
    }

    #[test]
    fn consecutive_events_leave_no_gaps() {
        let state = after(&[0, 1, 2, 3]);
        assert_eq!((state.first, state.last), (Some(0), Some(3)));
        assert!(state.gaps.is_empty());
    }

    #[test]
    fn repeats_are_recognised_and_change_nothing() {
        let state = after(&[0, 1, 2]);
        assert_eq!(state.receive(1), None);
        assert_eq!(state.receive(2), None);
        assert!(state.receive(3).is_some());
    }

    #[test]
    fn a_jump_records_the_gap_and_a_late_event_fills_it() {
        let state = after(&[0, 1, 4]);
        assert_eq!(state.gaps, vec![2, 3]);
        let filled = state.receive(3).unwrap_or_default();
        assert_eq!(filled.gaps, vec![2]);
        assert_eq!(filled.receive(3), None, "the late event is now seen");
    }

    #[test]
    fn an_event_older_than_the_first_one_extends_the_range_downwards() {
        let state = after(&[5, 6]);
        let earlier = state.receive(2).unwrap_or_default();
        assert_eq!((earlier.first, earlier.last), (Some(2), Some(6)));
        assert_eq!(earlier.gaps, vec![3, 4]);
    }

    #[test]
    fn absurd_jumps_are_not_enumerated() {
        let state = after(&[0, 1_000_000]);
        assert!(state.gaps.is_empty());
        assert_eq!(state.last, Some(1_000_000));
    }
}
