//! Paying for wallet top-ups (`createTopUp`, `myTopUps`) and the administrators' manual credit
//! (`creditWallet`). The wallet is credited by the provider's signed webhook
//! (`api::payments`), never by the client's word.

use async_graphql::{Context, Enum, Object, ID};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::accounts::load_user;
use super::auth::{require_staff, require_user};
use super::error::{ApiError, ApiResult};
use super::types::UserView;
use crate::context::AppContext;
use crate::domain::{Money, Role};
use crate::payments::{minor_units, Payments};
use crate::store::top_ups::{self, TopUpRecord};
use crate::store::StoreError;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum TopUpStatus {
    Pending,
    Succeeded,
    Failed,
    Cancelled,
}

/// A wallet top-up paid through the payment provider.
pub struct TopUpView(pub TopUpRecord);

#[Object(name = "TopUp")]
impl TopUpView {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn amount(&self) -> Decimal {
        let mut amount = self.0.amount;
        amount.rescale(2);
        amount
    }

    async fn currency(&self) -> &str {
        &self.0.currency
    }

    async fn status(&self) -> TopUpStatus {
        match self.0.status.as_str() {
            "SUCCEEDED" => TopUpStatus::Succeeded,
            "FAILED" => TopUpStatus::Failed,
            "CANCELLED" => TopUpStatus::Cancelled,
            _ => TopUpStatus::Pending,
        }
    }

    /// What the app hands to the provider's client SDK to complete the payment (while pending).
    async fn client_secret(&self) -> Option<&str> {
        self.0
            .client_secret
            .as_deref()
            .filter(|_| self.0.status == "PENDING")
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

fn checked_key(key: &str) -> ApiResult<&str> {
    let key = key.trim();
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::BadUserInput(
            "idempotencyKey must have 1 to 200 characters".into(),
        ));
    }
    Ok(key)
}

#[derive(Default)]
pub struct PaymentQuery;

#[Object]
impl PaymentQuery {
    /// The caller's top-ups, newest first.
    #[graphql(complexity = "super::list_complexity(first, child_complexity)")]
    async fn my_top_ups(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> ApiResult<Vec<TopUpView>> {
        let (user_id, _) = require_user(ctx)?;
        if !(1..=100).contains(&first) {
            return Err(ApiError::BadUserInput(
                "first must be between 1 and 100".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        Ok(top_ups::list_for_user(&app.db, user_id, i64::from(first))
            .await?
            .into_iter()
            .map(TopUpView)
            .collect())
    }
}

#[derive(Default)]
pub struct PaymentMutation;

#[Object]
impl PaymentMutation {
    /// Starts a payment with the provider; the wallet is credited when it succeeds (the
    /// provider's webhook). The same idempotency key returns the same top-up.
    async fn create_top_up(
        &self,
        ctx: &Context<'_>,
        amount: Decimal,
        idempotency_key: String,
    ) -> ApiResult<TopUpView> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let amount = Money::parse_positive(amount, app.settings.billing.max_top_up)?;
        let key = checked_key(&idempotency_key)?;
        if let Payments::Unconfigured(reason) = &*app.payments {
            return Err(ApiError::Forbidden(reason.clone()));
        }
        let record = top_ups::create(&app.db, user_id, amount, app.payments.name(), key)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => {
                    ApiError::Unauthenticated("the account no longer exists".into())
                }
                other => other.into(),
            })?;
        if record.status != "PENDING" || record.provider_ref.is_some() {
            return Ok(TopUpView(record));
        }
        match &*app.payments {
            Payments::Dev => Ok(TopUpView(top_ups::succeed_now(&app.db, record.id).await?)),
            Payments::Stripe(stripe) => {
                let minor = minor_units(record.amount, &record.currency).ok_or_else(|| {
                    ApiError::BadUserInput(format!(
                        "amount cannot be paid in {} units",
                        record.currency
                    ))
                })?;
                match stripe
                    .create_intent(record.id, user_id, minor, &record.currency)
                    .await
                {
                    Ok(intent) => Ok(TopUpView(
                        top_ups::set_intent(
                            &app.db,
                            record.id,
                            &intent.id,
                            intent.client_secret.as_deref(),
                        )
                        .await?,
                    )),
                    Err(crate::payments::stripe::StripeError::Refused(reason)) => {
                        top_ups::fail(&app.db, record.id).await?;
                        tracing::warn!(top_up = %record.id, %reason, "payment provider refused a top-up");
                        Err(ApiError::BadUserInput(
                            "the payment provider refused the payment".into(),
                        ))
                    }
                    // unreachable: the top-up stays PENDING and a retry with the same key
                    // asks the provider again (its idempotency key returns the same intent)
                    Err(e) => Err(ApiError::internal(e)),
                }
            }
            Payments::Unconfigured(reason) => Err(ApiError::Forbidden(reason.clone())),
        }
    }

    /// ADMIN: a manual credit (support, refunds), once per idempotency key, recorded in the
    /// audit log.
    async fn credit_wallet(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        amount: Decimal,
        reason: String,
        idempotency_key: String,
    ) -> ApiResult<UserView> {
        let (admin, role) = require_staff(ctx)?;
        if role != Role::Admin {
            return Err(ApiError::Forbidden(
                "creditWallet needs the ADMIN role".into(),
            ));
        }
        let app = ctx.data_unchecked::<AppContext>();
        let user_id = Uuid::parse_str(user_id.as_str())
            .map_err(|_| ApiError::BadUserInput("userId is not a valid id".into()))?;
        let amount = Money::parse_positive(amount, app.settings.billing.max_top_up)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(ApiError::BadUserInput(
                "reason must have 1 to 500 characters".into(),
            ));
        }
        let key = checked_key(&idempotency_key)?;
        top_ups::credit(&app.db, admin, user_id, amount, reason, key)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ApiError::NotFound("user not found".into()),
                other => other.into(),
            })?;
        tracing::info!(%admin, %user_id, "wallet credited by an administrator");
        load_user(app, user_id).await
    }
}
