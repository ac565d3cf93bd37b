//! The app's session commands (start, update, end): routed to the replica that holds the
//! session's charger, where the session supervisor hands them to the session's actor. The
//! logic here runs inside that actor (it owns the session) or, for a session whose charger is
//! connected nowhere, in the supervisor of the replica that served the request: then there is
//! no actor anywhere to race with.

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use rand::Rng;
use uuid::Uuid;

use super::messages::{SessionCommand, SessionCommandError, StartSession};
use super::session::{accepted, apply_power_limit, request_stop};
use crate::context::AppContext;
use crate::events::node_rpc::NodeRequest;
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::store::sessions::{
    self, status, NewSession, SessionRecord, TransactionKeys, WithTransaction,
};
use crate::store::{ownership, StoreError};

/// What a command did: the session's new state (for its actor and subscribers) and the answer.
pub struct Applied {
    pub state: Option<SessionRecord>,
    pub answer: Result<SessionRecord, SessionCommandError>,
}

impl Applied {
    fn done(record: SessionRecord) -> Self {
        Self {
            state: Some(record.clone()),
            answer: Ok(record),
        }
    }

    pub fn failed_with(error: SessionCommandError) -> Self {
        Self::failed(error)
    }

    fn failed(error: SessionCommandError) -> Self {
        Self {
            state: None,
            answer: Err(error),
        }
    }
}

/// Runs `command` where the session's charger is: here, on the replica holding it (over its
/// node queue), or here when no replica holds it.
pub async fn route(
    app: &AppContext,
    charger_id: &str,
    command: SessionCommand,
) -> Result<SessionRecord, SessionCommandError> {
    if !app.local_chargers.contains(charger_id) {
        let owner = ownership::owner_of(&app.redis, &app.settings.redis.key_prefix, charger_id)
            .await
            .map_err(|e| SessionCommandError::Unavailable(e.to_string()))?;
        if let Some(owner) = owner.filter(|o| o.node_id != app.settings.node_id) {
            return remote(app, &owner.node_id, command).await;
        }
    }
    app.sessions
        .send(command)
        .await
        .map_err(|e| SessionCommandError::Unavailable(e.to_string()))?
}

/// Runs `command` on replica `node`; the answer names the session, read back here.
async fn remote(
    app: &AppContext,
    node: &str,
    command: SessionCommand,
) -> Result<SessionRecord, SessionCommandError> {
    // a start waits for the charger's answer to RemoteStart: allow for that call's timeout
    let timeout = Duration::from_secs(app.settings.ocpp.call_timeout_secs.saturating_add(5));
    let reply = app
        .rpc
        .request(node, &NodeRequest::Session { command }, timeout)
        .await
        .map_err(SessionCommandError::Charger)?;
    let answer: Result<Uuid, SessionCommandError> = serde_json::from_value(reply)
        .map_err(|e| SessionCommandError::Unavailable(format!("bad node reply: {e}")))?;
    sessions::find(&app.db, answer?)
        .await?
        .ok_or(SessionCommandError::NotFound)
}

/// Applies an Update or End to `record` (a Start is `create` then `begin`).
pub async fn apply(app: &AppContext, found: WithTransaction, command: SessionCommand) -> Applied {
    let WithTransaction { record, keys } = found;
    // a driver's command is checked on the session as it is read here: the API routes a
    // session with an actor on this replica without reading it first
    if command
        .caller()
        .is_some_and(|caller| caller != record.user_id)
    {
        return Applied::failed(SessionCommandError::Forbidden);
    }
    match command {
        SessionCommand::Update {
            max_power_kw,
            max_energy_kwh,
            ..
        } => update(app, record, max_power_kw, max_energy_kwh).await,
        SessionCommand::End { .. } => end(app, record, keys).await,
        SessionCommand::Start(_) => Applied::failed(SessionCommandError::Conflict(
            "the session exists already".into(),
        )),
    }
}

/// Creates the PENDING app session (a connector with an open session is `ConnectorBusy`).
pub async fn create(
    app: &AppContext,
    start: &StartSession,
) -> Result<SessionRecord, SessionCommandError> {
    let remote_start_id = rand::thread_rng().gen_range(1..i32::MAX);
    let pending = sessions::create_pending(
        &app.db,
        &NewSession {
            user_id: start.user_id,
            station_id: start.station_id,
            charger_id: &start.charger_id,
            connector_id: start.connector_id,
            id_tag: &start.id_tag,
            remote_start_id,
            pending_for: ChronoDuration::seconds(start.pending_secs),
        },
    )
    .await?;
    tracing::info!(session_id = %pending.id, charger_id = %start.charger_id, connector_id = start.connector_id, "session requested");
    Ok(pending)
}

