//! `SiteSupervisor`: runs a `SiteController` for every site whose lease this replica holds
//! (one controller per site cluster-wide), keeps the replica's charger -> site directory, and
//! routes the live changes of attached chargers and their sessions to their site's controller.
//! A controller that stops (its site was deleted) is forgotten; a lost lease stops it; a
//! lapsed lease of a crashed replica is taken over at the next tick.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::messages::{Reallocate, SiteSignal, SitesChanged, StopController};
use super::site::SiteController;
use crate::context::AppContext;
use crate::live::LiveEvent;
use crate::smart::SiteDirectory;
use crate::store::{ownership, sites};

/// Initialises the supervisor once the context exists (it is part of the context).
#[derive(Message)]
#[rtype(result = "()")]
pub struct InitSites {
    pub app: AppContext,
}

#[derive(Default)]
pub struct SiteSupervisor {
    app: Option<AppContext>,
    controllers: HashMap<Uuid, Addr<SiteController>>,
    /// A refresh is running: ticks in between are skipped.
    refreshing: bool,
}

impl SiteSupervisor {
    fn directory(&self) -> Option<Arc<SiteDirectory>> {
        self.app.as_ref().map(|a| a.site_directory.clone())
    }

    /// Reloads the directory and the site list, holds the leases, starts and stops controllers.
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(app) = self.app.clone() else { return };
        if self.refreshing || app.shutdown.is_cancelled() {
            return;
        }
        self.refreshing = true;
        let work = async move {
            let pairs = sites::charger_sites(&app.db)
                .await
                .map_err(|e| e.to_string())?;
            let ids = sites::ids(&app.db).await.map_err(|e| e.to_string())?;
            let names: Vec<String> = ids.iter().map(|id| format!("site:{id}")).collect();
            let held = ownership::hold_leases(
                &app.redis,
                &app.settings.redis.key_prefix,
                &app.settings.node_id,
                &names,
                app.settings.smart_charging.lease_ms,
            )
            .await?;
            let mine: Vec<Uuid> = ids
                .into_iter()
                .zip(held)
                .filter_map(|(id, held)| held.then_some(id))
                .collect();
            Ok::<_, String>((pairs, mine))
        };
        ctx.spawn(work.into_actor(self).map(|result, act, _| {
            act.refreshing = false;
            let Some(app) = act.app.clone() else { return };
            match result {
                Ok((pairs, mine)) => {
                    app.site_directory.replace(pairs);
                    act.controllers.retain(|id, addr| {
                        let keep = mine.contains(id) && addr.connected();
                        if !keep && addr.connected() {
                            tracing::info!(site_id = %id, "site lease lost: controller stops");
                            addr.do_send(StopController);
                        }
                        keep
                    });
                    for id in mine {
                        act.controllers
                            .entry(id)
                            .or_insert_with(|| SiteController::new(id, app.clone()).start());
                    }
                    // every change on the live bus only while a controller here needs them
                    app.live.want_all(!act.controllers.is_empty());
                }
                Err(e) => tracing::warn!(error = %e, "could not refresh the sites"),
            }
        }));
    }

    fn route(&self, event: LiveEvent) {
        let Some(directory) = self.directory() else {
            return;
        };
        let charger = match &event {
            LiveEvent::Charger(id) => Some(id.clone()),
            LiveEvent::Session {
                snapshot: Some(record),
                ..
            } => Some(record.charger_id.clone()),
            // by id only (another replica's change): every controller judges it by its sessions
            LiveEvent::Session { snapshot: None, .. } => None,
            LiveEvent::Site(_) => return,
        };
        match charger {
            Some(charger) => {
                if let Some(addr) = directory
                    .site_of(&charger)
                    .and_then(|site| self.controllers.get(&site))
                {
                    addr.do_send(SiteSignal { event });
                }
            }
            None => {
                for addr in self.controllers.values() {
                    addr.do_send(SiteSignal {
                        event: event.clone(),
                    });
                }
            }
        }
    }
}

impl Actor for SiteSupervisor {
    type Context = Context<Self>;
}

impl Handler<InitSites> for SiteSupervisor {
    type Result = ();

    fn handle(&mut self, msg: InitSites, ctx: &mut Self::Context) {
        let every = Duration::from_millis((msg.app.settings.smart_charging.lease_ms / 3).max(100));
        let changes = msg.app.live.subscribe_all();
        self.app = Some(msg.app);
        self.refresh(ctx);
        ctx.run_interval(every, |act, ctx| act.refresh(ctx));
        // every live change of this replica (and those fanned in from others)
        let stream = futures_util::stream::unfold(changes, |mut rx| async move {
            match rx.recv().await {
                Ok(event) => Some((Some(event), rx)),
                // fell behind: every controller re-reads its site
                Err(RecvError::Lagged(_)) => Some((None, rx)),
                Err(RecvError::Closed) => None,
            }
        });
        ctx.add_stream(stream);
    }
}

impl StreamHandler<Option<LiveEvent>> for SiteSupervisor {
    fn handle(&mut self, event: Option<LiveEvent>, _: &mut Self::Context) {
        match event {
            Some(event) => self.route(event),
            None => {
                for (site_id, addr) in &self.controllers {
                    addr.do_send(Reallocate {
                        site_id: *site_id,
                        now: false,
                    });
                }
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<SitesChanged> for SiteSupervisor {
    type Result = ();

    fn handle(&mut self, _: SitesChanged, ctx: &mut Self::Context) {
        self.refresh(ctx);
    }
}

impl Handler<Reallocate> for SiteSupervisor {
    type Result = ();

    /// Forwards to the site's controller when this replica runs it (else its own controller's
    /// next reconcile sees the change).
    fn handle(&mut self, msg: Reallocate, _: &mut Self::Context) {
        if let Some(addr) = self.controllers.get(&msg.site_id) {
            addr.do_send(msg);
        }
    }
}
