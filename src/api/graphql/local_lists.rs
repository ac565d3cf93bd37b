//! Local authorization lists for operators: named lists of drivers' tokens, one list per
//! charger, pushed to it (SendLocalList, full or differential) and kept there across reboots
//! (docs/authorization.md). OPERATOR or ADMIN throughout.

use async_graphql::{ComplexObject, Context, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::auth::require_staff;
use super::chargers::command_error;
use super::error::{ApiError, ApiResult};
use crate::actors::local_lists::{self, PushError};
use crate::context::AppContext;
use crate::domain::{ChargePointId, IdTag};
use crate::store::chargers;
use crate::store::local_lists::{self as store, ListRecord};

/// Tokens one call may add or remove.
const MAX_TOKENS_PER_CALL: usize = 1000;

/// A named list of tokens that chargers keep to authorize drivers while offline (extension)
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct LocalList {
    pub id: ID,
    pub name: String,
    /// how many tokens it holds
    pub size: i64,
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    pub list_id: Uuid,
}

#[ComplexObject]
impl LocalList {
    /// its tokens, by token
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn id_tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: i32,
    ) -> ApiResult<Vec<String>> {
        let app = ctx.data_unchecked::<AppContext>();
        if !(1..=1000).contains(&first) {
            return Err(ApiError::BadUserInput(
                "first must be between 1 and 1000".into(),
            ));
        }
        Ok(store::tokens(&app.db, self.list_id, i64::from(first)).await?)
    }
}

impl From<ListRecord> for LocalList {
    fn from(r: ListRecord) -> Self {
        Self {
            id: ID(r.id.to_string()),
            name: r.name,
            size: r.size,
            created_at: r.created_at,
            list_id: r.id,
        }
    }
}

/// What a charger holds of its local list (extension)
#[derive(SimpleObject)]
pub struct ChargerLocalList {
    pub charger_id: ID,
    /// the list it is given; null: none
    pub list_id: Option<ID>,
    /// the version it accepted last (0: never had one)
    pub version: i32,
    /// entries it holds
    pub entries: i32,
    pub synced_at: Option<DateTime<Utc>>,
    /// what it answered to GetLocalListVersion last (after its boot)
    pub reported_version: Option<i32>,
    pub reported_at: Option<DateTime<Utc>>,
}

fn parse_list(id: &ID) -> ApiResult<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| ApiError::BadUserInput("listId is not a valid id".into()))
}

fn parse_charger(id: &ID) -> ApiResult<ChargePointId> {
    ChargePointId::parse(id.as_str()).map_err(|e| ApiError::BadUserInput(e.0))
}

fn parse_tokens(tokens: &[String]) -> ApiResult<Vec<String>> {
    if tokens.is_empty() || tokens.len() > MAX_TOKENS_PER_CALL {
        return Err(ApiError::BadUserInput(format!(
            "give 1 to {MAX_TOKENS_PER_CALL} tokens"
        )));
    }
    tokens
        .iter()
        .map(|t| {
            IdTag::parse_token(t)
                .map(|t| t.as_str().to_string())
                .map_err(|e| ApiError::BadUserInput(e.0))
        })
        .collect()
}

async fn list_view(app: &AppContext, id: Uuid) -> ApiResult<LocalList> {
    store::find(&app.db, id)
        .await?
        .map(LocalList::from)
        .ok_or_else(|| ApiError::NotFound("list not found".into()))
}

async fn audit(
    app: &AppContext,
    actor: Uuid,
    action: &str,
    charger: Option<&str>,
    details: serde_json::Value,
) {
    super::chargers::record_audit(app, Some(actor), action, charger, details).await;
}

/// Adds tokens to a list (or removes them), audits it and updates the online chargers given the
/// list in the background.
async fn change_list(
    ctx: &Context<'_>,
    list_id: &ID,
    id_tokens: &[String],
    add: bool,
) -> ApiResult<LocalList> {
    let (staff, _) = require_staff(ctx)?;
    let app = ctx.data_unchecked::<AppContext>();
    let id = parse_list(list_id)?;
    let tokens = parse_tokens(id_tokens)?;
    list_view(app, id).await?;
    if add {
        let unknown = store::add_tokens(&app.db, id, &tokens).await?;
        if let Some(first) = unknown.first() {
            return Err(ApiError::BadUserInput(format!(
                "{} of the tokens are not registered (e.g. {first}); nothing was added",
                unknown.len()
            )));
        }
    } else {
        store::remove_tokens(&app.db, id, &tokens).await?;
    }
    let action = if add {
        "addToLocalList"
    } else {
        "removeFromLocalList"
    };
    let details = json!({ "list": id, "tokens": tokens.len() });
    audit(app, staff, action, None, details).await;
    local_lists::update_in_background(app.clone(), store::online_chargers_of(&app.db, id).await?);
    list_view(app, id).await
}

