//! Invoices as the API shows them.

use async_graphql::{Context, Enum, Object, ID};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::auth::require_user;
use super::error::{ApiError, ApiResult};
use crate::context::AppContext;
use crate::store::billing::{self, PayError};
use crate::store::invoices::{self, InvoiceRecord};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceStatus {
    Pending,
    Paid,
    Overdue,
    Void,
}

impl InvoiceStatus {
    pub fn as_db(&self) -> &'static str {
        match self {
            InvoiceStatus::Pending => "PENDING",
            InvoiceStatus::Paid => "PAID",
            InvoiceStatus::Overdue => "OVERDUE",
            InvoiceStatus::Void => "VOID",
        }
    }

    fn from_db(status: &str) -> Self {
        match status {
            "PAID" => InvoiceStatus::Paid,
            "OVERDUE" => InvoiceStatus::Overdue,
            "VOID" => InvoiceStatus::Void,
            _ => InvoiceStatus::Pending,
        }
    }
}

pub struct InvoiceView(pub InvoiceRecord);

fn money(mut amount: Decimal) -> Decimal {
    amount.rescale(2);
    amount
}

#[Object(name = "Invoice")]
impl InvoiceView {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn session_id(&self) -> ID {
        ID(self.0.session_id.to_string())
    }
    async fn user_id(&self) -> ID {
        ID(self.0.user_id.to_string())
    }
    async fn amount(&self) -> Decimal {
        money(self.0.amount)
    }
    /// What the session cost at the tariff, also when a flat-rate plan covers it (extension).
    async fn cost_amount(&self) -> Decimal {
        money(self.0.cost_amount)
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn due_date(&self) -> DateTime<Utc> {
        self.0.due_date
    }
    async fn status(&self) -> InvoiceStatus {
        InvoiceStatus::from_db(&self.0.status)
    }
    async fn paid_at(&self) -> Option<DateTime<Utc>> {
        self.0.paid_at
    }
    /// Whether the user's flat-rate plan covers this session (extension).
    async fn covered_by_plan(&self) -> bool {
        self.0.covered_by_plan
    }
}

/// What the invoice list counts for in a query's complexity (it is one statement).
const INVOICES_COUNTED: usize = 20;

#[derive(Default)]
pub struct InvoiceQuery;

#[Object]
impl InvoiceQuery {
    /// The caller's invoices, newest first (at most 500).
    #[graphql(complexity = "INVOICES_COUNTED * child_complexity")]
    async fn my_invoices(
        &self,
        ctx: &Context<'_>,
        status: Option<InvoiceStatus>,
    ) -> ApiResult<Vec<InvoiceView>> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        Ok(
            invoices::list_for_user(&app.db, user_id, status.map(|s| s.as_db()))
                .await?
                .into_iter()
                .map(InvoiceView)
                .collect(),
        )
    }
}

#[derive(Default)]
pub struct InvoiceMutation;

#[Object]
impl InvoiceMutation {
    /// idempotent per idempotencyKey: paying twice with the same key charges once
    async fn pay_invoice(
        &self,
        ctx: &Context<'_>,
        invoice_id: ID,
        idempotency_key: String,
    ) -> ApiResult<InvoiceView> {
        let (user_id, _) = require_user(ctx)?;
        let app = ctx.data_unchecked::<AppContext>();
        let id = uuid::Uuid::parse_str(invoice_id.as_str())
            .map_err(|_| ApiError::BadUserInput("invoiceId is not a valid id".into()))?;
        let key = idempotency_key.trim();
        if key.is_empty() || key.len() > 200 {
            return Err(ApiError::BadUserInput(
                "idempotencyKey must have 1 to 200 characters".into(),
            ));
        }
        match billing::pay_invoice(&app.db, id, user_id, key, &app.event_source()).await? {
            Ok(()) => {}
            Err(PayError::NotFound) => return Err(ApiError::NotFound("invoice not found".into())),
            Err(PayError::NotYours) => {
                return Err(ApiError::Forbidden(
                    "this invoice belongs to someone else".into(),
                ))
            }
            Err(PayError::Void) => return Err(ApiError::Conflict("the invoice was voided".into())),
            Err(PayError::InsufficientFunds) => return Err(ApiError::InsufficientFunds),
            Err(PayError::Currency { invoice, wallet }) => {
                return Err(ApiError::BadUserInput(format!(
                    "the invoice is in {invoice} and the wallet in {wallet}: it cannot be paid from the wallet"
                )))
            }
        }
        invoices::find(&app.db, id)
            .await?
            .map(InvoiceView)
            .ok_or_else(|| ApiError::NotFound("invoice not found".into()))
    }
}
