//! Diagnostics and logs for operators: ask a charger to upload one (1.6 GetDiagnostics or the
//! security extension's GetLog, 2.0.1 GetLog) to this server, follow its upload, download it
//! from `GET /api/logs/{id}` (docs/firmware.md).

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::{json, Value};

use super::auth::require_staff;
use super::chargers::command_error;
use super::error::{ApiError, ApiResult};
use crate::actors::registry;
use crate::context::AppContext;
use crate::domain::ChargePointId;
use crate::ocpp::command::ChargerCommand;
use crate::store::charger_logs::{self, LogRecord};
use crate::store::chargers;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ChargerLogType {
    Diagnostics,
    Security,
}

/// A log a charger was asked to upload (extension)
#[derive(SimpleObject)]
pub struct ChargerLog {
    pub id: ID,
    pub charger_id: ID,
    #[graphql(name = "type")]
    pub log_type: ChargerLogType,
    /// REQUESTED, UPLOADING, UPLOADED or FAILED
    pub status: String,
    /// what the charger said last (Uploading, Uploaded, UploadFailed, its refusal, ...)
    pub charger_status: Option<String>,
    pub file_name: Option<String>,
    pub size_bytes: Option<i64>,
    pub requested_at: DateTime<Utc>,
    pub uploaded_at: Option<DateTime<Utc>>,
    /// where OPERATORs and ADMINs download it (with their bearer token) once uploaded
    pub download_path: Option<String>,
}

impl From<LogRecord> for ChargerLog {
    fn from(r: LogRecord) -> Self {
        Self {
            download_path: r.uploaded_at.map(|_| format!("/api/logs/{}", r.id)),
            id: ID(r.id.to_string()),
            charger_id: ID(r.charger_id),
            log_type: if r.log_type == "SECURITY" {
                ChargerLogType::Security
            } else {
                ChargerLogType::Diagnostics
            },
            status: r.status,
            charger_status: r.charger_status,
            file_name: r.file_name,
            size_bytes: r.size_bytes,
            requested_at: r.requested_at,
            uploaded_at: r.uploaded_at,
        }
    }
}

/// Where chargers reach this server.
fn upload_base(app: &AppContext) -> String {
    if let Some(base) = &app.settings.ocpp.upload_base_url {
        return base.trim_end_matches('/').to_string();
    }
    let host = app
        .settings
        .http
        .bind
        .rsplit_once(':')
        .map_or("127.0.0.1", |(host, _)| host)
        .replace("0.0.0.0", "127.0.0.1");
    let port = app.http_port.get().copied().unwrap_or(8080);
    format!("http://{host}:{port}")
}

fn parse_charger(id: &ID) -> ApiResult<ChargePointId> {
    ChargePointId::parse(id.as_str()).map_err(|e| ApiError::BadUserInput(e.0))
}

#[derive(Default)]
pub struct ChargerLogQuery;

#[Object]
impl ChargerLogQuery {
    /// OPERATOR or ADMIN: the logs a charger was asked for, newest first (extension)
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn charger_logs(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<ChargerLog>> {
        require_staff(ctx)?;
        if !(1..=100).contains(&first) {
            return Err(ApiError::BadUserInput(
                "first must be between 1 and 100".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger(&charger_id)?;
        Ok(
            charger_logs::of_charger(&app.db, id.as_str(), i64::from(first))
                .await?
                .into_iter()
                .map(ChargerLog::from)
                .collect(),
        )
    }
}

#[derive(Default)]
pub struct ChargerLogMutation;

#[Object]
impl ChargerLogMutation {
    /// OPERATOR or ADMIN: asks the charger to upload its diagnostics (the default) or security
    /// log (of a time window) to this server (extension)
    async fn request_charger_log(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        #[graphql(name = "type")] log_type: Option<ChargerLogType>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> ApiResult<ChargerLog> {
        let (staff, _) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger(&charger_id)?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(ApiError::BadUserInput("from must not be after to".into()));
            }
        }
        if chargers::find(&app.db, id.as_str()).await?.is_none() {
            return Err(ApiError::NotFound("charger not found".into()));
        }
        let mut secret = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut secret);
        let secret = hex::encode(secret);
        let security = log_type == Some(ChargerLogType::Security);
        let kind = if security { "SECURITY" } else { "DIAGNOSTICS" };
        let record = charger_logs::create(&app.db, id.as_str(), kind, &secret, staff).await?;
        let details = json!({ "log": record.id, "type": kind });
        super::chargers::record_audit(
            app,
            Some(staff),
            "requestChargerLog",
            Some(id.as_str()),
            details,
        )
        .await;
        let command = ChargerCommand::GetLog {
            request_id: record.request_id,
            security,
            location: format!("{}/uploads/logs/{secret}", upload_base(app)),
            from,
            to,
        };
        match registry::execute(app, id.as_str(), command).await {
            Ok(reply) => {
                let refused = reply
                    .get("status")
                    .and_then(Value::as_str)
                    .filter(|s| !matches!(*s, "Accepted" | "AcceptedCanceled"));
                if let Some(refused) = refused {
                    charger_logs::failed(&app.db, record.id, refused).await?;
                    return Err(ApiError::ChargerRejected(format!(
                        "the charger answered {reply}"
                    )));
                }
                let name = reply
                    .get("fileName")
                    .or_else(|| reply.get("filename"))
                    .and_then(Value::as_str);
                if let Some(name) = name.and_then(crate::api::uploads::clean_name) {
                    charger_logs::named(&app.db, record.id, &name).await?;
                }
            }
            Err(e) => {
                charger_logs::failed(&app.db, record.id, &e.to_string()).await?;
                return Err(command_error(e));
            }
        }
        Ok(charger_logs::find(&app.db, record.id)
            .await?
            .map(ChargerLog::from)
            .ok_or_else(|| ApiError::NotFound("log not found".into()))?)
    }
}
