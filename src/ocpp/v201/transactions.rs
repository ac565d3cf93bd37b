//! TransactionEvent (Started / Updated / Ended). Each event is stored before it is answered, in
//! one Postgres transaction with its meter values and session change, and always answered with
//! a result; if it cannot be stored it is left unanswered so the station re-sends it.
//!
//! - The station names the transaction (`transactionId`, kept as `transaction_ref`); the first
//!   event received creates it, whatever its type (stations may start with `Updated`, and
//!   offline-queued events may arrive out of order).
//! - `seqNo`: a repeated number changes nothing and gets the same kind of answer; a late one
//!   fills its gap; missing ones are listed in `seq_gaps`. Events flagged `offline` are counted.
//! - Charger timestamps are kept as sent: the session's start and end, and so billing, use them.
//! - The first event naming a user's accepted idToken links the session: the PENDING app
//!   session whose `remoteStartId` it echoes (or for the EVSE and token), else a new
//!   charger-started one. `Updated` meter values update the session; `Ended` completes it with
//!   the event's last `Energy.Active.Import.Register`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rust_decimal::Decimal;
use rust_ocpp::v2_0_1::enumerations::authorization_status_enum_type::AuthorizationStatusEnumType;
use rust_ocpp::v2_0_1::enumerations::transaction_event_enum_type::TransactionEventEnumType;
use rust_ocpp::v2_0_1::messages::transaction_event::{
    TransactionEventRequest, TransactionEventResponse,
};
use serde_json::{json, Value};

use super::authorize::{check_token, resolve_at, Resolved};
use super::meter::{samples, samples_lenient};
use crate::ocpp::command::ChargerCommand;
use crate::ocpp::handler::{enum_name, CallContext, Effect, Handled};
use crate::ocpp::meter::{self, Reading};
use crate::ocpp::payload::{check_len, decode_shape};
use crate::ocpp::{CallErrorCode, CallFailure};
use crate::store::reservations::{self, Hold, Holds};
use crate::store::sessions::{self, SessionRecord, TransactionStart};
use crate::store::transaction_events::{
    self, EventEnded, EventStarted, EventTransaction, FirstEvent,
};
use crate::store::transaction_writer::{EventReading, EventUpdate, EventWrite};
use crate::store::transactions::{self, SampleOwner};
use crate::store::{StoreError, Tx};
use futures_util::future::BoxFuture;

/// Longest transactionId (OCPP 2.0.1 TransactionType.transactionId).
const MAX_TRANSACTION_ID_CHARS: usize = 36;

/// A storage failure on a transaction message: the station gets no answer and retries, because
/// these messages are only ever answered after they are stored.
fn unanswered(err: StoreError) -> CallFailure {
    tracing::error!(error = %err, "TransactionEvent not stored; leaving it unanswered so the station retries");
    CallFailure::unanswered()
}

pub(crate) fn validate(req: &TransactionEventRequest) -> Result<(), CallFailure> {
    let id = &req.transaction_info.transaction_id;
    check_len(
        "TransactionEvent",
        "transactionId",
        id,
        MAX_TRANSACTION_ID_CHARS,
    )?;
    if id.is_empty() || req.seq_no < 0 {
        return Err(CallFailure::new(
            CallErrorCode::PropertyConstraintViolation,
            "TransactionEvent: transactionId must not be empty and seqNo not negative",
        ));
    }
    match &req.id_token {
        Some(token) => check_token("TransactionEvent", token),
        None => Ok(()),
    }
}

/// The energy register at the start of the transaction, as far as this event tells: its
/// `Transaction.Begin` samples, else (for an event other than `Ended`, whose values are final)
/// its reading.
fn start_register(
    samples: &[meter::Sample],
    event: &TransactionEventEnumType,
    reading: &Reading,
) -> Option<Decimal> {
    let begin: Vec<meter::Sample> = samples
        .iter()
        .filter(|s| s.context == "Transaction.Begin")
        .cloned()
        .collect();
    meter::reading(&begin).energy_wh.or(match event {
        TransactionEventEnumType::Ended => None,
        _ => reading.energy_wh,
    })
}

