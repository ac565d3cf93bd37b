//! StartTransaction, StopTransaction and MeterValues. Transactions are stored durably before
//! they are answered; repeats are answered identically and change nothing. Charger timestamps
//! are kept as sent (offline-queued messages carry old ones and are processed normally).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_ocpp::v1_6::messages::meter_values::{MeterValuesRequest, MeterValuesResponse};
use rust_ocpp::v1_6::messages::start_transaction::{
    StartTransactionRequest, StartTransactionResponse,
};
use rust_ocpp::v1_6::messages::stop_transaction::{
    StopTransactionRequest, StopTransactionResponse,
};
use rust_ocpp::v1_6::types::{AuthorizationStatus, MeterValue};
use serde_json::Value;

use super::authorize::{resolve, resolve_at, tag_info_with};
use super::{enum_name, CallContext, Handled};
use crate::ocpp::meter::{self, OutOfRange, RawSample, Sample};
use crate::ocpp::payload::{decode, decode_shape};
use crate::ocpp::CallFailure;
use crate::store::chargers;
use crate::store::reservations::{self, Hold};
use crate::store::sessions::{self, TransactionStart};
use crate::store::starts_and_stops::{StartV16, StopV16};
use crate::store::transaction_writer::{MeterOwner, MeterWrite};
use crate::store::transactions::{self, SampleOwner, StartRequest};
use crate::store::StoreError;

/// Normalised samples of 1.6 meter values; a value no meter can show refuses them all.
pub fn samples(values: &[MeterValue]) -> Result<Vec<Sample>, OutOfRange> {
    meter::normalise_all(raw_samples(values))
}

pub(crate) fn raw_samples(
    values: &[MeterValue],
) -> impl Iterator<Item = (DateTime<Utc>, RawSample)> + '_ {
    values.iter().flat_map(|mv| {
        mv.sampled_value.iter().map(move |sv| {
            (
                mv.timestamp,
                RawSample {
                    value: sv.value.clone(),
                    measurand: sv.measurand.as_ref().map(enum_name),
                    phase: sv.phase.as_ref().map(enum_name),
                    context: sv.context.as_ref().map(enum_name),
                    location: sv.location.as_ref().map(enum_name),
                    unit: sv.unit.as_ref().map(enum_name),
                    multiplier: None,
                },
            )
        })
    })
}

fn status_from_str(status: &str) -> AuthorizationStatus {
    serde_json::from_value(Value::String(status.to_string()))
        .unwrap_or(AuthorizationStatus::Invalid)
}

/// A storage failure on a transaction message: the charger gets no answer and retries, because
/// these messages are only ever answered after they are stored.
fn unanswered(err: StoreError) -> CallFailure {
    tracing::error!(error = %err, "transaction message not stored; leaving it unanswered so the charger retries");
    CallFailure::unanswered()
}

pub async fn start_transaction(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: StartTransactionRequest = decode("StartTransaction", payload)?;
    let connector_id = i32::try_from(req.connector_id).map_err(CallFailure::internal)?;
    // the token and who holds the connector, in one statement
    let (mut status, user, details, holds) = resolve_at(
        &ctx.app.db,
        &req.id_tag,
        Some(ctx.app.settings.billing.max_unpaid),
        &ctx.charger_id,
        connector_id,
    )
    .await
    .map_err(unanswered)?;
    let hold = holds.for_user(user);
    if hold == Hold::Theirs && status == AuthorizationStatus::Accepted {
        // the charger started on a connector it holds for another driver: refused, so that
        // it stops (the transaction is still stored, as every transaction is)
        tracing::warn!(charger_id = %ctx.charger_id, connector_id, "transaction started on a connector reserved for another driver");
        status = AuthorizationStatus::Invalid;
    }
    let status_name = enum_name(&status);
    let accepted = status == AuthorizationStatus::Accepted;
    let (charger_id, source) = (ctx.charger_id.clone(), ctx.app.event_source());
    let (id_tag, started_at) = (req.id_tag.clone(), req.timestamp);
    let meter_start = Decimal::from(req.meter_start);
    let start = StartV16 {
        charger_id: charger_id.clone(),
        connector_id,
        id_tag: id_tag.clone(),
        started_at,
        meter_start_wh: meter_start,
        id_tag_status: status_name.clone(),
        user_id: user.filter(|_| accepted),
    };
    // stored in the next group commit (set-based with the batch's other starts, else by this
    // job); answered only once it committed
    let (started, session) = ctx
        .app
        .transactions
        .start_v16(start, move |tx| {
            // a job may run twice (alone, after its batch failed): it owns copies
            let (charger_id, id_tag) = (charger_id.clone(), id_tag.clone());
            let (status_name, source) = (status_name.clone(), source.clone());
            Box::pin(async move {
                let started = transactions::start_v16(
                    tx,
                    &StartRequest {
                        charger_id: &charger_id,
                        connector_id,
                        id_tag: &id_tag,
                        started_at,
                        meter_start_wh: meter_start,
                        id_tag_status: &status_name,
                    },
                )
                .await?;
                let session = match user {
                    Some(user_id) if accepted && !started.duplicate => {
                        sessions::start_from_transaction(
                            tx,
                            &TransactionStart {
                                charger_id: &charger_id,
                                connector_id,
                                id_tag: &id_tag,
                                user_id,
                                started_at,
                                meter_start_wh: Some(meter_start),
                                transaction_pk: started.pk,
                                remote_start_id: None,
                                source: &source,
                            },
                        )
                        .await?
                    }
                    _ => None,
                };
                Ok((started, session))
            })
        })
        .await
        .map_err(unanswered)?;
    tracing::info!(
        charger_id = %ctx.charger_id,
        transaction_id = started.transaction_id,
        duplicate = started.duplicate,
        "transaction started"
    );
    if let (Hold::Mine(reservation), true) = (hold, accepted) {
        // the driver's reservation is used (guarded: a repeat or a race changes nothing)
        let session_id = session.as_ref().map(|s| s.id);
        if let Err(e) = reservations::use_for(&ctx.app.db, reservation, session_id).await {
            tracing::error!(error = %e, %reservation, "reservation not marked used; it expires instead");
        }
    }
    let handled = Handled::reply(&StartTransactionResponse {
        // with the token's expiry and group, which the charger's cache keeps (as from Authorize)
        id_tag_info: tag_info_with(status_from_str(&started.id_tag_status), &details),
        transaction_id: started.transaction_id,
    })?;
    Ok(handled.with_session(session))
}

