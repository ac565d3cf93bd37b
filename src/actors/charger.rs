//! `ChargerActor`: one per connected charger. It owns the WebSocket (reading the actix-ws stream,
//! writing through a single writer task so frames stay ordered), handles the charger's calls one
//! at a time in arrival order, and sends our calls one at a time from an outbound queue, each
//! with a timeout. The two directions are independent, so calls crossing on the wire never
//! deadlock. Slow work (storage) is spawned into the actor's context and its result handled as a
//! continuation; the mailbox is never blocked.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::messages::{
    Disconnect, Execute, RegisterCharger, Replaced, SessionChanged, UnregisterCharger,
};
use super::registry::Registry;
use crate::context::AppContext;
use crate::live::LiveEvent;
use crate::ocpp::adapter;
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::ocpp::frame::{self, Call, Frame, FrameError};
use crate::ocpp::handler::{CallContext, Effect};
use crate::ocpp::{CallErrorCode, CallFailure, OcppVersion};
use crate::store::charger_writer::ChargerWrite;

/// Calls a charger may have waiting before further ones are refused.
const MAX_QUEUED_INCOMING: usize = 32;
/// Commands that may wait for a charger before further ones are refused with `Busy`.
const MAX_QUEUED_OUTGOING: usize = 64;
/// How often `last_seen` is written to Postgres while the charger is chatty.
const LAST_SEEN_PERSIST_INTERVAL: Duration = Duration::from_secs(60);

/// What the writer task sends on the socket.
pub enum Outbound {
    Text(String),
    Ping,
    Pong(Bytes),
    Close(CloseReason),
}

struct Pending {
    command: ChargerCommand,
    reply: oneshot::Sender<Result<Value, CommandError>>,
    deadline: Instant,
}

struct InFlight {
    message_id: String,
    action: String,
    reply: oneshot::Sender<Result<Value, CommandError>>,
    started: Instant,
    timer: SpawnHandle,
}

/// Everything a charger actor is started with.
pub struct ChargerParams {
    pub charger_id: String,
    pub version: OcppVersion,
    pub app: AppContext,
    pub registry: Addr<Registry>,
    /// Accepted by an earlier BootNotification (a reconnect does not boot again).
    pub previously_accepted: bool,
    /// Quarantined: BootNotification is answered Pending, and nothing but Boot and Heartbeat
    /// is handled, until an operator adopts the charger.
    pub quarantined: bool,
    pub max_frame_bytes: usize,
}

pub struct ChargerActor {
    charger_id: String,
    connection_id: Uuid,
    version: OcppVersion,
    /// Shared with every call's context (one reference count, not a copy of each handle).
    app: Arc<AppContext>,
    registry: Addr<Registry>,
    out: mpsc::UnboundedSender<Outbound>,
    max_frame_bytes: usize,
    /// CSMS-initiated calls wait until the charger is accepted...
    accepted: bool,
    /// ...except the configuration and information calls a charger told Pending takes (B02,
    /// 1.6 §4.2): sent while it waits, the others stay queued.
    pending: bool,
    quarantined: bool,
    last_seen: Instant,
    last_seen_at: DateTime<Utc>,
    last_persisted: Instant,
    incoming: VecDeque<Call>,
    processing: bool,
    outgoing: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    next_message_id: u64,
}

impl ChargerActor {
    /// Starts the actor on the current arbiter, reading `stream` and writing through `session`.
    pub fn launch(
        params: ChargerParams,
        session: actix_ws::Session,
        stream: actix_ws::AggregatedMessageStream,
    ) -> Addr<Self> {
        let (out, rx) = mpsc::unbounded_channel();
        actix_rt::spawn(write_loop(session, rx));
        ChargerActor::create(|ctx| {
            ctx.add_stream(stream);
            ChargerActor {
                charger_id: params.charger_id,
                connection_id: Uuid::new_v4(),
                version: params.version,
                app: Arc::new(params.app),
                registry: params.registry,
                out,
                max_frame_bytes: params.max_frame_bytes,
                accepted: params.previously_accepted,
                pending: false,
                quarantined: params.quarantined,
                last_seen: Instant::now(),
                last_seen_at: Utc::now(),
                last_persisted: Instant::now(),
                incoming: VecDeque::new(),
                processing: false,
                outgoing: VecDeque::new(),
                in_flight: None,
                next_message_id: 1,
            }
        })
    }

