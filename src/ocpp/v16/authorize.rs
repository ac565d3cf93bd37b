//! Authorize: user idTags are Accepted, unknown tags Invalid, blocked users Blocked.

use rust_ocpp::v1_6::messages::authorize::{AuthorizeRequest, AuthorizeResponse};
use rust_ocpp::v1_6::types::{AuthorizationStatus, IdTagInfo};
use serde_json::Value;
use sqlx::PgPool;

use super::{CallContext, Handled};
use crate::ocpp::payload::decode;
use crate::ocpp::CallFailure;
use crate::store::users::{self, TagStatus};
use crate::store::StoreError;

/// Resolves an idTag into the 1.6 status and, when known, its user.
/// With `max_unpaid` (to start charging), a user whose unpaid invoices exceed it is `Blocked`
/// (1.6 has no NoCredit).
pub async fn resolve(
    pool: &PgPool,
    id_tag: &str,
    max_unpaid: Option<rust_decimal::Decimal>,
) -> Result<(AuthorizationStatus, Option<uuid::Uuid>), StoreError> {
    Ok(
        match users::resolve_id_tag(pool, id_tag, max_unpaid).await? {
            TagStatus::Accepted { user_id } => (AuthorizationStatus::Accepted, Some(user_id)),
            TagStatus::NoCredit { user_id } => (AuthorizationStatus::Blocked, Some(user_id)),
            TagStatus::Blocked { user_id } => (AuthorizationStatus::Blocked, Some(user_id)),
            TagStatus::Expired { user_id } => (AuthorizationStatus::Expired, Some(user_id)),
            TagStatus::Invalid => (AuthorizationStatus::Invalid, None),
        },
    )
}

pub fn tag_info(status: AuthorizationStatus) -> IdTagInfo {
    IdTagInfo {
        expiry_date: None,
        parent_id_tag: None,
        status,
    }
}

pub async fn authorize(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: AuthorizeRequest = decode("Authorize", payload)?;
    let (status, _) = resolve(
        &ctx.app.db,
        &req.id_tag,
        Some(ctx.app.settings.billing.max_unpaid),
    )
    .await
    .map_err(CallFailure::internal)?;
    Handled::reply(&AuthorizeResponse {
        id_tag_info: tag_info(status),
    })
}