pub async fn transaction_event(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: TransactionEventRequest = decode_shape("TransactionEvent", payload)?;
    validate(&req)?;
    // credit counts when charging starts; later events only report who it was
    let starting = req.event_type == TransactionEventEnumType::Started;
    let max_unpaid = starting.then_some(ctx.app.settings.billing.max_unpaid);
    // a start on an EVSE: who holds it (a reservation), read beside the token
    let evse = req.evse.as_ref().map(|e| e.id).filter(|_| starting);
    // with a token, in one statement
    let at = evse.map(|evse| (ctx.charger_id.as_str(), evse));
    let (mut token, holds) = match (&req.id_token, at) {
        (Some(token), at) => resolve_at(&ctx.app.db, token, max_unpaid, at)
            .await
            .map(|(resolved, holds)| (Some(resolved), holds)),
        (None, Some((charger_id, evse))) => {
            reservations::holds_at(&ctx.app.db, charger_id, evse, None)
                .await
                .map(|holds| (None, holds))
        }
        (None, None) => Ok((None, Holds::default())),
    }
    .map_err(unanswered)?;
    let hold = holds.for_user(token.as_ref().and_then(|t| t.user_id));
    if let Some(resolved) = token
        .as_mut()
        .filter(|t| hold == Hold::Theirs && t.status == AuthorizationStatusEnumType::Accepted)
    {
        // the station started on an EVSE it holds for another driver: refused, so that it
        // ends the transaction (which is still stored, as every one is)
        tracing::warn!(charger_id = %ctx.charger_id, evse_id = ?evse, "transaction started on an EVSE reserved for another driver");
        resolved.status = AuthorizationStatusEnumType::Invalid;
    }
    let values = req.meter_value.as_deref().unwrap_or_default();
    // the end of a transaction is never refused for an absurd sample: those are dropped
    let samples = if req.event_type == TransactionEventEnumType::Ended {
        samples_lenient(values)
    } else {
        samples(values)?
    };
    let reading = meter::reading(&samples);
    let start_wh = start_register(&samples, &req.event_type, &reading);
    let answer = Handled::reply(&TransactionEventResponse {
        id_token_info: token.as_ref().map(Resolved::info),
        ..Default::default()
    })?;
    let accepted = token
        .as_ref()
        .is_some_and(|t| t.status == AuthorizationStatusEnumType::Accepted);
    let transaction_ref = req.transaction_info.transaction_id.clone();
    // the running cost (I02) and the final one (I03) go into the answer
    let costed = req.event_type != TransactionEventEnumType::Started;
    let (event_at, ending) = (
        req.timestamp,
        req.event_type == TransactionEventEnumType::Ended,
    );
    let (seq_no, event, offline) = (
        req.seq_no,
        enum_name(&req.event_type),
        req.offline.unwrap_or(false),
    );
    let write = set_based(
        &ctx.charger_id,
        &req,
        token.as_ref(),
        &samples,
        reading,
        start_wh,
    );
    let job_ctx = ctx.clone();
    // set when this event showed seqNos missing before it (E14: the CSMS asks what is queued)
    let gap = Arc::new(AtomicBool::new(false));
    let job_gap = gap.clone();
    let general = event_job(move |tx| {
        // a job may run twice (alone, after its batch failed): it owns copies
        let (job_ctx, req, token) = (job_ctx.clone(), req.clone(), token.clone());
        let (samples, reading, job_gap) = (samples.clone(), reading, job_gap.clone());
        Box::pin(async move {
            let event = Event {
                req: &req,
                token: token.as_ref(),
                reading: &reading,
                start_wh,
                samples: &samples,
            };
            store_event(&job_ctx, tx, &event, &job_gap).await
        })
    });
    // stored in the next group commit; answered only once it committed
    let stored = ctx
        .app
        .transactions
        .event(&ctx.charger_id, write, general)
        .await
        .map_err(unanswered)?;
    let Some(session) = stored else {
        tracing::info!(charger_id = %ctx.charger_id, %transaction_ref, seq_no, "repeated TransactionEvent answered without changes");
        return Ok(answer);
    };
    let mut answer = answer;
    if gap.load(Ordering::Relaxed) {
        // TC_E_31: messages of this transaction are missing: is the station still holding them?
        answer = answer.with(Effect::Send {
            command: ChargerCommand::Raw {
                action: "GetTransactionStatus".into(),
                payload: json!({ "transactionId": transaction_ref }),
            },
            what: "GetTransactionStatus after a seqNo gap",
        });
    }
    if let Some(record) = session.as_ref().filter(|_| costed) {
        let currency = &ctx.app.settings.billing.currency;
        // the answer never waits long for a display figure
        let cost = tokio::time::timeout(
            std::time::Duration::from_millis(ctx.app.settings.ocpp.running_cost_timeout_ms),
            ctx.app
                .running_cost
                .cost_of(&ctx.app.db, record, currency, event_at, ending),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("running cost: too slow".into())));
        match cost {
            // a JSON number as the schema says (a cents amount is exact enough in f64)
            Ok(cost) => {
                let cost = rust_decimal::prelude::ToPrimitive::to_f64(&cost).unwrap_or_default();
                answer.response["totalCost"] = Value::from(cost);
            }
            // the event is stored: it is answered, without the cost
            Err(e) => {
                tracing::warn!(charger_id = %ctx.charger_id, error = %e, "running cost not computed")
            }
        }
    }
    if let (Hold::Mine(reservation), true) = (hold, accepted) {
        // the driver's reservation is used (guarded: a repeat or a race changes nothing)
        let session_id = session.as_ref().map(|s| s.id);
        if let Err(e) = reservations::use_for(&ctx.app.db, reservation, session_id).await {
            tracing::error!(error = %e, %reservation, "reservation not marked used; it expires instead");
        }
    }
    tracing::info!(
        charger_id = %ctx.charger_id,
        %transaction_ref,
        %event,
        seq_no,
        offline,
        "TransactionEvent stored"
    );
    Ok(answer.with_session(session))
}

