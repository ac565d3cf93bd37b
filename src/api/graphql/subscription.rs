//! GraphQL subscriptions: each one listens to the live bus, filters the changes it cares about
//! and re-reads the current state, so a subscriber always sees what is stored.

use async_graphql::{Context, Subscription, ID};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::auth::{require_staff, require_user};
use super::chargers::ChargerView;
use super::error::ApiError;
use super::sessions::{load_visible, SessionView};
use crate::context::AppContext;
use crate::live::{LiveEvent, Topic};
use crate::store::{chargers, sessions};
use uuid::Uuid;

#[derive(Default)]
pub struct SubscriptionRoot;

/// How often a site subscriber on a replica that does not run the site's controller looks for
/// a newer load.
const SITE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// OPERATOR or ADMIN: the campaign whenever it or one of its chargers changed (checked
    /// every second; extension)
    async fn on_firmware_campaign_changed(
        &self,
        ctx: &Context<'_>,
        campaign_id: ID,
    ) -> Result<impl Stream<Item = super::firmware::FirmwareCampaign>, ApiError> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>().clone();
        let id = Uuid::parse_str(campaign_id.as_str())
            .map_err(|_| ApiError::BadUserInput("campaignId is not a valid id".into()))?;
        let current = super::firmware::campaign(&app, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("campaign not found".into()))?;
        let seen = crate::store::firmware::changed_at(&app.db, id)
            .await
            .ok()
            .flatten();
        let changes = stream::unfold((app, seen), move |(app, mut seen)| async move {
            loop {
                tokio::time::sleep(SITE_POLL).await;
                let at = crate::store::firmware::changed_at(&app.db, id)
                    .await
                    .ok()
                    .flatten();
                if at != seen {
                    seen = at;
                    return match super::firmware::campaign(&app, id).await {
                        Ok(Some(campaign)) => Some((campaign, (app, seen))),
                        _ => None,
                    };
                }
            }
        });
        Ok(stream::once(async move { current }).chain(changes))
    }

    /// OPERATOR or ADMIN: the site's load after every re-allocation; first as it is now
    async fn on_site_load_changed(
        &self,
        ctx: &Context<'_>,
        site_id: ID,
    ) -> Result<impl Stream<Item = super::sites::Site>, ApiError> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>().clone();
        let id = Uuid::parse_str(site_id.as_str())
            .map_err(|_| ApiError::BadUserInput("siteId is not a valid id".into()))?;
        let rx = app.live.subscribe(Topic::Site(id));
        let current = crate::store::sites::find(&app.db, id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound("site not found".into()))?;
        let seen = crate::store::sites::load_of(&app.db, id)
            .await
            .ok()
            .flatten()
            .map(|(_, at)| at);
        // this replica's controller wakes it at once; another replica's is seen by polling
        let changes = stream::unfold((rx, app, seen), move |(mut rx, app, mut seen)| async move {
            loop {
                let woken = tokio::select! {
                    event = rx.recv() => !matches!(event, Err(RecvError::Closed)),
                    _ = tokio::time::sleep(SITE_POLL) => false,
                };
                let at = crate::store::sites::load_of(&app.db, id)
                    .await
                    .ok()
                    .flatten()
                    .map(|(_, at)| at);
                if woken || at != seen {
                    seen = at;
                    if let Ok(Some(site)) = crate::store::sites::find(&app.db, id).await {
                        return Some((super::sites::Site::from(site), (rx, app, seen)));
                    }
                    return None;
                }
            }
        });
        Ok(stream::once(async move { super::sites::Site::from(current) }).chain(changes))
    }

    /// OPERATOR or ADMIN: a charger's online state and connector statuses, first as they are
    /// now, then on every change.
    async fn on_charger_status_changed(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
    ) -> Result<impl Stream<Item = ChargerView>, ApiError> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>().clone();
        let rx = app.live.subscribe(Topic::Charger(charger_id.to_string()));
        // other replicas' changes reach this one before the first read
        app.live.listening().await;
        // woken only by this charger's changes; falling behind re-reads once
        let changes = stream::unfold(rx, move |mut rx| async move {
            match rx.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => Some(((), rx)),
                Err(RecvError::Closed) => None,
            }
        });
        let id = charger_id.to_string();
        Ok(stream::once(async {})
            .chain(changes)
            .then(move |()| {
                let (app, id) = (app.clone(), id.clone());
                async move { chargers::find(&app.db, &id).await.ok().flatten() }
            })
            .filter_map(|charger| async move { charger.map(ChargerView) }))
    }

    /// the session on every status change and on live updates (energy, power), throttled to at
    /// most one update per second; first as it is now
    async fn on_session_status_changed(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
    ) -> Result<impl Stream<Item = SessionView>, ApiError> {
        let (user_id, role) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>().clone();
        let id = Uuid::parse_str(session_id.as_str())
            .map_err(|_| ApiError::BadUserInput("sessionId is not a valid id".into()))?;
        // subscribe before reading, so no change between the read and the subscription is lost
        let rx = app.live.subscribe(Topic::Session(id));
        // other replicas' changes reach this one before the first read
        app.live.listening().await;
        let current = load_visible(&app, id, user_id, role).await?;
        let changes = stream::unfold((rx, app), move |(mut rx, app)| async move {
            loop {
                match rx.recv().await {
                    Ok(LiveEvent::Session {
                        id: changed,
                        snapshot,
                    }) if changed == id => {
                        let record = match snapshot {
                            Some(record) => Some((*record).clone()),
                            None => sessions::find(&app.db, id).await.ok().flatten(),
                        };
                        if let Some(record) = record {
                            return Some((record, (rx, app)));
                        }
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        if let Ok(Some(record)) = sessions::find(&app.db, id).await {
                            return Some((record, (rx, app)));
                        }
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        // never go back in time: drop snapshots older than what was already delivered, and
        // every open one once the session has ended
        let (mut last_seen, mut ended) = (current.updated_at, !current.is_open());
        let changes = changes.filter(move |record| {
            let deliver = if record.is_open() {
                !ended && record.updated_at >= last_seen
            } else {
                !ended || record.updated_at >= last_seen
            };
            if deliver {
                last_seen = last_seen.max(record.updated_at);
                ended |= !record.is_open();
            }
            std::future::ready(deliver)
        });
        Ok(stream::once(async move { current })
            .chain(changes)
            .map(SessionView))
    }
}
