//! The OCM sync end to end: fake API -> MongoDB mirror + Postgres stations.

use std::collections::HashMap;
use std::time::Duration;

use chargegrid::ocm::sync::{lock_key, SyncOutcome, SyncSource};
use deadpool_redis::redis;
use mongodb::bson::{doc, Document};
use secrecy::SecretString;
use serde_json::{json, Value};

use super::fake_ocm::FakeOcm;
use super::{app_for, mirror_docs, real_pois, shared_ocm, station_rows, sync_from, sync_ok, synth};
use crate::helpers::spawn_app_with;

fn synth_base(count: &str) -> Vec<Value> {
    synth(&["--count", count, "--seed", "1", "--compact"])
}

async fn outbox_events(app: &crate::helpers::TestApp) -> Vec<Value> {
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM outbox WHERE event_type = 'OCM_SYNC_COMPLETED' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .expect("outbox");
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).expect("event JSON"))
        .collect()
}

#[actix_web::test]
async fn a_full_sync_mirrors_every_poi_in_mongo_and_postgres_and_emits_an_event() {
    let mut pois = real_pois();
    pois.extend(synth_base("300"));
    let total = pois.len();
    let fake = FakeOcm::start(pois.clone()).await;
    let app = app_for(&fake, 100).await;

    let report = sync_ok(&app).await;

    assert_eq!(report.counts.processed, total as u64);
    assert_eq!(report.counts.updated, total as u64);
    assert_eq!(report.counts.failed, 0);
    let docs = mirror_docs(&app).await;
    assert_eq!(docs.len(), total);
    let stations = station_rows(&app).await;
    assert_eq!(stations.len(), total);

    // a real POI, named from the reference data
    let lake_oswego = docs
        .iter()
        .find(|d| d.get_i32("externalId") == Ok(2738))
        .expect("POI 2738 mirrored");
    let location = lake_oswego.get_document("location").expect("location");
    assert_eq!(location.get_str("type"), Ok("Point"));
    let coordinates = location.get_array("coordinates").expect("coordinates");
    assert_eq!(coordinates[0].as_f64(), Some(-122.66573));
    assert_eq!(coordinates[1].as_f64(), Some(45.419827));
    let sync = lake_oswego.get_document("sync").expect("sync metadata");
    assert_eq!(sync.get_str("contentHash").map(str::len), Ok(64));
    assert_eq!(sync.get_bool("live"), Ok(true));
    assert!(sync.get_datetime("modifiedAt").is_ok());
    // the raw OCM structure is kept, numbers as BSON numbers
    assert_eq!(lake_oswego.get_i32("ID"), Ok(2738));
    assert_eq!(
        lake_oswego
            .get_document("AddressInfo")
            .and_then(|a| a.get_f64("Latitude")),
        Ok(45.419827)
    );
    assert_eq!(
        lake_oswego
            .get_document("AddressInfo")
            .and_then(|a| a.get_str("Town")),
        Ok("Lake Oswego")
    );
    let row: (String, Option<String>, Option<String>, String) = sqlx::query_as(
        "SELECT s.name, s.country, s.usage_type, c.type FROM stations s
         JOIN connections c ON c.station_id = s.id WHERE s.ocm_id = 2738",
    )
    .fetch_one(&app.db)
    .await
    .expect("station 2738");
    assert_eq!(
        row,
        (
            "City of Lake Oswego".into(),
            Some("US".into()),
            Some("Public".into()),
            "Type 1 (J1772)".into()
        )
    );
    let connections: i64 = sqlx::query_scalar("SELECT count(*) FROM connections")
        .fetch_one(&app.db)
        .await
        .expect("count");
    let expected: usize = pois
        .iter()
        .map(|p| p["Connections"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(connections as usize, expected);

    // how the API was called
    let requests = fake.requests();
    assert!(requests
        .iter()
        .all(|r| r.api_key.as_deref() == Some(super::fake_ocm::API_KEY)));
    assert!(requests.iter().all(|r| r
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.starts_with("chargegrid/"))));
    assert!(requests.iter().all(
        |r| r.params.get("compact").map(String::as_str) == Some("true")
            && r.params.get("verbose").map(String::as_str) == Some("false")
    ));
    assert_eq!(requests[0].params["sortby"], "id_asc");
    assert_eq!(requests[0].params["greaterthanid"], "0");
    assert_eq!(requests[0].params["maxresults"], "100");
    assert_eq!(requests[1].params["greaterthanid"], "109333");
    assert!(requests
        .iter()
        .any(|r| r.params.get("sortby").map(String::as_str) == Some("modified_asc")));

    let events = outbox_events(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["eventType"], "OCM_SYNC_COMPLETED");
    assert_eq!(events[0]["processed"], total);
    assert_eq!(events[0]["updated"], total);
    assert_eq!(events[0]["failed"], 0);
    assert!(events[0]["startedAt"].is_string() && events[0]["finishedAt"].is_string());
}

#[actix_web::test]
async fn re_syncing_unchanged_data_changes_nothing() {
    let fake = FakeOcm::start(synth_base("250")).await;
    let app = app_for(&fake, 100).await;
    sync_ok(&app).await;
    let docs_before = mirror_docs(&app).await;
    let rows_before = station_rows(&app).await;

    let again = sync_ok(&app).await;

    assert_eq!(again.counts.updated, 0, "{again:?}");
    assert_eq!(again.counts.failed, 0);
    assert!(again.counts.processed >= 1, "the boundary POIs come back");
    assert_eq!(mirror_docs(&app).await, docs_before);
    assert_eq!(station_rows(&app).await, rows_before);
    let events = outbox_events(&app).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["updated"], 0);
}

