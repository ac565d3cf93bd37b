//! `/metrics` in Prometheus text format.

use actix_web::{web, HttpResponse};

use crate::context::AppContext;

pub async fn metrics(ctx: web::Data<AppContext>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(ctx.metrics.render())
}
