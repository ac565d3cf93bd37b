//! The dead-letter queues for administrators (extension): what waits there and why, and a
//! replay that moves the letters back into their queue, as `chargegrid dlq replay` does.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::auth::require_staff;
use super::error::{ApiError, ApiResult};
use crate::context::AppContext;
use crate::domain::Role;
use crate::events::dlq;

/// A dead letter: which event, why it died and how often it was tried; never its body.
#[derive(SimpleObject)]
pub struct DeadLetter {
    /// the envelope's eventType (e.g. SESSION_ENDED); null when the body is not an event
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    /// why it was dead-lettered, e.g. "malformed" or the last error
    pub reason: Option<String>,
    pub attempts: Option<i32>,
    pub message_id: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub bytes: i32,
}

/// A consumer queue's dead letters.
#[derive(SimpleObject)]
pub struct DeadLetterQueue {
    /// the consumer queue (what `replayDeadLetters` takes), e.g. chargegrid.billing
    pub queue: String,
    pub depth: i32,
    /// the first letters waiting, oldest first
    pub first: Vec<DeadLetter>,
}

fn require_admin(ctx: &Context<'_>) -> ApiResult<uuid::Uuid> {
    let (id, role) = require_staff(ctx)?;
    if role != Role::Admin {
        return Err(ApiError::Forbidden(
            "the dead-letter queues are for administrators (ADMIN)".into(),
        ));
    }
    Ok(id)
}

fn clamp(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

#[derive(Default)]
pub struct DeadLetterQuery;

#[Object]
impl DeadLetterQuery {
    /// ADMIN: every consumer queue's dead letters, the first `first` (at most 50) of each,
    /// read without taking them (extension).
    async fn dead_letter_queues(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<DeadLetterQueue>> {
        require_admin(ctx)?;
        let first = usize::try_from(first)
            .ok()
            .filter(|n| (1..=50).contains(n))
            .ok_or_else(|| ApiError::BadUserInput("first must be between 1 and 50".into()))?;
        let app = ctx.data_unchecked::<AppContext>();
        let queues = dlq::peek(&app.settings, first).await.map_err(|e| {
            tracing::warn!(error = %e, "reading the dead-letter queues failed");
            ApiError::internal("RabbitMQ could not be read")
        })?;
        Ok(queues
            .into_iter()
            .map(|q| DeadLetterQueue {
                queue: q.queue,
                depth: clamp(q.depth),
                first: q
                    .first
                    .into_iter()
                    .map(|l| DeadLetter {
                        event_type: l.event_type,
                        event_id: l.event_id,
                        reason: l.reason,
                        attempts: l.attempts.map(clamp),
                        message_id: l.message_id,
                        published_at: l.published_at,
                        bytes: clamp(l.bytes),
                    })
                    .collect(),
            })
            .collect())
    }
}

#[derive(Default)]
pub struct DeadLetterMutation;

#[Object]
impl DeadLetterMutation {
    /// ADMIN: moves the letters now in `queue`'s dead-letter queue back into `queue` for another
    /// try; returns how many moved. Recorded in the audit log (extension).
    async fn replay_dead_letters(&self, ctx: &Context<'_>, queue: String) -> ApiResult<i32> {
        let admin = require_admin(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        if crate::context::topology_of(&app.settings)
            .find(&queue)
            .is_none()
        {
            return Err(ApiError::BadUserInput(format!(
                "{queue:?} is not a consumer queue of this deployment"
            )));
        }
        // audited whatever happened: a replay that failed half-way may have moved letters
        let replayed = dlq::replay(&app.settings, &queue).await;
        let detail = match &replayed {
            Ok(moved) => serde_json::json!({ "moved": moved }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        if let Err(e) = crate::store::top_ups::audit(
            &app.db,
            Some(admin),
            "replayDeadLetters",
            Some(&queue),
            detail,
        )
        .await
        {
            tracing::error!(error = %e, "could not write the audit log");
        }
        let moved = replayed.map_err(|e| {
            tracing::warn!(error = %e, "replaying dead letters failed");
            ApiError::internal("RabbitMQ could not be reached")
        })?;
        tracing::info!(%queue, moved, "dead letters replayed");
        Ok(clamp(moved))
    }
}
