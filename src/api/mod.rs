//! The HTTP surface on the one listener: GraphQL, the OCPP WebSocket route, the operator
//! console, health and metrics.

pub mod console;
pub mod graphql;
pub mod health;
pub mod metrics;
pub mod ocpp;
pub mod octt;
pub mod payments;
pub mod uploads;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::context::AppContext;

/// Registers every route of `chargegrid serve`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::server_healthz))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/ocpp/{chargePointId}", web::get().to(ocpp::handshake))
        .configure(console::configure)
        .service(
            web::resource("/webhooks/payments")
                .app_data(web::PayloadConfig::new(256 * 1024))
                .route(web::post().to(payments::webhook)),
        )
        .service(
            web::resource(["/uploads/logs/{secret}", "/uploads/logs/{secret}/{name}"])
                .route(web::put().to(uploads::upload))
                .route(web::post().to(uploads::upload)),
        )
        .route("/api/logs/{id}", web::get().to(uploads::download))
        .service(
            web::resource("/api/octt/{version}/{chargerId}/{action}")
                .app_data(web::PayloadConfig::new(octt::MAX_BODY_BYTES))
                .route(web::post().to(octt::trigger)),
        )
        .service(
            web::resource("/graphql")
                .route(web::post().to(graphql::graphql_http))
                .route(web::get().to(graphql::graphql_get)),
        );
}

/// Middleware: counts requests and their latency by route pattern (never by raw path, which
/// would carry charger ids).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let ctx = req.app_data::<web::Data<AppContext>>().cloned();
    let started = std::time::Instant::now();
    let response = next.call(req).await?;
    if let Some(ctx) = ctx {
        let status = format!("{}xx", response.status().as_u16() / 100);
        ctx.metrics
            .http_requests_total
            .with_label_values(&[route.as_str(), status.as_str()])
            .inc();
        ctx.metrics
            .http_request_duration_seconds
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
