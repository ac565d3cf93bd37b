//! `SessionActor`: one per open charging session, holding its live state (status, energy,
//! power, limits). It throttles live updates to subscribers (at most one per second between
//! status changes), stops the session when `maxEnergyKwh` is reached, applies a power limit once
//! charging starts, and fails a PENDING session its charger never starts. It is `Supervised`:
//! after a failure it is restarted and reloads its session from Postgres.

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use rust_decimal::prelude::ToPrimitive;

use super::messages::{
    SessionChanged, SessionCommand, SessionCommandError, SessionFinished, SessionLost, Shutdown,
};
use super::session_commands::{self, Applied};
use super::session_supervisor::SessionSupervisor;
use crate::context::AppContext;
use crate::live::LiveEvent;
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::store::sessions::{self, status, SessionRecord, TransactionKeys};

/// Minimum spacing of live updates that are not status changes.
const LIVE_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

pub struct SessionActor {
    record: SessionRecord,
    app: AppContext,
    supervisor: Addr<SessionSupervisor>,
    last_published: Option<Instant>,
    trailing_publish: Option<SpawnHandle>,
    expiry: Option<SpawnHandle>,
    stop_requested: bool,
    finished: bool,
    /// Set at creation and by `restarting`: `started` reloads the session before deciding
    /// anything.
    reload: bool,
}

impl SessionActor {
    pub fn new(
        record: SessionRecord,
        app: AppContext,
        supervisor: Addr<SessionSupervisor>,
    ) -> Self {
        // counted while the actor exists, not while it runs: a restart keeps it, a panic drops it
        app.metrics.sessions_active.inc();
        Self {
            record,
            app,
            supervisor,
            last_published: None,
            trailing_publish: None,
            expiry: None,
            stop_requested: false,
            finished: false,
            // the snapshot it was started with may be older than what Postgres has now (a
            // charger's stop committed while the charger's open sessions were being read):
            // every actor reads its session once before deciding anything
            reload: true,
        }
    }

    /// For a record this process has just written: no need to read it back before deciding.
    pub fn fresh(mut self) -> Self {
        self.reload = false;
        self
    }

    fn publish_now(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.trailing_publish.take() {
            ctx.cancel_future(handle);
        }
        self.last_published = Some(Instant::now());
        self.app.live.publish(LiveEvent::Session {
            id: self.record.id,
            snapshot: Some(std::sync::Arc::new(self.record.clone())),
        });
    }

    /// Publishes now if the last update is a second old, else once that second is over.
    fn publish_throttled(&mut self, ctx: &mut Context<Self>) {
        match self.last_published {
            Some(at) if at.elapsed() < LIVE_UPDATE_INTERVAL => {
                if self.trailing_publish.is_none() {
                    let wait = LIVE_UPDATE_INTERVAL.saturating_sub(at.elapsed());
                    self.trailing_publish = Some(ctx.run_later(wait, |act, ctx| {
                        act.trailing_publish = None;
                        act.publish_now(ctx);
                    }));
                }
            }
            _ => self.publish_now(ctx),
        }
    }

    fn on_state(&mut self, record: SessionRecord, ctx: &mut Context<Self>) {
        let status_changed = record.status != self.record.status;
        self.record = record;
        if status_changed {
            self.publish_now(ctx);
        } else {
            self.publish_throttled(ctx);
        }
        if !self.record.is_open() {
            self.finish(ctx);
            return;
        }
        self.schedule_expiry(ctx);
        // the API applies a new power cap itself; here it is applied when charging starts
        let just_started = status_changed && self.record.status == status::IN_PROGRESS;
        self.enforce_limits(ctx, just_started);
    }

