//! Chargers for operators: registration, status, and commands (OPERATOR or ADMIN only).

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::auth::{is_staff, require_staff};
use super::device_model::{device_model, DeviceVariable};
use super::error::{ApiError, ApiResult};
use super::loaders::{ApiLoader, ChargerConnectors};
use crate::actors::registry;
use crate::auth::password;
use crate::context::AppContext;
use crate::domain::{ChargePointId, Role};
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::store::chargers::{self, ChargerRecord};
use crate::store::top_ups;

/// What a charger's connector list counts for in a query's complexity.
pub const CONNECTORS_PER_CHARGER: usize = 4;

/// OCPP security profile 1/2 passwords are 16 to 40 characters (OCPP 1.6 security whitepaper).
const CHARGER_PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 16..=40;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "OcppVersion")]
pub enum OcppVersionGql {
    #[graphql(name = "OCPP16")]
    Ocpp16,
    #[graphql(name = "OCPP201")]
    Ocpp201,
}

/// Live status of a connector as last reported by its charger.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorStatus {
    Available,
    Preparing,
    Charging,
    SuspendedEv,
    SuspendedEvse,
    Finishing,
    Reserved,
    Unavailable,
    Faulted,
    Occupied,
    Unknown,
}

impl ConnectorStatus {
    fn from_db(status: &str) -> Self {
        match status {
            "AVAILABLE" => Self::Available,
            "PREPARING" => Self::Preparing,
            "CHARGING" => Self::Charging,
            "SUSPENDED_EV" => Self::SuspendedEv,
            "SUSPENDED_EVSE" => Self::SuspendedEvse,
            "FINISHING" => Self::Finishing,
            "RESERVED" => Self::Reserved,
            "UNAVAILABLE" => Self::Unavailable,
            "FAULTED" => Self::Faulted,
            "OCCUPIED" => Self::Occupied,
            _ => Self::Unknown,
        }
    }
}