#[actix_web::test]
async fn an_incremental_sync_picks_up_changed_pois_only() {
    let fake = FakeOcm::start(synth_base("300")).await;
    let app = app_for(&fake, 100).await;
    sync_ok(&app).await;
    let docs_before = mirror_docs(&app).await;
    let ids_before: HashMap<i32, uuid::Uuid> = station_rows(&app)
        .await
        .into_iter()
        .map(|(ocm, id, _, _)| (ocm, id))
        .collect();
    let max_held: String = sqlx::query_scalar(
        "SELECT to_char(max_modified_held AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM ocm_sync_state",
    )
    .fetch_one(&app.db)
    .await
    .expect("state");

    // same IDs, another seed: new content, modified after everything held
    let updates: Vec<Value> = synth(&[
        "--count",
        "300",
        "--seed",
        "2",
        "--compact",
        "--modified-after",
        "2025-07-01T00:00:00Z",
    ])
    .into_iter()
    .step_by(7)
    .collect();
    let changed: HashMap<i32, Value> = updates
        .iter()
        .map(|p| (p["ID"].as_i64().expect("ID") as i32, p.clone()))
        .collect();
    fake.upsert(updates.clone());
    fake.clear_requests();

    let report = sync_ok(&app).await;

    assert_eq!(report.counts.updated, changed.len() as u64);
    assert_eq!(report.counts.failed, 0);
    let requests = fake.requests();
    let first_incremental = requests
        .iter()
        .find(|r| r.params.get("sortby").map(String::as_str) == Some("modified_asc"))
        .expect("an incremental request");
    assert_eq!(first_incremental.params["modifiedsince"], max_held);
    // unchanged POIs were not rewritten; changed ones were
    for (before, after) in docs_before.iter().zip(mirror_docs(&app).await) {
        let id = after.get_i32("externalId").expect("externalId");
        match changed.get(&id) {
            None => assert_eq!(before, &after, "POI {id} was rewritten"),
            Some(poi) => {
                assert_ne!(before, &after);
                assert_eq!(
                    after
                        .get_document("AddressInfo")
                        .and_then(|a| a.get_str("Title")),
                    Ok(poi["AddressInfo"]["Title"].as_str().expect("title"))
                );
            }
        }
    }
    // internal ids are stable, connections follow OCM's
    for (ocm, id, _, _) in station_rows(&app).await {
        assert_eq!(
            ids_before.get(&ocm),
            Some(&id),
            "station {ocm} got a new id"
        );
    }
    for (id, poi) in changed.iter().take(10) {
        let mut held: Vec<i32> = sqlx::query_scalar(
            "SELECT c.ocm_connection_id FROM connections c JOIN stations s ON s.id = c.station_id
             WHERE s.ocm_id = $1",
        )
        .bind(id)
        .fetch_all(&app.db)
        .await
        .expect("connections");
        held.sort_unstable();
        let mut expected: Vec<i32> = poi["Connections"]
            .as_array()
            .expect("connections")
            .iter()
            .map(|c| c["ID"].as_i64().expect("connection ID") as i32)
            .collect();
        expected.sort_unstable();
        assert_eq!(held, expected, "connections of {id}");
    }
}