    fn schedule_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.expiry.take() {
            ctx.cancel_future(handle);
        }
        if self.record.status != status::PENDING {
            return;
        }
        let Some(expires_at) = self.record.pending_expires_at else {
            return;
        };
        let wait = (expires_at - Utc::now()).to_std().unwrap_or_default();
        self.expiry = Some(ctx.run_later(wait, |act, ctx| {
            act.expiry = None;
            let (db, id) = (act.app.db.clone(), act.record.id);
            ctx.spawn(
                async move {
                    sessions::fail_pending(
                        &db,
                        id,
                        status::FAILED,
                        "the charger did not start the session in time",
                    )
                    .await
                }
                .into_actor(act)
                .map(|result, act, ctx| match result {
                    Ok(Some(record)) => {
                        tracing::info!(session_id = %record.id, "pending session expired");
                        act.on_state(record, ctx);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "could not expire a pending session"),
                }),
            );
        }));
    }

    /// Stops at `maxEnergyKwh`; with `apply_power`, caps power at `maxPowerKw`.
    fn enforce_limits(&mut self, ctx: &mut Context<Self>, apply_power: bool) {
        if self.record.status != status::IN_PROGRESS {
            return;
        }
        if let Some(max) = self.record.max_energy_kwh {
            if self.record.energy_kwh >= max && !self.stop_requested {
                self.stop_requested = true;
                tracing::info!(session_id = %self.record.id, "energy limit reached: stopping");
                let (app, record) = (self.app.clone(), self.record.clone());
                ctx.spawn(async move { request_stop(&app, &record, None).await }.into_actor(self).map(
                    |result, act, ctx| match result {
                        Ok(record) => act.on_state(record, ctx),
                        Err(e) => {
                            tracing::warn!(session_id = %act.record.id, error = %e, "automatic stop failed; retrying on the next reading");
                            act.stop_requested = false;
                        }
                    },
                ));
            }
        }
        if let (Some(max_kw), true) = (self.record.max_power_kw, apply_power) {
            let (app, record) = (self.app.clone(), self.record.clone());
            ctx.spawn(async move { apply_power_limit(&app, &record, max_kw).await }.into_actor(self).map(
                |result, act, _| {
                    if let Err(e) = result {
                        tracing::warn!(session_id = %act.record.id, error = %e, "power limit not applied");
                    }
                },
            ));
        }
    }

    fn finish(&mut self, _ctx: &mut Context<Self>) {
        if !self.finished {
            self.finished = true;
            self.supervisor.do_send(SessionFinished {
                session_id: self.record.id,
            });
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if !std::mem::take(&mut self.reload) {
            self.resume(ctx);
            return;
        }
        // after a restart the in-memory record may be stale: reload it first (the mailbox waits),
        // then decide expiry and caps on what Postgres says
        let (db, id) = (self.app.db.clone(), self.record.id);
        ctx.wait(async move { sessions::find(&db, id).await }.into_actor(self).map(
            |result, act, ctx| {
                match result {
                    Ok(Some(record)) => act.record = record,
                    Ok(None) => {
                        tracing::warn!(session_id = %act.record.id, "restarted session no longer exists");
                        act.finish(ctx);
                        return;
                    }
                    Err(e) => tracing::error!(session_id = %act.record.id, error = %e, "could not reload the session; resuming on the last known state"),
                }
                act.resume(ctx);
            },
        ));
    }
}

impl Drop for SessionActor {
    /// Runs when the actor is gone for good: stopped by its supervisor, or unwound by a panic in
    /// one of its handlers (actix restarts a supervised actor that stops, but a panic ends its
    /// task). Unless its session finished, the supervisor hears of it and starts a new actor,
    /// which reads the session from Postgres.
    fn drop(&mut self) {
        self.app.metrics.sessions_active.dec();
        if !self.finished {
            self.supervisor.do_send(SessionLost {
                session_id: self.record.id,
                rechecked: false,
            });
        }
    }
}

impl SessionActor {
    /// Takes charge of the session as it is now: expiry scheduled, limits enforced.
    fn resume(&mut self, ctx: &mut Context<Self>) {
        if self.record.is_open() {
            self.schedule_expiry(ctx);
            // a restarted actor does not know whether the cap reached the charger: apply it again
            self.enforce_limits(ctx, true);
        } else {
            self.finish(ctx);
        }
    }
}

impl Supervised for SessionActor {
    /// Forgets timers and pending decisions; `started` then reloads the session from Postgres,
    /// the source of truth, before running again.
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(session_id = %self.record.id, "session actor restarting from Postgres");
        self.trailing_publish = None;
        self.expiry = None;
        self.stop_requested = false;
        self.reload = true;
    }
}

impl SessionActor {
    /// Takes a committed snapshot of the session. The charger path and the commands may race:
    /// an older snapshot never wins, and an open one (STOPPING from endSession) never replaces
    /// a closed one or holds back the final one (COMPLETED from the charger's stop).
    fn absorb(&mut self, record: SessionRecord, ctx: &mut Context<Self>) {
        let (closed_now, closes) = (!self.record.is_open(), !record.is_open());
        if closed_now || (!closes && record.updated_at < self.record.updated_at) {
            return;
        }
        self.on_state(record, ctx);
    }
}

impl Handler<SessionChanged> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: SessionChanged, ctx: &mut Self::Context) {
        self.absorb(*msg.session, ctx);
    }
}

/// Ask the charger to start this (PENDING, app-created) session; answered once it answered.
pub struct Begin;

impl Message for Begin {
    type Result = Result<SessionRecord, SessionCommandError>;
}

/// Commands run one at a time (`AtomicResponse`: the mailbox waits), so an end cannot overtake
/// a start whose RemoteStart is still in flight; snapshots that arrive meanwhile are applied
/// after it.
impl Handler<Begin> for SessionActor {
    type Result = AtomicResponse<Self, Result<SessionRecord, SessionCommandError>>;

    fn handle(&mut self, _: Begin, _: &mut Self::Context) -> Self::Result {
        let (app, record) = (self.app.clone(), self.record.clone());
        AtomicResponse::new(Box::pin(
            async move { session_commands::begin(&app, record).await }
                .into_actor(self)
                .map(|applied, act, ctx| act.settle(applied, ctx)),
        ))
    }
}

impl Handler<SessionCommand> for SessionActor {
    type Result = AtomicResponse<Self, Result<SessionRecord, SessionCommandError>>;

