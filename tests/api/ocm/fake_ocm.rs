//! A local stand-in for the OpenChargeMap `/v3/poi` API with the real paging semantics:
//! `greaterthanid` strict, `modifiedsince` inclusive, `sortby` `id_asc` / `modified_asc`
//! (ties by ID), `maxresults`; the key checked in `X-API-Key`; faults injected on demand.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The key the fake accepts.
pub const API_KEY: &str = "test-ocm-key-123";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub params: HashMap<String, String>,
    pub api_key: Option<String>,
    pub user_agent: Option<String>,
    pub at: Instant,
    pub status: u16,
}

#[derive(Default)]
struct State {
    pois: Vec<Value>,
    requests: Vec<Recorded>,
    faults: VecDeque<(u16, Option<String>)>,
    /// Successful pages still allowed before every request fails with 500.
    pages_left: Option<usize>,
}

/// A running fake; stopped when dropped with the test's actix system.
pub struct FakeOcm {
    pub base_url: String,
    state: Arc<Mutex<State>>,
}

impl FakeOcm {
    pub async fn start(pois: Vec<Value>) -> Self {
        let state = Arc::new(Mutex::new(State {
            pois,
            ..State::default()
        }));
        let data = web::Data::new(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake OCM");
        let port = listener.local_addr().expect("local addr").port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v3/poi", web::get().to(poi))
        })
        .workers(1)
        // longer than any pause of a test: the app's pooled client never reuses a closing connection
        .keep_alive(std::time::Duration::from_secs(300))
        .listen(listener)
        .expect("listen")
        .run();
        actix_rt::spawn(server);
        Self {
            base_url: format!("http://127.0.0.1:{port}/v3"),
            state,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("fake OCM state"))
    }

    /// Replaces the POIs with these IDs (adds the new ones).
    pub fn upsert(&self, pois: Vec<Value>) {
        self.with(|s| {
            for poi in pois {
                let id = poi["ID"].as_i64();
                match s.pois.iter_mut().find(|p| p["ID"].as_i64() == id) {
                    Some(held) => *held = poi,
                    None => s.pois.push(poi),
                }
            }
        });
    }

    pub fn remove(&self, id: i64) {
        self.with(|s| s.pois.retain(|p| p["ID"].as_i64() != Some(id)));
    }

    /// The next request gets `status` (with `Retry-After` if given).
    pub fn fail_next(&self, status: u16, retry_after: Option<&str>) {
        self.with(|s| s.faults.push_back((status, retry_after.map(String::from))));
    }

    /// After `pages` more successful pages, every request fails with 500.
    pub fn fail_after(&self, pages: usize) {
        self.with(|s| s.pages_left = Some(pages));
    }

    pub fn heal(&self) {
        self.with(|s| {
            s.pages_left = None;
            s.faults.clear();
        });
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.requests.clone())
    }

    pub fn clear_requests(&self) {
        self.with(|s| s.requests.clear());
    }
}

fn modified(poi: &Value) -> Option<DateTime<Utc>> {
    poi["DateLastStatusUpdate"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

async fn poi(
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let mut state = state.lock().expect("fake OCM state");
    let mut record = Recorded {
        params: query.0.clone(),
        api_key: header("x-api-key"),
        user_agent: header("user-agent"),
        at: Instant::now(),
        status: 200,
    };
    let response = respond(&mut state, &record);
    record.status = response.status().as_u16();
    state.requests.push(record);
    response
}

fn respond(state: &mut State, record: &Recorded) -> HttpResponse {
    if record.api_key.as_deref() != Some(API_KEY) {
        return HttpResponse::Forbidden()
            .body("You must specify an API key using the key query parameter or x-api-key header");
    }
    if let Some((status, retry_after)) = state.faults.pop_front() {
        let mut response = HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status).expect("status code"),
        );
        if let Some(after) = retry_after {
            response.insert_header(("Retry-After", after));
        }
        return response.body("injected failure");
    }
    if state.pages_left == Some(0) {
        return HttpResponse::InternalServerError().body("upstream database unavailable");
    }
    let params = &record.params;
    let after_id: Option<i64> = params.get("greaterthanid").and_then(|v| v.parse().ok());
    let since: Option<DateTime<Utc>> = params
        .get("modifiedsince")
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc));
    let max: usize = params
        .get("maxresults")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut page: Vec<&Value> = state
        .pois
        .iter()
        .filter(|p| after_id.is_none_or(|a| p["ID"].as_i64().is_some_and(|id| id > a)))
        .filter(|p| since.is_none_or(|s| modified(p).is_some_and(|m| m >= s)))
        .collect();
    match params.get("sortby").map(String::as_str) {
        Some("id_asc") => page.sort_by_key(|p| p["ID"].as_i64()),
        Some("modified_asc") => page.sort_by_key(|p| (modified(p), p["ID"].as_i64())),
        _ => page.sort_by_key(|p| std::cmp::Reverse(p["ID"].as_i64())),
    }
    page.truncate(max);
    let body = serde_json::to_string(&page).expect("serialise POIs");
    if let Some(left) = state.pages_left.as_mut() {
        *left -= 1;
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}
