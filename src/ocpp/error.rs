//! CallError codes of OCPP-J 1.6 and 2.0.1 and the failure a handler returns.

use super::OcppVersion;

/// A CallError code, spelled per version by `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallErrorCode {
    /// The action is not known.
    NotImplemented,
    /// The action is known but not supported.
    NotSupported,
    InternalError,
    ProtocolError,
    SecurityError,
    /// The payload is syntactically wrong (`FormationViolation` in 1.6, `FormatViolation` in 2.0.1).
    FormationViolation,
    PropertyConstraintViolation,
    OccurrenceConstraintViolation,
    TypeConstraintViolation,
    GenericError,
    /// 2.0.1 only; 1.6 answers `ProtocolError`.
    MessageTypeNotSupported,
}

impl CallErrorCode {
    pub fn as_str(&self, version: OcppVersion) -> &'static str {
        use CallErrorCode::*;
        match (self, version) {
            (NotImplemented, _) => "NotImplemented",
            (NotSupported, _) => "NotSupported",
            (InternalError, _) => "InternalError",
            (ProtocolError, _) => "ProtocolError",
            (SecurityError, _) => "SecurityError",
            (FormationViolation, OcppVersion::V16) => "FormationViolation",
            (FormationViolation, OcppVersion::V201) => "FormatViolation",
            (PropertyConstraintViolation, _) => "PropertyConstraintViolation",
            // the OCPP 1.6 JSON specification spells it this way
            (OccurrenceConstraintViolation, OcppVersion::V16) => "OccurenceConstraintViolation",
            (OccurrenceConstraintViolation, OcppVersion::V201) => "OccurrenceConstraintViolation",
            (TypeConstraintViolation, _) => "TypeConstraintViolation",
            (GenericError, _) => "GenericError",
            (MessageTypeNotSupported, OcppVersion::V16) => "ProtocolError",
            (MessageTypeNotSupported, OcppVersion::V201) => "MessageTypeNotSupported",
        }
    }
}

/// Why a call could not be answered with a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub code: CallErrorCode,
    pub description: String,
    /// Send nothing: transaction messages that could not be stored are left unanswered so the
    /// charger retries them (they must never get a CallError).
    pub unanswered: bool,
}

impl CallFailure {
    pub fn new(code: CallErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            unanswered: false,
        }
    }

    /// A failure the charger must not be told about (see `unanswered`).
    pub fn unanswered() -> Self {
        Self {
            code: CallErrorCode::InternalError,
            description: String::new(),
            unanswered: true,
        }
    }

    /// A storage or other internal failure; the cause is logged, not sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "OCPP call failed internally");
        Self::new(CallErrorCode::InternalError, "internal error; retry later")
    }
}
