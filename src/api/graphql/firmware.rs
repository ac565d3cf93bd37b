//! Firmware campaigns for operators: one image rolled out to a set of chargers a few at a
//! time, with retries, each charger's progress as it reports it (docs/firmware.md).

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::auth::require_staff;
use super::error::{ApiError, ApiResult};
use crate::context::AppContext;
use crate::domain::ChargePointId;
use crate::store::firmware::{self, CampaignChargerRecord, CampaignRecord, NewCampaign};

/// Chargers one campaign may hold.
const MAX_CHARGERS: usize = 10_000;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum FirmwareCampaignStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl FirmwareCampaignStatus {
    fn from_db(value: &str) -> Self {
        match value {
            "COMPLETED" => Self::Completed,
            "FAILED" => Self::Failed,
            "CANCELLED" => Self::Cancelled,
            _ => Self::Running,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct FirmwareCampaign {
    pub id: ID,
    pub location: String,
    pub status: FirmwareCampaignStatus,
    /// when chargers are to download it; null: at once (extension)
    pub retrieve_at: Option<DateTime<Utc>>,
    /// chargers updating at once (extension)
    pub concurrency: i32,
    /// attempts per charger (extension)
    pub max_attempts: i32,
    /// (extension)
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    pub campaign_id: Uuid,
}

impl From<CampaignRecord> for FirmwareCampaign {
    fn from(r: CampaignRecord) -> Self {
        Self {
            id: ID(r.id.to_string()),
            location: r.location,
            status: FirmwareCampaignStatus::from_db(&r.status),
            retrieve_at: r.retrieve_at,
            concurrency: r.concurrency,
            max_attempts: r.max_attempts,
            created_at: r.created_at,
            campaign_id: r.id,
        }
    }
}

#[ComplexObject]
impl FirmwareCampaign {
    /// per charger: the last FirmwareStatusNotification status, e.g. Downloading, Installed,
    /// InstallationFailed (or Queued, Sent, Accepted, a refusal, Silent before one arrives);
    /// by charger id, `first` of them after the charger `after` (extension arguments; a
    /// page of 1 to 1000)
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn chargers(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: i32,
        after: Option<ID>,
    ) -> ApiResult<Vec<FirmwareCampaignCharger>> {
        if !(1..=1000).contains(&first) {
            return Err(ApiError::BadUserInput(
                "first must be between 1 and 1000".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        Ok(firmware::chargers_of(
            &app.db,
            self.campaign_id,
            after.as_ref().map(|a| a.as_str()),
            i64::from(first),
        )
        .await?
        .into_iter()
        .map(FirmwareCampaignCharger::from)
        .collect())
    }
}

#[derive(SimpleObject)]
pub struct FirmwareCampaignCharger {
    pub charger_id: ID,
    pub status: String,
    pub updated_at: Option<DateTime<Utc>>,
    /// QUEUED, SENT, DONE, FAILED or CANCELLED (extension)
    pub state: String,
    /// attempts so far (extension)
    pub attempts: i32,
    /// why the last attempt failed (extension)
    pub last_error: Option<String>,
}

impl From<CampaignChargerRecord> for FirmwareCampaignCharger {
    fn from(r: CampaignChargerRecord) -> Self {
        Self {
            charger_id: ID(r.charger_id),
            status: r.status,
            updated_at: Some(r.updated_at),
            state: r.state,
            attempts: r.attempts,
            last_error: r.last_error,
        }
    }
}

#[derive(InputObject)]
pub struct FirmwareCampaignInput {
    pub charger_ids: Vec<ID>,
    pub location: String,
    pub retrieve_at: Option<DateTime<Utc>>,
    /// 2.0.1 signed firmware
    pub signature: Option<String>,
    pub signing_certificate: Option<String>,
    /// chargers updating at once, 1 to 1000 (extension; default 10)
    pub concurrency: Option<i32>,
    /// attempts per charger, 1 to 10 (extension; default 3)
    pub max_attempts: Option<i32>,
}

fn parse_id(value: &ID) -> ApiResult<Uuid> {
    Uuid::parse_str(value.as_str())
        .map_err(|_| ApiError::BadUserInput("not a valid campaign id".into()))
}

/// A firmware location chargers can fetch: http(s) or ftp(s), at most 512 characters.
pub(super) fn check_location(location: &str) -> ApiResult<()> {
    let parsed = url::Url::parse(location)
        .map_err(|_| ApiError::BadUserInput("location is not a URL".into()))?;
    if !matches!(parsed.scheme(), "http" | "https" | "ftp" | "ftps") || location.len() > 512 {
        return Err(ApiError::BadUserInput(
            "location must be an http(s) or ftp(s) URL of at most 512 characters".into(),
        ));
    }
    Ok(())
}

pub async fn campaign(app: &AppContext, id: Uuid) -> ApiResult<Option<FirmwareCampaign>> {
    Ok(firmware::find(&app.db, id)
        .await?
        .map(FirmwareCampaign::from))
}

#[derive(Default)]
pub struct FirmwareQuery;

#[Object]
impl FirmwareQuery {
    /// OPERATOR or ADMIN
    async fn firmware_campaign(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> ApiResult<Option<FirmwareCampaign>> {
        require_staff(ctx)?;
        campaign(ctx.data_unchecked::<AppContext>(), parse_id(&id)?).await
    }

    /// OPERATOR or ADMIN: the newest campaigns (extension)
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn firmware_campaigns(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<FirmwareCampaign>> {
        require_staff(ctx)?;
        if !(1..=100).contains(&first) {
            return Err(ApiError::BadUserInput(
                "first must be between 1 and 100".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        Ok(firmware::recent(&app.db, i64::from(first))
            .await?
            .into_iter()
            .map(FirmwareCampaign::from)
            .collect())
    }
}

#[derive(Default)]
pub struct FirmwareMutation;

#[Object]
impl FirmwareMutation {
    /// OPERATOR or ADMIN
    async fn start_firmware_campaign(
        &self,
        ctx: &Context<'_>,
        input: FirmwareCampaignInput,
    ) -> ApiResult<FirmwareCampaign> {
        let (staff, _) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        if input.charger_ids.is_empty() || input.charger_ids.len() > MAX_CHARGERS {
            return Err(ApiError::BadUserInput(format!(
                "give 1 to {MAX_CHARGERS} chargers"
            )));
        }
        let charger_ids = input
            .charger_ids
            .iter()
            .map(|id| {
                ChargePointId::parse(id.as_str())
                    .map(|id| id.as_str().to_string())
                    .map_err(|e| ApiError::BadUserInput(e.0))
            })
            .collect::<ApiResult<Vec<String>>>()?;
        check_location(&input.location)?;
        match (&input.signature, &input.signing_certificate) {
            (Some(s), Some(c)) if !s.is_empty() && s.len() <= 800 && !c.is_empty() && c.len() <= 5500 => {}
            (None, None) => {}
            _ => {
                return Err(ApiError::BadUserInput(
                    "signed firmware needs both a signature (at most 800 characters) and its signing certificate (PEM, at most 5500)".into(),
                ))
            }
        }
        let concurrency = input.concurrency.unwrap_or(10);
        let max_attempts = input.max_attempts.unwrap_or(3);
        if !(1..=1000).contains(&concurrency) || !(1..=10).contains(&max_attempts) {
            return Err(ApiError::BadUserInput(
                "concurrency must be 1 to 1000 and maxAttempts 1 to 10".into(),
            ));
        }
        let new = NewCampaign {
            location: input.location,
            retrieve_at: input.retrieve_at,
            signature: input.signature,
            signing_certificate: input.signing_certificate,
            concurrency,
            max_attempts,
            created_by: staff,
            charger_ids,
        };
        let created = match firmware::create(&app.db, &new).await? {
            Ok(created) => created,
            Err(unknown) => {
                return Err(ApiError::BadUserInput(format!(
                    "{} of the chargers do not exist (e.g. {})",
                    unknown.len(),
                    unknown[0]
                )))
            }
        };
        let details = json!({ "campaign": created.id, "chargers": new.charger_ids.len(), "location": created.location });
        super::chargers::record_audit(app, Some(staff), "startFirmwareCampaign", None, details)
            .await;
        tracing::info!(campaign_id = %created.id, chargers = new.charger_ids.len(), "firmware campaign started");
        Ok(created.into())
    }

    /// OPERATOR or ADMIN: stops handing out the firmware; chargers already updating finish
    /// (extension)
    async fn cancel_firmware_campaign(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> ApiResult<FirmwareCampaign> {
        let (staff, _) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_id(&id)?;
        if firmware::cancel(&app.db, id).await? {
            let details = json!({ "campaign": id });
            super::chargers::record_audit(
                app,
                Some(staff),
                "cancelFirmwareCampaign",
                None,
                details,
            )
            .await;
        }
        campaign(app, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("campaign not found".into()))
    }
}