    /// Update and End: decided on the session as Postgres has it now (the charger's last
    /// message may have changed it a moment ago).
    fn handle(&mut self, msg: SessionCommand, _: &mut Self::Context) -> Self::Result {
        let (app, id) = (self.app.clone(), self.record.id);
        AtomicResponse::new(Box::pin(
            async move {
                // with its transaction's keys, which an end needs: one round trip
                let found = match sessions::find_with_transaction(&app.db, id).await {
                    Ok(Some(found)) => found,
                    Ok(None) => return Applied::failed_with(SessionCommandError::NotFound),
                    Err(e) => return Applied::failed_with(e.into()),
                };
                session_commands::apply(&app, found, msg).await
            }
            .into_actor(self)
            .map(|applied, act, ctx| act.settle(applied, ctx)),
        ))
    }
}

impl SessionActor {
    fn settle(
        &mut self,
        applied: Applied,
        ctx: &mut Context<Self>,
    ) -> Result<SessionRecord, SessionCommandError> {
        if let Some(state) = applied.state {
            self.absorb(state, ctx);
        }
        applied.answer
    }
}

impl Handler<Shutdown> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Fault injection: stop as a failure would (actix restarts the actor in place), or panic in a
/// handler as a bug would (the actor is gone and its supervisor starts a new one).
pub struct Fail {
    pub panic: bool,
}

impl Message for Fail {
    type Result = ();
}

impl Handler<Fail> for SessionActor {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, msg: Fail, ctx: &mut Self::Context) {
        // a panic unwinds through actix's context, which polls the actor once more to drain its
        // mailbox: a second injected panic then would abort the process
        if msg.panic && !std::thread::panicking() {
            panic!("fault injection: session actor {} panics", self.record.id);
        }
        ctx.stop();
    }
}

/// The session's charger transaction as each protocol names it: 1.6 by our integer id, 2.0.1
/// by the station's string. The charger's adapter picks the one its protocol uses.
async fn transaction_keys(
    app: &AppContext,
    record: &SessionRecord,
) -> Result<TransactionKeys, CommandError> {
    sessions::transaction_keys(&app.db, record.id)
        .await
        .map_err(|e| CommandError::Invalid(e.to_string()))
}

/// Asks the charger to stop the session's transaction; IN_PROGRESS becomes STOPPING.
/// `keys` are the transaction's, when the caller read them with the session.
pub async fn request_stop(
    app: &AppContext,
    record: &SessionRecord,
    keys: Option<TransactionKeys>,
) -> Result<SessionRecord, CommandError> {
    let (transaction_id, transaction_ref) = match keys {
        Some(keys) => keys,
        None => transaction_keys(app, record).await?,
    };
    let reply = execute(
        app,
        &record.charger_id,
        ChargerCommand::RemoteStop {
            transaction_id,
            transaction_ref,
        },
    )
    .await?;
    accepted(&reply)?;
    match sessions::mark_stopping(&app.db, record.id).await {
        Ok(Some(updated)) => Ok(updated),
        // already stopped meanwhile: report what is stored
        Ok(None) => sessions::find(&app.db, record.id)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| CommandError::Invalid("session vanished".into())),
        Err(e) => Err(CommandError::Invalid(e.to_string())),
    }
}

/// Installs a TxProfile capping the session's power at `max_kw`. On a load-managed charger
/// the site's controller owns the charger's profiles: the cap becomes part of the next
/// allocation (which the stored cap and the session's change event trigger) instead.
pub async fn apply_power_limit(
    app: &AppContext,
    record: &SessionRecord,
    max_kw: f64,
) -> Result<(), CommandError> {
    if let Some(site_id) = app.site_directory.site_of(&record.charger_id) {
        app.site_supervisor.do_send(super::messages::Reallocate {
            site_id,
            now: false,
        });
        return Ok(());
    }
    let (transaction_id, transaction_ref) = transaction_keys(app, record).await?;
    let reply = execute(
        app,
        &record.charger_id,
        ChargerCommand::LimitPower {
            connector_id: record.connector_id.unwrap_or(1),
            transaction_id,
            transaction_ref,
            max_power_w: max_kw * 1000.0,
        },
    )
    .await?;
    accepted(&reply)
}

async fn execute(
    app: &AppContext,
    charger_id: &str,
    command: ChargerCommand,
) -> Result<serde_json::Value, CommandError> {
    super::registry::execute(app, charger_id, command).await
}

/// `Ok` when the charger's answer says `Accepted`.
pub fn accepted(reply: &serde_json::Value) -> Result<(), CommandError> {
    match reply.get("status").and_then(|s| s.as_str()) {
        Some("Accepted") => Ok(()),
        other => Err(CommandError::CallError {
            code: other.unwrap_or("no status").to_string(),
            description: "the charger did not accept".into(),
        }),
    }
}

/// Power in kW as the API shows it.
pub fn power_kw(record: &SessionRecord) -> Option<f64> {
    record.power_kw
}

/// Energy in kWh as the API shows it.
pub fn energy_kwh(record: &SessionRecord) -> f64 {
    record.energy_kwh.to_f64().unwrap_or_default()
}
