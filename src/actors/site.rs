//! `SiteController`: load management for one site, on the replica that holds the site's lease.
//! A change (session start or stop, a cap, a charger going on- or offline, a car drawing less
//! than it was given) schedules a round, debounced; a round reads the site, allocates
//! (`domain::allocation`), installs the fallback profiles a charger lacks, pushes the changed
//! limits (decreases before increases, so the sum in force never passes the limit), checks them
//! back with GetCompositeSchedule, and publishes the site's load. Rounds never overlap; a change
//! during a round schedules the next.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use uuid::Uuid;

use super::messages::{Reallocate, SiteSignal, StopController};
use crate::context::AppContext;
use crate::live::LiveEvent;
use crate::smart::round::{self, Memory, Outcome};

pub struct SiteController {
    site_id: Uuid,
    app: AppContext,
    memory: Memory,
    debounce: Option<SpawnHandle>,
    running: bool,
    /// A change arrived while a round ran: another round follows it.
    again: bool,
    /// Sessions the last round allocated, with their status and cap, to judge which session
    /// changes matter.
    seen: HashMap<Uuid, (String, Option<f64>)>,
}

impl SiteController {
    pub fn new(site_id: Uuid, app: AppContext) -> Self {
        Self {
            site_id,
            app,
            memory: Memory::default(),
            debounce: None,
            running: false,
            again: false,
            seen: HashMap::new(),
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        if self.running {
            self.again = true;
            return;
        }
        if self.debounce.is_some() {
            return;
        }
        self.debounce = Some(ctx.run_later(delay, |act, ctx| {
            act.debounce = None;
            act.run(ctx);
        }));
    }

    fn run(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        let (app, site_id, memory) = (self.app.clone(), self.site_id, self.memory.clone());
        let started = Instant::now();
        ctx.spawn(
            async move { round::run(&app, site_id, memory).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.running = false;
                    act.app
                        .metrics
                        .site_reallocation_seconds
                        .with_label_values(&["round"])
                        .observe(started.elapsed().as_secs_f64());
                    match result {
                        Ok(Outcome::Done(finished)) => {
                            act.memory = finished.memory;
                            act.seen = finished.sessions;
                            if finished.retry {
                                act.again = true;
                            }
                        }
                        Ok(Outcome::Gone) => {
                            tracing::info!(site_id = %act.site_id, "site deleted: controller stops");
                            ctx.stop();
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(site_id = %act.site_id, error = %e, "re-allocation failed; retrying");
                            act.again = true;
                        }
                    }
                    if std::mem::take(&mut act.again) {
                        let delay = Duration::from_millis(act.app.settings.smart_charging.debounce_ms.max(50));
                        act.schedule(ctx, delay);
                    }
                }),
        );
    }

    /// Whether a change of this session is one the allocation depends on.
    fn matters(
        &self,
        id: &Uuid,
        status: &str,
        max_power_kw: Option<f64>,
        power_kw: Option<f64>,
    ) -> bool {
        match self.seen.get(id) {
            None => matches!(status, "IN_PROGRESS" | "STOPPING"),
            Some((seen_status, seen_cap)) => {
                seen_status != status
                    || *seen_cap != max_power_kw
                    || self.memory.draw_changed(id, power_kw)
            }
        }
    }
}

impl Actor for SiteController {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(site_id = %self.site_id, "site controller started");
        self.run(ctx);
        let every = Duration::from_secs(self.app.settings.smart_charging.reconcile_secs.max(1));
        ctx.run_interval(every, |act, ctx| act.schedule(ctx, Duration::ZERO));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::info!(site_id = %self.site_id, "site controller stopped");
    }
}

impl Handler<Reallocate> for SiteController {
    type Result = ();

    fn handle(&mut self, msg: Reallocate, ctx: &mut Self::Context) {
        let delay = if msg.now {
            Duration::ZERO
        } else {
            Duration::from_millis(self.app.settings.smart_charging.debounce_ms)
        };
        self.schedule(ctx, delay);
    }
}

impl Handler<SiteSignal> for SiteController {
    type Result = ();

    fn handle(&mut self, msg: SiteSignal, ctx: &mut Self::Context) {
        let relevant = match &msg.event {
            LiveEvent::Charger(id) => {
                // whatever changed (online, a connector), an unreachable charger gets another try
                self.memory.unreachable.remove(id);
                true
            }
            LiveEvent::Session {
                id,
                snapshot: Some(record),
            } => self.matters(id, &record.status, record.max_power_kw, record.power_kw),
            // a change on another replica, known by id only
            LiveEvent::Session { id, snapshot: None } => self.seen.contains_key(id),
            LiveEvent::Site(_) => false,
        };
        if relevant {
            let delay = Duration::from_millis(self.app.settings.smart_charging.debounce_ms);
            self.schedule(ctx, delay);
        }
    }
}

impl Handler<StopController> for SiteController {
    type Result = ();

    fn handle(&mut self, _: StopController, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