pub async fn stop_transaction(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: StopTransactionRequest = decode("StopTransaction", payload.clone())?;
    // the token's status goes only into the answer: it is read while the stop is stored
    let id_tag_info = async {
        match &req.id_tag {
            Some(tag) => {
                let (status, _, details) = resolve(&ctx.app.db, tag, None).await?;
                Ok::<_, StoreError>(Some(tag_info_with(status, &details)))
            }
            None => Ok(None),
        }
    };
    let reason = req
        .reason
        .as_ref()
        .map(enum_name)
        .unwrap_or_else(|| "Local".into());
    // the end of a transaction is never refused for an absurd sample: those are dropped
    let samples = req
        .transaction_data
        .as_deref()
        .map(|values| meter::normalise_lenient(raw_samples(values)))
        .unwrap_or_default();
    let (charger_id, source) = (ctx.charger_id.clone(), ctx.app.event_source());
    let (transaction_id, stopped_at) = (req.transaction_id, req.timestamp);
    let meter_stop = Decimal::from(req.meter_stop);
    let stop = StopV16 {
        charger_id: charger_id.clone(),
        transaction_id,
        stopped_at,
        meter_stop_wh: meter_stop,
        reason: reason.clone(),
        samples: samples.clone(),
    };
    let stored = ctx
        .app
        .transactions
        .stop_v16(stop, move |tx| {
            let (charger_id, source, reason) = (charger_id.clone(), source.clone(), reason.clone());
            let (payload, samples) = (payload.clone(), samples.clone());
            Box::pin(async move {
                // the common case, a running transaction, in one statement
                if let Some(stopped) = sessions::stop_v16(
                    tx,
                    &charger_id,
                    transaction_id,
                    stopped_at,
                    meter_stop,
                    &reason,
                    &source,
                )
                .await?
                {
                    transactions::insert_samples(
                        tx,
                        SampleOwner {
                            charger_id: &charger_id,
                            connector_id: stopped.connector_id,
                            transaction_pk: Some(stopped.transaction_pk),
                            session_id: stopped.session_id,
                        },
                        &samples,
                    )
                    .await?;
                    return Ok(stopped.session);
                }
                let existing = transactions::lock_v16(tx, &charger_id, transaction_id).await?;
                let record = match existing {
                    None => {
                        chargers::record_report(tx, &charger_id, "UnknownStopTransaction", &payload)
                            .await?;
                        tracing::warn!(charger_id = %charger_id, transaction_id, "StopTransaction for an unknown transaction recorded for reconciliation");
                        return Ok(None);
                    }
                    Some(record) if record.stopped_at.is_some() => {
                        tracing::info!(charger_id = %charger_id, transaction_id, "repeated StopTransaction ignored");
                        return Ok(None);
                    }
                    Some(record) => record,
                };
                transactions::insert_samples(
                    tx,
                    SampleOwner {
                        charger_id: &charger_id,
                        connector_id: record.connector_id,
                        transaction_pk: Some(record.id),
                        session_id: record.session_id,
                    },
                    &samples,
                )
                .await?;
                transactions::stop(tx, record.id, stopped_at, meter_stop, &reason).await?;
                match record.session_id {
                    Some(session_id) => {
                        sessions::complete(
                            tx,
                            session_id,
                            stopped_at,
                            Some(meter_stop),
                            &reason,
                            &source,
                        )
                        .await
                    }
                    None => Ok(None),
                }
            })
        });
    let (id_tag_info, session) = tokio::join!(id_tag_info, stored);
    let session = session.map_err(unanswered)?;
    // the stop is stored: it is answered, and its session's change goes out, even when the
    // token could not be read (idTagInfo is optional; a repeat would change nothing, and the
    // session's actor and subscribers would not hear of the end)
    let id_tag_info = id_tag_info.unwrap_or_else(|e| {
        tracing::warn!(charger_id = %ctx.charger_id, error = %e, "StopTransaction answered without idTagInfo: the token could not be read");
        None
    });
    Ok(Handled::reply(&StopTransactionResponse { id_tag_info })?.with_session(session))
}

pub async fn meter_values(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: MeterValuesRequest = decode_shape("MeterValues", payload)?;
    let connector_id = i32::try_from(req.connector_id).map_err(CallFailure::internal)?;
    let samples = samples(&req.meter_value)?;
    let reading = meter::reading(&samples);
    let owner = match req.transaction_id {
        Some(id) => MeterOwner::V16TransactionId(id),
        None => MeterOwner::None,
    };
    // set-based in the next group commit; answered only once it committed
    let session = ctx
        .app
        .transactions
        .meter(MeterWrite {
            charger_id: ctx.charger_id.clone(),
            connector_id,
            owner,
            samples,
            reading,
        })
        .await
        .map_err(CallFailure::internal)?;
    Ok(Handled::reply(&MeterValuesResponse {})?.with_session(session))
}
