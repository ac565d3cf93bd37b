//! Integration tests against the real services: one binary, one module per capability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod billing;
mod charger_client;
mod charger_writer;
mod cluster;
mod events;
mod fuzz;
mod gql_ws;
mod health;
mod helpers;
mod hostile;
mod ocm;
mod ocpp16;
mod ocpp201;
mod ocpp201_sessions;
mod ocpp201_transactions;
mod payments;
mod peers;
mod pnc;
mod replicas;
mod sessions;
mod startup;
mod subscriptions;
mod tls;
mod transaction_writer;
