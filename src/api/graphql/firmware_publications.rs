//! Firmware a local controller publishes to the stations behind it (OCPP 2.0.1 L05; OCTT
//! TC_L_17 - TC_L_24), for operators: `publishFirmware` sends PublishFirmware and tracks what
//! the controller reports; `unpublishFirmware` takes it back (extensions, docs/firmware.md).

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::auth::require_staff;
use super::chargers::{command_error, record_audit};
use super::error::{ApiError, ApiResult};
use crate::actors::registry;
use crate::context::AppContext;
use crate::domain::ChargePointId;
use crate::ocpp::command::ChargerCommand;
use crate::store::firmware_publications::{self as store, PublicationRecord};

/// A publication as far as the server knows it.
#[derive(SimpleObject)]
pub struct FirmwarePublication {
    pub id: ID,
    pub charger_id: ID,
    /// PublishFirmware's requestId, which the controller's notifications name
    pub request_id: i32,
    pub location: String,
    pub checksum: String,
    /// SENT, REJECTED (refused by the controller), the controller's last status (e.g.
    /// Downloading, Published, InvalidChecksum, PublishFailed) or UNPUBLISHED
    pub status: String,
    /// where the stations behind the controller fetch it, once Published
    pub published_locations: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PublicationRecord> for FirmwarePublication {
    fn from(r: PublicationRecord) -> Self {
        Self {
            id: ID(r.id.to_string()),
            charger_id: ID(r.charger_id),
            request_id: r.request_id,
            location: r.location,
            checksum: r.checksum,
            status: r.status,
            published_locations: r.published_locations,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(InputObject)]
pub struct PublishFirmwareInput {
    /// the local controller
    pub charger_id: ID,
    /// where the controller downloads the image (http(s) or ftp(s))
    pub location: String,
    /// MD5 of the image, 32 hex digits
    pub checksum: String,
    /// download attempts the controller makes (0 to 10)
    pub retries: Option<i32>,
    /// seconds between them (1 to 86400)
    pub retry_interval: Option<i32>,
}

/// How the controller answered an UnpublishFirmware.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UnpublishStatus {
    /// taken back
    Unpublished,
    /// it held no firmware with that checksum
    NoFirmware,
    /// it is still downloading it: try again later
    DownloadOngoing,
}

/// The signed-in ADMIN: publishing firmware changes chargers' software.
fn require_admin(ctx: &Context<'_>) -> ApiResult<uuid::Uuid> {
    let (id, role) = require_staff(ctx)?;
    if role != crate::domain::Role::Admin {
        return Err(ApiError::Forbidden(
            "publishing firmware changes chargers' software: it needs the ADMIN role".into(),
        ));
    }
    Ok(id)
}

fn parse_charger(id: &ID) -> ApiResult<String> {
    ChargePointId::parse(id.as_str())
        .map(|id| id.as_str().to_string())
        .map_err(|e| ApiError::BadUserInput(e.0))
}

fn checksum(value: &str) -> ApiResult<String> {
    let lower = value.trim().to_ascii_lowercase();
    if lower.len() != 32 || !lower.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::BadUserInput(
            "checksum must be the image's MD5: 32 hex digits".into(),
        ));
    }
    Ok(lower)
}

#[derive(Default)]
pub struct FirmwarePublicationQuery;

#[Object]
impl FirmwarePublicationQuery {
    /// OPERATOR or ADMIN: a local controller's publications, newest first (extension; at most
    /// `first`, 1 to 100)
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn firmware_publications(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<FirmwarePublication>> {
        require_staff(ctx)?;
        if !(1..=100).contains(&first) {
            return Err(ApiError::BadUserInput("first must be 1 to 100".into()));
        }
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger(&charger_id)?;
        Ok(store::of_charger(&app.db, &id, i64::from(first))
            .await?
            .into_iter()
            .map(FirmwarePublication::from)
            .collect())
    }
}

#[derive(Default)]
pub struct FirmwarePublicationMutation;

#[Object]
impl FirmwarePublicationMutation {
    /// ADMIN (software, like PublishFirmware through `sendChargerCommand`): asks a local
    /// controller to download and publish firmware for the
    /// stations behind it (PublishFirmware); answers once the controller answered, with
    /// status SENT (accepted: its notifications follow) or REJECTED (extension)
    async fn publish_firmware(
        &self,
        ctx: &Context<'_>,
        input: PublishFirmwareInput,
    ) -> ApiResult<FirmwarePublication> {
        let staff = require_admin(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger(&input.charger_id)?;
        super::firmware::check_location(&input.location)?;
        let checksum = checksum(&input.checksum)?;
        let retries = input.retries.unwrap_or(3);
        let interval = input.retry_interval.unwrap_or(60);
        if !(0..=10).contains(&retries) || !(1..=86_400).contains(&interval) {
            return Err(ApiError::BadUserInput(
                "retries must be 0 to 10 and retryInterval 1 to 86400 seconds".into(),
            ));
        }
        let Some(created) = store::create(&app.db, &id, &input.location, &checksum, staff).await?
        else {
            return Err(ApiError::NotFound("charger not found".into()));
        };
        let command = ChargerCommand::Raw {
            action: "PublishFirmware".into(),
            payload: json!({ "location": created.location, "checksum": created.checksum,
                "requestId": created.request_id, "retries": retries, "retryInterval": interval }),
        };
        let details = json!({ "requestId": created.request_id, "location": created.location });
        record_audit(app, Some(staff), "publishFirmware", Some(&id), details).await;
        let reply = match registry::execute(app, &id, command).await {
            Ok(reply) => reply,
            Err(e) => {
                // nothing reached the controller: the publication is not in progress
                store::set_status(&app.db, created.id, "REJECTED").await?;
                return Err(command_error(e));
            }
        };
        let status = if reply["status"] == "Accepted" {
            "SENT"
        } else {
            "REJECTED"
        };
        tracing::info!(charger_id = %id, request_id = created.request_id, status, "firmware publication sent");
        // the controller's first notification may already have landed: only a refusal writes
        let record = if status == "REJECTED" {
            store::set_status(&app.db, created.id, status).await?
        } else {
            None
        };
        Ok(record.unwrap_or(created).into())
    }

    /// ADMIN: asks a local controller to stop publishing the firmware with
    /// `checksum` (UnpublishFirmware); the controller's answer (extension)
    async fn unpublish_firmware(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        checksum: String,
    ) -> ApiResult<UnpublishStatus> {
        let staff = require_admin(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger(&charger_id)?;
        let checksum = self::checksum(&checksum)?;
        let command = ChargerCommand::Raw {
            action: "UnpublishFirmware".into(),
            payload: json!({ "checksum": checksum }),
        };
        record_audit(
            app,
            Some(staff),
            "unpublishFirmware",
            Some(&id),
            json!({ "checksum": checksum }),
        )
        .await;
        let reply = registry::execute(app, &id, command)
            .await
            .map_err(command_error)?;
        let status = match reply["status"].as_str() {
            Some("Unpublished") => UnpublishStatus::Unpublished,
            Some("DownloadOngoing") => UnpublishStatus::DownloadOngoing,
            _ => UnpublishStatus::NoFirmware,
        };
        if status != UnpublishStatus::DownloadOngoing {
            // gone from the controller either way
            store::unpublished(&app.db, &id, &checksum).await?;
        }
        Ok(status)
    }
}