    fn send(&self, message: Outbound) {
        // fails only once the writer is gone, i.e. the socket is closing anyway
        let _ = self.out.send(message);
    }

    fn send_text(&self, text: String) {
        self.send(Outbound::Text(text));
    }

    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        self.send(Outbound::Close(CloseReason {
            code,
            description: Some(reason.to_string()),
        }));
        ctx.stop();
    }

    fn saw_traffic(&mut self) {
        self.last_seen = Instant::now();
        self.last_seen_at = Utc::now();
        if self.last_persisted.elapsed() >= LAST_SEEN_PERSIST_INTERVAL {
            self.last_persisted = Instant::now();
            let id = self.charger_id.clone();
            let written = self.app.charger_store.write(ChargerWrite::Touch {
                charger_id: id.clone(),
                connection_id: self.connection_id,
                last_seen: self.last_seen_at,
            });
            actix_rt::spawn(async move {
                if let Err(e) = written.await {
                    tracing::warn!(charger_id = %id, error = %e, "could not persist last_seen");
                }
            });
        }
    }

    fn count(&self, direction: &str, action: &str, result: &str) {
        self.app
            .metrics
            .ocpp_messages_total
            .with_label_values(&[direction, action, result])
            .inc();
    }

    // ---- charger -> CSMS ----------------------------------------------------------------

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        if text.len() > self.max_frame_bytes {
            let description = format!(
                "frame of {} bytes exceeds the {}-byte limit",
                text.len(),
                self.max_frame_bytes
            );
            match frame::peek_id(text) {
                Some(id) => self.answer_error(&id, CallErrorCode::FormationViolation, &description),
                None => {
                    tracing::warn!(charger_id = %self.charger_id, %description, "oversized frame without a message id dropped")
                }
            }
            self.count("in", "oversized", "error");
            return;
        }
        match frame::parse(text) {
            Ok(Frame::Call(call)) => {
                if self.incoming.len() >= MAX_QUEUED_INCOMING {
                    self.answer_error(
                        &call.id,
                        CallErrorCode::GenericError,
                        "too many calls in flight; send one at a time",
                    );
                    return;
                }
                if self.quarantined
                    && !matches!(call.action.as_str(), "BootNotification" | "Heartbeat")
                {
                    self.count("in", self.known_action(&call.action), "quarantined");
                    self.answer_error(
                        &call.id,
                        CallErrorCode::SecurityError,
                        "the charger is pending: an operator must adopt it before it may do this",
                    );
                    return;
                }
                self.incoming.push_back(call);
                self.process_next(ctx);
            }
            Ok(Frame::CallResult { id, payload }) => self.on_reply(&id, Ok(payload), ctx),
            Ok(Frame::CallError {
                id,
                code,
                description,
            }) => self.on_reply(&id, Err(CommandError::CallError { code, description }), ctx),
            Err(FrameError::Invalid {
                id,
                code,
                description,
            }) => {
                self.count("in", "invalid", "error");
                self.answer_error(&id, code, &description);
            }
            Err(FrameError::Unreadable(reason)) => {
                self.count("in", "unreadable", "dropped");
                tracing::warn!(charger_id = %self.charger_id, %reason, "frame without a readable message id dropped");
            }
            Err(FrameError::InvalidReply { id, description }) => {
                self.count("in", "invalid_reply", "dropped");
                tracing::warn!(charger_id = %self.charger_id, message_id = %id, %description, "malformed answer dropped");
                self.on_reply(&id, Err(CommandError::BadReply(description)), ctx);
            }
        }
    }

    fn answer_error(&self, id: &str, code: CallErrorCode, description: &str) {
        self.send_text(frame::call_error(
            id,
            code.as_str(self.version),
            description,
        ));
    }

    /// Handles the oldest queued call unless one is being handled already.
    fn process_next(&mut self, ctx: &mut Context<Self>) {
        if self.processing {
            return;
        }
        let Some(call) = self.incoming.pop_front() else {
            return;
        };
        self.processing = true;
        let call_ctx = CallContext {
            app: self.app.clone(),
            quarantined: self.quarantined,
            charger_id: self.charger_id.clone(),
            received_at: Utc::now(),
        };
        let started = Instant::now();
        let version = self.version;
        let Call {
            id,
            action,
            payload,
        } = call;
        let fut = async move {
            // a bug in a handler answers InternalError; it never takes the connection down
            let handled = AssertUnwindSafe(adapter::handle(version, call_ctx, &action, payload))
                .catch_unwind()
                .await;
            let result = handled.unwrap_or_else(|panic| {
                let cause = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(CallFailure::internal(format_args!(
                    "handler of {action} panicked: {cause}"
                )))
            });
            (id, action, result)
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |(id, action, result), act, ctx| {
                    act.processing = false;
                    act.app
                        .metrics
                        .ocpp_call_duration_seconds
                        .with_label_values(&["in", act.known_action(&action)])
                        .observe(started.elapsed().as_secs_f64());
                    match result {
                        Ok(handled) => {
                            act.count("in", act.known_action(&action), "ok");
                            act.send_text(frame::call_result(&id, &handled.response));
                            for effect in handled.effects {
                                act.apply(effect, ctx);
                            }
                        }
                        Err(failure) => act.on_failure(&id, &action, failure),
                    }
                    act.process_next(ctx);
                }),
        );
    }

    fn on_failure(&mut self, id: &str, action: &str, failure: CallFailure) {
        self.count(
            "in",
            self.known_action(action),
            if failure.unanswered {
                "unanswered"
            } else {
                "error"
            },
        );
        if !failure.unanswered {
            self.answer_error(id, failure.code, &failure.description);
        }
    }

    fn apply(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        match effect {
            Effect::BootPending => {
                if !self.accepted && !self.pending {
                    self.pending = true;
                    self.send_next(ctx);
                }
            }
            Effect::Accepted => {
                if !self.accepted {
                    self.accepted = true;
                    self.pending = false;
                    self.send_next(ctx);
                }
                // a boot may have wiped what the charger held: one that should hold a local
                // list is checked after every accepted boot, also on a connection that began
                // accepted
                actix::spawn(super::local_lists::reconcile(
                    AppContext::clone(&self.app),
                    self.charger_id.clone(),
                    ctx.address(),
                ));
            }
            Effect::ConnectorStatus { .. } => {
                self.app
                    .live
                    .publish(LiveEvent::Charger(self.charger_id.clone()));
            }
            Effect::Session(session) => self.app.sessions.do_send(SessionChanged { session }),
            Effect::Send { command, what } => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                <Self as Handler<Execute>>::handle(self, Execute { command, reply }, ctx);
                let charger_id = self.charger_id.clone();
                let db = self.app.db.clone();
                actix::spawn(async move {
                    match answer.await {
                        // answers without a status (GetTransactionStatus) are only logged
                        Ok(Ok(answer)) if answer.get("status").is_some_and(|s| s != "Accepted") => {
                            // e.g. a signed certificate the charger refused to install (A_14)
                            tracing::warn!(%charger_id, what, %answer, "the charger did not accept");
                            crate::security::record_server_event(
                                &db,
                                Some(&charger_id),
                                &format!("{what}NotAccepted"),
                                answer.to_string(),
                                false,
                            )
                            .await;
                        }
                        Ok(Ok(answer)) => {
                            tracing::info!(%charger_id, what, %answer, "the charger answered")
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(%charger_id, what, error = %e, "not delivered")
                        }
                        Err(_) => {
                            tracing::warn!(%charger_id, what, "not delivered: connection gone")
                        }
                    }
                });
            }
        }
    }

    // ---- CSMS -> charger ----------------------------------------------------------------

    fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.app.settings.ocpp.call_timeout_secs)
    }

    /// Sends the next queued command if none is in flight and the charger is accepted; while
    /// it is Pending, the next one a Pending charger takes.
    fn send_next(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.is_some() || !(self.accepted || self.pending) {
            return;
        }
        loop {
            let next = if self.accepted {
                self.outgoing.pop_front()
            } else {
                let version = self.version;
                let position = self.outgoing.iter().position(|queued| {
                    queued.reply.is_closed()
                        || adapter::to_call(version, &queued.command)
                            .is_ok_and(|(action, _)| allowed_while_pending(&action))
                });
                position.and_then(|i| self.outgoing.remove(i))
            };
            let Some(pending) = next else { return };
            if pending.reply.is_closed() {
                continue; // the caller gave up: never send a command nobody waits for
            }
            let now = Instant::now();
            if pending.deadline <= now {
                let _ = pending.reply.send(Err(CommandError::Timeout));
                continue;
            }
            let (action, payload) = match adapter::to_call(self.version, &pending.command) {
                Ok(call) => call,
                Err(e) => {
                    let _ = pending.reply.send(Err(e));
                    continue;
                }
            };
            let message_id = self.next_message_id.to_string();
            self.next_message_id += 1;
            self.send_text(frame::call(&message_id, &action, &payload));
            let timer = ctx.run_later(pending.deadline - now, |act, ctx| act.on_timeout(ctx));
            self.in_flight = Some(InFlight {
                message_id,
                action,
                reply: pending.reply,
                started: now,
                timer,
            });
            return;
        }
    }

    fn on_reply(&mut self, id: &str, result: Result<Value, CommandError>, ctx: &mut Context<Self>) {
        let matches = self.in_flight.as_ref().is_some_and(|f| f.message_id == id);
        if !matches {
            tracing::warn!(charger_id = %self.charger_id, message_id = %id, "answer to no pending call dropped (late or unknown)");
            return;
        }
        let Some(in_flight) = self.in_flight.take() else {
            return;
        };
        ctx.cancel_future(in_flight.timer);
        let version = self.version;
        let result = result.and_then(|payload| {
            adapter::check_reply(version, &in_flight.action, &payload).map(|_| payload)
        });
        self.app
            .metrics
            .ocpp_call_duration_seconds
            .with_label_values(&["out", &in_flight.action])
            .observe(in_flight.started.elapsed().as_secs_f64());
        self.count(
            "out",
            &in_flight.action,
            if result.is_ok() { "ok" } else { "error" },
        );
        let _ = in_flight.reply.send(result);
        self.send_next(ctx);
    }

    fn on_timeout(&mut self, ctx: &mut Context<Self>) {
        if let Some(in_flight) = self.in_flight.take() {
            tracing::warn!(charger_id = %self.charger_id, action = %in_flight.action, "charger did not answer in time");
            self.count("out", &in_flight.action, "timeout");
            let _ = in_flight.reply.send(Err(CommandError::Timeout));
        }
        self.send_next(ctx);
    }

    /// Action names used as metric labels: known ones as they are, anything else folded.
    fn known_action<'a>(&self, action: &'a str) -> &'a str {
        if adapter::is_known_action(self.version, action) {
            action
        } else {
            "other"
        }
    }

    fn check_liveness(&mut self, ctx: &mut Context<Self>) {
        let grace = Duration::from_secs(self.app.settings.ocpp.offline_grace_secs);
        if self.last_seen.elapsed() > grace {
            tracing::info!(charger_id = %self.charger_id, "no traffic within the grace period: closing");
            self.close(ctx, CloseCode::Away, "no traffic within the grace period");
        } else {
            self.send(Outbound::Ping);
        }
    }
}

