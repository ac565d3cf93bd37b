//! OpenChargeMap: the API client, the MongoDB mirror of OCM POIs (the source of truth for raw
//! station data), the sync that keeps it and the Postgres stations in step, and the in-memory
//! station search built from Postgres.

mod batch;
pub mod client;
pub mod connectors;
pub mod dump;
pub mod geo;
pub mod lock;
pub mod mirror;
pub mod poi;
pub mod progress;
pub mod reference;
pub mod scheduler;
pub mod search;
pub mod sync;

pub use batch::{cache_generation_key, StageTimings};
