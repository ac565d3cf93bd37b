//! GraphQL object types shared by several resolvers.

use async_graphql::{Context, Object, SimpleObject, ID};
use rust_decimal::Decimal;

use super::error::{ApiError, ApiResult};
use crate::context::AppContext;
use crate::domain::Role;
use crate::store::users::UserRecord;
use crate::store::{users, vehicles};

/// A user as the API shows them.
pub struct UserView(pub UserRecord);

#[Object(name = "User")]
impl UserView {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn email(&self) -> &str {
        &self.0.email
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn role(&self) -> Role {
        self.0.role()
    }

    async fn vehicles(&self, ctx: &Context<'_>) -> ApiResult<Vec<Vehicle>> {
        let app = ctx.data_unchecked::<AppContext>();
        Ok(vehicles::list(&app.db, self.0.id)
            .await?
            .into_iter()
            .map(|v| Vehicle {
                brand: v.brand,
                model: v.model,
                battery_capacity: v.battery_capacity_kwh,
            })
            .collect())
    }

    async fn wallet_balance(&self) -> Decimal {
        let mut balance = self.0.wallet_balance;
        balance.rescale(2);
        balance
    }

    /// Currency of the wallet balance (extension of the contract).
    async fn wallet_currency(&self) -> &str {
        &self.0.wallet_currency
    }

    /// PAY_AS_YOU_GO or FLAT_RATE (extension of the contract).
    async fn plan(&self) -> &str {
        &self.0.plan
    }

    /// The idTag that chargers see for this user's sessions (RFID / app token).
    /// It is a charging credential: an OPERATOR listing users gets FORBIDDEN; the user and
    /// ADMINs read it. (`register` and `login` answer before the new token is the caller's:
    /// their payload is the caller's own user.)
    async fn id_tag(&self, ctx: &Context<'_>) -> ApiResult<String> {
        if let Ok((caller, role)) = super::auth::require_user(ctx) {
            if caller != self.0.id && role != Role::Admin {
                return Err(ApiError::Forbidden(
                    "only the user and an ADMIN read a user's idTag".into(),
                ));
            }
        }
        let app = ctx.data_unchecked::<AppContext>();
        users::app_id_tag(&app.db, self.0.id)
            .await
            .map_err(|e| ApiError::internal(format!("user without idTag: {e}")))
    }
}

#[derive(SimpleObject)]
pub struct Vehicle {
    pub brand: String,
    pub model: String,
    pub battery_capacity: Option<f64>,
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub access_token: String,
    pub refresh_token: String,
    pub user: UserView,
}
