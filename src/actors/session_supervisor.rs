//! The session supervisor: its own hierarchy, separate from the charger actors. It starts one
//! supervised `SessionActor` per open session of the chargers this replica holds, and only for
//! those: an actor lives where its charger's socket is. Actors arrive with their charger
//! (rehydrated from Postgres when it connects here) and leave when it goes. A state change for
//! a session whose charger is held by another replica is passed on to that replica, never
//! turned into an actor here.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use uuid::Uuid;

use super::messages::{
    ChargerArrived, ChargerLeft, CrashSession, InitSessions, SessionActorCount, SessionChanged,
    SessionFinished, SessionLost, Shutdown,
};
use super::messages::{SessionCommand, SessionCommandError};
use super::session::{Begin, Fail, SessionActor};
use super::session_commands;
use crate::context::AppContext;
use crate::live::LiveEvent;
use crate::ocpp::command::CommandError;
use crate::store::sessions;
use crate::store::sessions::SessionRecord;

/// How often PENDING sessions without a live actor (e.g. after a crash elsewhere) are expired.
const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How long a finished session is remembered, so a late open snapshot (an `endSession`
/// STOPPING racing the charger's stop) cannot bring its actor back.
const FINISHED_MEMORY: Duration = Duration::from_secs(600);

/// The sessions tracked on this replica (those with an actor here), with their chargers and
/// drivers: the supervisor's own record of them, readable from any thread, so the API sends a
/// command for one of them straight to its actor.
#[derive(Default)]
pub struct LocalSessions(dashmap::DashMap<Uuid, LocalSession>);

/// What the API needs of a session whose actor runs here.
#[derive(Clone)]
pub struct LocalSession {
    pub charger_id: String,
    /// The session's driver (a session's owner never changes).
    pub user_id: Uuid,
}

impl LocalSessions {
    /// The charger and driver of `session_id`, if its actor runs here.
    pub fn get(&self, session_id: Uuid) -> Option<LocalSession> {
        self.0.get(&session_id).map(|c| c.value().clone())
    }
}

#[derive(Default)]
pub struct SessionSupervisor {
    app: Option<AppContext>,
    sessions: HashMap<Uuid, Addr<SessionActor>>,
    /// Sessions whose actor finished recently, with when.
    finished: HashMap<Uuid, Instant>,
    /// Chargers whose socket this replica holds (told by the registry).
    local: HashSet<String>,
    /// Sessions a command was applied to here without an actor, with when: their writer's
    /// snapshot may predate what the command wrote.
    touched: HashMap<Uuid, Instant>,
}

impl SessionSupervisor {
    /// Tracks `record`'s session (in `LocalSessions`, which the supervisor keeps).
    fn track(&self, record: &SessionRecord) {
        if let Some(app) = &self.app {
            app.local_sessions.0.insert(
                record.id,
                LocalSession {
                    charger_id: record.charger_id.clone(),
                    user_id: record.user_id,
                },
            );
        }
    }

    fn untrack(&self, id: &Uuid) {
        if let Some(app) = &self.app {
            app.local_sessions.0.remove(id);
        }
    }

    /// Starts the session's actor, unless its charger is not held here (or it runs already);
    /// returns the actor it started. The actor reads its session first unless `record` was
    /// just written here (`fresh`).
    fn spawn_actor(
        &mut self,
        record: sessions::SessionRecord,
        fresh: bool,
        ctx: &mut Context<Self>,
    ) -> Option<Addr<SessionActor>> {
        let app = self.app.clone()?;
        // a dead address (its actor panicked) does not count as running
        let running = self.sessions.get(&record.id).is_some_and(|a| a.connected());
        if !self.local.contains(&record.charger_id)
            || running
            || self.finished.contains_key(&record.id)
        {
            return None;
        }
        let me = ctx.address();
        let id = record.id;
        self.track(&record);
        let addr = Supervisor::start(move |_| {
            let actor = SessionActor::new(record, app, me);
            if fresh {
                actor.fresh()
            } else {
                actor
            }
        });
        self.sessions.insert(id, addr.clone());
        Some(addr)
    }
}

impl Actor for SessionSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16384);
    }
}

impl Handler<InitSessions> for SessionSupervisor {
    type Result = ();

    fn handle(&mut self, msg: InitSessions, ctx: &mut Self::Context) {
        // no rehydration here: a session's actor comes back when its charger connects
        self.app = Some(msg.app);
        ctx.run_interval(EXPIRY_SWEEP_INTERVAL, |act, ctx| {
            act.finished.retain(|_, at| at.elapsed() < FINISHED_MEMORY);
            act.touched.retain(|_, at| at.elapsed() < FINISHED_MEMORY);
            let Some(app) = act.app.clone() else {
                return;
            };
            ctx.spawn(
                async move {
                    sessions::expire_pending(&app.db)
                        .await
                        .map(|ids| (ids, app))
                }
                .into_actor(act)
                .map(|result, _, _| {
                    if let Ok((ids, app)) = result {
                        for id in ids {
                            app.live.publish(LiveEvent::session(id));
                        }
                    }
                }),
            );
        });
    }
}

