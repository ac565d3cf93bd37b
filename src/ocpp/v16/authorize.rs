//! Authorize: user idTags are Accepted (with their expiry and group, the parentIdTag a
//! reservation is matched by), unknown tags Invalid, blocked users and tokens Blocked, expired
//! ones Expired. (1.6 keeps ConcurrentTx for StartTransaction answers.)

use rust_ocpp::v1_6::messages::authorize::{AuthorizeRequest, AuthorizeResponse};
use rust_ocpp::v1_6::types::{AuthorizationStatus, IdTagInfo};
use serde_json::Value;
use sqlx::PgPool;

use super::{CallContext, Handled};
use crate::ocpp::payload::decode;
use crate::ocpp::CallFailure;
use crate::store::reservations::Holds;
use crate::store::users::{self, TagDetails, TagStatus};
use crate::store::StoreError;

/// Resolves an idTag into the 1.6 status, its user when known, and its expiry and group.
/// With `max_unpaid` (to start charging), a user whose unpaid invoices exceed it is `Blocked`
/// (1.6 has no NoCredit).
pub async fn resolve(
    pool: &PgPool,
    id_tag: &str,
    max_unpaid: Option<rust_decimal::Decimal>,
) -> Result<(AuthorizationStatus, Option<uuid::Uuid>, TagDetails), StoreError> {
    let (status, details) = users::resolve_with_details(pool, id_tag, max_unpaid, None).await?;
    Ok(v16_status(status, details))
}

/// `resolve` for a transaction starting on `connector_id` of `charger_id`, with who holds that
/// connector (reservations), read in the same statement.
pub async fn resolve_at(
    pool: &PgPool,
    id_tag: &str,
    max_unpaid: Option<rust_decimal::Decimal>,
    charger_id: &str,
    connector_id: i32,
) -> Result<(AuthorizationStatus, Option<uuid::Uuid>, TagDetails, Holds), StoreError> {
    let (status, details, holds) = users::resolve_at(
        pool,
        id_tag,
        max_unpaid,
        None,
        Some((charger_id, connector_id)),
    )
    .await?;
    let (status, user, details) = v16_status(status, details);
    Ok((status, user, details, holds))
}

fn v16_status(
    status: TagStatus,
    details: TagDetails,
) -> (AuthorizationStatus, Option<uuid::Uuid>, TagDetails) {
    match status {
        TagStatus::Accepted { user_id } => (AuthorizationStatus::Accepted, Some(user_id), details),
        TagStatus::NoCredit { user_id } => (AuthorizationStatus::Blocked, Some(user_id), details),
        TagStatus::Blocked { user_id } => (AuthorizationStatus::Blocked, Some(user_id), details),
        TagStatus::Expired { user_id } => (AuthorizationStatus::Expired, Some(user_id), details),
        TagStatus::Invalid => (AuthorizationStatus::Invalid, None, details),
    }
}

/// `status` with the token's expiry and group (parentIdTag), for a token the server knows.
pub fn tag_info_with(status: AuthorizationStatus, details: &TagDetails) -> IdTagInfo {
    let known = status != AuthorizationStatus::Invalid;
    IdTagInfo {
        status,
        expiry_date: details.expires_at.filter(|_| known),
        // a 1.6 idTag is at most 20 characters: a longer group cannot be named
        parent_id_tag: details
            .group
            .clone()
            .filter(|g| known && g.len() <= crate::domain::MAX_ID_TAG_CHARS),
    }
}

pub async fn authorize(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: AuthorizeRequest = decode("Authorize", payload)?;
    let (status, details) = users::resolve_for_authorize(
        &ctx.app.db,
        &req.id_tag,
        ctx.app.settings.billing.max_unpaid,
        None,
    )
    .await
    .map_err(CallFailure::internal)?;
    let status = match status {
        TagStatus::Accepted { .. } => AuthorizationStatus::Accepted,
        TagStatus::NoCredit { .. } | TagStatus::Blocked { .. } => AuthorizationStatus::Blocked,
        TagStatus::Expired { .. } => AuthorizationStatus::Expired,
        TagStatus::Invalid => AuthorizationStatus::Invalid,
    };
    Handled::reply(&AuthorizeResponse {
        id_tag_info: tag_info_with(status, &details),
    })
}
