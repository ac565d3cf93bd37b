//! Station search over GraphQL, checked against a brute-force haversine scan of the same POIs,
//! and `station(id)` with its Redis cache.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chargegrid::ocm::sync::{run_once, SyncDeps, SyncSource};
use deadpool_redis::redis;
use serde_json::{json, Value};

use super::fake_ocm::FakeOcm;
use super::{app_for, real_pois, shared_ocm, sync_ok, synth};
use crate::helpers::{error_code, TestApp};

const SEARCH: &str = "query($near: GeoPointInput!, $r: Float, $t: String, $p: Float, $n: Int) {
  stations(near: $near, radiusKm: $r, connectorType: $t, minPowerKw: $p, first: $n) {
    id ocmId name distanceKm latitude longitude status connectors { type powerKW quantity }
  }
}";

const STATION: &str = "query($id: ID!) {
  station(id: $id) { id ocmId name address town country latitude longitude status usageCost
                     distanceKm connectors { type powerKW quantity } }
}";

/// What the brute force needs to know about a POI.
struct Candidate {
    ocm_id: i64,
    lat: f64,
    lon: f64,
    /// (normalised connection type title, power)
    connections: Vec<(String, Option<f64>)>,
}

fn normalise(title: &str) -> String {
    title
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0088 * a.sqrt().min(1.0).asin()
}

/// The searchable POIs, by the rules of the OCM data: a real position, operational, published.
fn candidates(pois: &[Value]) -> Vec<Candidate> {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(shared_ocm("reference.json")).expect("reference.json"),
    )
    .expect("reference parses");
    let by_id = |kind: &str| -> HashMap<i64, Value> {
        reference[kind]
            .as_array()
            .expect("reference list")
            .iter()
            .map(|v| (v["ID"].as_i64().expect("ID"), v.clone()))
            .collect()
    };
    let (types, statuses, submissions) = (
        by_id("ConnectionTypes"),
        by_id("StatusTypes"),
        by_id("SubmissionStatusTypes"),
    );
    pois.iter()
        .filter_map(|p| {
            let lat = p["AddressInfo"]["Latitude"].as_f64()?;
            let lon = p["AddressInfo"]["Longitude"].as_f64()?;
            let valid = (-90.0..=90.0).contains(&lat)
                && (-180.0..=180.0).contains(&lon)
                && !(lat == 0.0 && lon == 0.0);
            let operational = p["StatusTypeID"]
                .as_i64()
                .and_then(|s| statuses.get(&s))
                .is_none_or(|s| s["IsOperational"] != json!(false));
            let published = p["SubmissionStatusTypeID"]
                .as_i64()
                .and_then(|s| submissions.get(&s))
                .is_none_or(|s| s["IsLive"] == json!(true));
            (valid && operational && published).then(|| Candidate {
                ocm_id: p["ID"].as_i64().expect("ID"),
                lat,
                lon,
                connections: p["Connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let title = c["ConnectionTypeID"]
                            .as_i64()
                            .and_then(|t| types.get(&t))
                            .and_then(|t| t["Title"].as_str())
                            .unwrap_or("Unknown");
                        (normalise(title), c["PowerKW"].as_f64())
                    })
                    .collect(),
            })
        })
        .collect()
}

/// (ocm id, distance) of the `first` nearest matching candidates.
fn brute_force(
    all: &[Candidate],
    (lat, lon): (f64, f64),
    radius: f64,
    types: Option<&[&str]>,
    min_power: Option<f64>,
    first: usize,
) -> Vec<(i64, f64)> {
    let mut hits: Vec<(i64, f64)> = all
        .iter()
        .filter(|c| {
            c.connections.iter().any(|(title, power)| {
                types.is_none_or(|t| t.iter().any(|t| normalise(t) == *title))
                    && min_power.is_none_or(|m| power.is_some_and(|p| p >= m))
            }) || (types.is_none() && min_power.is_none())
        })
        .map(|c| (c.ocm_id, haversine(lat, lon, c.lat, c.lon)))
        .filter(|(_, d)| *d <= radius)
        .collect();
    hits.sort_by(|a, b| a.1.total_cmp(&b.1));
    hits.truncate(first);
    hits
}

