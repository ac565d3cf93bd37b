//! API errors and their stable `extensions.code`. Messages are for people; codes for programs.
//! Internal errors are logged with a reference and reach the client only as that reference.

use async_graphql::ErrorExtensions;

use crate::domain::ValidationError;
use crate::store::StoreError;

/// Deliberately not `Display`: async-graphql converts any `Display` error into a message without
/// a code, and `ApiError` must always carry its code.
#[derive(Debug, Clone)]
pub enum ApiError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    BadUserInput(String),
    Conflict(String),
    ChargerOffline,
    ChargerRejected(String),
    ChargerTimeout,
    ConnectorBusy(String),
    InsufficientFunds,
    /// Unpaid invoices above what is allowed (`INSUFFICIENT_FUNDS`).
    UnpaidInvoices {
        unpaid: rust_decimal::Decimal,
        allowed: rust_decimal::Decimal,
    },
    RateLimited {
        retry_after_secs: u64,
    },
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadUserInput(_) => "BAD_USER_INPUT",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::ChargerOffline => "CHARGER_OFFLINE",
            ApiError::ChargerRejected(_) => "CHARGER_REJECTED",
            ApiError::ChargerTimeout => "CHARGER_TIMEOUT",
            ApiError::ConnectorBusy(_) => "CONNECTOR_BUSY",
            ApiError::InsufficientFunds | ApiError::UnpaidInvoices { .. } => "INSUFFICIENT_FUNDS",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    /// The message shown to the client.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::BadUserInput(m)
            | ApiError::Conflict(m)
            | ApiError::ConnectorBusy(m) => m.clone(),
            ApiError::ChargerOffline => "the charger is offline".into(),
            ApiError::ChargerRejected(reason) => format!("the charger refused: {reason}"),
            ApiError::ChargerTimeout => "the charger did not answer in time".into(),
            ApiError::InsufficientFunds => "insufficient funds".into(),
            ApiError::UnpaidInvoices { unpaid, allowed } => format!(
                "unpaid invoices of {unpaid} exceed the {allowed} allowed: pay them first (payInvoice)"
            ),
            ApiError::RateLimited { retry_after_secs } => {
                format!("too many attempts; retry in {retry_after_secs} s")
            }
            ApiError::Internal(_) => "internal error".into(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    pub fn unauthenticated() -> Self {
        ApiError::Unauthenticated("authentication required".into())
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        let code = err.code();
        match &err {
            ApiError::Internal(cause) => {
                let reference = uuid::Uuid::new_v4();
                tracing::error!(%reference, cause = %cause, "internal error");
                async_graphql::Error::new(format!("internal error (reference {reference})"))
                    .extend_with(|_, e| e.set("code", code))
            }
            ApiError::RateLimited { retry_after_secs } => {
                let retry = *retry_after_secs;
                async_graphql::Error::new(err.message()).extend_with(move |_, e| {
                    e.set("code", code);
                    e.set("retryAfterSeconds", retry);
                })
            }
            _ => async_graphql::Error::new(err.message()).extend_with(|_, e| e.set("code", code)),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ApiError::BadUserInput(err.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::InsufficientFunds => ApiError::InsufficientFunds,
            StoreError::CurrencyMismatch { amount, wallet } => ApiError::BadUserInput(format!(
                "the amount is in {amount} and the wallet in {wallet}"
            )),
            StoreError::Database(e) => ApiError::internal(e),
            StoreError::Unavailable(e) => ApiError::internal(e),
        }
    }
}

/// Resolver result type.
pub type ApiResult<T> = Result<T, ApiError>;