#[actix_web::test]
async fn a_full_page_sharing_one_timestamp_is_paged_past() {
    let fake = FakeOcm::start(synth_base("60")).await;
    let app = app_for(&fake, 10).await;
    sync_ok(&app).await;
    // 25 POIs, more than two pages, modified in the same minute
    let updates: Vec<Value> = synth_base("25")
        .into_iter()
        .map(|mut p| {
            p["DateLastStatusUpdate"] = json!("2025-08-01T12:00:00Z");
            p["UsageCost"] = json!("€0.99/kWh");
            p
        })
        .collect();
    fake.upsert(updates);
    fake.clear_requests();

    let report = sync_ok(&app).await;

    assert_eq!(report.counts.updated, 25, "{report:?}");
    let costs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stations WHERE usage_cost = '€0.99/kWh'")
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!(costs, 25);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.params.get("maxresults").map(String::as_str) == Some("40")));
}

#[actix_web::test]
async fn a_rate_limited_request_is_retried_after_the_retry_after_delay() {
    let fake = FakeOcm::start(synth_base("30")).await;
    let app = app_for(&fake, 100).await;
    fake.fail_next(429, Some("1"));

    let report = sync_ok(&app).await;

    assert_eq!(report.counts.processed, 30);
    let requests = fake.requests();
    assert_eq!(requests[0].status, 429);
    assert_eq!(requests[1].status, 200);
    assert_eq!(requests[0].params, requests[1].params);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
}

#[actix_web::test]
async fn a_refused_or_missing_key_fails_with_a_clear_error() {
    let fake = FakeOcm::start(synth_base("5")).await;
    let base_url = fake.base_url.clone();
    let app = spawn_app_with(move |s| {
        s.ocm.base_url = base_url;
        s.ocm.api_key = Some(SecretString::from("not-the-key"));
        s.ocm.request_interval_ms = 0;
    })
    .await;

    let error = sync_from(&app, SyncSource::Api)
        .await
        .expect_err("a refused key fails the sync")
        .to_string();

    assert!(
        error.starts_with("OpenChargeMap refused the API key (HTTP 403)"),
        "{error}"
    );
    assert!(error.contains("OCM_API_KEY"), "{error}");
    assert!(!error.contains("not-the-key"), "the key leaked: {error}");
    assert_eq!(fake.requests().len(), 1, "a 403 is not retried");
    let (status, stored_error): (String, Option<String>) =
        sqlx::query_as("SELECT run_status, run_error FROM ocm_sync_state")
            .fetch_one(&app.db)
            .await
            .expect("state");
    assert_eq!(status, "FAILED");
    assert!(stored_error.is_some_and(|e| e.contains("HTTP 403")));
    assert!(outbox_events(&app).await.is_empty());

    let keyless = spawn_app_with(|s| s.ocm.api_key = None).await;
    let error = sync_from(&keyless, SyncSource::Api)
        .await
        .expect_err("no key, no sync")
        .to_string();
    assert!(error.starts_with("OCM_API_KEY is not set"), "{error}");
}

#[actix_web::test]
async fn malformed_pois_are_counted_as_failed_while_the_rest_lands() {
    let mut pois = synth_base("40");
    let mut no_address = pois[3].clone();
    no_address
        .as_object_mut()
        .expect("object")
        .remove("AddressInfo");
    pois[3] = no_address;
    pois[7]["AddressInfo"]["Latitude"] = json!(999);
    pois[11]["AddressInfo"]["Latitude"] = json!(0);
    pois[11]["AddressInfo"]["Longitude"] = json!(0);
    let fake = FakeOcm::start(pois.clone()).await;
    let app = app_for(&fake, 100).await;

    let report = sync_ok(&app).await;

    assert_eq!(report.counts.processed, 40);
    assert_eq!(report.counts.failed, 3);
    assert_eq!(report.counts.updated, 37);
    assert_eq!(station_rows(&app).await.len(), 37);
    assert_eq!(mirror_docs(&app).await.len(), 37);

    // a held POI that comes back with a broken position is no longer offered
    let mut broken = pois[20].clone();
    broken["AddressInfo"]["Latitude"] = json!(999);
    broken["DateLastStatusUpdate"] = json!("2025-09-01T00:00:00Z");
    let broken_id = broken["ID"].as_i64().expect("ID") as i32;
    fake.upsert(vec![broken]);
    let report = sync_ok(&app).await;
    assert!(report.counts.failed >= 1, "{report:?}");
    let live: bool = sqlx::query_scalar("SELECT is_live FROM stations WHERE ocm_id = $1")
        .bind(broken_id)
        .fetch_one(&app.db)
        .await
        .expect("station");
    assert!(!live);
    let doc = mirror_docs(&app)
        .await
        .into_iter()
        .find(|d| d.get_i32("externalId") == Ok(broken_id))
        .expect("still mirrored");
    assert_eq!(
        doc.get_document("sync").and_then(|s| s.get_bool("live")),
        Ok(false)
    );
}

