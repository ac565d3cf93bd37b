//! Keeps chargers' local authorization lists as the server wants them: pushes the difference
//! from what a charger holds (or the whole list), and after a charger's boot asks its version
//! (GetLocalListVersion) and sends the whole list again when it lost or changed it.

use actix::Addr;
use serde_json::Value;
use tokio::sync::oneshot;

use super::messages::Execute;
use super::{registry, ChargerActor};
use crate::context::AppContext;
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::store::local_lists::{self, Entries};
use crate::store::StoreError;

/// Per-charger locks: two pushes to one charger (an operator's and a boot's, say) would
/// compute the same next version from the same state.
#[derive(Default)]
pub struct PushLocks(dashmap::DashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>);

impl PushLocks {
    async fn lock(&self, charger_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .0
            .entry(charger_id.to_string())
            .or_default()
            .value()
            .clone();
        lock.lock_owned().await
    }
}

/// Why a push did not leave the charger with the list.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Charger(#[from] CommandError),
    #[error("the charger answered {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the calls reach the charger: through the registry (wherever it is connected), or
/// straight to its actor (from the actor itself, right after its boot, when the registry may
/// still name the connection it replaced).
#[derive(Clone)]
enum Route {
    Registry,
    Actor(Addr<ChargerActor>),
}

async fn run(
    app: &AppContext,
    charger_id: &str,
    route: &Route,
    command: ChargerCommand,
) -> Result<Value, CommandError> {
    match route {
        Route::Registry => registry::execute(app, charger_id, command).await,
        Route::Actor(addr) => {
            let (reply, answer) = oneshot::channel();
            addr.try_send(Execute { command, reply })
                .map_err(|_| CommandError::Offline)?;
            answer.await.unwrap_or(Err(CommandError::Offline))
        }
    }
}

/// Brings a charger's local list up to date; returns the version it holds afterwards. With
/// `full` (or when it never had one) the whole list is sent, else only the difference, and
/// nothing when there is none. A charger that answers VersionMismatch gets the whole list.
pub async fn push(app: &AppContext, charger_id: &str, full: bool) -> Result<i32, PushError> {
    push_by(app, charger_id, full, &Route::Registry).await
}

async fn push_by(
    app: &AppContext,
    charger_id: &str,
    full: bool,
    route: &Route,
) -> Result<i32, PushError> {
    let _one_at_a_time = app.local_list_locks.lock(charger_id).await;
    let held = local_lists::of_charger(&app.db, charger_id).await?;
    let wanted = local_lists::wanted(&app.db, charger_id).await?;
    let whole = full || held.version == 0;
    if !whole && local_lists::difference(&held.entries, &wanted).is_empty() {
        return Ok(held.version);
    }
    let version = held.version.saturating_add(1);
    match send(
        app,
        charger_id,
        route,
        version,
        whole,
        &held.entries,
        &wanted,
    )
    .await?
    {
        answer if answer == "Accepted" => {}
        answer if answer == "VersionMismatch" && !whole => {
            tracing::info!(%charger_id, "local list version mismatch: sending the whole list");
            let answer = send(
                app,
                charger_id,
                route,
                version,
                true,
                &held.entries,
                &wanted,
            )
            .await?;
            if answer != "Accepted" {
                return Err(PushError::Refused(answer));
            }
        }
        answer => return Err(PushError::Refused(answer)),
    }
    local_lists::synced(&app.db, charger_id, version, &wanted).await?;
    tracing::info!(%charger_id, version, entries = wanted.len(), whole, "local list updated");
    Ok(version)
}

/// Sends one SendLocalList; returns the charger's status.
async fn send(
    app: &AppContext,
    charger_id: &str,
    route: &Route,
    version: i32,
    full: bool,
    held: &Entries,
    wanted: &Entries,
) -> Result<String, PushError> {
    let entries = if full {
        local_lists::whole(wanted)
    } else {
        local_lists::difference(held, wanted)
    };
    let command = ChargerCommand::SendLocalList {
        version,
        full,
        entries,
    };
    let reply = run(app, charger_id, route, command).await?;
    Ok(status_of(&reply))
}

fn status_of(reply: &Value) -> String {
    reply
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("missing")
        .to_string()
}

/// After a charger booted: if it should hold a list, asks which version it has and sends the
/// whole list again when that is not the one it accepted last (a reset wiped it, a technician
/// changed it), and the difference when the list changed while it was away.
pub async fn reconcile(app: AppContext, charger_id: String, actor: Addr<ChargerActor>) {
    let route = Route::Actor(actor);
    match local_lists::involved(&app.db, &charger_id).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(%charger_id, error = %e, "local list check after boot failed");
            return;
        }
    }
    let reported = match run(
        &app,
        &charger_id,
        &route,
        ChargerCommand::GetLocalListVersion,
    )
    .await
    {
        Ok(reply) => reply
            .get("listVersion")
            .or_else(|| reply.get("versionNumber"))
            .and_then(Value::as_i64)
            .and_then(|v| i32::try_from(v).ok()),
        Err(e) => {
            tracing::warn!(%charger_id, error = %e, "GetLocalListVersion after boot failed");
            return;
        }
    };
    let Some(reported) = reported else {
        return;
    };
    let held = match local_lists::reported(&app.db, &charger_id, reported).await {
        Ok(()) => local_lists::of_charger(&app.db, &charger_id).await,
        Err(e) => Err(e),
    };
    let held = match held {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(%charger_id, error = %e, "local list state not read");
            return;
        }
    };
    // -1 (1.6) or 0: no list; anything but what it accepted last: not ours
    let full = reported != held.version;
    if full {
        tracing::info!(%charger_id, reported, expected = held.version, "local list lost or changed on the charger: sending it whole");
    }
    if let Err(e) = push_by(&app, &charger_id, full, &route).await {
        tracing::warn!(%charger_id, error = %e, "local list not brought up to date after boot");
    }
}

/// Pushes the difference to each of `chargers` in the background (after a token or a list
/// changed); failures are logged, and the next boot's reconciliation catches up.
pub fn update_in_background(app: AppContext, chargers: Vec<String>) {
    if chargers.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for charger_id in chargers {
            if let Err(e) = push(&app, &charger_id, false).await {
                tracing::warn!(%charger_id, error = %e, "local list update not delivered");
            }
        }
    });
}
