//! `/healthz` and `/metrics` of a worker process, on `worker.http_bind`.

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};

use crate::api;
use crate::context::CoreContext;

/// Binds the worker's small HTTP server; returns it and its port.
pub fn server(ctx: &CoreContext) -> std::io::Result<(Server, u16)> {
    let data = web::Data::new(ctx.metrics.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/healthz", web::get().to(api::health::healthz))
            .route("/metrics", web::get().to(api::metrics::worker_metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(&ctx.settings.worker.http_bind)?;
    let port = server.addrs().first().map(|a| a.port()).unwrap_or_default();
    Ok((server.run(), port))
}