impl Handler<SessionChanged> for SessionSupervisor {
    type Result = ();

    fn handle(&mut self, msg: SessionChanged, ctx: &mut Self::Context) {
        let id = msg.session.id;
        match self.sessions.get(&id) {
            Some(addr) if addr.connected() => addr.do_send(msg),
            // a stale open snapshot of a session that already ended here
            _ if msg.session.is_open() && self.finished.contains_key(&id) => {}
            // A command applied here while the session had no actor (a new energy cap,
            // STOPPING) sends no SessionChanged, so this record may be older than what Postgres
            // holds: read back before deciding. Not needed for the snapshot of the commit that
            // created the session (a charger's start: `updated_at` is still its `created_at`,
            // and every later write of an open session is stamped later, by clock_timestamp()
            // or by now() in a transaction that began after that commit) when no command reached
            // it here: the charger's next message, and its snapshot, come after this one. That
            // spares a read of every session a charger starts.
            _ if msg.session.is_open() && self.local.contains(&msg.session.charger_id) => {
                let fresh = msg.session.updated_at == msg.session.created_at
                    && !self.touched.contains_key(&id);
                self.spawn_actor(*msg.session, fresh, ctx);
            }
            _ if msg.session.is_open() => {
                // the charger is held elsewhere (or nowhere): its replica owns the actor
                if let Some(app) = &self.app {
                    app.live.publish(LiveEvent::session(id));
                    let app = app.clone();
                    actix_rt::spawn(async move {
                        forward_to_holder(&app, &msg.session.charger_id, id).await
                    });
                }
            }
            _ => {
                // finished before an actor existed here: a late open snapshot (or the read of
                // an arriving charger's open sessions) must not start one; subscribers still
                // hear about it
                self.finished.insert(id, Instant::now());
                if let Some(app) = &self.app {
                    app.live.publish(LiveEvent::session(id));
                }
            }
        }
    }
}

impl Handler<ChargerArrived> for SessionSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ChargerArrived, ctx: &mut Self::Context) {
        self.local.insert(msg.charger_id.clone());
        let Some(app) = self.app.clone() else { return };
        ctx.spawn(
            async move { app.charger_store.open_sessions(&msg.charger_id).await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    // spawns nothing if the charger left again meanwhile
                    Ok(open) => {
                        for record in open {
                            act.spawn_actor(record, false, ctx);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not load the charger's open sessions")
                    }
                }),
        );
    }
}

impl Handler<ChargerLeft> for SessionSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ChargerLeft, _: &mut Self::Context) {
        self.local.remove(&msg.charger_id);
        let leaving: Vec<Uuid> = self
            .app
            .iter()
            .flat_map(|app| app.local_sessions.0.iter())
            .filter(|tracked| tracked.value().charger_id == msg.charger_id)
            .map(|tracked| *tracked.key())
            .collect();
        for id in leaving {
            self.untrack(&id);
            if let Some(addr) = self.sessions.remove(&id) {
                addr.do_send(Shutdown);
            }
        }
    }
}

impl Handler<SessionFinished> for SessionSupervisor {
    type Result = ();

    fn handle(&mut self, msg: SessionFinished, _: &mut Self::Context) {
        // dropping the last address lets the supervised actor stop for good
        self.untrack(&msg.session_id);
        self.finished.insert(msg.session_id, Instant::now());
        if let Some(addr) = self.sessions.remove(&msg.session_id) {
            addr.do_send(Shutdown);
        }
    }
}

impl Handler<CrashSession> for SessionSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: CrashSession, _: &mut Self::Context) -> bool {
        match self.sessions.get(&msg.session_id) {
            Some(addr) => {
                addr.do_send(Fail { panic: msg.panic });
                true
            }
            None => false,
        }
    }
}

impl Handler<SessionLost> for SessionSupervisor {
    type Result = ();

    /// Replaces an actor that is gone while its session is still tracked here (a panic ended
    /// it): the new one starts from the session as Postgres holds it, and decides expiry and caps
    /// on that. An actor stopped on purpose (its charger left, the replica stops) is no longer
    /// tracked, so nothing comes back.
    fn handle(&mut self, msg: SessionLost, ctx: &mut Self::Context) {
        let id = msg.session_id;
        let Some(addr) = self.sessions.get(&id) else {
            return;
        };
        if addr.connected() {
            // the address of an actor whose Drop has just run may close a moment later (the
            // actor and its mailbox are dropped one after the other): look again once
            if !msg.rechecked {
                ctx.notify_later(
                    SessionLost {
                        session_id: id,
                        rechecked: true,
                    },
                    Duration::from_millis(100),
                );
            }
            return;
        }
        tracing::error!(session_id = %id, "session actor died; starting a new one from Postgres");
        let Some(app) = self.app.clone() else { return };
        ctx.spawn(
            async move { sessions::find(&app.db, id).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    // only while the dead address is still the one tracked: the charger may have
                    // left (entry gone) or a new actor started meanwhile
                    let dead = act.sessions.get(&id).is_some_and(|a| !a.connected());
                    if !dead {
                        return;
                    }
                    act.sessions.remove(&id);
                    match result {
                        // the new actor reads the session once more before deciding: a command
                        // applied meanwhile without an actor sends no SessionChanged
                        Ok(Some(record)) if record.is_open() => {
                            act.spawn_actor(record, false, ctx);
                        }
                        Ok(_) => {
                            act.untrack(&id);
                            act.finished.insert(id, Instant::now());
                        }
                        Err(e) => {
                            tracing::error!(session_id = %id, error = %e, "could not read the session of a dead actor; it gets an actor at its next change");
                        }
                    }
                }),
        );
    }
}

