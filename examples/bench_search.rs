//! Benchmark of the OCM sync and of station search at world scale (not a test).
//!
//! ```text
//! cargo run --release --features bench --example bench_search -- [--count 300000] [--seed 7]
//!     [--sync-count 20000] [--queries 10000] [--http-queries 2000] [--no-write] [--keep]
//! ```
//!
//! Generates `--count` synthetic POIs with `../shared/ocm/synth.py` (cached in the temp dir).
//! The first `--sync-count` of them (default 20,000; 0 = all) are imported into a fresh
//! Postgres database and MongoDB database through the `--from-file` path (the same batch
//! pipeline as an API sync) and re-imported unchanged: the sync throughput. The rest are
//! parsed, normalised and upserted into Postgres by the same code without the mirror write (the
//! Mongo-wire server used here, SecantusDB, scans its collection for every lookup, so a 300,000
//! POI mirror takes it far longer than the search figure needs). Then the search index is loaded
//! from Postgres, `--queries` searches are timed in process and `--http-queries` over
//! GraphQL/HTTP. Prints the figures and writes them to the `## Station search and OCM sync`
//! section of BENCHMARKS.md. Needs the services of `scripts/services.sh` (DATABASE_URL etc.
//! honoured).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chargegrid::commands::sync_ocm;
use chargegrid::configuration::Settings;
use chargegrid::ocm::dump::DumpBatches;
use chargegrid::ocm::poi;
use chargegrid::ocm::progress::Progress;
use chargegrid::ocm::reference::Reference;
use chargegrid::ocm::search::{SearchQuery, StationIndexHandle};
use chargegrid::ocm::sync::{run_once, SyncDeps, SyncOutcome, SyncReport, SyncSource};
use chargegrid::startup::Application;
use chargegrid::store::stations;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::migrate::MigrateDatabase;
use sqlx::{Connection, Executor};

const SECTION: &str = "## Station search and OCM sync";
const CONNECTORS: &[&str] = &["CCS", "Type 2", "CHAdeMO", "CCS (Type 2)", "Type 1 (J1772)"];

struct Args {
    count: usize,
    sync_count: usize,
    seed: u64,
    queries: usize,
    http_queries: usize,
    write: bool,
    keep: bool,
    raw: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args {
        count: 300_000,
        sync_count: 20_000,
        seed: 7,
        queries: 10_000,
        http_queries: 2_000,
        write: true,
        keep: false,
        raw: raw.clone(),
    };
    let mut it = raw.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("missing value");
        match flag.as_str() {
            "--count" => args.count = value()?.parse()?,
            "--sync-count" => args.sync_count = value()?.parse()?,
            "--seed" => args.seed = value()?.parse()?,
            "--queries" => args.queries = value()?.parse()?,
            "--http-queries" => args.http_queries = value()?.parse()?,
            "--no-write" => args.write = false,
            "--keep" => args.keep = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// A query mix: radii, the share with a connector / power filter, page sizes.
struct Mix {
    name: &'static str,
    radii: &'static [f64],
    connector_share: f64,
    power_share: f64,
    firsts: &'static [i32],
}

const TYPICAL: Mix = Mix {
    name: "typical",
    radii: &[2.0, 5.0, 10.0, 10.0, 25.0, 50.0],
    connector_share: 0.3,
    power_share: 0.2,
    firsts: &[10, 20, 20, 50],
};

const WIDE: Mix = Mix {
    name: "wide",
    radii: &[100.0, 250.0, 500.0],
    connector_share: 0.5,
    power_share: 0.5,
    firsts: &[20, 100],
};

#[derive(Clone)]
struct Query {
    near: (f64, f64),
    radius: f64,
    connector: Option<&'static str>,
    min_power: Option<f64>,
    first: i32,
}

fn queries(mix: &Mix, centres: &[(f64, f64)], n: usize, rng: &mut StdRng) -> Vec<Query> {
    (0..n)
        .map(|_| {
            let (lat, lon) = centres[rng.gen_range(0..centres.len())];
            let pick = |rng: &mut StdRng, items: &[f64]| items[rng.gen_range(0..items.len())];
            Query {
                near: (
                    (lat + rng.gen_range(-0.05..0.05)).clamp(-90.0, 90.0),
                    (lon + rng.gen_range(-0.05..0.05)).clamp(-180.0, 180.0),
                ),
                radius: pick(rng, mix.radii),
                connector: (rng.gen::<f64>() < mix.connector_share)
                    .then(|| CONNECTORS[rng.gen_range(0..CONNECTORS.len())]),
                min_power: (rng.gen::<f64>() < mix.power_share)
                    .then(|| pick(rng, &[22.0, 50.0, 150.0])),
                first: mix.firsts[rng.gen_range(0..mix.firsts.len())],
            }
        })
        .collect()
}

struct Latency {
    histogram: Histogram<u64>,
    results: usize,
}

impl Latency {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
            results: 0,
        })
    }

    fn record(&mut self, took: Duration, results: usize) -> anyhow::Result<()> {
        self.histogram.record(took.as_nanos().max(1) as u64)?;
        self.results += results;
        Ok(())
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1e6
    }

    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} |",
            self.histogram.len(),
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.histogram.max() as f64 / 1e6,
            self.results as f64 / self.histogram.len().max(1) as f64
        )
    }
}

