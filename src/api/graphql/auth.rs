//! Who is calling: resolved once per request from the bearer token and stored in the request data.

use async_graphql::Context;
use uuid::Uuid;

use super::error::ApiError;
use crate::auth::{Claims, JwtKeys, TokenError};
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