#[derive(Default)]
pub struct LocalListQuery;

#[Object]
impl LocalListQuery {
    /// OPERATOR or ADMIN: every local list, by name (extension)
    async fn local_lists(&self, ctx: &Context<'_>) -> ApiResult<Vec<LocalList>> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(store::all(&app.db)
            .await?
            .into_iter()
            .map(LocalList::from)
            .collect())
    }

    /// OPERATOR or ADMIN: what a charger holds of its local list (extension)
    async fn charger_local_list(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
    ) -> ApiResult<ChargerLocalList> {
        require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger(&charger_id)?;
        let held = store::of_charger(&app.db, id.as_str()).await?;
        Ok(ChargerLocalList {
            charger_id,
            list_id: held.list_id.map(|l| ID(l.to_string())),
            version: held.version,
            entries: i32::try_from(held.entries.len()).unwrap_or(i32::MAX),
            synced_at: held.synced_at,
            reported_version: held.reported_version,
            reported_at: held.reported_at,
        })
    }
}

#[derive(Default)]
pub struct LocalListMutation;

#[Object]
impl LocalListMutation {
    /// OPERATOR or ADMIN: sends the charger its local authorization list (full, or the difference since its version)
    async fn push_local_list(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        #[graphql(default = false)] full: bool,
    ) -> ApiResult<i32> {
        let (staff, _) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger(&charger_id)?;
        if chargers::find(&app.db, id.as_str()).await?.is_none() {
            return Err(ApiError::NotFound("charger not found".into()));
        }
        let result = local_lists::push(app, id.as_str(), full).await;
        audit(
            app,
            staff,
            "pushLocalList",
            Some(id.as_str()),
            json!({ "full": full, "version": result.as_ref().ok() }),
        )
        .await;
        result.map_err(|e| match e {
            PushError::Charger(e) => command_error(e),
            PushError::Refused(answer) => {
                ApiError::ChargerRejected(format!("the charger did not take the list: {answer}"))
            }
            PushError::Store(e) => e.into(),
        })
    }

    /// OPERATOR or ADMIN: a new, empty local list (extension)
    async fn create_local_list(&self, ctx: &Context<'_>, name: String) -> ApiResult<LocalList> {
        let (staff, _) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 120 {
            return Err(ApiError::BadUserInput(
                "name must have 1 to 120 characters".into(),
            ));
        }
        let list = store::create(&app.db, name).await?;
        audit(
            app,
            staff,
            "createLocalList",
            None,
            json!({ "list": list.id }),
        )
        .await;
        Ok(list.into())
    }

    /// OPERATOR or ADMIN: adds registered tokens to a list; the chargers given it are updated
    /// (extension)
    async fn add_to_local_list(
        &self,
        ctx: &Context<'_>,
        list_id: ID,
        id_tokens: Vec<String>,
    ) -> ApiResult<LocalList> {
        change_list(ctx, &list_id, &id_tokens, true).await
    }

    /// OPERATOR or ADMIN: removes tokens from a list; the chargers given it are updated
    /// (extension)
    async fn remove_from_local_list(
        &self,
        ctx: &Context<'_>,
        list_id: ID,
        id_tokens: Vec<String>,
    ) -> ApiResult<LocalList> {
        change_list(ctx, &list_id, &id_tokens, false).await
    }

    /// OPERATOR or ADMIN: gives a charger a list (null: none; its next push empties the
    /// charger's); the charger is updated at once when online (extension)
    async fn assign_local_list(
        &self,
        ctx: &Context<'_>,
        charger_id: ID,
        list_id: Option<ID>,
    ) -> ApiResult<bool> {
        let (staff, _) = require_staff(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = parse_charger(&charger_id)?;
        let list = list_id.as_ref().map(parse_list).transpose()?;
        let Some(charger) = chargers::find(&app.db, id.as_str()).await? else {
            return Err(ApiError::NotFound("charger not found".into()));
        };
        if let Some(list) = list {
            list_view(app, list).await?;
        }
        store::assign(&app.db, id.as_str(), list).await?;
        audit(
            app,
            staff,
            "assignLocalList",
            Some(id.as_str()),
            json!({ "list": list }),
        )
        .await;
        if charger.online {
            local_lists::update_in_background(app.clone(), vec![id.to_string()]);
        }
        Ok(true)
    }
}
