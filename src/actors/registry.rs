//! The registry: charger id -> the actor holding that charger's socket on this replica, plus
//! this replica's side of charger ownership across replicas (Redis leases). It owns the charger
//! actors' lifecycle: a newer connection replaces an older one (here, or on another replica,
//! which is told to let go), a stopping actor is forgotten only if it is still the registered
//! one, and leases are renewed while sockets live. Commands for chargers held elsewhere travel
//! to the holder's node queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::charger::ChargerActor;
use super::messages::{
    ChargerArrived, ChargerLeft, ConnectedChargers, Disconnect, DrainChargers, Execute,
    InitRegistry, RegisterCharger, ReleaseCharger, Replaced, SessionChanged, Shutdown,
    UnregisterCharger,
};
use crate::context::AppContext;
use crate::events::node_rpc::{NodeRequest, RequestHandler};
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::store::batch::{BatchFuture, Batcher};
use crate::store::charger_writer::ChargerWrite;
use crate::store::ownership::{self, Owner};

struct Entry {
    connection_id: Uuid,
    addr: Addr<ChargerActor>,
}

/// Ownership claims of arriving chargers, pipelined to Redis in batches.
type Claims = Batcher<(String, Owner), Result<Option<Owner>, String>>;

/// The charger actors of this replica by charger id, kept by the registry for readers on any
/// thread: a command or a session start finds its charger's actor without a turn in the
/// registry's mailbox (on the main thread, behind every registration and lease renewal).
#[derive(Default)]
pub struct LocalChargers(DashMap<String, Addr<ChargerActor>>);

impl LocalChargers {
    /// The live actor holding `charger_id` here, if any.
    pub fn get(&self, charger_id: &str) -> Option<Addr<ChargerActor>> {
        self.0
            .get(charger_id)
            .map(|a| a.value().clone())
            .filter(|a| a.connected())
    }

    pub fn contains(&self, charger_id: &str) -> bool {
        self.get(charger_id).is_some()
    }
}

#[derive(Default)]
pub struct Registry {
    chargers: HashMap<String, Entry>,
    app: Option<AppContext>,
    claims: Option<Claims>,
    /// What `chargers` holds, for readers elsewhere (`app.local_chargers`).
    directory: Arc<LocalChargers>,
}

impl Registry {
    fn owner(&self, app: &AppContext, connection_id: Uuid) -> Owner {
        Owner {
            node_id: app.settings.node_id.clone(),
            connection_id,
        }
    }

    /// Forgets chargers whose actor is gone without unregistering (it panicked or its arbiter
    /// died): their sessions leave this replica and their leases are released, not renewed.
    fn prune_dead(&mut self, ctx: &mut Context<Self>) {
        let dead: Vec<(String, Uuid)> = self
            .chargers
            .iter()
            .filter(|(_, e)| !e.addr.connected())
            .map(|(id, e)| (id.clone(), e.connection_id))
            .collect();
        for (charger_id, connection_id) in dead {
            tracing::warn!(charger_id = %charger_id, "charger actor died without unregistering: forgetting it");
            // what its `stopping` would have recorded: the charger is offline (if this
            // connection is still its current one)
            if let Some(app) = &self.app {
                let recorded = app.charger_store.write(ChargerWrite::Disconnected {
                    charger_id: charger_id.clone(),
                    connection_id,
                    last_seen: chrono::Utc::now(),
                });
                let id = charger_id.clone();
                actix_rt::spawn(async move {
                    if let Err(e) = recorded.await {
                        tracing::error!(charger_id = %id, error = %e, "could not record a dead actor's disconnection");
                    }
                });
            }
            self.remove(&charger_id, connection_id, ctx);
        }
    }

    /// Forgets a charger held here: its session actors leave and its lease is released.
    fn remove(&mut self, charger_id: &str, connection_id: Uuid, ctx: &mut Context<Self>) {
        self.chargers.remove(charger_id);
        self.directory.0.remove(charger_id);
        let Some(app) = self.app.clone() else { return };
        app.sessions.do_send(ChargerLeft {
            charger_id: charger_id.to_string(),
        });
        let owner = self.owner(&app, connection_id);
        let charger_id = charger_id.to_string();
        ctx.spawn(
            async move {
                let _ = ownership::release(
                    &app.redis,
                    &app.settings.redis.key_prefix,
                    &charger_id,
                    &owner,
                )
                .await;
            }
            .into_actor(self),
        );
    }

