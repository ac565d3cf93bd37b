//! The Postgres pool, the embedded migrations, and the startup check that refuses to serve a
//! database whose schema is behind the binary.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres};

use crate::configuration::{mask_url, DatabaseSettings};

/// A pooled connection idle this long is pinged before it is handed out; one given back sooner
/// was pinged when it was given back (sqlx does that on every release; ADR 023).
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The SQL migrations, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("PostgreSQL at {url}: {reason}")]
    Schema { url: String, reason: String },
    #[error("PostgreSQL at {url}: migration failed: {reason}")]
    Migrate { url: String, reason: String },
}

fn options(settings: &DatabaseSettings) -> Result<PgConnectOptions, PostgresError> {
    let raw = settings.url.expose_secret();
    let options = raw
        .parse::<PgConnectOptions>()
        .map_err(|e| PostgresError::Unreachable {
            url: mask_url(raw),
            reason: format!("invalid DATABASE_URL: {e}"),
        })?;
    Ok(if !asks_about_tls(raw) && on_this_machine(&options) {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    })
}

/// Whether the configuration says anything about TLS: an `sslmode` (in the URL, or a valid
/// PGSSLMODE), or certificates to present or to check (a server that wants a client
/// certificate must still get one). Keys as sqlx reads them (case-sensitive).
fn asks_about_tls(raw: &str) -> bool {
    const KEYS: [&str; 9] = [
        "sslmode",
        "ssl-mode",
        "sslrootcert",
        "ssl-root-cert",
        "ssl-ca",
        "sslcert",
        "ssl-cert",
        "sslkey",
        "ssl-key",
    ];
    let in_url = url::Url::parse(raw)
        .map(|u| u.query_pairs().any(|(k, _)| KEYS.contains(&k.as_ref())))
        .unwrap_or(false);
    let mode_in_env = std::env::var("PGSSLMODE")
        .ok()
        .is_some_and(|v| v.parse::<PgSslMode>().is_ok());
    let certs_in_env = ["PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    in_url || mode_in_env || certs_in_env
}

/// A database reached over loopback or a Unix socket. TLS to it protects nothing when the server
/// is on this machine and, with libpq's default `prefer` against a server that has TLS on
/// (Debian's default), costs both sides a cipher on every round trip: 3.8 % of the machine in
/// PostgreSQL's TLS libraries alone under the start-session benchmark (ADR 022). A loopback
/// port that forwards elsewhere must name its `sslmode`.
fn on_this_machine(options: &PgConnectOptions) -> bool {
    if options.get_socket().is_some() {
        return true;
    }
    let host = options
        .get_host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How the connections of a pool plan their prepared statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// PostgreSQL's default (`plan_cache_mode = auto`): a custom plan for each execution for as
    /// long as custom plans look cheaper than the statement's generic one.
    Auto,
    /// One generic plan per prepared statement, reused for every execution
    /// (`plan_cache_mode = force_generic_plan`; ADR 024). For pools whose statements are the
    /// hot path's set-based batches and look-ups by key: a statement over `unnest($1::…[])`
    /// looks cheaper with its arrays' real sizes than with the generic plan's estimate, and
    /// one whose parameters switch parts of it off (`CASE WHEN $2 …`, `$3 IS NOT NULL AND …`)
    /// looks cheaper with them folded, so under `auto` PostgreSQL planned those statements at
    /// every execution: 0.4 of a core in the start-session benchmark, more than it spent
    /// running them.
    Generic,
    /// `Generic`, and no sequential scan where an index can answer (`enable_seqscan = off`;
    /// ADR 024, second amendment), for the writers' pools, whose every statement is a batch
    /// or look-up by key. A generic plan is made from the statistics of its moment and kept
    /// until the next ANALYZE: made while a table was small (a new deployment's chargers
    /// reporting their connectors for the first time), it scanned the whole table for every
    /// key as the table grew. Not for pools that also run statements that must read most of a
    /// table (retention, sweeps): those would walk an index instead.
    GenericByKey,
}

/// Connects and proves the connection works (a pool is lazy otherwise).
pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, PostgresError> {
    connect_with_plans(settings, Plans::Auto).await
}

/// A pool whose connections plan their prepared statements as `plans` says.
pub async fn connect_with_plans(
    settings: &DatabaseSettings,
    plans: Plans,
) -> Result<PgPool, PostgresError> {
    connect_pool(settings, plans, &[]).await
}

/// The pool of a writer of the durable path (transactions, chargers): `Plans::GenericByKey`,
/// and outbox inserts that send no NOTIFY (`chargegrid.outbox_notify = off`): the writer wakes
/// the relay once its batch committed (`events::wake`, ADR 016, fifth amendment), so its commits
/// do not queue behind every other notifying commit of the cluster.
pub async fn connect_writer_pool(settings: &DatabaseSettings) -> Result<PgPool, PostgresError> {
    connect_pool(
        settings,
        Plans::GenericByKey,
        &[(crate::events::wake::NOTIFY_SETTING, "off")],
    )
    .await
}

async fn connect_pool(
    settings: &DatabaseSettings,
    plans: Plans,
    extra: &[(&str, &str)],
) -> Result<PgPool, PostgresError> {
    let url = mask_url(settings.url.expose_secret());
    let options = match (options(settings)?.options(extra.iter().copied()), plans) {
        (options, Plans::Auto) => options,
        (options, Plans::Generic) => options.options([("plan_cache_mode", "force_generic_plan")]),
        (options, Plans::GenericByKey) => options.options([
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
        ]),
    };
    // One direct connection first: a pool only reports "timed out", this reports the cause.
    let probe = tokio::time::timeout(
        Duration::from_secs(settings.connect_timeout_secs),
        options.connect(),
    )
    .await
    .map_err(|_| PostgresError::Unreachable {
        url: url.clone(),
        reason: "connection timed out".into(),
    })?
    .map_err(|e| PostgresError::Unreachable {
        url: url.clone(),
        reason: short_reason(&e),
    })?;
    let _ = probe.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(settings.connect_timeout_secs))
        // sqlx pings every connection it hands out (a round trip to the server before each
        // statement run on the pool) besides the ping it makes when one is given back; only a
        // connection that sat idle may have been dropped meanwhile (ADR 023)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| PostgresError::Unreachable {
            url: url.clone(),
            reason: short_reason(&e),
        })?;
    Ok(pool)
}

