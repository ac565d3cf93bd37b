//! The command line of `chargegrid` (runtime contract): one binary, several roles.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chargegrid",
    version,
    about = "EV charging backend: OCPP connection server, GraphQL API, workers"
)]
pub struct Cli {
    /// Config file (TOML or YAML) layered over the defaults and under the environment.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Development mode: allows running without JWT_SECRET.
    #[arg(long, global = true)]
    pub dev: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The connection server: OCPP WebSocket endpoint, GraphQL API, health and metrics.
    Serve,
    /// Everything in one process (local use, demos, tests): serve plus both workers.
    All,
    /// A worker: `billing` or `notifications`.
    Worker {
        #[arg(value_enum)]
        kind: WorkerArg,
    },
    /// Dead-letter queue tools.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Applies the SQL migrations and creates the Mongo indexes, then exits.
    Migrate,
    /// OpenChargeMap mirror sync: every `ocm.sync_interval_secs` (6 h) until stopped.
    SyncOcm {
        /// Run one pass and exit.
        #[arg(long)]
        once: bool,
        /// Import an OCM dump (JSON array, compact or verbose, or NDJSON) instead of calling
        /// the API, then exit.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
    /// Loads the bundled OCM sample stations and the default tariff; with --dev also the demo
    /// chargers, operator and driver, whose passwords are public (idempotent).
    SeedDemo,
    /// User administration.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Creates a user (bootstrap an ADMIN).
    Create {
        #[arg(long)]
        email: String,
        /// The password; prefer CHARGEGRID_USER_PASSWORD so it stays out of shell history.
        #[arg(long, env = "CHARGEGRID_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        name: String,
        /// DRIVER, OPERATOR or ADMIN.
        #[arg(long, default_value = "DRIVER")]
        role: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum WorkerArg {
    /// Consumes SESSION_ENDED, writes invoices, debits wallets.
    Billing,
    /// Consumes lifecycle events, pushes notifications over MQTT.
    Notifications,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Moves the dead-lettered messages of QUEUE (e.g. chargegrid.billing) back for another try.
    Replay { queue: String },
}