    fn renew_leases(&mut self, ctx: &mut Context<Self>) {
        self.prune_dead(ctx);
        let Some(app) = self.app.clone() else { return };
        let held: Vec<(String, Owner)> = self
            .chargers
            .iter()
            .map(|(id, e)| (id.clone(), self.owner(&app, e.connection_id)))
            .collect();
        let lease = app.settings.cluster.lease_ms;
        ctx.spawn(
            async move {
                let prefix = app.settings.redis.key_prefix.clone();
                let _ = ownership::heartbeat_node(&app.redis, &prefix, &app.settings.node_id, held.len(), lease).await;
                ownership::renew(&app.redis, &prefix, &held, lease).await
            }
            .into_actor(self)
            .map(|result, act, _| match result {
                Ok(lost) => {
                    for id in lost {
                        if let Some(entry) = act.chargers.get(&id) {
                            tracing::info!(charger_id = %id, "ownership taken over by another replica: closing");
                            entry.addr.do_send(Replaced);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not renew charger leases"),
            }),
        );
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // registrations of every API worker's chargers pass through here: keep the mailbox roomy
        ctx.set_mailbox_capacity(16384);
    }

    /// A stopped registry routes nothing here: commands go to whichever replica holds the
    /// charger, or fail as offline.
    fn stopped(&mut self, _: &mut Self::Context) {
        self.directory.0.clear();
    }
}

impl Handler<InitRegistry> for Registry {
    type Result = ();

    fn handle(&mut self, msg: InitRegistry, ctx: &mut Self::Context) {
        let every = Duration::from_millis((msg.app.settings.cluster.lease_ms / 3).max(100));
        let app = msg.app.clone();
        self.claims = Some(Batcher::start(
            1_000,
            None,
            move |claims: Vec<(String, Owner)>| {
                let app = app.clone();
                Box::pin(async move {
                    let n = claims.len();
                    match ownership::claim_many(
                        &app.redis,
                        &app.settings.redis.key_prefix,
                        &claims,
                        app.settings.cluster.lease_ms,
                    )
                    .await
                    {
                        Ok(previous) => previous.into_iter().map(Ok).collect(),
                        Err(e) => vec![Err(e); n],
                    }
                }) as BatchFuture<_>
            },
        ));
        self.directory = msg.app.local_chargers.clone();
        for (charger_id, entry) in &self.chargers {
            self.directory
                .0
                .insert(charger_id.clone(), entry.addr.clone());
        }
        self.app = Some(msg.app);
        ctx.run_interval(every, |act, ctx| act.renew_leases(ctx));
    }
}

impl Handler<RegisterCharger> for Registry {
    type Result = ();

    fn handle(&mut self, msg: RegisterCharger, ctx: &mut Self::Context) {
        let entry = Entry {
            connection_id: msg.connection_id,
            addr: msg.addr.clone(),
        };
        if let Some(old) = self.chargers.insert(msg.charger_id.clone(), entry) {
            if old.connection_id != msg.connection_id {
                tracing::info!(charger_id = %msg.charger_id, "newer connection replaces the old one");
                old.addr.do_send(Replaced);
            }
        }
        let Some(app) = self.app.clone() else { return };
        let owner = self.owner(&app, msg.connection_id);
        let charger_id = msg.charger_id.clone();
        app.sessions.do_send(ChargerArrived {
            charger_id: charger_id.clone(),
        });
        // readers see the charger only once its arrival is queued for the session supervisor:
        // a start routed here through the map finds the charger connected there too
        self.directory.0.insert(charger_id.clone(), msg.addr);
        let Some(claims) = &self.claims else { return };
        let claimed = claims.submit((charger_id.clone(), owner.clone()));
        ctx.spawn(
            async move {
                match claimed.await.unwrap_or_else(|| Err("the claim batcher stopped".into())) {
                    Ok(Some(previous)) if previous.node_id != owner.node_id => {
                        tracing::info!(charger_id = %charger_id, previous = %previous.node_id, "taking the charger over from another replica");
                        let release = NodeRequest::Release {
                            charger_id,
                            connection_id: previous.connection_id,
                        };
                        if let Err(e) = app.rpc.notify(&previous.node_id, &release).await {
                            tracing::warn!(error = %e, "could not tell the previous replica to let go (its lease will tell it)");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(charger_id = %charger_id, error = %e, "could not record ownership"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<UnregisterCharger> for Registry {
    type Result = ();

    fn handle(&mut self, msg: UnregisterCharger, ctx: &mut Self::Context) {
        let current = self
            .chargers
            .get(&msg.charger_id)
            .is_some_and(|e| e.connection_id == msg.connection_id);
        if !current {
            return;
        }
        self.remove(&msg.charger_id, msg.connection_id, ctx);
    }
}

impl Handler<ReleaseCharger> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ReleaseCharger, _: &mut Self::Context) {
        if let Some(entry) = self.chargers.get(&msg.charger_id) {
            if entry.connection_id == msg.connection_id {
                tracing::info!(charger_id = %msg.charger_id, "a newer connection on another replica took over: closing");
                entry.addr.do_send(Replaced);
            }
        }
    }
}

impl Handler<DrainChargers> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: DrainChargers, _: &mut Self::Context) -> usize {
        for entry in self.chargers.values() {
            entry.addr.do_send(Disconnect {
                reason: msg.reason.clone(),
            });
        }
        self.chargers.len()
    }
}

impl Handler<Shutdown> for Registry {
    type Result = ();

    /// Stops routing (the end of a drain); `/healthz` reports a stopped registry.
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<ConnectedChargers> for Registry {
    type Result = Vec<String>;

    fn handle(&mut self, _: ConnectedChargers, _: &mut Self::Context) -> Self::Result {
        self.chargers.keys().cloned().collect()
    }
}

/// Runs `command` on a charger held by this replica.
async fn execute_local(
    app: &AppContext,
    charger_id: &str,
    command: ChargerCommand,
    timeout: Duration,
) -> Option<Result<Value, CommandError>> {
    let addr = app.local_chargers.get(charger_id)?;
    let (reply, answer) = oneshot::channel();
    if let Err(e) = addr.try_send(Execute { command, reply }) {
        return Some(Err(match e {
            SendError::Full(_) => CommandError::Busy,
            SendError::Closed(_) => CommandError::Offline,
        }));
    }
    // the charger actor bounds the wait by the call timeout; this is a safety net
    Some(
        match tokio::time::timeout(timeout + Duration::from_secs(5), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CommandError::Offline),
            Err(_) => Err(CommandError::Timeout),
        },
    )
}

/// Runs `command` on the charger wherever it is connected: here, or on the replica that holds
/// it (through that replica's node queue). Not connected anywhere: `Offline`.
pub async fn execute(
    app: &AppContext,
    charger_id: &str,
    command: ChargerCommand,
) -> Result<Value, CommandError> {
    let timeout = Duration::from_secs(app.settings.ocpp.call_timeout_secs);
    if let Some(result) = execute_local(app, charger_id, command.clone(), timeout).await {
        return result;
    }
    let owner = ownership::owner_of(&app.redis, &app.settings.redis.key_prefix, charger_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "ownership look-up failed");
            CommandError::Offline
        })?;
    match owner {
        Some(owner) if owner.node_id != app.settings.node_id => {
            app.rpc
                .execute(&owner.node_id, charger_id, command, timeout)
                .await
        }
        _ => Err(CommandError::Offline),
    }
}

/// Answers the node requests other replicas send this one.
pub struct NodeRequests {
    pub app: AppContext,
}

impl RequestHandler for NodeRequests {
    fn handle(
        &self,
        request: NodeRequest,
    ) -> BoxFuture<'static, Option<Result<Value, CommandError>>> {
        let app = self.app.clone();
        Box::pin(async move {
            match request {
                NodeRequest::Execute {
                    charger_id,
                    command,
                } => {
                    let timeout = Duration::from_secs(app.settings.ocpp.call_timeout_secs);
                    Some(
                        execute_local(&app, &charger_id, command, timeout)
                            .await
                            .unwrap_or(Err(CommandError::Offline)),
                    )
                }
                NodeRequest::Release {
                    charger_id,
                    connection_id,
                } => {
                    app.registry.do_send(ReleaseCharger {
                        charger_id,
                        connection_id,
                    });
                    None
                }
                NodeRequest::Session { command } => {
                    let answer = app
                        .sessions
                        .send(command)
                        .await
                        .unwrap_or_else(|e| {
                            Err(crate::actors::messages::SessionCommandError::Unavailable(
                                e.to_string(),
                            ))
                        })
                        .map(|record| record.id);
                    Some(
                        serde_json::to_value(answer)
                            .map_err(|e| CommandError::Invalid(e.to_string())),
                    )
                }
                NodeRequest::SessionChanged { session_id } => {
                    match crate::store::sessions::find(&app.db, session_id).await {
                        Ok(Some(record)) => app.sessions.do_send(SessionChanged {
                            session: Box::new(record),
                        }),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(%session_id, error = %e, "could not read a changed session")
                        }
                    }
                    None
                }
            }
        })
    }
}
