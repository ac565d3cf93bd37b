//! CSMS-initiated commands in protocol-neutral form; each version's adapter turns them into its
//! own action and payload.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A current limit a remotely started transaction begins under.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartLimit {
    /// Ampere per phase.
    pub amps: f64,
    pub phases: u8,
}

/// The one period of a load-management profile: `amps` per phase (rounded down to the 0.1 A
/// the schema allows) on `phases` phases, from the start.
pub fn current_period(amps: f64, phases: u8) -> Value {
    json!({ "startPeriod": 0, "limit": (amps * 10.0).floor() / 10.0, "numberPhases": phases })
}

/// Something we ask a charger to do. Serialisable: commands for a charger held by another
/// replica travel to it over RabbitMQ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ChargerCommand {
    Reset {
        hard: bool,
    },
    /// Start charging for `id_tag` (RemoteStartTransaction / RequestStartTransaction).
    RemoteStart {
        connector_id: Option<i32>,
        id_tag: String,
        /// 2.0.1 `remoteStartId`, linking the charger's TransactionEvent to our session.
        remote_start_id: i32,
        /// On a load-managed charger: the TxProfile the transaction starts under (the
        /// charger's minimum until the site's allocation replaces it; OCTT TC_K_37).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_limit: Option<StartLimit>,
    },
    /// Stop a running transaction (RemoteStopTransaction / RequestStopTransaction).
    RemoteStop {
        /// 1.6 transactionId.
        transaction_id: Option<i32>,
        /// 2.0.1 transactionId.
        transaction_ref: Option<String>,
    },
    /// Cap a running transaction's power with a TxProfile charging profile.
    LimitPower {
        connector_id: i32,
        transaction_id: Option<i32>,
        transaction_ref: Option<String>,
        max_power_w: f64,
    },
    /// Load management: a current limit in ampere per phase (TxProfile for one transaction,
    /// TxDefaultProfile for transactions that start before they get one, or the charger's
    /// maximum: ChargePointMaxProfile / ChargingStationMaxProfile).
    LimitCurrent {
        scope: LimitScope,
        /// 1.6 connectorId / 2.0.1 evseId; 0 for the whole charger.
        connector_id: i32,
        transaction_id: Option<i32>,
        transaction_ref: Option<String>,
        amps: f64,
        phases: u8,
    },
    /// Any action of the charger's protocol with a payload the adapter validates against the
    /// `rust-ocpp` type for that action (operators' escape hatch and protocol tests).
    Raw {
        action: String,
        payload: Value,
    },
    /// A new HTTP Basic password for the charger (1.6 ChangeConfiguration AuthorizationKey,
    /// hex-encoded as the security whitepaper says; 2.0.1 SetVariables
    /// SecurityCtrlr.BasicAuthPassword).
    SetBasicPassword {
        password: String,
    },
    /// Hold a connector (or, without one, any connector) for `id_tag` until `expires_at`
    /// (ReserveNow). `group_id_tag` lets the driver's other cards use it (1.6 parentIdTag,
    /// 2.0.1 groupIdToken).
    Reserve {
        reservation_id: i32,
        connector_id: Option<i32>,
        /// 2.0.1 only: any EVSE with a connector of this type.
        connector_type: Option<String>,
        id_tag: String,
        group_id_tag: Option<String>,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    /// The charger's local authorization list: all of it (`full`) or the difference, where an
    /// entry without content removes the token (SendLocalList).
    SendLocalList {
        version: i32,
        full: bool,
        entries: Vec<crate::store::local_lists::ListChange>,
    },
    /// Install the firmware at `location` (1.6 UpdateFirmware, or with a signature the
    /// security extension's SignedUpdateFirmware; 2.0.1 UpdateFirmware).
    UpdateFirmware {
        request_id: i32,
        location: String,
        retrieve_at: chrono::DateTime<chrono::Utc>,
        signature: Option<String>,
        signing_certificate: Option<String>,
    },
    /// Upload a log to `location` (1.6 GetDiagnostics, or the security extension's GetLog for
    /// the security log; 2.0.1 GetLog).
    GetLog {
        request_id: i32,
        security: bool,
        location: String,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The version of the charger's local list (GetLocalListVersion).
    GetLocalListVersion,
    /// Release a reservation the charger holds (CancelReservation).
    CancelReservation {
        reservation_id: i32,
    },
    /// Not an OCPP call: the charger's connection is closed (its credential or registration
    /// changed), and it reconnects under the new rules. Answered `{"closed": true}`.
    Disconnect {
        reason: String,
    },
}

/// A timestamp as the commands send it (UTC, whole seconds).
pub fn timestamp(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The `log` object of a GetLog (2.0.1, and the 1.6 security extension): where to upload and
/// the time window.
pub fn log_parameters(
    location: &str,
    from: Option<&chrono::DateTime<chrono::Utc>>,
    to: Option<&chrono::DateTime<chrono::Utc>>,
) -> Value {
    let mut log = serde_json::json!({ "remoteLocation": location });
    if let Some(from) = from {
        log["oldestTimestamp"] = Value::String(timestamp(from));
    }
    if let Some(to) = to {
        log["latestTimestamp"] = Value::String(timestamp(to));
    }
    log
}

/// What a `LimitCurrent` limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LimitScope {
    Transaction,
    NewTransactions,
    Charger,
}

/// Charging profile ids this server installs; sending one again replaces it on the charger.
pub mod profile_ids {
    /// The TxProfile of a session (a cap from `updateSession` or the site's allocation).
    pub const TX: i32 = 9001;
    /// The TxDefaultProfile at the minimum for transactions not allocated yet.
    pub const TX_DEFAULT: i32 = 9002;
    /// The charger's maximum (ChargePointMaxProfile / ChargingStationMaxProfile).
    pub const CHARGER_MAX: i32 = 9003;
}

/// Why a command did not get a result from the charger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "camelCase")]
pub enum CommandError {
    #[error("the charger is offline")]
    Offline,
    #[error("the charger did not answer in time")]
    Timeout,
    #[error("the charger answered with CallError {code}: {description}")]
    CallError { code: String, description: String },
    #[error("the command is not valid for this charger: {0}")]
    Invalid(String),
    #[error("the charger's answer is not valid: {0}")]
    BadReply(String),
    #[error("too many commands are queued for this charger")]
    Busy,
}