fn synth_file(args: &Args) -> anyhow::Result<(PathBuf, Option<Duration>)> {
    let dir = std::env::temp_dir().join("chargegrid-bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("synth-{}-{}.json", args.count, args.seed));
    if path.metadata().map(|m| m.len() > 0).unwrap_or(false) {
        return Ok((path, None));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ocm/synth.py");
    eprintln!("generating {} POIs with {}", args.count, script.display());
    let started = Instant::now();
    let out = std::fs::File::create(&path)?;
    let status = Command::new("python3")
        .arg(&script)
        .args([
            "--count",
            &args.count.to_string(),
            "--seed",
            &args.seed.to_string(),
        ])
        .arg("--compact")
        .stdout(out)
        .status()?;
    if !status.success() {
        let _ = std::fs::remove_file(&path);
        bail!("synth.py failed");
    }
    Ok((path, Some(started.elapsed())))
}

/// The first `n` POIs of `file`, written next to it as a JSON array (cached).
async fn subset_file(file: &Path, n: usize, batch: usize) -> anyhow::Result<PathBuf> {
    let path = file.with_extension(format!("first{n}.json"));
    if path.metadata().map(|m| m.len() > 0).unwrap_or(false) {
        return Ok(path);
    }
    let mut dump = DumpBatches::open(file, batch)?;
    let mut values = Vec::with_capacity(n);
    while values.len() < n {
        let Some(batch) = dump.next().await else {
            break;
        };
        values.extend(batch?.into_iter().take(n - values.len()));
    }
    std::fs::write(&path, serde_json::to_vec(&values)?)?;
    Ok(path)
}

/// What the Postgres-only import of the POIs after the first `skip` did.
struct PostgresOnly {
    pois: u64,
    rejected: u64,
    parse: Duration,
    postgres: Duration,
    wall: Duration,
}

/// Parses, normalises and upserts the POIs of `file` after the first `skip` into Postgres in
/// batches of `batch`: the pipeline's own parse and Postgres stage, without the mirror.
async fn postgres_only(
    deps: &SyncDeps,
    file: &Path,
    skip: usize,
    batch: usize,
) -> anyhow::Result<PostgresOnly> {
    let reference = Reference::embedded()?;
    let started = Instant::now();
    let mut out = PostgresOnly {
        pois: 0,
        rejected: 0,
        parse: Duration::ZERO,
        postgres: Duration::ZERO,
        wall: Duration::ZERO,
    };
    let mut dump = DumpBatches::open(file, batch)?;
    let mut seen = 0usize;
    while let Some(values) = dump.next().await {
        let values = values?;
        let take = values.len().saturating_sub(skip.saturating_sub(seen));
        seen += values.len();
        let t = Instant::now();
        let mut pois = Vec::with_capacity(take);
        let before = values.len() - take;
        for value in values.into_iter().skip(before) {
            match poi::parse(value, reference) {
                Ok(p) => pois.push(p),
                Err(_) => out.rejected += 1,
            }
        }
        out.parse += t.elapsed();
        if pois.is_empty() {
            continue;
        }
        let t = Instant::now();
        let rows: Vec<_> = pois
            .iter()
            .map(|p| (&p.station, p.content_hash.as_str()))
            .collect();
        let mut tx = deps.db.begin().await?;
        stations::upsert_ocm(&mut tx, &rows).await?;
        tx.commit().await?;
        out.postgres += t.elapsed();
        out.pois += pois.len() as u64;
    }
    out.wall = started.elapsed();
    Ok(out)
}

fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url)?;
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into());
    format!("{cores} vCPU ({cpu}), {mem_gb:.0} GB RAM; load average at the end of the run {load} (1/5/15 min)")
}