#[actix_web::test]
async fn an_interrupted_sync_resumes_from_its_cursor() {
    let pois = synth_base("500");
    let fake = FakeOcm::start(pois).await;
    let app = app_for(&fake, 100).await;
    fake.fail_after(2);

    let error = sync_from(&app, SyncSource::Api)
        .await
        .expect_err("the API fails after two pages")
        .to_string();

    assert!(error.contains("failed 3 times in a row"), "{error}");
    let (status, cursor): (String, Option<i32>) =
        sqlx::query_as("SELECT run_status, scan_cursor FROM ocm_sync_state")
            .fetch_one(&app.db)
            .await
            .expect("state");
    assert_eq!(status, "FAILED");
    assert_eq!(cursor, Some(5_000_199));
    assert_eq!(station_rows(&app).await.len(), 200);

    fake.heal();
    fake.clear_requests();
    let report = sync_ok(&app).await;

    assert_eq!(fake.requests()[0].params["greaterthanid"], "5000199");
    assert_eq!(report.counts.updated, 300);
    assert_eq!(station_rows(&app).await.len(), 500);
    assert_eq!(mirror_docs(&app).await.len(), 500);
}

#[actix_web::test]
async fn a_full_rescan_retires_pois_that_disappeared_or_were_delisted() {
    let pois = synth_base("50");
    let fake = FakeOcm::start(pois.clone()).await;
    let base_url = fake.base_url.clone();
    let app = spawn_app_with(move |s| {
        s.ocm.base_url = base_url;
        s.ocm.api_key = Some(SecretString::from(super::fake_ocm::API_KEY));
        s.ocm.batch_size = 20;
        s.ocm.request_interval_ms = 0;
        s.ocm.full_rescan_interval_secs = 0;
    })
    .await;
    sync_ok(&app).await;
    let not_live = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT ocm_id FROM stations WHERE NOT is_live ORDER BY ocm_id",
        )
        .fetch_all(&app.db)
        .await
        .expect("stations")
    };
    // synthetic data has some planned / removed POIs from the start
    let not_live_before = not_live().await;
    let gone = pois[10]["ID"].as_i64().expect("ID");
    let last = pois[49]["ID"].as_i64().expect("ID");
    let mut delisted = pois[30].clone();
    delisted["SubmissionStatusTypeID"] = json!(1000);
    delisted["DateLastStatusUpdate"] = json!("2025-09-01T00:00:00Z");
    fake.remove(gone);
    fake.remove(last);
    fake.upsert(vec![delisted.clone()]);

    let report = sync_ok(&app).await;

    assert_eq!(report.counts.updated, 3, "{report:?}");
    let retired = [
        gone as i32,
        delisted["ID"].as_i64().expect("ID") as i32,
        last as i32,
    ];
    assert!(retired.iter().all(|id| !not_live_before.contains(id)));
    let mut expected = not_live_before.clone();
    expected.extend(retired);
    expected.sort_unstable();
    assert_eq!(not_live().await, expected);
    let not_live_docs: Vec<i32> = mirror_docs(&app)
        .await
        .iter()
        .filter(|d| d.get_document("sync").and_then(|s| s.get_bool("live")) == Ok(false))
        .map(|d| d.get_i32("externalId").expect("externalId"))
        .collect();
    assert_eq!(not_live_docs, expected);
    assert_eq!(app.ctx.stations.current().len(), 50 - expected.len());
}

#[actix_web::test]
async fn only_one_replica_syncs_at_a_time() {
    let fake = FakeOcm::start(synth_base("5")).await;
    let app = app_for(&fake, 100).await;
    let mut conn = app.ctx.redis.get().await.expect("redis");
    let key = lock_key(&app.ctx.settings);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("another-replica")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .expect("SET");

    let outcome = sync_from(&app, SyncSource::Api).await.expect("no error");

    assert!(matches!(outcome, SyncOutcome::Skipped), "{outcome:?}");
    assert!(fake.requests().is_empty());
    let holder: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(
        holder.as_deref(),
        Some("another-replica"),
        "someone else's lock stays"
    );

    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    sync_ok(&app).await;
    let after: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(after, None, "the lock is released after the run");
}

