//! Liveness and readiness. `/ready` checks every backing service concurrently, each with a
//! timeout, and names what is down.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::context::AppContext;
use crate::store;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 while the process is serving (workers: nothing else to watch).
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The connection server's liveness: 200 while its registry and session supervisor run, 503
/// naming the one that is gone (nothing would route commands or own sessions: restart the pod).
pub async fn server_healthz(ctx: web::Data<AppContext>) -> HttpResponse {
    let dead: Vec<&str> = [
        ("registry", ctx.registry.connected()),
        ("sessionSupervisor", ctx.sessions.connected()),
    ]
    .into_iter()
    .filter(|(_, alive)| !alive)
    .map(|(name, _)| name)
    .collect();
    if dead.is_empty() {
        HttpResponse::Ok().json(json!({ "status": "ok" }))
    } else {
        tracing::error!(
            ?dead,
            "an actor the server depends on is gone: failing liveness"
        );
        HttpResponse::ServiceUnavailable().json(json!({ "status": "dead", "dead": dead }))
    }
}

async fn check<F>(fut: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err("timed out".into()),
    }
}

/// The state of each backing service: `Ok` or the reason it is not usable.
pub async fn service_checks(ctx: &AppContext) -> Vec<(&'static str, Result<(), String>)> {
    let postgres = check(async {
        sqlx::query("SELECT 1")
            .execute(&ctx.db)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                sqlx::Error::PoolTimedOut => "connection timed out".to_string(),
                other => other.to_string(),
            })
    });
    let redis = check(store::redis::ping(&ctx.redis));
    let mongo = check(store::mongo::ping(&ctx.mongo));
    let rabbitmq = async {
        if !ctx.amqp.is_connected() {
            Err("not connected".to_string())
        } else if ctx.worker_amqp.get().is_some_and(|w| !w.is_connected()) {
            Err("the in-process workers' connection is down".to_string())
        } else {
            Ok(())
        }
    };
    let (postgres, redis, mongo, rabbitmq) = tokio::join!(postgres, redis, mongo, rabbitmq);
    vec![
        ("postgres", postgres),
        ("redis", redis),
        ("rabbitmq", rabbitmq),
        ("mongodb", mongo),
    ]
}

/// 200 when Postgres, Redis, RabbitMQ and MongoDB are all reachable; 503 naming the others.
pub async fn ready(req: actix_web::HttpRequest, ctx: web::Data<AppContext>) -> HttpResponse {
    if !ctx.serves_internal(&req) {
        return HttpResponse::NotFound().finish();
    }
    let checks = service_checks(&ctx).await;
    let down: Vec<&str> = checks
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| *name)
        .collect();
    // the reasons go to the log, never to the caller (they can carry addresses and versions)
    let detail: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => json!("ok"),
                Err(reason) => {
                    tracing::warn!(service = %name, %reason, "not ready");
                    json!("down")
                }
            };
            (name.to_string(), v)
        })
        .collect();
    if down.is_empty() {
        HttpResponse::Ok().json(json!({ "status": "ready", "checks": detail }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not ready", "down": down, "checks": detail }))
    }
}