fn completed(outcome: SyncOutcome) -> anyhow::Result<SyncReport> {
    match outcome {
        SyncOutcome::Completed(report) => Ok(report),
        SyncOutcome::Skipped => bail!("the sync lock is held"),
    }
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:.0}", n as f64 / d.as_secs_f64().max(1e-9))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let (file, generated_in) = synth_file(&args)?;
    let file_mb = file.metadata()?.len() as f64 / 1e6;

    // a fresh Postgres database, Mongo database and Redis prefix
    let mut settings = Settings::load(None, true)?;
    let run = format!("cg_bench_{}", chrono::Utc::now().timestamp());
    let db_url = with_database(settings.database.url.expose_secret(), &run)?;
    sqlx::Postgres::create_database(&db_url).await?;
    settings.database.url = SecretString::from(db_url.clone());
    let mut mongo_url = url::Url::parse(settings.mongodb.url.expose_secret())?;
    mongo_url.set_path(&format!("/{run}"));
    settings.mongodb.url = SecretString::from(mongo_url.to_string());
    settings.redis.key_prefix = run.clone();
    settings.http.bind = "127.0.0.1:0".into();
    settings.http.workers = 1;
    {
        let pool = sqlx::PgPool::connect(&db_url).await?;
        chargegrid::store::postgres::MIGRATOR.run(&pool).await?;
        pool.close().await;
    }
    let deps = sync_ocm::connect(settings.clone()).await?;
    let mongo_version = deps
        .mongo
        .run_command(mongodb::bson::doc! { "buildInfo": 1 })
        .await
        .ok()
        .and_then(|d| d.get_str("version").ok().map(String::from))
        .unwrap_or_else(|| "?".into());

    let sync_count = match args.sync_count {
        0 => args.count,
        n => n.min(args.count),
    };
    let sync_file = if sync_count < args.count {
        subset_file(&file, sync_count, settings.ocm.batch_size as usize).await?
    } else {
        file.clone()
    };
    eprintln!("importing {sync_count} POIs from {}", sync_file.display());
    let import = completed(
        run_once(
            &deps,
            SyncSource::File(sync_file.clone()),
            &Progress::for_stderr(),
        )
        .await?,
    )?;
    let import_wall = (import.finished_at - import.started_at).to_std()?;
    eprintln!("re-importing unchanged");
    let again = completed(
        run_once(
            &deps,
            SyncSource::File(sync_file.clone()),
            &Progress::for_stderr(),
        )
        .await?,
    )?;
    let again_wall = (again.finished_at - again.started_at).to_std()?;
    let rest = if sync_count < args.count {
        eprintln!(
            "normalising the other {} POIs into Postgres",
            args.count - sync_count
        );
        Some(postgres_only(&deps, &file, sync_count, settings.ocm.batch_size as usize).await?)
    } else {
        None
    };

    let index = StationIndexHandle::default();
    let started = Instant::now();
    index.reload(&deps.db).await?;
    let load = started.elapsed();
    let snapshot = index.current();

    let centres: Vec<(f64, f64)> =
        sqlx::query_as("SELECT latitude, longitude FROM stations WHERE is_live ORDER BY ocm_id")
            .fetch_all(&deps.db)
            .await?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut rows = Vec::new();
    let mut in_process = Vec::new();
    for mix in [&TYPICAL, &WIDE] {
        let n = if mix.name == "typical" {
            args.queries
        } else {
            args.queries / 10
        };
        let list = queries(mix, &centres, n + 1000, &mut rng);
        let parsed: Vec<SearchQuery> = list
            .iter()
            .map(|q| {
                SearchQuery::parse(
                    q.near,
                    q.radius,
                    q.connector.map(String::from),
                    q.min_power,
                    q.first,
                    &settings.ocm,
                )
            })
            .collect::<Result<_, _>>()?;
        let mut latency = Latency::new()?;
        for (i, query) in parsed.iter().enumerate() {
            let started = Instant::now();
            let hits = snapshot.search(query)?;
            let took = started.elapsed();
            // the first 1,000 warm caches and are not counted
            if i >= 1000 {
                latency.record(took, hits.len())?;
            }
        }
        rows.push(latency.row(&format!("in process, {} mix", mix.name)));
        in_process.push((mix.name, latency));
    }

    // end to end: GraphQL over HTTP on this machine, one client, sequential
    let app = Application::build(settings.clone()).await?;
    let address = format!("http://127.0.0.1:{}/graphql", app.port());
    let handle = app.handle();
    actix_rt::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let mut latency = Latency::new()?;
    let list = queries(&TYPICAL, &centres, args.http_queries + 200, &mut rng);
    let gql = "query($near: GeoPointInput!, $r: Float, $t: String, $p: Float, $n: Int) { stations(near: $near, radiusKm: $r, connectorType: $t, minPowerKw: $p, first: $n) { id name distanceKm connectors { type powerKW } } }";
    for (i, q) in list.iter().enumerate() {
        let body = json!({ "query": gql, "variables": {
            "near": { "latitude": q.near.0, "longitude": q.near.1 }, "r": q.radius,
            "t": q.connector, "p": q.min_power, "n": q.first } });
        let started = Instant::now();
        let response: serde_json::Value =
            http.post(&address).json(&body).send().await?.json().await?;
        let took = started.elapsed();
        let Some(stations) = response["data"]["stations"].as_array() else {
            bail!("search failed: {response}");
        };
        if i >= 200 {
            latency.record(took, stations.len())?;
        }
    }
    rows.push(latency.row("GraphQL over HTTP, typical mix"));
    handle.stop(true).await;

    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let dirty =
        !command_output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let command = format!(
        "cargo run --release --features bench --example bench_search{}{}",
        if args.raw.is_empty() { "" } else { " -- " },
        args.raw.join(" ")
    );
    let typical_p99 = in_process
        .first()
        .map(|(_, l)| l.ms(0.99))
        .unwrap_or(f64::NAN);
    let t = &import.timings;
    let section = format!(
        "{SECTION}\n\n\
         - Machine: {}\n\
         - Date: {} (UTC)\n\
         - Commit: `{commit}`{}\n\
         - Command: `{command}` (services from `scripts/services.sh`; MongoDB wire server reports {mongo_version})\n\
         - Data: {} synthetic POIs, `python3 ../shared/ocm/synth.py --count {} --seed {} --compact` ({file_mb:.0} MB{})\n\n\
         ### Sync (`sync-ocm --from-file` path: the batch pipeline of an API sync, {} POIs per batch)\n\n\
         The first {sync_count} POIs go through the whole pipeline into MongoDB and Postgres{}.\n\n\
         | | figure |\n|---|---|\n\
         | first import, wall | {:.1} s ({} POIs/s; {} processed, {} updated, {} failed) |\n\
         | into MongoDB (mirror upserts) | {:.1} s, {} POIs/s |\n\
         | into Postgres (stations + connections) | {:.1} s, {} POIs/s |\n\
         | parse, normalise, hash | {:.1} s |\n\
         | held-state lookups (both stores) | {:.1} s |\n\
         | re-import of the unchanged dump | {:.1} s ({} POIs/s, {} updated) |\n\
{}\
         | search index load from Postgres | {:.2} s, {} live stations |\n\n\
         ### Search latency\n\n\
         Queries centred within ±0.05° of random live stations. Typical mix: radius 2–50 km, 30 % \
         with a connector filter (CCS, Type 2, CHAdeMO, CCS (Type 2), Type 1 (J1772)), 20 % with \
         minPowerKw 22/50/150, first 10–50. Wide mix: radius 100–500 km, half with each filter, \
         first 20 or 100. First 1,000 (HTTP: 200) queries are warm-up and not counted.\n\n\
         | path | queries | p50 ms | p99 ms | p99.9 ms | max ms | results/query |\n\
         |---|---|---|---|---|---|---|\n{}\n\n\
         Target p99 <= 2 ms in process at {} POIs: {}.\n",
        machine(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        if dirty { " (with uncommitted changes)" } else { "" },
        args.count,
        args.count,
        args.seed,
        generated_in
            .map(|d| format!(", generated in {:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| ", generated earlier".into()),
        settings.ocm.batch_size,
        match &rest {
            Some(r) => format!(
                "; the other {} are parsed, normalised and upserted into Postgres by the same code \
                 without the mirror write (SecantusDB, the Mongo-wire server here, scans its whole \
                 collection for each lookup: a 300,000-POI mirror would take it far longer than \
                 the search figure needs, and production runs a real MongoDB)",
                r.pois + r.rejected
            ),
            None => String::new(),
        },
        import_wall.as_secs_f64(),
        rate(import.counts.processed, import_wall),
        import.counts.processed,
        import.counts.updated,
        import.counts.failed,
        t.mongo.as_secs_f64(),
        rate(import.counts.updated, t.mongo),
        t.postgres.as_secs_f64(),
        rate(import.counts.updated, t.postgres),
        t.parse.as_secs_f64(),
        t.lookup.as_secs_f64(),
        again_wall.as_secs_f64(),
        rate(again.counts.processed, again_wall),
        again.counts.updated,
        match &rest {
            Some(r) => format!(
                "         | other POIs into Postgres only, wall | {:.1} s ({} POIs/s; {} stored, {} rejected; parse {:.1} s, Postgres {:.1} s) |\n",
                r.wall.as_secs_f64(),
                rate(r.pois + r.rejected, r.wall),
                r.pois,
                r.rejected,
                r.parse.as_secs_f64(),
                r.postgres.as_secs_f64(),
            )
            .trim_start()
            .to_string(),
            None => String::new(),
        },
        load.as_secs_f64(),
        snapshot.len(),
        rows.join("\n"),
        args.count,
        if typical_p99 <= 2.0 { "met" } else { "NOT met" },
    );
    println!("\n{section}");

    if args.write {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        let current = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
        let updated = match current.find(SECTION) {
            Some(start) => {
                let rest = &current[start + SECTION.len()..];
                let end = rest.find("\n## ").map(|i| start + SECTION.len() + i + 1);
                let tail = end.map(|e| &current[e..]).unwrap_or("");
                format!("{}{section}\n{tail}", &current[..start])
            }
            None => format!("{}\n{section}", current.trim_end().to_string() + "\n"),
        };
        std::fs::write(&path, updated)?;
        eprintln!("wrote {}", path.display());
    }

    if !args.keep {
        deps.mongo.drop().await?;
        deps.db.close().await;
        let admin = with_database(settings.database.url.expose_secret(), "postgres")?;
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        conn.execute(format!(r#"DROP DATABASE IF EXISTS "{run}" WITH (FORCE)"#).as_str())
            .await?;
        let mut redis = deps.redis.get().await?;
        let _: i64 = deadpool_redis::redis::cmd("DEL")
            .arg(chargegrid::ocm::cache_generation_key(&run))
            .query_async(&mut redis)
            .await?;
    }
    Ok(())
}
