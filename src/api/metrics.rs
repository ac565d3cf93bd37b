//! `/metrics` in Prometheus text format.

use actix_web::{web, HttpResponse};

use crate::context::AppContext;
use crate::metrics::Metrics;

/// The connection server's metrics.
pub async fn metrics(req: actix_web::HttpRequest, ctx: web::Data<AppContext>) -> HttpResponse {
    if !ctx.serves_internal(&req) {
        return HttpResponse::NotFound().finish();
    }
    render(&ctx.metrics)
}

/// A worker's metrics (its HTTP server holds only them).
pub async fn worker_metrics(metrics: web::Data<std::sync::Arc<Metrics>>) -> HttpResponse {
    render(&metrics)
}

fn render(metrics: &Metrics) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}