/// The set-based form of an event, when it may take it: an Updated without an idToken (the
/// common message of a running transaction), a Started (when it creates its transaction), an
/// Ended with its final register and no idToken. An event queued offline takes the general path.
fn set_based(
    charger_id: &str,
    req: &TransactionEventRequest,
    token: Option<&Resolved>,
    samples: &[meter::Sample],
    reading: Reading,
    start_wh: Option<Decimal>,
) -> Option<EventWrite> {
    if req.offline.unwrap_or(false) {
        return None;
    }
    let transaction_ref = req.transaction_info.transaction_id.clone();
    match req.event_type {
        TransactionEventEnumType::Updated if req.id_token.is_none() => {
            Some(EventWrite::Updated(EventUpdate {
                charger_id: charger_id.to_string(),
                transaction_ref,
                seq_no: req.seq_no,
                samples: samples.to_vec(),
                reading,
            }))
        }
        TransactionEventEnumType::Started => {
            let start = EventStarted {
                charger_id: charger_id.to_string(),
                transaction_ref,
                connector_id: req.evse.as_ref().map(|e| e.id).unwrap_or(0),
                seq_no: req.seq_no,
                started_at: req.timestamp,
                meter_start_wh: start_wh,
                id_token: req
                    .id_token
                    .as_ref()
                    .zip(token)
                    .map(|(id, resolved)| (id.id_token.clone(), enum_name(&resolved.status))),
                user_id: token
                    .filter(|t| t.status == AuthorizationStatusEnumType::Accepted)
                    .and_then(|t| t.user_id),
                remote_start_id: req.transaction_info.remote_start_id,
            };
            let read = EventReading {
                samples: samples.to_vec(),
                reading,
            };
            Some(EventWrite::Started(Box::new((start, read))))
        }
        TransactionEventEnumType::Ended if req.id_token.is_none() => {
            let meter_stop_wh = reading.energy_wh?;
            Some(EventWrite::Ended(Box::new(EventEnded {
                charger_id: charger_id.to_string(),
                transaction_ref,
                seq_no: req.seq_no,
                stopped_at: req.timestamp,
                meter_stop_wh,
                reason: stopped_reason(req),
                samples: samples.to_vec(),
            })))
        }
        _ => None,
    }
}

/// Why the transaction ended, as the station said ("Local" when it did not).
fn stopped_reason(req: &TransactionEventRequest) -> String {
    req.transaction_info
        .stopped_reason
        .as_ref()
        .map(enum_name)
        .unwrap_or_else(|| "Local".into())
}

/// Gives a closure the signature the transaction writer runs (a binding alone would not be
/// inferred as working for every borrow of the transaction).
fn event_job<F>(job: F) -> F
where
    F: for<'a> Fn(
        &'a mut Tx<'static>,
    ) -> BoxFuture<'a, Result<Option<Option<SessionRecord>>, StoreError>>,
{
    job
}

