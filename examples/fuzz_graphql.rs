//! Fuzzes the GraphQL API of a running server with generated documents
//! (`chargegrid::api::graphql::fuzz`): real fields and arguments with absurd values, aliases,
//! nesting, recursive fragments, truncation; anonymous, as a driver it registers, and with a
//! garbage token. Every answer must be a GraphQL response whose errors carry one of the
//! contract's codes and never INTERNAL; the server must be healthy at the end.
//!
//! ```text
//! cargo run --example fuzz_graphql -- --url http://127.0.0.1:8080 [--inputs 200000] [--seed 1] [--concurrency 16]
//! ```
//! `scripts/fuzz.sh` starts a server on a fresh database and runs this and `fuzz_ocpp`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chargegrid::api::graphql::fuzz::{document, CODES};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

#[derive(Default)]
struct Tally {
    outcomes: Mutex<BTreeMap<String, u64>>,
    violations: Mutex<Vec<String>>,
}

impl Tally {
    fn count(&self, outcome: String) {
        *self
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    fn violation(&self, what: String) {
        let mut v = self.violations.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 20 {
            v.push(what);
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let base = arg("--url").unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let inputs: u64 = arg("--inputs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let seed: u64 = arg("--seed").and_then(|v| v.parse().ok()).unwrap_or(1);
    let concurrency: u64 = arg("--concurrency")
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let http = reqwest::Client::new();
    let endpoint = format!("{base}/graphql");
    let email = format!("fuzz-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = async {
        http.post(&endpoint)
            .json(&json!({
                "query": "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
                "variables": { "i": { "email": email, "name": "Fuzz Driver", "password": "correct horse battery" } }
            }))
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await
    }
    .await;
    let registered = match registered {
        Ok(value) => value,
        Err(e) => {
            eprintln!("fuzz_graphql: {base} does not answer: {e}");
            std::process::exit(2);
        }
    };
    let driver = registered["data"]["register"]["accessToken"]
        .as_str()
        .map(String::from);
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (http, endpoint, tally, next, driver) = (
                http.clone(),
                endpoint.clone(),
                tally.clone(),
                next.clone(),
                driver.clone(),
            );
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(7919).wrapping_add(w));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= inputs {
                        return;
                    }
                    let doc = document(&mut rng);
                    let (who, token) = match i % 3 {
                        0 => ("anonymous", None),
                        1 => ("driver", driver.as_deref()),
                        _ => ("garbage token", Some("garbage")),
                    };
                    let mut request = http.post(&endpoint).json(&json!({ "query": doc }));
                    if let Some(token) = token {
                        request = request.bearer_auth(token);
                    }
                    let response = match request.send().await {
                        Ok(response) => response,
                        Err(e) => {
                            tally.count("transport error".into());
                            tally.violation(format!("transport error {e} for {doc}"));
                            continue;
                        }
                    };
                    let status = response.status().as_u16();
                    let Ok(body) = response.json::<Value>().await else {
                        tally.count(format!("HTTP {status}, not JSON"));
                        tally.violation(format!("not JSON (HTTP {status}) for {doc}"));
                        continue;
                    };
                    let errors = body["errors"].as_array().cloned().unwrap_or_default();
                    if errors.is_empty() {
                        tally.count(format!("{who}: HTTP {status}, data"));
                    }
                    for error in errors {
                        let code = error["extensions"]["code"].as_str().unwrap_or("<none>");
                        if !CODES.contains(&code) || code == "INTERNAL" {
                            tally.violation(format!("{code} for {doc}: {body}"));
                        }
                        tally.count(format!("{who}: HTTP {status}, {code}"));
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let healthy = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    println!(
        "fuzz_graphql: {inputs} documents, seed {seed}, concurrency {concurrency}, {elapsed:.1} s ({:.0} documents/s)",
        inputs as f64 / elapsed
    );
    for (outcome, n) in tally
        .outcomes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        println!("  {n:>10}  {outcome}");
    }
    let violations = tally
        .violations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    println!(
        "answers without a contract code, or INTERNAL, or not GraphQL: {}",
        violations.len()
    );
    for v in &violations {
        println!("    {v}");
    }
    println!("server healthy afterwards: {healthy}");
    if !violations.is_empty() || !healthy {
        std::process::exit(1);
    }
}
