//! Accounts: register, login, token refresh, logout, profile, vehicles and wallet top-ups.

use async_graphql::{Context, InputObject, Object};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::auth::{require_user, Caller, ClientAddr};
use super::error::{ApiError, ApiResult};
use super::types::{AuthPayload, UserView};
use crate::auth::password;
use crate::auth::rate_limit::{self, Verdict};
use crate::context::{AppContext, CoreContext};
use crate::domain::{Email, Money, Password, PersonName, Role, VehicleSpec};
use crate::events::{outbox, Event};
use crate::payments::Payments;
use crate::store::{refresh_tokens, users, vehicles, wallet};

#[derive(InputObject)]
pub struct VehicleInput {
    pub brand: String,
    pub model: String,
    pub battery_capacity: Option<f64>,
}

impl VehicleInput {
    fn parse(&self) -> ApiResult<VehicleSpec> {
        Ok(VehicleSpec::parse(
            &self.brand,
            &self.model,
            self.battery_capacity,
        )?)
    }
}

#[derive(InputObject)]
pub struct RegisterInput {
    pub email: String,
    pub name: String,
    pub password: String,
    pub vehicle: Option<VehicleInput>,
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<UserView> {
        let (user_id, _) = require_user(ctx)?;
        load_user(ctx.data_unchecked::<AppContext>(), user_id).await
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> ApiResult<AuthPayload> {
        let app = ctx.data_unchecked::<AppContext>();
        let email = Email::parse(&input.email)?;
        let name = PersonName::parse(&input.name)?;
        let password = Password::parse(&input.password)?;
        let vehicle = input
            .vehicle
            .as_ref()
            .map(VehicleInput::parse)
            .transpose()?;
        limit_client(ctx, app, "register").await?;
        let user = create_user(
            &app.core(),
            &app.event_source(),
            &email,
            &name,
            &password,
            Role::Driver,
            vehicle.as_ref(),
        )
        .await?;
        issue_tokens(app, user).await
    }

    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> ApiResult<AuthPayload> {
        let app = ctx.data_unchecked::<AppContext>();
        let email = Email::parse(&email)?;
        limit_client(ctx, app, "login").await?;
        let settings = &app.settings.auth;
        let email_key = rate_limit::email_key(&app.settings.redis.key_prefix, &email.normalized());
        if let Verdict::Limited { retry_after_secs } = rate_limit::hit(
            &app.redis,
            &email_key,
            settings.login_max_per_email,
            settings.login_window_secs,
        )
        .await
        {
            app.metrics
                .logins_total
                .with_label_values(&["rate_limited"])
                .inc();
            return Err(ApiError::RateLimited { retry_after_secs });
        }
        let user = users::find_by_email(&app.db, &email).await?;
        let verified = password::verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(ApiError::internal)?;
        let user = match user {
            Some(user) if verified => user,
            _ => {
                app.metrics
                    .logins_total
                    .with_label_values(&["failed"])
                    .inc();
                return Err(ApiError::Unauthenticated(
                    "invalid email or password".into(),
                ));
            }
        };
        if user.blocked {
            app.metrics
                .logins_total
                .with_label_values(&["blocked"])
                .inc();
            return Err(ApiError::Forbidden("this account is blocked".into()));
        }
        rate_limit::reset(&app.redis, &email_key).await;
        app.metrics.logins_total.with_label_values(&["ok"]).inc();
        issue_tokens(app, user).await
    }

    /// Exchanges a refresh token for a new pair; the old refresh token stops working.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> ApiResult<AuthPayload> {
        let app = ctx.data_unchecked::<AppContext>();
        let (user_id, family, next) = refresh_tokens::rotate(&app.db, &refresh_token)
            .await?
            .map_err(|rejected| {
                if rejected == refresh_tokens::Rejected::Reused {
                    tracing::warn!("refresh token reuse detected; token family revoked");
                }
                ApiError::Unauthenticated("the refresh token is invalid or expired".into())
            })?;
        let user = users::find_by_id(&app.db, user_id)
            .await?
            .filter(|u| !u.blocked)
            .ok_or_else(|| {
                ApiError::Unauthenticated("the refresh token is invalid or expired".into())
            })?;
        let access_token = app
            .jwt
            .issue(user.id, user.role(), Some(family))
            .map_err(ApiError::internal)?;
        Ok(AuthPayload {
            access_token,
            refresh_token: next,
            user: UserView(user),
        })
    }

