//! Startup behaviour of the real binary and of `Application::build`.

use std::process::Command;

use chargegrid::startup::Application;
use secrecy::SecretString;

use crate::helpers::{
    base_settings, create_empty_database, error_code, isolated_settings, spawn_with_settings,
};

const BIN: &str = env!("CARGO_BIN_EXE_chargegrid");

#[test]
fn serve_exits_non_zero_with_one_line_when_the_database_is_unreachable() {
    let output = Command::new(BIN)
        .args(["serve"])
        .env(
            "DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:1/chargegrid",
        )
        .env("JWT_SECRET", "a-long-enough-secret-for-this-test-000000")
        .env("HTTP_BIND", "127.0.0.1:0")
        .output()
        .expect("run chargegrid");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("chargegrid: PostgreSQL at postgres://postgres:***@127.0.0.1:1/chargegrid is unreachable"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "password leaked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[actix_web::test]
async fn serve_exits_non_zero_with_one_line_when_its_port_is_taken() {
    use secrecy::ExposeSecret;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("local address").port();
    // everything else is there: the server gets as far as its actors before it cannot listen
    let settings = isolated_settings().await;
    let output = Command::new(BIN)
        .args(["serve"])
        .env("DATABASE_URL", settings.database.url.expose_secret())
        .env("MONGODB_URL", settings.mongodb.url.expose_secret())
        .env("CHARGEGRID__REDIS__KEY_PREFIX", &settings.redis.key_prefix)
        .env("CHARGEGRID__EVENTS__NAMESPACE", &settings.events.namespace)
        .env("CHARGEGRID__EVENTS__EPHEMERAL", "true")
        .env("JWT_SECRET", "a-long-enough-secret-for-this-test-000000")
        .env("HTTP_BIND", format!("127.0.0.1:{port}"))
        .env("NODE_ID", "port-taken")
        .output()
        .expect("run chargegrid");
    drop(taken);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("chargegrid: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_without_jwt_secret() {
    let output = Command::new(BIN)
        .args(["serve"])
        .env_remove("JWT_SECRET")
        .output()
        .expect("run chargegrid");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JWT_SECRET is not set"), "{stderr}");
}

#[actix_web::test]
async fn the_server_refuses_a_database_with_unapplied_migrations() {
    let mut settings = base_settings();
    let url = create_empty_database(&settings).await;
    settings.database.url = SecretString::from(url);
    let err = match Application::build(settings).await {
        Ok(_) => panic!("a server started on an unmigrated database"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("unapplied migration"), "{err}");
    assert!(err.contains("chargegrid migrate"), "{err}");
}

#[actix_web::test]
async fn migrate_then_user_create_bootstraps_an_admin() {
    let mut settings = base_settings();
    let url = create_empty_database(&settings).await;
    let status = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .status()
        .expect("run migrate");
    assert!(status.success());
    let output = Command::new(BIN)
        .args([
            "user",
            "create",
            "--email",
            "root@example.com",
            "--name",
            "Root",
            "--role",
            "ADMIN",
        ])
        .env("CHARGEGRID_USER_PASSWORD", "an admin password")
        .env("DATABASE_URL", &url)
        .env("JWT_SECRET", "a-long-enough-secret-for-this-test-000000")
        .output()
        .expect("run user create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    settings.database.url = SecretString::from(url);
    let app = spawn_with_settings(settings).await;
    let login = app
        .graphql(
            "mutation { login(email: \"root@example.com\", password: \"an admin password\") { user { role } } }",
            serde_json::json!({}),
            None,
        )
        .await;
    assert_eq!(login["data"]["login"]["user"]["role"], "ADMIN", "{login}");
}

#[actix_web::test]
async fn stopping_the_app_closes_the_listener() {
    let app = spawn_with_settings(isolated_settings().await).await;
    let ok = app
        .graphql("{ me { id } }", serde_json::json!({}), None)
        .await;
    assert_eq!(error_code(&ok).as_deref(), Some("UNAUTHENTICATED"));
    app.stop().await;
    let after = reqwest::Client::new()
        .get(format!("{}/healthz", app.address))
        .send()
        .await;
    assert!(after.is_err());
}

/// How many times one connection of `pool` planned a statement whose custom plans look cheaper
/// than its generic one (an array's real size against the generic estimate, as in the writers'
/// batches) over twelve executions: (generic, custom).
async fn plans_of_a_batch_statement(pool: &sqlx::PgPool) -> (i64, i64) {
    const STATEMENT: &str =
        "SELECT count(*) FROM unnest($1::int4[]) AS u(v) JOIN pg_class c ON c.oid = u.v::oid";
    let mut conn = pool.acquire().await.expect("a connection");
    for n in 1..=12 {
        sqlx::query_scalar::<_, i64>(STATEMENT)
            .bind(vec![n])
            .fetch_one(&mut *conn)
            .await
            .expect("the batch statement");
    }
    sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
    )
    .bind(STATEMENT)
    .fetch_one(&mut *conn)
    .await
    .expect("the statement is prepared on this connection")
}

/// The charger side's pool plans each prepared statement once and reuses that plan (ADR 024);
/// the API's pool keeps PostgreSQL's default, which plans such a statement at every execution.
#[actix_web::test]
async fn the_charger_side_plans_each_statement_once() {
    let app = spawn_with_settings(isolated_settings().await).await;
    assert_eq!(plans_of_a_batch_statement(&app.ctx.db).await, (12, 0));
    let (_, custom) = plans_of_a_batch_statement(&app.ctx.api_db).await;
    assert_eq!(
        custom, 12,
        "the API's pool plans as PostgreSQL's default does"
    );
}

/// The workers' pool (`chargegrid worker`, built by `connect_core` as the in-process workers'
/// pool is) plans each prepared statement once too: billing's and the notifications' statements
/// are set-based batches and look-ups by key (ADR 024, amendment).
#[actix_web::test]
async fn the_workers_plan_each_statement_once() {
    let core = chargegrid::startup::connect_core(isolated_settings().await)
        .await
        .expect("the workers' context");
    assert_eq!(plans_of_a_batch_statement(&core.db).await, (12, 0));
}

/// The statement prepared on `pool`'s one connection whose text is `LIKE` `pattern`: its generic
/// and custom plan counts, and its cached plan (`EXPLAIN EXECUTE` with `arguments` empty arrays).
async fn cached_plan(
    pool: &sqlx::PgPool,
    pattern: &str,
    arguments: usize,
) -> (i64, i64, Vec<String>) {
    let mut conn = pool.acquire().await.unwrap();
    let (name, generic, custom): (String, i64, i64) = sqlx::query_as(
        "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE $1",
    )
    .bind(pattern)
    .fetch_one(&mut *conn)
    .await
    .expect("the statement is prepared on the pool's one connection");
    let arguments = vec!["'{}'"; arguments].join(", ");
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}({arguments})"))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    (generic, custom, plan)
}

/// The transaction writer's start batch reads each starting charger's station by key, whatever
/// plan the fleet's statistics would favour for a join (ADR 024, third amendment).
#[actix_web::test]
async fn a_start_batch_reads_each_chargers_station_by_key_whatever_the_fleet_statistics() {
    use chargegrid::store::postgres::{connect_with_plans, Plans};
    use chargegrid::store::starts_and_stops::{start_v16_many, StartV16};
    let mut settings = isolated_settings().await;
    settings.database.max_connections = 1;
    let pool = connect_with_plans(&settings.database, Plans::GenericByKey)
        .await
        .expect("a writer's pool");
    // a fleet of 200 chargers at one station, and statistics that say so
    let station: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO stations (id, name, latitude, longitude) VALUES (gen_random_uuid(), 'Fleet', 52.5, 13.4) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO chargers (id, station_id) SELECT 'FLEET-' || i, $1 FROM generate_series(1, 200) i")
        .bind(station)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    // Which join PostgreSQL picks depends on the statistics of the moment: after one fleet was
    // retired and another registered (dead index entries), a bitmap scan of every charger with
    // a station, hashed; with a history of sessions, a merge join along the primary key. Here
    // nested loops are off for the pool's one connection, so the planner takes any other join
    // the statement leaves it: it must leave none.
    sqlx::query("SET enable_nestloop = off")
        .execute(&pool)
        .await
        .unwrap();
    let start = StartV16 {
        charger_id: "FLEET-7".into(),
        connector_id: 1,
        id_tag: "FLEET-TAG".into(),
        started_at: chrono::Utc::now(),
        meter_start_wh: rust_decimal::Decimal::ZERO,
        id_tag_status: "Accepted".into(),
        user_id: None,
    };
    let mut tx = pool.begin().await.unwrap();
    let mut events = Vec::new();
    let stored = start_v16_many(&mut tx, &[&start], "test", &mut events)
        .await
        .expect("the start batch");
    assert!(
        matches!(stored.as_slice(), [Some((_, None))]),
        "a transaction, no session"
    );
    tx.commit().await.unwrap();
    let (generic, custom, plan) = cached_plan(
        &pool,
        "WITH k AS ( SELECT *, NULL::int4 AS remote_start_id%",
        8,
    )
    .await;
    assert_eq!((generic, custom), (1, 0), "a generic plan");
    // a join would read every charger with a station (a bitmap scan, or a merge join along the
    // primary key) in every batch: each line that reads chargers must probe the key
    let reads: Vec<(&String, Option<&String>)> = plan
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains(" on chargers "))
        .map(|(k, line)| (line, plan.get(k + 1)))
        .collect();
    assert!(
        !reads.is_empty()
            && reads.iter().all(
                |(line, next)| line.contains("Index Scan using chargers_pkey")
                    && next.is_some_and(|n| n.contains("Index Cond: (id = "))
            ),
        "the cached plan reads chargers by key: {}",
        plan.join("\n")
    );
}

/// A status batch planned on a writer's connection (`Plans::GenericByKey`, the charger writer's)
/// while `connector_status` was nearly empty still finds its rows by key once the table has grown
/// without new statistics (ADR 024, second amendment): PostgreSQL plans such a small table with
/// sequential scans, a generic plan keeps them until the next ANALYZE, and these pools plan no
/// sequential scan where an index answers.
#[actix_web::test]
async fn a_status_batch_planned_while_the_table_was_small_reads_by_key_after_it_grew() {
    use chargegrid::events::outbox::Columns;
    use chargegrid::store::chargers::{update_connector_statuses_alone, StatusReport};
    use chargegrid::store::postgres::{connect_with_plans, Plans};
    let mut settings = isolated_settings().await;
    settings.database.max_connections = 1;
    let pool = connect_with_plans(&settings.database, Plans::GenericByKey)
        .await
        .expect("a writer's pool");
    for statement in [
        "ALTER TABLE connector_status SET (autovacuum_enabled = off)",
        "INSERT INTO chargers (id) SELECT 'GROW-' || i FROM generate_series(1, 5000) i",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect(statement);
    }
    let report = |status: &str| StatusReport {
        connector_id: 1,
        status: status.into(),
        error_code: None,
        info: None,
        vendor_error_code: None,
        reported_at: None,
    };
    let (available, charging) = (report("Available"), report("Charging"));
    let batch = |report: &StatusReport| {
        let pool = &pool;
        let report = report.clone();
        async move {
            let changed = update_connector_statuses_alone(
                pool,
                &[("GROW-1", &report), ("GROW-2", &report)],
                &Columns::default(),
            )
            .await
            .expect("the status batch");
            changed.len()
        }
    };
    // planned while the table holds two rows (and its statistics say so)
    assert_eq!(batch(&available).await, 2);
    sqlx::query("ANALYZE connector_status")
        .execute(&pool)
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(batch(&charging).await, 2);
        assert_eq!(batch(&available).await, 2);
    }
    // the deployment's other chargers report: 10,000 rows
    sqlx::query(
        "INSERT INTO connector_status (charger_id, connector_id, status) \
         SELECT 'GROW-' || i, c, 'Available' FROM generate_series(3, 5000) i, generate_series(1, 2) c",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(batch(&charging).await, 2);
    let (generic, custom, plan) = cached_plan(&pool, "WITH input AS%", 12).await;
    assert_eq!((generic, custom), (8, 0), "generic plans only");
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using connector_status_pkey on connector_status c")
            && !plan.contains("Seq Scan on connector_status"),
        "the cached plan reads connector_status by key: {plan}"
    );
}