/// Asks the charger to start the PENDING session; answers once it answered. A refusal, a
/// timeout or a lost charger fails the session.
pub async fn begin(app: &AppContext, pending: SessionRecord) -> Applied {
    // on a load-managed charger the transaction starts at the charger's minimum and the site's
    // allocation raises it: it never draws more than the site gave before it is counted
    let start_limit = app.site_directory.seat_of(&pending.charger_id).map(|seat| {
        crate::ocpp::command::StartLimit {
            amps: seat.min_amps,
            phases: seat.phases,
        }
    });
    let command = ChargerCommand::RemoteStart {
        connector_id: pending.connector_id,
        id_tag: pending.id_tag.clone(),
        remote_start_id: pending.remote_start_id.unwrap_or_default(),
        start_limit,
    };
    let outcome = super::registry::execute(app, &pending.charger_id, command)
        .await
        .map_err(SessionCommandError::Charger)
        .and_then(|reply| {
            accepted(&reply)
                .map_err(|_| SessionCommandError::Refused("the charger refused to start".into()))
        });
    match outcome {
        // the contract's answer is the PENDING session; what the charger does next (its start
        // may already be stored) reaches the actor, and subscribers, as the writer's snapshot
        Ok(()) => Applied::done(pending),
        Err(error) => {
            let (new_status, reason) = match &error {
                SessionCommandError::Refused(_) => {
                    (status::REJECTED, "the charger refused to start")
                }
                SessionCommandError::Charger(CommandError::Timeout) => {
                    (status::FAILED, "the charger did not answer")
                }
                SessionCommandError::Charger(CommandError::Offline) => {
                    (status::FAILED, "the charger went offline")
                }
                _ => (status::FAILED, "the start request failed"),
            };
            let state = sessions::fail_pending(&app.db, pending.id, new_status, reason)
                .await
                .ok()
                .flatten();
            Applied {
                state,
                answer: Err(error),
            }
        }
    }
}

/// New limits: a power cap reaches the charger first when the session is charging.
pub async fn update(
    app: &AppContext,
    record: SessionRecord,
    max_power_kw: Option<f64>,
    max_energy_kwh: Option<rust_decimal::Decimal>,
) -> Applied {
    if !matches!(
        record.status.as_str(),
        status::PENDING | status::IN_PROGRESS
    ) {
        return Applied::failed(SessionCommandError::Conflict(format!(
            "a {} session cannot be changed",
            record.status
        )));
    }
    if let (Some(kw), status::IN_PROGRESS) = (max_power_kw, record.status.as_str()) {
        if let Err(e) = apply_power_limit(app, &record, kw).await {
            return Applied::failed(SessionCommandError::Charger(e));
        }
    }
    match sessions::set_limits(&app.db, record.id, max_power_kw, max_energy_kwh).await {
        Ok(Some(updated)) => Applied::done(updated),
        Ok(None) => Applied::failed(SessionCommandError::NotFound),
        Err(e) => Applied::failed(e.into()),
    }
}

/// Cancels a PENDING session, asks the charger to stop an IN_PROGRESS one; anything else is
/// answered as it is.
pub async fn end(app: &AppContext, record: SessionRecord, keys: TransactionKeys) -> Applied {
    let result: Result<SessionRecord, SessionCommandError> = match record.status.as_str() {
        status::PENDING => {
            match sessions::fail_pending(
                &app.db,
                record.id,
                status::FAILED,
                "cancelled before the charger started",
            )
            .await
            {
                Ok(Some(ended)) => Ok(ended),
                Ok(None) => reread(app, record).await,
                Err(e) => Err(e.into()),
            }
        }
        status::IN_PROGRESS => request_stop(app, &record, Some(keys))
            .await
            .map_err(|e| match e {
                CommandError::CallError { .. } => {
                    SessionCommandError::Refused("the charger refused to stop".into())
                }
                other => SessionCommandError::Charger(other),
            }),
        _ => Ok(record),
    };
    match result {
        Ok(record) => Applied::done(record),
        Err(e) => Applied::failed(e),
    }
}

async fn reread(
    app: &AppContext,
    record: SessionRecord,
) -> Result<SessionRecord, SessionCommandError> {
    Ok(sessions::find(&app.db, record.id)
        .await
        .map_err(|e: StoreError| SessionCommandError::from(e))?
        .unwrap_or(record))
}