#[actix_web::test]
async fn verbose_and_compact_dumps_normalise_to_the_same_stations() {
    let compact = spawn_app_with(|_| {}).await;
    let verbose = spawn_app_with(|_| {}).await;

    let from_compact = sync_from(
        &compact,
        SyncSource::File(shared_ocm("pois-real.compact.json")),
    )
    .await
    .expect("compact import");
    let from_verbose = sync_from(
        &verbose,
        SyncSource::File(shared_ocm("pois-real.verbose.json")),
    )
    .await
    .expect("verbose import");

    for outcome in [&from_compact, &from_verbose] {
        let SyncOutcome::Completed(report) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(report.counts.processed, 302);
        assert_eq!(report.counts.failed, 0);
    }
    async fn normalised(app: &crate::helpers::TestApp) -> Vec<Value> {
        let rows: Vec<(Value,)> = sqlx::query_as(
            "SELECT json_build_array(s.ocm_id, s.name, s.town, s.country, s.status, s.usage_type,
                    s.operator, s.is_live,
                    string_agg(c.type || '/' || coalesce(c.power_kw::text, '-'), ','
                               ORDER BY c.ocm_connection_id))
             FROM stations s LEFT JOIN connections c ON c.station_id = s.id
             GROUP BY s.id ORDER BY s.ocm_id",
        )
        .fetch_all(&app.db)
        .await
        .expect("stations");
        rows.into_iter().map(|r| r.0).collect()
    }
    let a = normalised(&compact).await;
    let b = normalised(&verbose).await;
    assert_eq!(a.len(), 302);
    for (c, v) in a.iter().zip(&b) {
        if c[0] == 247249 {
            // operator 3619 is newer than the shipped reference data: only verbose names it
            assert_eq!(c[6], Value::Null);
            assert_eq!(v[6], "AmpUp");
            continue;
        }
        assert_eq!(c, v);
    }
    let form: Document = verbose
        .ctx
        .mongo
        .collection::<Document>("ocm_pois")
        .find_one(doc! { "externalId": 2738 })
        .await
        .expect("find")
        .expect("POI 2738");
    assert_eq!(
        form.get_document("sync").and_then(|s| s.get_str("form")),
        Ok("verbose")
    );
}

#[actix_web::test]
async fn an_ndjson_dump_imports_and_seed_demo_is_idempotent() {
    let app = spawn_app_with(|_| {}).await;
    let dir = std::env::temp_dir().join(format!("cg-ocm-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("dump.ndjson");
    let ndjson: String = synth_base("120")
        .iter()
        .map(|p| format!("{p}\n"))
        .chain(std::iter::once("this line is not JSON\n".to_string()))
        .collect();
    std::fs::write(&path, ndjson).expect("write dump");

    let outcome = sync_from(&app, SyncSource::File(path))
        .await
        .expect("import");
    let _ = std::fs::remove_dir_all(&dir);
    let SyncOutcome::Completed(report) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((report.counts.processed, report.counts.failed), (121, 1));
    assert_eq!(report.source, "file:dump.ndjson");

    let deps = chargegrid::ocm::sync::SyncDeps::from(&app.ctx);
    for round in 0..2 {
        let outcome = chargegrid::commands::seed_demo::import_demo_pois(&deps)
            .await
            .expect("seed");
        let SyncOutcome::Completed(report) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(report.counts.updated, if round == 0 { 302 } else { 0 });
        let created = chargegrid::commands::seed_demo::ensure_default_tariff(&app.db)
            .await
            .expect("tariff");
        assert_eq!(created, round == 0);
    }
    let tariff: (
        String,
        rust_decimal::Decimal,
        rust_decimal::Decimal,
        i32,
        rust_decimal::Decimal,
    ) = sqlx::query_as(
        "SELECT currency, price_per_kwh, price_per_minute, grace_minutes, session_fee
             FROM tariffs WHERE is_default",
    )
    .fetch_one(&app.db)
    .await
    .expect("one default tariff");
    assert_eq!(tariff.0, "EUR");
    assert_eq!(tariff.1.to_string(), "0.3900");
    assert_eq!(tariff.2.to_string(), "0.0500");
    assert_eq!(tariff.3, 60);
    assert_eq!(tariff.4.to_string(), "0.50");
    assert_eq!(station_rows(&app).await.len(), 120 + 302);
}
