//! Access to Postgres, Redis, MongoDB and RabbitMQ: connection setup plus plain async functions
//! that take a pool or a transaction. Nothing here knows about GraphQL or OCPP.

pub mod amqp;
pub mod batch;
pub mod billing;
pub mod charger_logs;
pub mod charger_writer;
pub mod chargers;
pub mod device_model;
pub mod firmware;
pub mod firmware_publications;
pub mod id_tokens;
pub mod invoices;
pub mod local_lists;
pub mod mongo;
pub mod ocm_sync_state;
pub mod operations;
pub mod ownership;
pub mod postgres;
pub mod redis;
pub mod refresh_tokens;
pub mod reservations;
pub mod running_cost;
pub mod security;
pub mod sessions;
pub mod sites;
pub mod starts_and_stops;
pub mod station_cache;
pub mod stations;
pub mod top_ups;
pub mod transaction_events;
pub mod transaction_writer;
pub mod transactions;
pub mod users;
pub mod vehicles;
pub mod wallet;

/// Errors of the storage layer. Constraint violations the caller can act on get their own variant.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("insufficient funds")]
    InsufficientFunds,
    /// Money in one currency against a wallet in another.
    #[error("the amount is in {amount}, the wallet in {wallet}")]
    CurrencyMismatch { amount: String, wallet: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A batched statement failed for every item in it (the database is unreachable).
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the error says the database cannot be reached, rather than that one statement or
    /// row is wrong: the connection broke or timed out, or the server is shutting down or not
    /// accepting connections (SQLSTATE classes 08 and 57, e.g. 57P01 on a connection that was
    /// open when PostgreSQL restarted). Running a failed batch's items one by one would only meet
    /// the same error, each after its own wait.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Database(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
            _ => false,
        }
    }

    /// Maps a unique violation on `constraint` to `Conflict(message)`, anything else to `Database`.
    pub fn from_unique(err: sqlx::Error, constraint: &str, message: &str) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() && db.constraint() == Some(constraint) {
                return StoreError::Conflict(message.to_string());
            }
        }
        StoreError::Database(err)
    }
}

/// A Postgres transaction, the unit every state change and its outbox event share.
pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// The array parameters of an `unnest(...)`, numbered from `$first`: `$1::text[], $2::int4[]`
/// for `array_params(1, &["text", "int4"])`.
pub(crate) fn array_params(first: usize, types: &[&str]) -> String {
    types
        .iter()
        .enumerate()
        .map(|(k, t)| format!("${}::{t}[]", first + k))
        .collect::<Vec<_>>()
        .join(", ")
}
