//! Shutting down on purpose: SIGTERM/SIGINT, and the drain of a serve replica (stop accepting,
//! ask chargers to reconnect elsewhere, give up their ownership, then stop the server; the
//! outbox is flushed after).

use std::time::Duration;

use actix_web::dev::ServerHandle;

use crate::actors::messages::{ConnectedChargers, DrainChargers};
use crate::context::AppContext;

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Drains a serve replica: no new connections, every charger told to go (close 1001 "going
/// away") so it reconnects to another replica, up to `cluster.drain_wait_secs` for the sockets
/// to close, then the server stops.
pub async fn drain(ctx: &AppContext, server: &ServerHandle) {
    server.pause().await;
    let asked = ctx
        .registry
        .send(DrainChargers {
            reason: "server shutting down; reconnect".into(),
        })
        .await
        .unwrap_or(0);
    tracing::info!(
        chargers = asked,
        "draining: chargers asked to reconnect elsewhere"
    );
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(ctx.settings.cluster.drain_wait_secs);
    while tokio::time::Instant::now() < deadline {
        let left = ctx
            .registry
            .send(ConnectedChargers)
            .await
            .map(|c| c.len())
            .unwrap_or(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop(true).await;
}