async fn search(
    app: &TestApp,
    (lat, lon): (f64, f64),
    radius: f64,
    connector: Option<&str>,
    min_power: Option<f64>,
    first: i32,
) -> Value {
    app.graphql(
        SEARCH,
        json!({ "near": { "latitude": lat, "longitude": lon }, "r": radius, "t": connector,
                "p": min_power, "n": first }),
        None,
    )
    .await
}

fn hits(response: &Value) -> Vec<(i64, f64)> {
    response["data"]["stations"]
        .as_array()
        .unwrap_or_else(|| panic!("no stations: {response}"))
        .iter()
        .map(|s| {
            (
                s["ocmId"].as_i64().expect("ocmId"),
                s["distanceKm"].as_f64().expect("distanceKm"),
            )
        })
        .collect()
}

/// Same length, same distances, nearest first, and the same stations (up to a tie at the cut).
fn assert_same(got: &[(i64, f64)], expected: &[(i64, f64)], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: {got:?} vs {expected:?}");
    for (g, e) in got.iter().zip(expected) {
        assert!((g.1 - e.1).abs() < 1e-6, "{what}: {got:?} vs {expected:?}");
    }
    assert!(
        got.windows(2).all(|w| w[0].1 <= w[1].1),
        "{what}: not nearest first"
    );
    if let Some(last) = expected.last() {
        let inside = |v: &[(i64, f64)]| -> HashSet<i64> {
            v.iter()
                .filter(|h| h.1 < last.1 - 1e-9)
                .map(|h| h.0)
                .collect()
        };
        assert_eq!(inside(got), inside(expected), "{what}");
    }
}

#[actix_web::test]
async fn search_matches_a_brute_force_haversine_scan_with_and_without_filters() {
    let mut pois = real_pois();
    pois.extend(synth(&["--count", "1500", "--seed", "3", "--compact"]));
    let fake = FakeOcm::start(pois.clone()).await;
    let app = app_for(&fake, 500).await;
    sync_ok(&app).await;
    let all = candidates(&pois);
    assert!(
        all.len() < pois.len(),
        "the data has POIs that are not searchable"
    );

    let centres: Vec<(f64, f64)> = pois
        .iter()
        .step_by(97)
        .map(|p| {
            (
                p["AddressInfo"]["Latitude"].as_f64().expect("lat") + 0.013,
                p["AddressInfo"]["Longitude"].as_f64().expect("lon") - 0.021,
            )
        })
        .collect();
    let ccs: &[&str] = &["CCS (Type 1)", "CCS (Type 2)"];
    let type2: &[&str] = &["Type 2 (Socket Only)", "Type 2 (Tethered Connector)"];
    // (radius, connectorType, the titles it stands for, minPowerKw, first)
    type Case<'a> = (
        f64,
        Option<&'a str>,
        Option<&'a [&'a str]>,
        Option<f64>,
        i32,
    );
    let cases: Vec<Case> = vec![
        (5.0, None, None, None, 20),
        (
            25.0,
            Some("CCS (Type 2)"),
            Some(&["CCS (Type 2)"]),
            None,
            10,
        ),
        (50.0, Some("ccs"), Some(ccs), Some(50.0), 15),
        (10.0, Some("TYPE2"), Some(type2), None, 100),
        (100.0, None, None, Some(150.0), 5),
        (500.0, Some("CHAdeMO"), Some(&["CHAdeMO"]), Some(40.0), 30),
    ];
    let mut compared = 0;
    for centre in &centres {
        for (radius, filter, titles, min_power, first) in &cases {
            let response = search(&app, *centre, *radius, *filter, *min_power, *first).await;
            let expected =
                brute_force(&all, *centre, *radius, *titles, *min_power, *first as usize);
            assert_same(
                &hits(&response),
                &expected,
                &format!("{centre:?} r={radius} {filter:?} p={min_power:?}"),
            );
            compared += expected.len();
        }
    }
    assert!(
        compared > 500,
        "the cases found too little to prove anything: {compared}"
    );

    // the one planned (not yet operational) real station never shows up
    let planned = pois
        .iter()
        .find(|p| p["StatusTypeID"] == json!(150))
        .expect("a planned POI");
    let at = (
        planned["AddressInfo"]["Latitude"].as_f64().expect("lat"),
        planned["AddressInfo"]["Longitude"].as_f64().expect("lon"),
    );
    let near_it = hits(&search(&app, at, 1.0, None, None, 100).await);
    assert!(!near_it.iter().any(|h| Some(h.0) == planned["ID"].as_i64()));
}

