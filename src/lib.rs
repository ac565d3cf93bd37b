//! chargegrid: an EV charging backend. OCPP chargers hold WebSockets to actors in the connection
//! server; a GraphQL API serves the app; Postgres, MongoDB, Redis, RabbitMQ and MQTT carry state
//! and events. See `docs/architecture.md`.

pub mod actors;
pub mod api;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod configuration;
pub mod context;
pub mod domain;
pub mod events;
pub mod live;
pub mod metrics;
pub mod ocm;
pub mod ocpp;
pub mod payments;
pub mod security;
pub mod shutdown;
pub mod smart;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod workers;
