//! ReservationStatusUpdate: the station ended a reservation itself (`Expired`: its time ran out
//! on the station's clock; `Removed`: the station dropped it, e.g. the EVSE became
//! inoperative). The reservation ends on the server too; one that already ended (the server's
//! own expiry, a cancellation, a start that used it) stays as it is. Always answered.

use rust_ocpp::v2_0_1::enumerations::reservation_update_status_enum_type::ReservationUpdateStatusEnumType;
use rust_ocpp::v2_0_1::messages::reservation_status_update::{
    ReservationStatusUpdateRequest, ReservationStatusUpdateResponse,
};
use serde_json::Value;

use crate::ocpp::handler::{CallContext, Handled};
use crate::ocpp::payload::decode_shape;
use crate::ocpp::CallFailure;
use crate::store::reservations::{self, status};

pub async fn reservation_status_update(
    ctx: &CallContext,
    payload: Value,
) -> Result<Handled, CallFailure> {
    let req: ReservationStatusUpdateRequest = decode_shape("ReservationStatusUpdate", payload)?;
    let (to, reason) = match req.reservation_update_status {
        ReservationUpdateStatusEnumType::Expired => {
            (status::EXPIRED, "expired on the charging station")
        }
        ReservationUpdateStatusEnumType::Removed => {
            (status::CANCELLED, "removed by the charging station")
        }
    };
    let ended =
        reservations::charger_ended(&ctx.app.db, &ctx.charger_id, req.reservation_id, to, reason)
            .await
            .map_err(|e| {
                // unanswered: the station sends it again
                tracing::error!(error = %e, "ReservationStatusUpdate not stored");
                CallFailure::unanswered()
            })?;
    match ended {
        Some(r) => {
            tracing::info!(charger_id = %ctx.charger_id, reservation_id = %r.id, status = %r.status, "reservation ended by the station")
        }
        None => {
            tracing::info!(charger_id = %ctx.charger_id, ocpp_reservation_id = req.reservation_id, "ReservationStatusUpdate for no live reservation")
        }
    }
    Handled::reply(&ReservationStatusUpdateResponse {})
}