fn poi(id: i64, lat: f64, lon: f64, connections: &[(i64, f64)]) -> Value {
    json!({
        "ID": id, "StatusTypeID": 50, "SubmissionStatusTypeID": 200,
        "DateLastStatusUpdate": "2025-01-01T00:00:00Z",
        "AddressInfo": { "Title": format!("Site {id}"), "CountryID": 1, "Latitude": lat, "Longitude": lon },
        "Connections": connections.iter().enumerate().map(|(i, (t, p))| json!({
            "ID": id * 100 + i as i64, "ConnectionTypeID": t, "PowerKW": p, "Quantity": 1
        })).collect::<Vec<_>>(),
    })
}

#[actix_web::test]
async fn search_is_correct_across_the_antimeridian_and_near_the_poles() {
    let pois = vec![
        // Fiji, either side of 180°
        poi(1, -16.5, 179.9, &[(33, 50.0)]),
        poi(2, -16.5, -179.9, &[(33, 150.0)]),
        poi(3, -16.52, 179.99, &[(25, 22.0)]),
        poi(4, -16.48, -179.99, &[(2, 50.0)]),
        poi(5, -16.5, 178.0, &[(33, 50.0)]),
        // around the North Pole at every longitude, and one near the South Pole
        poi(6, 89.9, 0.0, &[(25, 22.0)]),
        poi(7, 89.9, 180.0, &[(25, 22.0)]),
        poi(8, 89.95, 90.0, &[(33, 350.0)]),
        poi(9, 89.5, -45.0, &[(25, 11.0)]),
        poi(10, 89.0, 120.0, &[(25, 11.0)]),
        poi(11, -89.9, 10.0, &[(25, 11.0)]),
    ];
    let fake = FakeOcm::start(pois.clone()).await;
    let app = app_for(&fake, 100).await;
    sync_ok(&app).await;
    let all = candidates(&pois);

    let queries: Vec<((f64, f64), f64)> = vec![
        ((-16.5, 180.0), 25.0),
        ((-16.5, -180.0), 25.0),
        ((-16.5, 179.95), 5.0),
        ((-16.5, -179.95), 250.0),
        ((90.0, 0.0), 60.0),
        ((90.0, -170.0), 150.0),
        ((89.9, -90.0), 30.0),
        ((-90.0, 0.0), 20.0),
    ];
    for (centre, radius) in queries {
        let got = hits(&search(&app, centre, radius, None, None, 100).await);
        let expected = brute_force(&all, centre, radius, None, None, 100);
        assert_same(&got, &expected, &format!("{centre:?} r={radius}"));
    }
    // both sides of the antimeridian are found from either side
    let ids: Vec<i64> = hits(&search(&app, (-16.5, 180.0), 12.0, None, None, 10).await)
        .iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.contains(&1) && ids.contains(&2));
    // 89.9°N at 0° and at 180° are 22 km apart across the pole, not half the globe
    let across = hits(&search(&app, (89.9, 0.0), 25.0, None, None, 10).await);
    let seven = across
        .iter()
        .find(|h| h.0 == 7)
        .expect("found across the pole");
    assert!((seven.1 - 22.239).abs() < 0.01, "{across:?}");
}

#[actix_web::test]
async fn filters_need_one_connector_matching_both_type_and_power() {
    let pois = vec![
        // CCS 50 kW and Type 2 22 kW
        poi(21, 52.0, 4.0, &[(33, 50.0), (25, 22.0)]),
        // Type 2 43 kW
        poi(22, 52.01, 4.0, &[(25, 43.0)]),
        // CHAdeMO 50 kW
        poi(23, 52.02, 4.0, &[(2, 50.0)]),
    ];
    let fake = FakeOcm::start(pois).await;
    let app = app_for(&fake, 100).await;
    sync_ok(&app).await;
    let ids = |response: Value| -> Vec<i64> { hits(&response).iter().map(|h| h.0).collect() };
    let near = (52.0, 4.0);

    assert_eq!(
        ids(search(&app, near, 10.0, Some("Type 2"), Some(40.0), 20).await),
        vec![22]
    );
    assert_eq!(
        ids(search(&app, near, 10.0, Some("type2"), None, 20).await),
        vec![21, 22]
    );
    assert_eq!(
        ids(search(&app, near, 10.0, Some("CCS"), Some(50.0), 20).await),
        vec![21]
    );
    assert_eq!(
        ids(search(&app, near, 10.0, None, Some(45.0), 20).await),
        vec![21, 23]
    );
    assert_eq!(
        ids(search(&app, near, 10.0, Some("Type 2 (Socket Only)"), None, 1).await),
        vec![21]
    );
    // a real connection type nobody has here: no stations, not an error
    let none = search(&app, near, 10.0, Some("Avcon Connector"), None, 20).await;
    assert_eq!(none["data"]["stations"], json!([]), "{none}");
    let unknown = search(&app, near, 10.0, Some("warp drive"), None, 20).await;
    assert_eq!(
        error_code(&unknown).as_deref(),
        Some("BAD_USER_INPUT"),
        "{unknown}"
    );
    // the full shape of a hit
    let response = search(&app, near, 10.0, Some("CHAdeMO"), None, 20).await;
    let hit = &response["data"]["stations"][0];
    assert_eq!(hit["name"], "Site 23");
    assert_eq!(hit["status"], "Operational");
    assert_eq!(
        hit["connectors"],
        json!([{ "type": "CHAdeMO", "powerKW": 50.0, "quantity": 1 }])
    );
}

