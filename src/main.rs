//! `chargegrid`: parses the command line, loads settings, installs telemetry and runs the role.

use std::process::ExitCode;

use clap::Parser;

use chargegrid::cli::{Cli, Command, DlqCommand, UserCommand, WorkerArg};
use chargegrid::configuration::Settings;
use chargegrid::context::AppContext;
use chargegrid::ocm::client::OcmClient;
use chargegrid::ocm::scheduler;
use chargegrid::ocm::sync::SyncDeps;
use chargegrid::startup::Application;
use chargegrid::workers::WorkerKind;
use chargegrid::{commands, telemetry};

/// mimalloc rather than glibc's allocator (ADR 021): buffers cross threads (socket, actors,
/// writers), and glibc's frees of another thread's memory were 6 % of the machine under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.dev);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // one human-readable line, no backtrace
            eprintln!("chargegrid: {err:#}");
            // and nothing after it: returning would drop the actor system with its actors'
            // pending futures, whose pooled database connections need the runtime that is
            // being torn down (sqlx panics, and a backtrace follows the one line)
            std::process::exit(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref(), cli.dev)?;
    match cli.command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
        }
        Command::All => {
            let app = Application::build_with(
                settings,
                &[WorkerKind::Billing, WorkerKind::Notifications],
            )
            .await?;
            let ocm = ocm_scheduler(app.context());
            app.run_until_stopped().await?;
            if let Some(ocm) = ocm {
                ocm.abort();
            }
        }
        Command::Worker { kind } => {
            let kind = match kind {
                WorkerArg::Billing => WorkerKind::Billing,
                WorkerArg::Notifications => WorkerKind::Notifications,
            };
            commands::worker::run(settings, kind).await?;
        }
        Command::Dlq {
            command: DlqCommand::Replay { queue },
        } => {
            let moved = chargegrid::events::dlq::replay(&settings, &queue).await?;
            println!("replayed {moved} message(s) from {queue}.dlq");
        }
        Command::Migrate => commands::migrate::run(&settings).await?,
        Command::SyncOcm { once, from_file } => {
            commands::sync_ocm::run(settings, once, from_file).await?
        }
        Command::SeedDemo => commands::seed_demo::run(settings).await?,
        Command::User {
            command:
                UserCommand::Create {
                    email,
                    password,
                    name,
                    role,
                },
        } => commands::user::create(settings, &email, &password, &name, &role).await?,
    }
    Ok(())
}

/// The OCM scheduler of `chargegrid all`, reloading this process's search index after each
/// sync; off (with a warning) without an API key, so local demos run without one.
fn ocm_scheduler(ctx: &AppContext) -> Option<tokio::task::JoinHandle<()>> {
    if let Err(e) = OcmClient::new(&ctx.settings.ocm) {
        tracing::warn!(reason = %e, "OpenChargeMap sync disabled");
        return None;
    }
    let deps = SyncDeps::from(ctx);
    let index = ctx.stations.clone();
    Some(tokio::spawn(scheduler::run(
        deps,
        Some(index),
        std::future::pending(),
    )))
}