    /// Revokes the refresh token and every token rotated from it (extension of the contract).
    /// Revokes the sign-in the refresh token belongs to: its refresh tokens, and its access
    /// tokens within seconds (open subscription sockets are closed with 4403).
    async fn logout(&self, ctx: &Context<'_>, refresh_token: String) -> ApiResult<bool> {
        let app = ctx.data_unchecked::<AppContext>();
        let revoked = refresh_tokens::revoke(&app.db, &refresh_token).await?;
        if let Some(Caller::User(claims)) = ctx.data_opt::<Caller>() {
            app.access.forget(claims.sub);
        }
        Ok(revoked)
    }

    /// Development only (the `dev` payment provider under `--dev`): credits the wallet at once,
    /// once per idempotency key. Elsewhere FORBIDDEN: drivers pay with `createTopUp`.
    async fn top_up_wallet(
        &self,
        ctx: &Context<'_>,
        amount: Decimal,
        idempotency_key: String,
    ) -> ApiResult<UserView> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        if !(app.settings.dev && matches!(*app.payments, Payments::Dev)) {
            return Err(ApiError::Forbidden(
                "topUpWallet credits without payment and exists only in development; use createTopUp"
                    .into(),
            ));
        }
        let amount = Money::parse_positive(amount, app.settings.billing.max_top_up)?;
        let key = idempotency_key.trim();
        if key.is_empty() || key.len() > 200 {
            return Err(ApiError::BadUserInput(
                "idempotencyKey must have 1 to 200 characters".into(),
            ));
        }
        wallet::top_up(&app.db, user_id, amount, &format!("topup:{key}")).await?;
        load_user(app, user_id).await
    }

    async fn add_vehicle(&self, ctx: &Context<'_>, input: VehicleInput) -> ApiResult<UserView> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        vehicles::insert(&app.db, user_id, &input.parse()?).await?;
        load_user(app, user_id).await
    }
}

pub(super) async fn load_user(app: &AppContext, user_id: Uuid) -> ApiResult<UserView> {
    users::find_by_id(&app.db, user_id)
        .await?
        .map(UserView)
        .ok_or_else(|| ApiError::Unauthenticated("the account no longer exists".into()))
}

/// Counts one attempt from the caller's address.
async fn limit_client(ctx: &Context<'_>, app: &AppContext, what: &str) -> ApiResult<()> {
    let client = ctx
        .data_opt::<ClientAddr>()
        .map(|c| c.0.as_str())
        .unwrap_or("unknown");
    let key = rate_limit::client_key(&app.settings.redis.key_prefix, &format!("{what}:{client}"));
    match rate_limit::hit(
        &app.redis,
        &key,
        app.settings.auth.login_max_per_client,
        app.settings.auth.login_window_secs,
    )
    .await
    {
        Verdict::Allowed => Ok(()),
        Verdict::Limited { retry_after_secs } => Err(ApiError::RateLimited { retry_after_secs }),
    }
}

/// Creates an account (GraphQL `register` and `chargegrid user create`): the user, their idTag,
/// an optional vehicle and USER_REGISTERED, in one transaction.
pub async fn create_user(
    core: &CoreContext,
    source: &str,
    email: &Email,
    name: &PersonName,
    password: &Password,
    role: Role,
    vehicle: Option<&VehicleSpec>,
) -> ApiResult<users::UserRecord> {
    let hash = password::hash(password.expose().to_string())
        .await
        .map_err(ApiError::internal)?;
    let mut tx = core.db.begin().await.map_err(ApiError::internal)?;
    let user = users::insert(
        &mut tx,
        users::NewUser {
            email,
            name,
            password_hash: &hash,
            role,
            currency: &core.settings.billing.currency,
        },
    )
    .await?;
    if let Some(vehicle) = vehicle {
        vehicles::insert(&mut *tx, user.id, vehicle).await?;
    }
    outbox::enqueue(
        &mut tx,
        Event::UserRegistered {
            user_id: user.id,
            email: user.email.clone(),
        },
        user.created_at,
        source,
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    tracing::info!(user_id = %user.id, role = role.as_str(), "user registered");
    Ok(user)
}

async fn issue_tokens(app: &AppContext, user: users::UserRecord) -> ApiResult<AuthPayload> {
    let family = Uuid::new_v4();
    let refresh_token = refresh_tokens::issue(
        &app.db,
        user.id,
        family,
        app.settings.auth.refresh_token_ttl_secs,
    )
    .await?;
    let access_token = app
        .jwt
        .issue(user.id, user.role(), Some(family))
        .map_err(ApiError::internal)?;
    Ok(AuthPayload {
        access_token,
        refresh_token,
        user: UserView(user),
    })
}