/// Stores one event within the batch's transaction: `None` for a repeated seqNo (nothing
/// written), else the session as the event left it.
/// `gap` is set when the event shows seqNos missing before it.
async fn store_event(
    ctx: &CallContext,
    tx: &mut Tx<'_>,
    event: &Event<'_>,
    gap: &AtomicBool,
) -> Result<Option<Option<SessionRecord>>, StoreError> {
    let (req, start_wh) = (event.req, event.start_wh);
    let (transaction, created) = transaction_events::lock_or_create(
        tx,
        &FirstEvent {
            charger_id: &ctx.charger_id,
            transaction_ref: &req.transaction_info.transaction_id,
            connector_id: req.evse.as_ref().map(|e| e.id).unwrap_or(0),
            started_at: req.timestamp,
            meter_start_wh: start_wh,
        },
    )
    .await?;
    let Some(seq) = transaction.seq().receive(req.seq_no) else {
        return Ok(None);
    };
    // new numbers missing, or a jump too long to enumerate them
    let jumped = transaction
        .last_seq_no
        .is_some_and(|last| req.seq_no > last.saturating_add(1));
    if seq.gaps.len() > transaction.seq_gaps.len() || jumped {
        gap.store(true, Ordering::Relaxed);
        tracing::warn!(charger_id = %ctx.charger_id, transaction_ref = %req.transaction_info.transaction_id, gaps = ?seq.gaps, "TransactionEvent seqNo gap");
    }
    let offline = req.offline.unwrap_or(false);
    let started = (req.event_type == TransactionEventEnumType::Started && !created)
        .then_some((req.timestamp, start_wh));
    transaction_events::record_event(tx, transaction.record.id, &seq, offline, started).await?;
    apply(ctx, tx, event, &transaction).await.map(Some)
}

/// A decoded event with what was derived from it.
struct Event<'a> {
    req: &'a TransactionEventRequest,
    token: Option<&'a Resolved>,
    reading: &'a Reading,
    start_wh: Option<Decimal>,
    samples: &'a [meter::Sample],
}

/// The event's effect on the transaction and its session; returns the session as committed.
async fn apply(
    ctx: &CallContext,
    tx: &mut Tx<'_>,
    event: &Event<'_>,
    transaction: &EventTransaction,
) -> Result<Option<SessionRecord>, StoreError> {
    let Event {
        req,
        token,
        reading,
        start_wh,
        samples,
    } = event;
    let record = &transaction.record;
    let source = ctx.app.event_source();
    let mut session: Option<SessionRecord> = None;
    if let (Some(resolved), Some(id_token)) = (token, req.id_token.as_ref()) {
        if record.id_tag.is_none() {
            let status = enum_name(&resolved.status);
            transaction_events::identify(tx, record.id, &id_token.id_token, &status).await?;
        }
        if let (None, AuthorizationStatusEnumType::Accepted, Some(user_id)) =
            (record.session_id, &resolved.status, resolved.user_id)
        {
            let started_at = match req.event_type {
                TransactionEventEnumType::Started => record.started_at.min(req.timestamp),
                _ => record.started_at,
            };
            session = sessions::start_from_transaction(
                tx,
                &TransactionStart {
                    charger_id: &ctx.charger_id,
                    connector_id: record.connector_id,
                    id_tag: &id_token.id_token,
                    user_id,
                    started_at,
                    meter_start_wh: record.meter_start_wh.or(*start_wh),
                    transaction_pk: record.id,
                    remote_start_id: req.transaction_info.remote_start_id,
                    source: &source,
                },
            )
            .await?;
        }
    }
    let session_id = record.session_id.or(session.as_ref().map(|s| s.id));
    transactions::insert_samples(
        tx,
        SampleOwner {
            charger_id: &ctx.charger_id,
            connector_id: record.connector_id,
            transaction_pk: Some(record.id),
            session_id,
        },
        samples,
    )
    .await?;
    match (&req.event_type, session_id) {
        (TransactionEventEnumType::Ended, _) if record.stopped_at.is_some() => {
            tracing::info!(charger_id = %ctx.charger_id, transaction_ref = ?record.transaction_ref, "second Ended event ignored");
        }
        (TransactionEventEnumType::Ended, _) => {
            let reason = stopped_reason(req);
            transaction_events::stop(tx, record.id, req.timestamp, reading.energy_wh, &reason)
                .await?;
            if let Some(session_id) = session_id {
                // without a final register, the session ends on its newest reading, which the
                // writer may still hold back from the row
                let meter_stop = reading.energy_wh.or_else(|| {
                    ctx.app
                        .transactions
                        .pending_energy(&ctx.charger_id, session_id)
                });
                let completed =
                    sessions::complete(tx, session_id, req.timestamp, meter_stop, &reason, &source)
                        .await?;
                session = completed.or(session);
            }
        }
        (_, Some(session_id)) if reading.energy_wh.is_some() || reading.power_w.is_some() => {
            let sampled_at = samples
                .iter()
                .map(|s| s.sampled_at)
                .max()
                .unwrap_or(req.timestamp);
            let updated = sessions::record_reading(
                tx,
                session_id,
                reading.energy_wh,
                reading.power_w,
                sampled_at,
                &source,
            )
            .await?;
            session = updated.or(session);
        }
        _ => {}
    }
    Ok(session)
}
