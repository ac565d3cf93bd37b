//! Drivers' tokens: RFID cards and the other 2.0.1 token types registered to a driver, with
//! expiry, blocking (chargers that may have the token cached are told to clear their cache) and
//! a group for fleets (docs/authorization.md).

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::auth::{require_staff, require_user};
use super::error::{ApiError, ApiResult};
use crate::actors::{local_lists, registry};
use crate::context::AppContext;
use crate::domain::IdTag;
use crate::ocpp::command::ChargerCommand;
use crate::store::id_tokens::{self, AddRefusal, IdTokenRecord};
use crate::store::local_lists as local_list_store;

/// Tokens one driver may register (cards get lost; a driver does not need hundreds).
const MAX_TOKENS_PER_USER: i64 = 20;
/// Largest page of the operators' token search.
const MAX_PAGE: i32 = 500;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum IdTokenType {
    #[graphql(name = "ISO14443")]
    Iso14443,
    #[graphql(name = "ISO15693")]
    Iso15693,
    #[graphql(name = "EMAID")]
    Emaid,
    #[graphql(name = "CENTRAL")]
    Central,
    #[graphql(name = "KEY_CODE")]
    KeyCode,
    #[graphql(name = "LOCAL")]
    Local,
    #[graphql(name = "MAC_ADDRESS")]
    MacAddress,
    #[graphql(name = "NO_AUTHORIZATION")]
    NoAuthorization,
}

impl IdTokenType {
    fn db(self) -> &'static str {
        match self {
            Self::Iso14443 => "ISO14443",
            Self::Iso15693 => "ISO15693",
            Self::Emaid => "EMAID",
            Self::Central => "CENTRAL",
            Self::KeyCode => "KEY_CODE",
            Self::Local => "LOCAL",
            Self::MacAddress => "MAC_ADDRESS",
            Self::NoAuthorization => "NO_AUTHORIZATION",
        }
    }

    fn from_db(value: &str) -> Self {
        match value {
            "ISO14443" => Self::Iso14443,
            "ISO15693" => Self::Iso15693,
            "EMAID" => Self::Emaid,
            "KEY_CODE" => Self::KeyCode,
            "LOCAL" => Self::Local,
            "MAC_ADDRESS" => Self::MacAddress,
            _ => Self::Central,
        }
    }
}

/// An RFID card or other token that identifies a driver at a charger
#[derive(SimpleObject)]
pub struct IdToken {
    pub id_token: String,
    #[graphql(name = "type")]
    pub token_type: IdTokenType,
    pub user_id: Option<ID>,
    /// fleet / group token (1.6 parentIdTag, 2.0.1 groupIdToken)
    pub group_id_token: Option<String>,
    /// the group chargers are told: the one set, else the owner's (extension)
    pub charger_group_id_token: Option<String>,
    pub blocked: bool,
    pub expires_at: Option<DateTime<Utc>>,
    /// (extension)
    pub created_at: DateTime<Utc>,
}

impl From<IdTokenRecord> for IdToken {
    fn from(r: IdTokenRecord) -> Self {
        Self {
            blocked: r.blocked(),
            token_type: IdTokenType::from_db(&r.token_type),
            user_id: Some(ID(r.user_id.to_string())),
            id_token: r.id_tag,
            group_id_token: r.group_id_tag,
            charger_group_id_token: r.effective_group,
            expires_at: r.expires_at,
            created_at: r.created_at,
        }
    }
}

#[derive(InputObject)]
pub struct AddIdTokenInput {
    pub id_token: String,
    #[graphql(name = "type")]
    pub token_type: IdTokenType,
    pub expires_at: Option<DateTime<Utc>>,
}

fn parse_token(raw: &str) -> ApiResult<IdTag> {
    IdTag::parse_token(raw).map_err(|e| ApiError::BadUserInput(e.0))
}

#[derive(Default)]
pub struct IdTokenQuery;

#[Object]
impl IdTokenQuery {
    /// The caller's tokens, the app token first.
    async fn my_id_tokens(&self, ctx: &Context<'_>) -> ApiResult<Vec<IdToken>> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(id_tokens::of_user(&app.db, user_id)
            .await?
            .into_iter()
            .map(IdToken::from)
            .collect())
    }

    /// OPERATOR or ADMIN: tokens by prefix, owner or group, by token (extension).
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn id_tokens(
        &self,
        ctx: &Context<'_>,
        prefix: Option<String>,
        user_id: Option<ID>,
        group_id_token: Option<String>,
        #[graphql(default = 100)] first: i32,
    ) -> ApiResult<Vec<IdToken>> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(ApiError::BadUserInput(format!(
                "first must be between 1 and {MAX_PAGE}"
            )));
        }
        let user = user_id
            .map(|id| {
                Uuid::parse_str(id.as_str())
                    .map_err(|_| ApiError::BadUserInput("userId is not a valid id".into()))
            })
            .transpose()?;
        Ok(id_tokens::search(
            &app.db,
            prefix.as_deref(),
            user,
            group_id_token.as_deref(),
            i64::from(first),
        )
        .await?
        .into_iter()
        .map(IdToken::from)
        .collect())
    }
}

