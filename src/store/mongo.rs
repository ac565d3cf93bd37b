//! The MongoDB client for the OpenChargeMap mirror.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use secrecy::ExposeSecret;

use crate::configuration::{mask_url, Settings};

#[derive(Debug, thiserror::Error)]
#[error("MongoDB at {url}: {reason}")]
pub struct MongoSetupError {
    pub url: String,
    pub reason: String,
}

/// Parses the URL and builds the client; the driver connects lazily, so a Mongo that is down at
/// startup shows up in `/ready`.
pub async fn database(settings: &Settings) -> Result<Database, MongoSetupError> {
    let raw = settings.mongodb.url.expose_secret();
    let mut options = ClientOptions::parse(raw)
        .await
        .map_err(|e| MongoSetupError {
            url: mask_url(raw),
            reason: e.to_string(),
        })?;
    options.app_name = Some(format!("chargegrid/{}", settings.node_id));
    options.server_selection_timeout = Some(Duration::from_secs(3));
    options.connect_timeout = Some(Duration::from_secs(3));
    let client = Client::with_options(options).map_err(|e| MongoSetupError {
        url: mask_url(raw),
        reason: e.to_string(),
    })?;
    Ok(client.database(&settings.mongo_database()))
}

/// `ping`, for readiness.
pub async fn ping(db: &Database) -> Result<(), String> {
    db.run_command(doc! { "ping": 1 })
        .await
        .map(|_| ())
        .map_err(|e| e.kind.to_string())
}
