//! Authorize, and the idToken resolution TransactionEvent shares: whatever the token type
//! (ISO14443 RFID, eMAID, Central app token, KeyCode, ...), it is looked up by its value like a
//! 1.6 idTag. A user's token is Accepted, an unknown one Invalid, a blocked user's Blocked.

use rust_ocpp::v2_0_1::datatypes::id_token_info_type::IdTokenInfoType;
use rust_ocpp::v2_0_1::datatypes::id_token_type::IdTokenType;
use rust_ocpp::v2_0_1::enumerations::authorization_status_enum_type::AuthorizationStatusEnumType;
use rust_ocpp::v2_0_1::enumerations::id_token_enum_type::IdTokenEnumType;
use rust_ocpp::v2_0_1::messages::authorize::{AuthorizeRequest, AuthorizeResponse};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ocpp::handler::{CallContext, Handled};
use crate::ocpp::payload::{check_len, decode};
use crate::ocpp::CallFailure;
use crate::store::reservations::{self, Holds};
use crate::store::users::{self, TagStatus};
use crate::store::StoreError;

/// Longest idToken (OCPP 2.0.1 IdTokenType.idToken).
pub const MAX_ID_TOKEN_CHARS: usize = 36;

/// What an idToken resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub status: AuthorizationStatusEnumType,
    /// The user the token belongs to, when it is one of ours.
    pub user_id: Option<Uuid>,
    /// Its group (groupIdToken), told to the station with the status.
    pub group: Option<String>,
}

impl Resolved {
    /// The idTokenInfo of a TransactionEvent answer: the status and the token's group.
    pub fn info(&self) -> IdTokenInfoType {
        IdTokenInfoType {
            status: self.status.clone(),
            group_id_token: self.group.clone().map(group_token),
            ..Default::default()
        }
    }
}

fn group_token(group: String) -> IdTokenType {
    IdTokenType {
        id_token: group,
        kind: IdTokenEnumType::Central,
        additional_info: None,
    }
}

/// Resolves an idToken into the 2.0.1 status and, when known, its user. `NoAuthorization`
/// (free charging configured on the station) is accepted without a user.
/// With `max_unpaid` (to start charging), a user whose unpaid invoices exceed it is `NoCredit`.
/// With `at` (station, EVSE) of a transaction starting there, also who holds that EVSE
/// (reservations), read in the same statement.
pub async fn resolve_at(
    pool: &PgPool,
    token: &IdTokenType,
    max_unpaid: Option<rust_decimal::Decimal>,
    at: Option<(&str, i32)>,
) -> Result<(Resolved, Holds), StoreError> {
    use AuthorizationStatusEnumType as S;
    if token.kind == IdTokenEnumType::NoAuthorization {
        let holds = match at {
            Some((charger_id, evse)) => {
                reservations::holds_at(pool, charger_id, evse, None).await?
            }
            None => Holds::default(),
        };
        let resolved = Resolved {
            status: S::Accepted,
            user_id: None,
            group: None,
        };
        return Ok((resolved, holds));
    }
    let (status, details, holds) =
        users::resolve_at(pool, &token.id_token, max_unpaid, None, at).await?;
    let (status, user_id) = match status {
        TagStatus::Accepted { user_id } => (S::Accepted, Some(user_id)),
        TagStatus::NoCredit { user_id } => (S::NoCredit, Some(user_id)),
        TagStatus::Blocked { user_id } => (S::Blocked, Some(user_id)),
        TagStatus::Expired { user_id } => (S::Expired, Some(user_id)),
        TagStatus::Invalid => (S::Invalid, None),
    };
    let group = details.group.filter(|_| user_id.is_some());
    let resolved = Resolved {
        status,
        user_id,
        group,
    };
    Ok((resolved, holds))
}

/// The idTokenInfo of an Authorize answer: the status (ConcurrentTx for a token already
/// charging), the token's expiry as the cache's, and its group.
async fn authorize_info(
    ctx: &CallContext,
    token: &IdTokenType,
) -> Result<IdTokenInfoType, StoreError> {
    use AuthorizationStatusEnumType as S;
    if token.kind == IdTokenEnumType::NoAuthorization {
        return Ok(token_info(S::Accepted));
    }
    let (status, details) = users::resolve_for_authorize(
        &ctx.app.db,
        &token.id_token,
        ctx.app.settings.billing.max_unpaid,
        Some(&ctx.charger_id),
    )
    .await?;
    let status = match status {
        TagStatus::Accepted { .. } if details.in_transaction => S::ConcurrentTx,
        TagStatus::Accepted { .. } => S::Accepted,
        TagStatus::NoCredit { .. } => S::NoCredit,
        TagStatus::Blocked { .. } => S::Blocked,
        TagStatus::Expired { .. } => S::Expired,
        TagStatus::Invalid => return Ok(token_info(S::Invalid)),
    };
    Ok(IdTokenInfoType {
        status,
        cache_expiry_date_time: details.expires_at,
        group_id_token: details.group.map(group_token),
        ..Default::default()
    })
}

/// The idTokenInfo of an answer.
pub fn token_info(status: AuthorizationStatusEnumType) -> IdTokenInfoType {
    IdTokenInfoType {
        status,
        ..Default::default()
    }
}

/// Checks an idToken's length (the `rust-ocpp` type does not).
pub fn check_token(action: &str, token: &IdTokenType) -> Result<(), CallFailure> {
    check_len(action, "idToken", &token.id_token, MAX_ID_TOKEN_CHARS)
}

pub async fn authorize(ctx: &CallContext, payload: Value) -> Result<Handled, CallFailure> {
    let req: AuthorizeRequest = decode("Authorize", payload)?;
    check_token("Authorize", &req.id_token)?;
    let info = authorize_info(ctx, &req.id_token)
        .await
        .map_err(CallFailure::internal)?;
    // ISO 15118 Plug & Charge: the contract certificate is checked before the eMAID counts
    let hashes = req
        .iso_15118_certificate_hash_data
        .as_deref()
        .unwrap_or_default();
    if req.certificate.is_none() && hashes.is_empty() {
        return Handled::reply(&AuthorizeResponse {
            certificate_status: None,
            id_token_info: info,
        });
    }
    if hashes.len() > 4 {
        return Err(CallFailure::new(
            crate::ocpp::CallErrorCode::OccurrenceConstraintViolation,
            "iso15118CertificateHashData: at most 4 entries",
        ));
    }
    let queries: Vec<crate::security::pnc::OcspQuery> = hashes
        .iter()
        .map(|h| crate::security::pnc::OcspQuery {
            hash_algorithm: crate::ocpp::handler::enum_name(&h.hash_algorithm),
            issuer_name_hash: h.issuer_name_hash.clone(),
            issuer_key_hash: h.issuer_key_hash.clone(),
            serial_number: h.serial_number.clone(),
            responder_url: h.responder_url.clone(),
        })
        .collect();
    let verdict = ctx
        .app
        .security
        .pnc
        .check_contract(&req.id_token.id_token, req.certificate.as_deref(), &queries)
        .await;
    let info = if verdict == crate::security::contract::Verdict::Accepted {
        info
    } else {
        tracing::warn!(charger_id = %ctx.charger_id, verdict = verdict.as_str(), "contract certificate not accepted");
        token_info(AuthorizationStatusEnumType::Invalid)
    };
    let mut response = serde_json::to_value(AuthorizeResponse {
        certificate_status: None,
        id_token_info: info,
    })
    .map_err(CallFailure::internal)?;
    response["certificateStatus"] = Value::String(verdict.as_str().into());
    Ok(Handled {
        response,
        effects: Vec::new(),
    })
}