/// Whether a charger may operate (extension).
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationStatus {
    Accepted,
    Pending,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ResetType {
    Soft,
    Hard,
}

/// A message the charger sent that is kept as sent (extension)
#[derive(SimpleObject)]
pub struct ChargerReport {
    pub id: ID,
    /// the OCPP action, e.g. NotifyMonitoringReport
    pub kind: String,
    pub payload: async_graphql::Json<serde_json::Value>,
    pub received_at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct ChargerConnector {
    pub connector_id: i32,
    pub status: ConnectorStatus,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A charger as the API shows it.
pub struct ChargerView(pub ChargerRecord);

#[Object(name = "Charger")]
impl ChargerView {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn station_id(&self) -> Option<ID> {
        self.0.station_id.map(|id| ID(id.to_string()))
    }

    async fn online(&self) -> bool {
        self.0.online
    }

    /// OPERATOR or ADMIN; null for others.
    async fn protocol(&self, ctx: &Context<'_>) -> Option<OcppVersionGql> {
        if !is_staff(ctx) {
            return None;
        }
        match self.0.protocol.as_deref() {
            Some("OCPP16") => Some(OcppVersionGql::Ocpp16),
            Some("OCPP201") => Some(OcppVersionGql::Ocpp201),
            _ => None,
        }
    }

    /// OPERATOR or ADMIN: PENDING while quarantined (BootNotification answered Pending until
    /// an operator adopts it with registerCharger), else ACCEPTED; null for others (extension).
    async fn registration_status(&self, ctx: &Context<'_>) -> Option<RegistrationStatus> {
        is_staff(ctx).then_some(if self.0.quarantined {
            RegistrationStatus::Pending
        } else {
            RegistrationStatus::Accepted
        })
    }

    /// OPERATOR or ADMIN: the lowest OCPP security profile the charger may connect with (1:
    /// Basic over plain WebSocket, 2: TLS + Basic, 3: TLS with a client certificate); null for
    /// others (extension).
    async fn security_profile(&self, ctx: &Context<'_>) -> Option<i32> {
        is_staff(ctx).then_some(i32::from(self.0.security_profile))
    }

    /// OPERATOR or ADMIN: a raised profile the charger was asked to use and has not yet
    /// connected with (extension).
    async fn pending_security_profile(&self, ctx: &Context<'_>) -> Option<i32> {
        self.0
            .pending_security_profile
            .filter(|_| is_staff(ctx))
            .map(i32::from)
    }

    /// OPERATOR or ADMIN: certificates the CSMS CA signed for this charger, newest first
    /// (extension).
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn certificates(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
    ) -> ApiResult<Vec<super::security::ChargerCertificate>> {
        super::security::certificates(ctx, &self.0.id, first).await
    }

    /// OPERATOR or ADMIN: the charger's security events, newest first (extension).
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn security_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<super::security::SecurityEvent>> {
        super::security::events(ctx, Some(&self.0.id), first).await
    }

    /// OPERATOR or ADMIN: the operator commands sent to this charger and how each ended,
    /// newest first, from the audit log (extension).
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn commands(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<super::operations::ChargerCommandRecord>> {
        super::operations::charger_commands(ctx, self, first).await
    }

    /// OPERATOR or ADMIN: the charger's last BootNotification; null for others (extension).
    async fn last_boot_at(&self, ctx: &Context<'_>) -> Option<DateTime<Utc>> {
        self.0.last_boot_at.filter(|_| is_staff(ctx))
    }

    /// OPERATOR or ADMIN; null for others.
    async fn vendor(&self, ctx: &Context<'_>) -> Option<&str> {
        self.0.vendor.as_deref().filter(|_| is_staff(ctx))
    }

    /// OPERATOR or ADMIN; null for others.
    async fn model(&self, ctx: &Context<'_>) -> Option<&str> {
        self.0.model.as_deref().filter(|_| is_staff(ctx))
    }

    /// OPERATOR or ADMIN; null for others.
    async fn firmware_version(&self, ctx: &Context<'_>) -> Option<&str> {
        self.0.firmware_version.as_deref().filter(|_| is_staff(ctx))
    }

    /// OPERATOR or ADMIN; null for others.
    async fn last_seen(&self, ctx: &Context<'_>) -> Option<DateTime<Utc>> {
        self.0.last_seen.filter(|_| is_staff(ctx))
    }

    /// OPERATOR or ADMIN: the replica holding the charger's socket (extension of the contract).
    async fn node_id(&self, ctx: &Context<'_>) -> Option<&str> {
        self.0
            .node_id
            .as_deref()
            .filter(|_| self.0.online && is_staff(ctx))
    }

    /// Batched across every charger of the request (one statement).
    #[graphql(complexity = "CONNECTORS_PER_CHARGER * child_complexity")]
    async fn connectors(&self, ctx: &Context<'_>) -> ApiResult<Vec<ChargerConnector>> {
        let loader = ctx.data_unchecked::<DataLoader<ApiLoader>>();
        Ok(loader
            .load_one(ChargerConnectors(self.0.id.clone()))
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|c| ChargerConnector {
                connector_id: c.connector_id,
                status: ConnectorStatus::from_db(&c.status),
                updated_at: Some(c.updated_at),
            })
            .collect())
    }

    /// OPERATOR or ADMIN: what the charger reported, newest first, optionally of one kind
    /// (NotifyEvent, NotifyMonitoringReport, NotifyDisplayMessages, FirmwareStatusNotification,
    /// PublishFirmwareStatusNotification, LogStatusNotification, DataTransfer, ...). Customer
    /// information (NotifyCustomerInformation) is personal data: ADMIN only (extension).
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn reports(
        &self,
        ctx: &Context<'_>,
        kind: Option<String>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<ChargerReport>> {
        let (_, role) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        if !(1..=200).contains(&first) {
            return Err(ApiError::BadUserInput(
                "first must be between 1 and 200".into(),
            ));
        }
        let hidden: &[&str] = if role == crate::domain::Role::Admin {
            &[]
        } else {
            &["NotifyCustomerInformation"]
        };
        if kind.as_deref().is_some_and(|k| hidden.contains(&k)) {
            return Err(ApiError::Forbidden(
                "customer information is for ADMINs".into(),
            ));
        }
        Ok(chargers::reports(
            &app.db,
            &self.0.id,
            kind.as_deref(),
            hidden,
            i64::from(first),
        )
        .await?
        .into_iter()
        .map(|r| ChargerReport {
            id: ID(r.id.to_string()),
            kind: r.kind,
            payload: async_graphql::Json(r.payload),
            received_at: r.received_at,
        })
        .collect())
    }

    /// OPERATOR or ADMIN: what an OCPP 2.0.1 station reported about its components and
    /// variables (NotifyReport), optionally of one component (extension).
    async fn device_model(
        &self,
        ctx: &Context<'_>,
        component: Option<String>,
    ) -> ApiResult<Vec<DeviceVariable>> {
        device_model(ctx, &self.0.id, component.as_deref()).await
    }
}

#[derive(InputObject)]
pub struct RegisterChargerInput {
    /// the charge point identity the charger uses in its OCPP URL (max 48 chars, no ':')
    pub charger_id: ID,
    pub station_id: ID,
    /// HTTP Basic password for OCPP security profile 1/2 (16 to 40 characters); stored only as
    /// a hash. Required for a new charger outside development mode (unless it uses security
    /// profile 3); omitted, the stored one is kept.
    pub password: Option<String>,
    /// The lowest OCPP security profile the charger may connect with: 1 (Basic over plain
    /// WebSocket), 2 (TLS + Basic) or 3 (TLS with a client certificate whose subject CN is the
    /// charger id). Default 2, or 1 in development mode.
    pub security_profile: Option<i32>,
}

fn parse_uuid(id: &ID, what: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| ApiError::BadUserInput(format!("{what} is not a valid id")))
}

fn parse_charger_id(id: &ID) -> ApiResult<ChargePointId> {
    Ok(ChargePointId::parse(id.as_str())?)
}

/// The API error for a command that did not get a result.
pub fn command_error(err: CommandError) -> ApiError {
    match err {
        CommandError::Offline => ApiError::ChargerOffline,
        CommandError::Timeout => ApiError::ChargerTimeout,
        CommandError::CallError { code, description } => {
            ApiError::ChargerRejected(format!("{code}: {description}"))
        }
        CommandError::BadReply(reason) => {
            ApiError::ChargerRejected(format!("invalid answer: {reason}"))
        }
        CommandError::Invalid(reason) => ApiError::BadUserInput(reason),
        CommandError::Busy => ApiError::RateLimited {
            retry_after_secs: 1,
        },
    }
}

/// CSMS-initiated actions that change a charger's credentials, security, software, network or
/// authorization data, or read personal data off it: ADMIN only (operators run the others).
const ADMIN_ACTIONS: &[&str] = &[
    "ChangeConfiguration",
    "SetVariables",
    "SetNetworkProfile",
    "UpdateFirmware",
    "SignedUpdateFirmware",
    "PublishFirmware",
    "UnpublishFirmware",
    "InstallCertificate",
    "DeleteCertificate",
    "CertificateSigned",
    "SendLocalList",
    "DataTransfer",
    "GetDiagnostics",
    "GetLog",
    "CustomerInformation",
];

/// Records who did what to which charger (never the payload: it may carry credentials).
pub(super) async fn audit(
    app: &AppContext,
    actor: Uuid,
    action: &str,
    charger_id: &str,
    details: Value,
) {
    record_audit(app, Some(actor), action, Some(charger_id), details).await;
}

/// Writes the audit log; a failure is logged, never the caller's error (the action is done).
pub(crate) async fn record_audit(
    app: &AppContext,
    actor: Option<Uuid>,
    action: &str,
    target: Option<&str>,
    details: Value,
) {
    if let Err(e) = top_ups::audit(&app.db, actor, action, target, details).await {
        tracing::error!(error = %e, %action, "could not write the audit log");
    }
}

fn outcome<T>(result: &ApiResult<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// Closes the charger's connection wherever it is held; an offline charger has none to close.
pub(super) async fn disconnect(app: &AppContext, charger_id: &str, reason: &str) {
    let command = ChargerCommand::Disconnect {
        reason: reason.into(),
    };
    match registry::execute(app, charger_id, command).await {
        Ok(_) | Err(CommandError::Offline) => {}
        Err(e) => {
            tracing::warn!(%charger_id, error = %e, "could not close the charger's connection")
        }
    }
}

/// Runs a command on a charger wherever this replica can reach it (a GetVariables or
/// SetVariables longer than the station takes in one message goes in several).
pub async fn run_command(
    app: &AppContext,
    charger_id: &str,
    command: ChargerCommand,
) -> ApiResult<Value> {
    crate::actors::message_limits::execute(app, charger_id, command)
        .await
        .map_err(command_error)
}

#[derive(Default)]
pub struct ChargerQuery;

#[Object]
impl ChargerQuery {
    /// OPERATOR or ADMIN
    async fn charger(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<ChargerView>> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(chargers::find(&app.db, id.as_str()).await?.map(ChargerView))
    }

    /// OPERATOR or ADMIN
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn chargers(
        &self,
        ctx: &Context<'_>,
        online: Option<bool>,
        #[graphql(default = 100)] first: i32,
    ) -> ApiResult<Vec<ChargerView>> {
        require_staff(ctx)?;
        if !(1..=1000).contains(&first) {
            return Err(ApiError::BadUserInput(
                "first must be between 1 and 1000".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        Ok(chargers::list(&app.db, online, i64::from(first))
            .await?
            .into_iter()
            .map(ChargerView)
            .collect())
    }
}

#[derive(Default)]
pub struct ChargerMutation;

#[Object]
impl ChargerMutation {
    /// OPERATOR or ADMIN
    async fn register_charger(
        &self,
        ctx: &Context<'_>,
        input: RegisterChargerInput,
    ) -> ApiResult<ChargerView> {
        let (staff, role) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let charger_id = parse_charger_id(&input.charger_id)?;
        let station_id = parse_uuid(&input.station_id, "stationId")?;
        let existing = chargers::find(&app.db, charger_id.as_str()).await?;
        let has_credential = existing.as_ref().is_some_and(|c| c.password_hash.is_some());
        let default_profile = if app.settings.dev { 1 } else { 2 };
        let profile = match input.security_profile {
            // an adopted (auto-provisioned) charger gets the default, not the column's 1
            None => existing
                .as_ref()
                .filter(|c| !c.quarantined)
                .map(|c| c.security_profile)
                .unwrap_or(default_profile),
            Some(p) => i16::try_from(p)
                .ok()
                .filter(|p| (1..=3).contains(p))
                .ok_or_else(|| {
                    ApiError::BadUserInput("securityProfile must be 1, 2 or 3".into())
                })?,
        };
        // lowering a charger's security profile is an ADMIN's decision
        if let Some(current) = existing.as_ref().filter(|c| profile < c.security_profile) {
            if role != Role::Admin {
                return Err(ApiError::Forbidden(format!(
                    "lowering a charger's security profile (from {}) needs the ADMIN role",
                    current.security_profile
                )));
            }
        }
        if input.password.is_none() && !has_credential && !app.settings.dev && profile < 3 {
            return Err(ApiError::BadUserInput(
                "every charger needs a password (16 to 40 characters) outside development mode"
                    .into(),
            ));
        }
        let new_credential = input.password.is_some();
        let hash = match input.password {
            Some(password) => {
                if !CHARGER_PASSWORD_CHARS.contains(&password.chars().count()) {
                    return Err(ApiError::BadUserInput(
                        "charger passwords must have 16 to 40 characters".into(),
                    ));
                }
                Some(password::hash(password).await.map_err(ApiError::internal)?)
            }
            None => None,
        };
        let record = chargers::register(
            &app.db,
            charger_id.as_str(),
            station_id,
            hash.as_deref(),
            profile,
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::NotFound("station not found".into()),
            other => other.into(),
        })?;
        // no cache to clear: remembered password checks are bound to the stored hash. A
        // connection opened with the old password, or as a quarantined charger, is closed: the
        // charger comes back under the new rules
        let was_quarantined = existing.as_ref().is_some_and(|c| c.quarantined);
        let profile_changed = existing
            .as_ref()
            .is_some_and(|c| c.security_profile != profile);
        if existing.is_some() && (new_credential || was_quarantined || profile_changed) {
            disconnect(
                app,
                charger_id.as_str(),
                "the charger's registration changed",
            )
            .await;
        }
        audit(app, staff, "registerCharger", charger_id.as_str(), serde_json::json!({ "stationId": station_id, "newPassword": new_credential, "adopted": was_quarantined, "securityProfile": profile })).await;
        tracing::info!(charger_id = %charger_id, adopted = was_quarantined, "charger registered");
        Ok(ChargerView(record))
    }

    /// OPERATOR or ADMIN: puts a charger back to Pending (quarantine). Its connection is closed,
    /// and at its next BootNotification it is answered Pending and may do nothing else until
    /// `registerCharger` adopts it again (extension).
    async fn quarantine_charger(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
    ) -> ApiResult<ChargerView> {
        let (operator, _) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger_id(&charger_id)?;
        let record = chargers::set_quarantined(&app.db, id.as_str(), true)
            .await?
            .ok_or_else(|| ApiError::NotFound("charger not found".into()))?;
        disconnect(app, id.as_str(), "the charger was put back to Pending").await;
        audit(
            app,
            operator,
            "quarantineCharger",
            id.as_str(),
            serde_json::json!({}),
        )
        .await;
        tracing::warn!(charger_id = %id, %operator, "charger quarantined");
        Ok(ChargerView(record))
    }

    /// OPERATOR or ADMIN: true when the charger accepted the reset.
    async fn reset_charger(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        #[graphql(name = "type", default_with = "ResetType::Soft")] reset_type: ResetType,
    ) -> ApiResult<bool> {
        let (staff, _) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger_id(&charger_id)?;
        let hard = reset_type == ResetType::Hard;
        let reply = run_command(app, id.as_str(), ChargerCommand::Reset { hard }).await;
        let result = outcome(&reply);
        audit(
            app,
            staff,
            "resetCharger",
            id.as_str(),
            serde_json::json!({ "hard": hard, "outcome": result }),
        )
        .await;
        Ok(reply?.get("status").and_then(Value::as_str) == Some("Accepted"))
    }

    /// OPERATOR or ADMIN: sends any CSMS-initiated OCPP action of the charger's protocol
    /// (validated against the protocol's schema) and returns the charger's answer (extension).
    /// Actions that change credentials, software, network or authorization data, or read
    /// personal data off the charger, need ADMIN. Every call is in the audit log.
    async fn send_charger_command(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        action: String,
        payload: Json<Value>,
    ) -> ApiResult<Json<Value>> {
        let (staff, role) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger_id(&charger_id)?;
        if ADMIN_ACTIONS.contains(&action.as_str()) && role != Role::Admin {
            audit(
                app,
                staff,
                "sendChargerCommand",
                id.as_str(),
                serde_json::json!({ "action": action, "outcome": "FORBIDDEN" }),
            )
            .await;
            return Err(ApiError::Forbidden(format!(
                "{action} changes a charger's credentials, software, network or authorization data: it needs the ADMIN role"
            )));
        }
        let reply = run_command(
            app,
            id.as_str(),
            ChargerCommand::Raw {
                action: action.clone(),
                payload: payload.0,
            },
        )
        .await;
        let result = outcome(&reply);
        audit(
            app,
            staff,
            "sendChargerCommand",
            id.as_str(),
            serde_json::json!({ "action": action, "outcome": result }),
        )
        .await;
        Ok(Json(reply?))
    }
}