#[actix_web::test]
async fn invalid_search_input_is_rejected_as_bad_user_input() {
    let fake = FakeOcm::start(vec![poi(31, 10.0, 10.0, &[(25, 22.0)])]).await;
    let app = app_for(&fake, 100).await;
    sync_ok(&app).await;
    // (near, radiusKm, minPowerKw, first)
    type Case = ((f64, f64), f64, Option<f64>, i32);
    let cases: Vec<Case> = vec![
        ((91.0, 10.0), 10.0, None, 20),
        ((-90.5, 10.0), 10.0, None, 20),
        ((10.0, 180.5), 10.0, None, 20),
        ((10.0, 10.0), -1.0, None, 20),
        ((10.0, 10.0), 0.0, None, 20),
        ((10.0, 10.0), 500.1, None, 20),
        ((10.0, 10.0), 10.0, Some(-5.0), 20),
        ((10.0, 10.0), 10.0, None, 0),
        ((10.0, 10.0), 10.0, None, 101),
    ];
    for (near, radius, min_power, first) in cases {
        let response = search(&app, near, radius, None, min_power, first).await;
        assert_eq!(
            error_code(&response).as_deref(),
            Some("BAD_USER_INPUT"),
            "{near:?} r={radius} p={min_power:?} first={first}: {response}"
        );
    }
    // the defaults (10 km, 20 results) apply when the arguments are left out
    let defaults = app
        .graphql(
            "{ stations(near: {latitude: 10.0, longitude: 10.05}) { ocmId distanceKm } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(defaults["data"]["stations"][0]["ocmId"], 31, "{defaults}");
    let max_radius = search(&app, (10.0, 10.0), 500.0, None, None, 100).await;
    assert_eq!(hits(&max_radius).len(), 1, "{max_radius}");
}

async fn redis_get(app: &TestApp, key: &str) -> (Option<String>, i64) {
    let mut conn = app.ctx.redis.get().await.expect("redis");
    let value: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    let ttl: i64 = redis::cmd("TTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("TTL");
    (value, ttl)
}

#[actix_web::test]
async fn station_by_id_is_served_cached_and_refreshed_by_a_sync() {
    let pois = real_pois();
    let fake = FakeOcm::start(pois.clone()).await;
    let app = app_for(&fake, 100).await;
    sync_ok(&app).await;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM stations WHERE ocm_id = 2738")
        .fetch_one(&app.db)
        .await
        .expect("station");

    let first = app.graphql(STATION, json!({ "id": id }), None).await;

    let station = &first["data"]["station"];
    assert_eq!(station["id"], id.to_string(), "{first}");
    assert_eq!(station["ocmId"], 2738);
    assert_eq!(station["name"], "City of Lake Oswego");
    assert_eq!(station["address"], "209 A Ave");
    assert_eq!(station["town"], "Lake Oswego");
    assert_eq!(station["country"], "US");
    assert_eq!(station["status"], "Unknown");
    assert_eq!(station["distanceKm"], Value::Null);
    assert_eq!(
        station["connectors"],
        json!([{ "type": "Type 1 (J1772)", "powerKW": 3.0, "quantity": 1 }])
    );
    let prefix = &app.ctx.settings.redis.key_prefix;
    let (generation, _) = redis_get(&app, &format!("{prefix}:stations:cache-generation")).await;
    let key = format!(
        "{prefix}:station:{}:{id}",
        generation.unwrap_or_else(|| "0".into())
    );
    let (cached, ttl) = redis_get(&app, &key).await;
    assert!(cached.is_some_and(|c| c.contains("City of Lake Oswego")));
    assert!((1..=300).contains(&ttl), "ttl {ttl}");

    // served from Redis: a change behind the cache's back is not seen...
    sqlx::query("UPDATE stations SET name = 'Changed behind the cache' WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .expect("update");
    let cached = app.graphql(STATION, json!({ "id": id }), None).await;
    assert_eq!(cached["data"]["station"]["name"], "City of Lake Oswego");

    // ...until a sync changes stations
    let mut renamed = pois
        .iter()
        .find(|p| p["ID"] == json!(2738))
        .expect("POI 2738")
        .clone();
    renamed["AddressInfo"]["Title"] = json!("Lake Oswego City Hall");
    renamed["DateLastStatusUpdate"] = json!("2025-02-01T10:00:00Z");
    fake.upsert(vec![renamed]);
    sync_ok(&app).await;
    let fresh = app.graphql(STATION, json!({ "id": id }), None).await;
    assert_eq!(
        fresh["data"]["station"]["name"], "Lake Oswego City Hall",
        "{fresh}"
    );
    assert_eq!(
        fresh["data"]["station"]["id"],
        id.to_string(),
        "same station id"
    );

    let missing = app
        .graphql(STATION, json!({ "id": uuid::Uuid::new_v4() }), None)
        .await;
    assert_eq!(missing["data"]["station"], Value::Null, "{missing}");
    assert!(missing["errors"].is_null(), "{missing}");
    let invalid = app.graphql(STATION, json!({ "id": "CP-1" }), None).await;
    assert_eq!(error_code(&invalid).as_deref(), Some("BAD_USER_INPUT"));
}

#[actix_web::test]
async fn a_serving_replica_reloads_its_index_when_another_process_syncs() {
    let fake = FakeOcm::start(vec![poi(41, 48.0, 11.0, &[(33, 150.0)])]).await;
    let base_url = fake.base_url.clone();
    let app = crate::helpers::spawn_app_with(move |s| {
        s.ocm.base_url = base_url;
        s.ocm.api_key = Some(secrecy::SecretString::from(super::fake_ocm::API_KEY));
        s.ocm.request_interval_ms = 0;
        s.ocm.index_refresh_secs = 1;
    })
    .await;
    let before = search(&app, (48.0, 11.0), 5.0, None, None, 10).await;
    assert_eq!(before["data"]["stations"], json!([]));

    // the sync runs elsewhere: this process is not told, it has to notice
    run_once(
        &SyncDeps::from(&app.ctx),
        SyncSource::Api,
        &chargegrid::ocm::progress::Progress::log(),
    )
    .await
    .expect("sync");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = search(&app, (48.0, 11.0), 5.0, None, None, 10).await;
        if hits(&response).iter().any(|h| h.0 == 41) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the index never picked up the sync"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn the_station_schema_matches_the_contract() {
    let sdl = chargegrid::api::graphql::sdl();
    let compact: String = sdl.split_whitespace().collect::<Vec<_>>().join(" ");
    for field in [
        "id: ID!",
        "ocmId: Int",
        "name: String!",
        "address: String",
        "town: String",
        "country: String",
        "latitude: Float!",
        "longitude: Float!",
        "connectors: [Connector!]!",
        "status: String",
        "usageCost: String",
        "distanceKm: Float",
    ] {
        let station = compact
            .split("type Station {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("type Station");
        assert!(station.contains(field), "Station lacks {field}: {station}");
    }
    assert!(compact.contains("type Connector { \"\"\" OpenChargeMap connection type title, e.g. \"CCS (Type 2)\". \"\"\" type: String! powerKW: Float quantity: Int }"), "{compact}");
    assert!(compact.contains("input GeoPointInput { latitude: Float! longitude: Float! }"));
    // async-graphql prints the Float default 10 as 10.0: the same GraphQL value
    assert!(compact.contains(
        "stations(near: GeoPointInput!, radiusKm: Float = 10.0, connectorType: String, minPowerKw: Float, first: Int = 20): [Station!]!"
    ), "{compact}");
    assert!(compact.contains("station(id: ID!): Station"));
}
