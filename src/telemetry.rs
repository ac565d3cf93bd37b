//! Tracing setup: `RUST_LOG` filter (default `info`), human-readable on a terminal, JSON otherwise.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber once; later calls are no-ops (tests build many apps).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if std::io::stderr().is_terminal() {
        registry
            .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    let _ = result;
}
