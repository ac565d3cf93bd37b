//! OCPP-J: RPC framing, version negotiation, CallError codes, payload decoding, meter value
//! normalisation, and one adapter per protocol version (1.6 and 2.0.1) over the `rust-ocpp`
//! types, behind the version switch in `adapter`.

pub mod adapter;
pub mod command;
pub mod error;
pub mod firmware;
pub mod frame;
pub mod fuzz;
pub mod handler;
pub mod meter;
pub mod payload;
pub mod v16;
pub mod v201;
pub mod version;

pub use error::{CallErrorCode, CallFailure};
pub use version::OcppVersion;