impl Handler<Shutdown> for SessionSupervisor {
    type Result = ();

    /// Stops the supervisor and, with it, every session actor of this replica.
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        for addr in self.sessions.values() {
            addr.do_send(Shutdown);
        }
        if let Some(app) = &self.app {
            app.local_sessions.0.clear();
        }
        ctx.stop();
    }
}

/// Start an actor for a session just created here (if its charger is still held here).
struct Adopt(sessions::SessionRecord);

impl Message for Adopt {
    type Result = Option<Addr<SessionActor>>;
}

impl Handler<Adopt> for SessionSupervisor {
    type Result = Option<Addr<SessionActor>>;

    fn handle(&mut self, msg: Adopt, ctx: &mut Self::Context) -> Self::Result {
        // the charger's snapshot may have started the actor already: that one asks the charger
        match self.sessions.get(&msg.0.id) {
            Some(actor) if actor.connected() => Some(actor.clone()),
            // the session was created by this request a moment ago: no need to read it again
            _ => self.spawn_actor(msg.0, true, ctx),
        }
    }
}

impl Handler<SessionCommand> for SessionSupervisor {
    type Result = ResponseFuture<Result<SessionRecord, SessionCommandError>>;

    /// A start creates the session and its actor here, which asks the charger; an update or an
    /// end goes to the session's actor. Without an actor here (its charger is connected
    /// nowhere, or the session is over) the command is applied here: no actor can race it.
    fn handle(&mut self, msg: SessionCommand, ctx: &mut Self::Context) -> Self::Result {
        let Some(app) = self.app.clone() else {
            return Box::pin(async {
                Err(SessionCommandError::Unavailable(
                    "the session supervisor is not ready".into(),
                ))
            });
        };
        match msg {
            SessionCommand::Start(start) => {
                if !self.local.contains(&start.charger_id) {
                    return Box::pin(async {
                        Err(SessionCommandError::Charger(CommandError::Offline))
                    });
                }
                let me = ctx.address();
                Box::pin(async move {
                    let pending = session_commands::create(&app, &start).await?;
                    app.live.publish(LiveEvent::session(pending.id));
                    match me.send(Adopt(pending.clone())).await.ok().flatten() {
                        Some(actor) => actor
                            .send(Begin)
                            .await
                            .map_err(|e| SessionCommandError::Unavailable(e.to_string()))?,
                        // the charger left meanwhile: the start fails here
                        None => {
                            let applied = session_commands::begin(&app, pending).await;
                            publish(&app, &applied);
                            applied.answer
                        }
                    }
                })
            }
            command => {
                let id = command.session_id().unwrap_or_default();
                let actor = self.sessions.get(&id).filter(|a| a.connected()).cloned();
                if actor.is_none() {
                    self.touched.insert(id, Instant::now());
                }
                Box::pin(async move {
                    if let Some(actor) = actor {
                        return actor
                            .send(command)
                            .await
                            .map_err(|e| SessionCommandError::Unavailable(e.to_string()))?;
                    }
                    let found = sessions::find_with_transaction(&app.db, id)
                        .await?
                        .ok_or(SessionCommandError::NotFound)?;
                    let applied = session_commands::apply(&app, found, command).await;
                    publish(&app, &applied);
                    applied.answer
                })
            }
        }
    }
}

/// Subscribers hear of a change made without an actor.
fn publish(app: &AppContext, applied: &session_commands::Applied) {
    if let Some(state) = &applied.state {
        app.live.publish(LiveEvent::session(state.id));
    }
}

/// Tells the replica holding `charger_id` that session `session_id` changed, so that its actor
/// (started there if need be) reads it. Nothing to do when no replica holds the charger: the
/// actor starts when the charger connects.
async fn forward_to_holder(app: &AppContext, charger_id: &str, session_id: Uuid) {
    let owner =
        crate::store::ownership::owner_of(&app.redis, &app.settings.redis.key_prefix, charger_id)
            .await;
    match owner {
        Ok(Some(owner)) if owner.node_id != app.settings.node_id => {
            let request = crate::events::node_rpc::NodeRequest::SessionChanged { session_id };
            if let Err(e) = app.rpc.notify(&owner.node_id, &request).await {
                tracing::warn!(%session_id, error = %e, "could not tell the charger's replica about a session change");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(%session_id, error = %e, "ownership look-up failed"),
    }
}

impl Handler<SessionActorCount> for SessionSupervisor {
    type Result = usize;

    fn handle(&mut self, _: SessionActorCount, _: &mut Self::Context) -> usize {
        self.sessions.values().filter(|a| a.connected()).count()
    }
}
