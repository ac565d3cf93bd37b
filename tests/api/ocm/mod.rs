//! OpenChargeMap: the sync against a local fake OCM API, the mirror and the Postgres
//! normalisation, and station search checked against a brute-force haversine scan.

mod fake_ocm;
mod search;
mod sync;

use std::path::PathBuf;
use std::process::Command;

use chargegrid::ocm::progress::Progress;
use chargegrid::ocm::sync::{run_once, SyncDeps, SyncError, SyncOutcome, SyncReport, SyncSource};
use mongodb::bson::{doc, Document};
use secrecy::SecretString;
use serde_json::Value;

use self::fake_ocm::{FakeOcm, API_KEY};
use crate::helpers::{spawn_app_with, TestApp};

/// The shared OCM fixtures (`/work/shared/ocm` next to the repository).
pub fn shared_ocm(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/ocm")
        .join(file)
}

/// The 302 real POIs in compact form.
pub fn real_pois() -> Vec<Value> {
    let text = std::fs::read_to_string(shared_ocm("pois-real.compact.json")).expect("real POIs");
    serde_json::from_str(&text).expect("real POIs parse")
}

/// Synthetic POIs from `synth.py` (compact JSON array unless the args say otherwise).
pub fn synth(args: &[&str]) -> Vec<Value> {
    let output = Command::new("python3")
        .arg(shared_ocm("synth.py"))
        .args(args)
        .output()
        .expect("python3 runs synth.py");
    assert!(
        output.status.success(),
        "synth.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("synth.py prints a JSON array")
}

/// An app whose OCM settings point at `fake`, with small pages and no pauses.
pub async fn app_for(fake: &FakeOcm, batch: u32) -> TestApp {
    let base_url = fake.base_url.clone();
    spawn_app_with(move |s| {
        s.ocm.base_url = base_url;
        s.ocm.api_key = Some(SecretString::from(API_KEY));
        s.ocm.batch_size = batch;
        s.ocm.request_interval_ms = 0;
        s.ocm.retry_base_delay_ms = 5;
        s.ocm.max_retries = 2;
    })
    .await
}

pub async fn sync_from(app: &TestApp, source: SyncSource) -> Result<SyncOutcome, SyncError> {
    run_once(&SyncDeps::from(&app.ctx), source, &Progress::log()).await
}

/// Runs an API sync that must complete, then reloads the app's search index.
pub async fn sync_ok(app: &TestApp) -> SyncReport {
    let report = match sync_from(app, SyncSource::Api).await {
        Ok(SyncOutcome::Completed(report)) => report,
        other => panic!("sync did not complete: {other:?}"),
    };
    app.ctx
        .stations
        .reload(&app.db)
        .await
        .expect("index reloads");
    report
}

/// Every mirror document, by OCM ID.
pub async fn mirror_docs(app: &TestApp) -> Vec<Document> {
    use futures_util::TryStreamExt;
    app.ctx
        .mongo
        .collection::<Document>("ocm_pois")
        .find(doc! {})
        .sort(doc! { "externalId": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents")
}

/// (ocm_id, id, is_live, updated_at as text) of every station, by OCM ID.
pub async fn station_rows(app: &TestApp) -> Vec<(i32, uuid::Uuid, bool, String)> {
    sqlx::query_as("SELECT ocm_id, id, is_live, updated_at::text FROM stations ORDER BY ocm_id")
        .fetch_all(&app.db)
        .await
        .expect("stations")
}
