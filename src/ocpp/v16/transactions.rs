//! StartTransaction, StopTransaction and MeterValues. Transactions are stored durably before
//! they are answered; repeats are answered identically and change nothing. Charger timestamps
//! are kept as sent (offline-queued messages carry old ones and are processed normally).

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

use super::authorize::{resolve, tag_info};
use super::{enum_name, CallContext, Effect, Handled};
use crate::ocpp::meter::{self, OutOfRange, RawSample, Sample};
use crate::ocpp::payload::{decode, decode_shape};
use crate::ocpp::CallFailure;
use crate::store::chargers;
use crate::store::sessions::{self, TransactionStart};
use crate::store::transactions::{self, SampleOwner, StartRequest};
use crate::store::StoreError;

/// Normalised samples of 1.6 meter values; a value no meter can show refuses them all.
pub fn samples(values: &[MeterValue]) -> Result<Vec<Sample>, OutOfRange> {
    meter::normalise_all(values.iter().flat_map(|mv| {
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
    }))
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
    let (status, user) = resolve(&ctx.app.db, &req.id_tag)
        .await
        .map_err(unanswered)?;
    let status_name = enum_name(&status);
    let mut tx = ctx.app.db.begin().await.map_err(|e| unanswered(e.into()))?;
    let started = transactions::start_v16(
        &mut tx,
        &StartRequest {
            charger_id: &ctx.charger_id,
            connector_id,
            id_tag: &req.id_tag,
            started_at: req.timestamp,
            meter_start_wh: Decimal::from(req.meter_start),
            id_tag_status: &status_name,
        },
    )
    .await
    .map_err(unanswered)?;
    let session = match user {
        Some(user_id) if status == AuthorizationStatus::Accepted && !started.duplicate => {
            sessions::start_from_transaction(
                &mut tx,
                &TransactionStart {
                    charger_id: &ctx.charger_id,
                    connector_id,
                    id_tag: &req.id_tag,
                    user_id,
                    started_at: req.timestamp,
                    meter_start_wh: Some(Decimal::from(req.meter_start)),
                    transaction_pk: started.pk,
                    remote_start_id: None,
                    source: &ctx.app.event_source(),
                },
            )
            .await
            .map_err(unanswered)?
        }
        _ => None,
    };
    tx.commit().await.map_err(|e| unanswered(e.into()))?;
    tracing::info!(
        charger_id = %ctx.charger_id,
        transaction_id = started.transaction_id,
        duplicate = started.duplicate,
        "transaction started"
    );
    let handled = Handled::reply(&StartTransactionResponse {
        id_tag_info: tag_info(status_from_str(&started.id_tag_status)),
        transaction_id: started.transaction_id,
    })?;
    Ok(match session {
        Some(session) => handled.with(Effect::Session(Box::new(session))),
        None => handled,
    })
}

pub async fn stop_transaction(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: StopTransactionRequest = decode("StopTransaction", payload.clone())?;
    let id_tag_info = match &req.id_tag {
        Some(tag) => Some(tag_info(
            resolve(&ctx.app.db, tag).await.map_err(unanswered)?.0,
        )),
        None => None,
    };
    let reason = req
        .reason
        .as_ref()
        .map(enum_name)
        .unwrap_or_else(|| "Local".into());
    let mut tx = ctx.app.db.begin().await.map_err(|e| unanswered(e.into()))?;
    let existing = transactions::lock_v16(&mut tx, &ctx.charger_id, req.transaction_id)
        .await
        .map_err(unanswered)?;
    let mut handled = Handled::reply(&StopTransactionResponse { id_tag_info })?;
    match existing {
        None => {
            chargers::record_report(&mut tx, &ctx.charger_id, "UnknownStopTransaction", &payload)
                .await
                .map_err(unanswered)?;
            tracing::warn!(charger_id = %ctx.charger_id, transaction_id = req.transaction_id, "StopTransaction for an unknown transaction recorded for reconciliation");
        }
        Some(record) if record.stopped_at.is_some() => {
            tracing::info!(charger_id = %ctx.charger_id, transaction_id = req.transaction_id, "repeated StopTransaction ignored");
        }
        Some(record) => {
            let samples = req
                .transaction_data
                .as_deref()
                .map(samples)
                .transpose()?
                .unwrap_or_default();
            transactions::insert_samples(
                &mut tx,
                SampleOwner {
                    charger_id: &ctx.charger_id,
                    connector_id: record.connector_id,
                    transaction_pk: Some(record.id),
                    session_id: record.session_id,
                },
                &samples,
            )
            .await
            .map_err(unanswered)?;
            transactions::stop(
                &mut tx,
                record.id,
                req.timestamp,
                Decimal::from(req.meter_stop),
                &reason,
            )
            .await
            .map_err(unanswered)?;
            if let Some(session_id) = record.session_id {
                let completed = sessions::complete(
                    &mut tx,
                    session_id,
                    req.timestamp,
                    Some(Decimal::from(req.meter_stop)),
                    &reason,
                    &ctx.app.event_source(),
                )
                .await
                .map_err(unanswered)?;
                if let Some(session) = completed {
                    handled = handled.with(Effect::Session(Box::new(session)));
                }
            }
        }
    }
    tx.commit().await.map_err(|e| unanswered(e.into()))?;
    Ok(handled)
}

pub async fn meter_values(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: MeterValuesRequest = decode_shape("MeterValues", payload)?;
    let connector_id = i32::try_from(req.connector_id).map_err(CallFailure::internal)?;
    let samples = samples(&req.meter_value)?;
    let record = match req.transaction_id {
        Some(id) => transactions::find_v16(&ctx.app.db, &ctx.charger_id, id)
            .await
            .map_err(CallFailure::internal)?,
        None => None,
    };
    let mut tx = ctx.app.db.begin().await.map_err(CallFailure::internal)?;
    transactions::insert_samples(
        &mut tx,
        SampleOwner {
            charger_id: &ctx.charger_id,
            connector_id,
            transaction_pk: record.as_ref().map(|r| r.id),
            session_id: record.as_ref().and_then(|r| r.session_id),
        },
        &samples,
    )
    .await
    .map_err(CallFailure::internal)?;
    let reading = meter::reading(&samples);
    let session = match (
        record.as_ref().and_then(|r| r.session_id),
        samples.iter().map(|s| s.sampled_at).max(),
    ) {
        (Some(session_id), Some(sampled_at))
            if reading.energy_wh.is_some() || reading.power_w.is_some() =>
        {
            sessions::record_reading(
                &mut tx,
                session_id,
                reading.energy_wh,
                reading.power_w,
                sampled_at,
                &ctx.app.event_source(),
            )
            .await
            .map_err(CallFailure::internal)?
        }
        _ => None,
    };
    tx.commit().await.map_err(CallFailure::internal)?;
    let handled = Handled::reply(&MeterValuesResponse {})?;
    Ok(match session {
        Some(session) => handled.with(Effect::Session(Box::new(session))),
        None => handled,
    })
}
