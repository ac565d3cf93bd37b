//! Who is calling: resolved once per request from the bearer token and stored in the request data.

use async_graphql::Context;
use uuid::Uuid;

use super::error::ApiError;
use crate::auth::access::Access;
use crate::auth::{Claims, JwtKeys, TokenError};
use crate::context::AppContext;
use crate::domain::Role;

/// The caller of one GraphQL operation.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User(Claims),
    /// A token was presented but is not valid; operations needing auth fail with its reason.
    Rejected(TokenError),
}

impl Caller {
    /// Reads `Bearer <token>` (the `Authorization` header, or the WebSocket init payload).
    pub fn from_authorization(value: Option<&str>, keys: &JwtKeys) -> Self {
        let Some(value) = value else {
            return Caller::Anonymous;
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value)
            .trim();
        match keys.verify(token) {
            Ok(claims) => Caller::User(claims),
            Err(e) => Caller::Rejected(e),
        }
    }

    /// Like `from_authorization`, then checks that the sign-in is still allowed (not logged
    /// out, not blocked) and takes the user's current role. If Postgres cannot say, the signed
    /// token stands (it is short-lived) and a warning is logged.
    pub async fn resolve(value: Option<&str>, app: &AppContext) -> Self {
        let mut claims = match Self::from_authorization(value, &app.jwt) {
            Caller::User(claims) => claims,
            other => return other,
        };
        match app.access.check(&app.api_db, &claims).await {
            Ok(Access::Allowed(role)) => {
                claims.role = role;
                Caller::User(claims)
            }
            Ok(Access::Revoked) => Caller::Rejected(TokenError::Revoked),
            Err(e) => {
                tracing::warn!(error = %e, "access check unavailable; the token's claims stand");
                Caller::User(claims)
            }
        }
    }
}

/// The client address, for rate limiting.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// The authenticated user's id and role, or UNAUTHENTICATED.
pub fn require_user(ctx: &Context<'_>) -> Result<(Uuid, Role), ApiError> {
    match ctx.data_opt::<Caller>() {
        Some(Caller::User(claims)) => Ok((claims.sub, claims.role)),
        Some(Caller::Rejected(TokenError::Expired)) => Err(ApiError::Unauthenticated(
            "the access token has expired; refresh it".into(),
        )),
        Some(Caller::Rejected(TokenError::Invalid)) => Err(ApiError::Unauthenticated(
            "the access token is invalid".into(),
        )),
        Some(Caller::Rejected(TokenError::Revoked)) => Err(ApiError::Unauthenticated(
            "the sign-in was revoked; sign in again".into(),
        )),
        _ => Err(ApiError::unauthenticated()),
    }
}

/// The authenticated OPERATOR or ADMIN, or UNAUTHENTICATED / FORBIDDEN.
pub fn require_staff(ctx: &Context<'_>) -> Result<(Uuid, Role), ApiError> {
    let (id, role) = require_user(ctx)?;
    if role.is_staff() {
        Ok((id, role))
    } else {
        Err(ApiError::Forbidden(
            "this operation needs the OPERATOR or ADMIN role".into(),
        ))
    }
}

/// True for an authenticated OPERATOR or ADMIN (fields that others see as null).
pub fn is_staff(ctx: &Context<'_>) -> bool {
    matches!(ctx.data_opt::<Caller>(), Some(Caller::User(claims)) if claims.role.is_staff())
}