/// Creates the database if it does not exist yet, then applies every pending migration.
pub async fn migrate(settings: &DatabaseSettings) -> Result<PgPool, PostgresError> {
    let raw = settings.url.expose_secret();
    let url = mask_url(raw);
    let exists = Postgres::database_exists(raw)
        .await
        .map_err(|e| PostgresError::Unreachable {
            url: url.clone(),
            reason: short_reason(&e),
        })?;
    if !exists {
        Postgres::create_database(raw)
            .await
            .map_err(|e| PostgresError::Migrate {
                url: url.clone(),
                reason: short_reason(&e),
            })?;
    }
    let pool = connect(settings).await?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| PostgresError::Migrate {
            url,
            reason: e.to_string(),
        })?;
    Ok(pool)
}

/// Fails unless every migration of this binary is applied with a matching checksum.
pub async fn ensure_migrated(
    pool: &PgPool,
    settings: &DatabaseSettings,
) -> Result<(), PostgresError> {
    let url = mask_url(settings.url.expose_secret());
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await
        .map_err(|e| PostgresError::Unreachable {
            url: url.clone(),
            reason: short_reason(&e),
        })?;
    let applied: HashMap<i64, Vec<u8>> = if table.is_some() {
        sqlx::query_as::<_, (i64, Vec<u8>)>(
            "SELECT version, checksum FROM _sqlx_migrations WHERE success",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| PostgresError::Unreachable {
            url: url.clone(),
            reason: short_reason(&e),
        })?
        .into_iter()
        .collect()
    } else {
        HashMap::new()
    };
    let mut pending = Vec::new();
    for migration in MIGRATOR.iter() {
        match applied.get(&migration.version) {
            None => pending.push(migration.version),
            Some(checksum) if checksum.as_slice() != &*migration.checksum => {
                return Err(PostgresError::Schema {
                    url,
                    reason: format!(
                        "migration {} was changed after it was applied",
                        migration.version
                    ),
                })
            }
            Some(_) => {}
        }
    }
    if pending.is_empty() {
        Ok(())
    } else {
        Err(PostgresError::Schema {
            url,
            reason: format!(
                "{} unapplied migration(s) (first {}); run `chargegrid migrate`",
                pending.len(),
                pending[0]
            ),
        })
    }
}

/// The one-line cause of a sqlx error, without connection strings.
fn short_reason(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "connection timed out".into(),
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn mode(url: &str) -> PgSslMode {
        let settings = DatabaseSettings {
            url: SecretString::from(url.to_string()),
            ..DatabaseSettings::default()
        };
        options(&settings)
            .map(|o| o.get_ssl_mode())
            .unwrap_or(PgSslMode::VerifyFull)
    }

    #[test]
    fn a_database_on_this_machine_is_reached_without_tls_unless_the_url_asks_for_it() {
        assert!(matches!(
            mode("postgres://u@127.0.0.1:5432/d"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@127.0.0.9/d"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@localhost/d"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@[::1]:5432/d"),
            PgSslMode::Disable
        ));
        assert!(matches!(
            mode("postgres://u@%2Fvar%2Frun%2Fpostgresql/d"),
            PgSslMode::Disable
        ));
        // a mode the URL names is obeyed, on this machine too
        assert!(matches!(
            mode("postgres://u@127.0.0.1/d?sslmode=require"),
            PgSslMode::Require
        ));
        // certificates to present or check keep the driver's default (prefer) here too
        assert!(matches!(
            mode("postgres://u@127.0.0.1/d?sslcert=/c.pem&sslkey=/k.pem"),
            PgSslMode::Prefer
        ));
        assert!(matches!(
            mode("postgres://u@localhost/d?sslrootcert=/ca.pem"),
            PgSslMode::Prefer
        ));
        // another machine keeps the driver's default (prefer) or what the URL says
        assert!(matches!(
            mode("postgres://u@db.example.com/d"),
            PgSslMode::Prefer
        ));
        assert!(matches!(
            mode("postgres://u@10.0.0.5/d?sslmode=verify-full"),
            PgSslMode::VerifyFull
        ));
    }
}