#[derive(Default)]
pub struct IdTokenMutation;

#[Object]
impl IdTokenMutation {
    /// registers an RFID card (or other token) to the caller
    async fn add_id_token(&self, ctx: &Context<'_>, input: AddIdTokenInput) -> ApiResult<IdToken> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let token = parse_token(&input.id_token)?;
        if matches!(
            input.token_type,
            IdTokenType::Central | IdTokenType::NoAuthorization
        ) {
            return Err(ApiError::BadUserInput(
                "CENTRAL tokens are issued by the server and NO_AUTHORIZATION is no token: register a card (ISO14443, ISO15693), an EMAID, a KEY_CODE, LOCAL or MAC_ADDRESS token".into(),
            ));
        }
        if input.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(ApiError::BadUserInput(
                "expiresAt must be in the future".into(),
            ));
        }
        match id_tokens::add(
            &app.db,
            user_id,
            token.as_str(),
            input.token_type.db(),
            input.expires_at,
            MAX_TOKENS_PER_USER,
        )
        .await?
        {
            Ok(record) => {
                tracing::info!(%user_id, token_type = input.token_type.db(), "token registered");
                Ok(record.into())
            }
            Err(AddRefusal::Taken) => Err(ApiError::Conflict(AddRefusal::Taken.to_string())),
            Err(e) => Err(ApiError::BadUserInput(e.to_string())),
        }
    }

    /// the owner, or OPERATOR/ADMIN: the token is refused from now on, and chargers that may
    /// have it in their authorization cache are told to clear it
    async fn block_id_token(&self, ctx: &Context<'_>, id_token: String) -> ApiResult<IdToken> {
        let (user_id, role) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let token = parse_token(&id_token)?;
        let found = id_tokens::find(&app.db, token.as_str())
            .await?
            .filter(|t| t.user_id == user_id || role.is_staff())
            .ok_or_else(|| ApiError::NotFound("token not found".into()))?;
        let was_blocked = found.blocked();
        let blocked = id_tokens::block(&app.db, token.as_str())
            .await?
            .ok_or_else(|| ApiError::NotFound("token not found".into()))?;
        if role.is_staff() && found.user_id != user_id {
            let details = json!({ "idToken": blocked.id_tag });
            super::chargers::record_audit(app, Some(user_id), "blockIdToken", None, details).await;
        }
        if !was_blocked {
            clear_caches(app.clone(), blocked.id_tag.clone());
            // chargers that list it are told it is blocked now
            let listing = local_list_store::online_chargers_with(&app.db, &blocked.id_tag).await?;
            local_lists::update_in_background(app.clone(), listing);
        }
        Ok(blocked.into())
    }

    /// OPERATOR or ADMIN: sets a token's fleet group, or clears it with null (extension)
    async fn set_id_token_group(
        &self,
        ctx: &Context<'_>,
        id_token: String,
        group_id_token: Option<String>,
    ) -> ApiResult<IdToken> {
        let (staff, _) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let token = parse_token(&id_token)?;
        let group = group_id_token.as_deref().map(parse_token).transpose()?;
        let updated =
            id_tokens::set_group(&app.db, token.as_str(), group.as_ref().map(|g| g.as_str()))
                .await?
                .ok_or_else(|| ApiError::NotFound("token not found".into()))?;
        let listing = local_list_store::online_chargers_with(&app.db, &updated.id_tag).await?;
        local_lists::update_in_background(app.clone(), listing);
        let details = json!({ "idToken": updated.id_tag, "group": updated.group_id_tag });
        super::chargers::record_audit(app, Some(staff), "setIdTokenGroup", None, details).await;
        Ok(updated.into())
    }
}

/// Sends ClearCache to every online charger the token charged at lately, in the background (a
/// charger that does not answer is no reason to keep the driver waiting: the token is refused
/// by the server already, and a cache entry the charger keeps is used only while offline).
fn clear_caches(app: AppContext, id_tag: String) {
    tokio::spawn(async move {
        let chargers = match id_tokens::chargers_that_saw(&app.db, &id_tag).await {
            Ok(chargers) => chargers,
            Err(e) => {
                tracing::warn!(error = %e, "could not find the chargers to clear a blocked token from");
                return;
            }
        };
        for charger_id in chargers {
            let command = ChargerCommand::Raw {
                action: "ClearCache".into(),
                payload: json!({}),
            };
            match registry::execute(&app, &charger_id, command).await {
                Ok(reply) => {
                    tracing::info!(%charger_id, %reply, "authorization cache cleared after a block")
                }
                Err(e) => {
                    tracing::warn!(%charger_id, error = %e, "ClearCache after a block not delivered")
                }
            }
        }
    });
}
