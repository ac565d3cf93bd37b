//! chargegrid's charger simulator and load generator, as a library (the `loadtest` binary and
//! the repository's smoke test both use it). It simulates OCPP 1.6J and 2.0.1 chargers over
//! real WebSockets, drives the GraphQL app flow, injects faults and reports throughput, latency
//! percentiles and every error. It does not depend on the server crate: it speaks only the wire
//! protocols, so it can load any CSMS.

pub mod app;
pub mod charger;
pub mod connect;
pub mod frame;
pub mod machine;
#[cfg(feature = "plots")]
pub mod plots;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;

pub use report::Report;
pub use run::{run, Progress};
pub use scenario::Scenario;