impl Actor for ChargerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.registry.do_send(RegisterCharger {
            charger_id: self.charger_id.clone(),
            connection_id: self.connection_id,
            addr: ctx.address(),
        });
        self.app.metrics.chargers_connected.inc();
        // Each connection pings on a phase of its own. Chargers that connect together (a
        // replica's restart, a reconnect storm, a benchmark's ramp) would otherwise be pinged
        // together, answer together and persist `last_seen` together (a pong counts as traffic),
        // every interval for as long as they stay connected: a burst of writes once a minute.
        let ping = Duration::from_secs(self.app.settings.ocpp.ping_interval_secs.max(1));
        ctx.run_later(ping.mul_f64(rand::random::<f64>()), move |act, ctx| {
            act.check_liveness(ctx);
            ctx.run_interval(ping, |act, ctx| act.check_liveness(ctx));
        });
        // the charger's frames wait until the connection is recorded: nobody may see it offline
        // after it has booted, nor its first messages race its CONNECTED event
        let recorded = self.app.charger_store.write(ChargerWrite::Connected {
            charger_id: self.charger_id.clone(),
            connection_id: self.connection_id,
            protocol: self.version.as_db(),
        });
        ctx.wait(recorded.into_actor(self).map(|result, act, _| {
            if let Err(e) = result {
                tracing::error!(charger_id = %act.charger_id, error = %e, "could not record the connection");
            }
            act.app
                .live
                .publish(LiveEvent::Charger(act.charger_id.clone()));
        }));
        tracing::info!(charger_id = %self.charger_id, protocol = self.version.subprotocol(), "charger connected");
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.registry.do_send(UnregisterCharger {
            charger_id: self.charger_id.clone(),
            connection_id: self.connection_id,
        });
        self.app.metrics.chargers_connected.dec();
        if let Some(in_flight) = self.in_flight.take() {
            let _ = in_flight.reply.send(Err(CommandError::Offline));
        }
        for pending in self.outgoing.drain(..) {
            let _ = pending.reply.send(Err(CommandError::Offline));
        }
        // queued now, so it follows this connection's earlier writes
        let recorded = self.app.charger_store.write(ChargerWrite::Disconnected {
            charger_id: self.charger_id.clone(),
            connection_id: self.connection_id,
            last_seen: self.last_seen_at,
        });
        let (id, live) = (self.charger_id.clone(), self.app.live.clone());
        actix_rt::spawn(async move {
            match recorded.await {
                Ok(true) => live.publish(LiveEvent::Charger(id)),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(charger_id = %id, error = %e, "could not record the disconnection")
                }
            }
        });
        tracing::info!(charger_id = %self.charger_id, "charger disconnected");
        Running::Stop
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for ChargerActor {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        self.saw_traffic();
        match item {
            Ok(AggregatedMessage::Text(text)) => self.on_text(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                self.count("in", "binary", "dropped");
                tracing::warn!(charger_id = %self.charger_id, "binary frame dropped (OCPP-J is text only)");
            }
            Ok(AggregatedMessage::Ping(bytes)) => self.send(Outbound::Pong(bytes)),
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => ctx.stop(),
            Err(ProtocolError::Overflow) => {
                let reason = format!(
                    "frame exceeds the hard limit of {} bytes",
                    self.max_frame_bytes * FRAME_HARD_LIMIT_FACTOR
                );
                tracing::warn!(charger_id = %self.charger_id, %reason, "closing");
                self.close(ctx, CloseCode::Size, &reason);
            }
            Err(e) => {
                tracing::warn!(charger_id = %self.charger_id, error = %e, "WebSocket protocol error: closing");
                self.close(ctx, CloseCode::Protocol, "WebSocket protocol error");
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Frames up to `max_frame_bytes` are handled; larger ones up to this many times that size are
/// read and answered with a CallError; beyond it the socket is closed (bounded buffers).
pub const FRAME_HARD_LIMIT_FACTOR: usize = 4;

impl Handler<Execute> for ChargerActor {
    type Result = ();

    fn handle(&mut self, msg: Execute, ctx: &mut Self::Context) {
        if let ChargerCommand::Disconnect { reason } = &msg.command {
            tracing::info!(charger_id = %self.charger_id, %reason, "closing the connection");
            self.close(ctx, CloseCode::Policy, reason);
            let _ = msg.reply.send(Ok(serde_json::json!({ "closed": true })));
            return;
        }
        if self.outgoing.len() >= MAX_QUEUED_OUTGOING {
            let _ = msg.reply.send(Err(CommandError::Busy));
            return;
        }
        self.outgoing.push_back(Pending {
            command: msg.command,
            reply: msg.reply,
            deadline: Instant::now() + self.call_timeout(),
        });
        self.send_next(ctx);
    }
}

impl Handler<Replaced> for ChargerActor {
    type Result = ();

    fn handle(&mut self, _: Replaced, ctx: &mut Self::Context) {
        self.close(ctx, CloseCode::Policy, "replaced by a newer connection");
    }
}

impl Handler<Disconnect> for ChargerActor {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        self.close(ctx, CloseCode::Away, &msg.reason);
    }
}

/// The single writer of a charger's socket: frames leave in the order the actor queued them.
async fn write_loop(mut session: actix_ws::Session, mut rx: mpsc::UnboundedReceiver<Outbound>) {
    while let Some(message) = rx.recv().await {
        let sent = match message {
            Outbound::Text(text) => session.text(text).await,
            Outbound::Ping => session.ping(b"").await,
            Outbound::Pong(bytes) => session.pong(&bytes).await,
            Outbound::Close(reason) => {
                let _ = session.close(Some(reason)).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
    let _ = session.close(None).await;
}

/// The calls a charger told Pending takes: configuration and information, and a trigger for
/// a new boot (2.0.1 B02.FR.02, TC_B_31; 1.6 §4.2). Nothing that starts or stops charging.
fn allowed_while_pending(action: &str) -> bool {
    matches!(
        action,
        "GetVariables"
            | "SetVariables"
            | "GetBaseReport"
            | "GetReport"
            | "SetNetworkProfile"
            | "TriggerMessage"
            | "GetConfiguration"
            | "ChangeConfiguration"
    )
}
