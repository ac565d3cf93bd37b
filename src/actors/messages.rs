//! Every message exchanged by the actors, in one place.

use actix::prelude::*;
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::charger::ChargerActor;
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::store::sessions::SessionRecord;

/// A charger actor announces itself to the registry (newest connection wins).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterCharger {
    pub charger_id: String,
    pub connection_id: Uuid,
    pub addr: Addr<ChargerActor>,
}

/// A charger actor is stopping; ignored unless `connection_id` is the registered connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnregisterCharger {
    pub charger_id: String,
    pub connection_id: Uuid,
}

/// The ids of every charger connected to this replica.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ConnectedChargers;

/// Tells a charger actor that a newer connection for its charger took over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replaced;

/// Asks a charger actor to close its socket (shutdown, drain).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub reason: String,
}

/// A CSMS-initiated call; the answer (or why there is none) goes to `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Execute {
    pub command: ChargerCommand,
    pub reply: oneshot::Sender<Result<Value, CommandError>>,
}

/// A session's committed state changed (or a new session must be tracked): for the session
/// supervisor, which forwards it to the session's actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionChanged {
    pub session: Box<SessionRecord>,
}

/// A session actor is done: its session is finished and persisted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionFinished {
    pub session_id: Uuid,
}

/// Stops a session actor for good (sent by its supervisor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Fault injection: makes a session actor fail as if it had crashed (`panic: false`: it stops,
/// and actix restarts it in place) or hit a bug (`panic: true`: a handler panics and the actor
/// is gone, so its supervisor starts a new one). Either way the session is read again from
/// Postgres. Used by tests, never by the normal flow.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CrashSession {
    pub session_id: Uuid,
    pub panic: bool,
}

/// A session actor is gone without its session having finished (it panicked, or its
/// supervisor stopped it); sent from its `Drop`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionLost {
    pub session_id: Uuid,
    /// Set on the supervisor's second look.
    pub rechecked: bool,
}

/// How many session actors are alive on this replica.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SessionActorCount;

/// Gives the session supervisor the context it starts session actors with.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InitSessions {
    pub app: crate::context::AppContext,
}

/// Gives the registry the context it needs for ownership and routing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InitRegistry {
    pub app: crate::context::AppContext,
}

/// Another replica took the charger over: close the connection `connection_id` if it is ours.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseCharger {
    pub charger_id: String,
    pub connection_id: Uuid,
}

/// Close every charger socket (shutdown): they reconnect to another replica. Returns how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DrainChargers {
    pub reason: String,
}

/// A charger's socket is now held here: its open sessions get their actors here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChargerArrived {
    pub charger_id: String,
}

/// A charger's socket is gone from here: its session actors leave with it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChargerLeft {
    pub charger_id: String,
}

/// What the app asks of a session. Handled by the session supervisor of the replica holding the
/// session's charger, which hands it to the session's actor: the actor is the session's one
/// writer. Travels between replicas over the node queues (hence serde).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum SessionCommand {
    /// Create the PENDING app session and ask the charger to start it.
    Start(StartSession),
    /// New limits for a PENDING or IN_PROGRESS session.
    Update {
        session_id: Uuid,
        max_power_kw: Option<f64>,
        max_energy_kwh: Option<rust_decimal::Decimal>,
        /// The driver asking, checked against the session's owner where it is read (none:
        /// staff, who may change any session).
        #[serde(default)]
        caller: Option<Uuid>,
    },
    /// Cancel a PENDING session or ask the charger to stop an IN_PROGRESS one.
    End {
        session_id: Uuid,
        #[serde(default)]
        caller: Option<Uuid>,
    },
}

impl SessionCommand {
    pub fn session_id(&self) -> Option<Uuid> {
        match self {
            SessionCommand::Start(_) => None,
            SessionCommand::Update { session_id, .. } | SessionCommand::End { session_id, .. } => {
                Some(*session_id)
            }
        }
    }

    /// The driver an Update or End is for (none: staff, or a Start).
    pub fn caller(&self) -> Option<Uuid> {
        match self {
            SessionCommand::Start(_) => None,
            SessionCommand::Update { caller, .. } | SessionCommand::End { caller, .. } => *caller,
        }
    }
}

impl Message for SessionCommand {
    type Result = Result<SessionRecord, SessionCommandError>;
}

/// An app session to start on a charger held by this replica.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StartSession {
    pub user_id: Uuid,
    pub station_id: Uuid,
    pub charger_id: String,
    pub connector_id: i32,
    pub id_tag: String,
    pub pending_secs: i64,
}

/// Why a session command failed; the API maps each to its error code.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum SessionCommandError {
    #[error("{0}")]
    ConnectorBusy(String),
    #[error("{0}")]
    Charger(CommandError),
    /// The charger answered, but not Accepted.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Conflict(String),
    #[error("session not found")]
    NotFound,
    /// The session is another driver's.
    #[error("this session belongs to someone else")]
    Forbidden,
    #[error("{0}")]
    Unavailable(String),
}

impl From<crate::store::StoreError> for SessionCommandError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict(m) => SessionCommandError::ConnectorBusy(m),
            crate::store::StoreError::NotFound => SessionCommandError::NotFound,
            other => SessionCommandError::Unavailable(other.to_string()),
        }
    }
}

/// Load management: something on a site changed; its controller re-allocates (debounced).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Reallocate {
    pub site_id: Uuid,
    /// Skip the debounce (a setting changed by an operator).
    pub now: bool,
}

/// A charger's or session's change, for the site controller governing it to judge.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct SiteSignal {
    pub event: crate::live::LiveEvent,
}

/// The chargers attached to sites changed (attach, detach, a new site): the site supervisor
/// reloads its directory and leases now rather than at its next tick.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SitesChanged;

/// Stops a site controller (its lease was lost or the site is gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopController;
