//! Money into wallets, only with proof of payment. A top-up is created with the payment
//! provider (a Stripe PaymentIntent); the wallet is credited when the provider's webhook, with a
//! valid signature, says the payment succeeded, once per top-up and once per provider event.
//! The `dev` provider (only with `--dev`) succeeds at once, for local development.

pub mod stripe;

use rust_decimal::Decimal;
use secrecy::ExposeSecret;

use crate::configuration::{PaymentProviderKind, Settings};

/// The payment provider this server uses.
pub enum Payments {
    /// Development only: top-ups succeed at once, no money moves.
    Dev,
    Stripe(stripe::Stripe),
    /// No provider is configured: top-ups are refused with a clear error.
    Unconfigured(String),
}

impl Payments {
    pub fn from_settings(settings: &Settings) -> Self {
        match settings.payment_provider() {
            PaymentProviderKind::Dev => Payments::Dev,
            PaymentProviderKind::Stripe => {
                let payments = &settings.payments;
                match (&payments.stripe_api_key, &payments.stripe_webhook_secret) {
                    (Some(key), Some(secret)) => Payments::Stripe(stripe::Stripe::new(
                        payments.stripe_api_base.clone(),
                        key.expose_secret().to_string(),
                        secret.expose_secret().to_string(),
                    )),
                    _ => {
                        let reason = "payments are not configured on this server \
                                      (STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET)";
                        tracing::warn!("{reason}: wallet top-ups are refused");
                        Payments::Unconfigured(reason.into())
                    }
                }
            }
        }
    }

    /// The provider's name as stored with each top-up.
    pub fn name(&self) -> &'static str {
        match self {
            Payments::Dev => "dev",
            Payments::Stripe(_) => "stripe",
            Payments::Unconfigured(_) => "none",
        }
    }
}

/// Currencies whose smallest unit is the unit itself (ISO 4217 exponent 0, as Stripe lists them).
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// `amount` in the currency's smallest unit (cents), or `None` if it does not fit exactly.
pub fn minor_units(amount: Decimal, currency: &str) -> Option<i64> {
    let exponent = if ZERO_DECIMAL.contains(&currency.to_ascii_uppercase().as_str()) {
        0
    } else {
        2
    };
    let scaled = amount.checked_mul(Decimal::from(10i64.pow(exponent)))?;
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    i64::try_from(scaled).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn amounts_become_the_smallest_unit_of_their_currency() {
        let d = |s| Decimal::from_str(s).unwrap_or_default();
        assert_eq!(minor_units(d("12.34"), "EUR"), Some(1234));
        assert_eq!(minor_units(d("12"), "eur"), Some(1200));
        assert_eq!(minor_units(d("500"), "JPY"), Some(500));
        assert_eq!(minor_units(d("1.5"), "JPY"), None);
        assert_eq!(minor_units(d("0.001"), "EUR"), None);
    }
}
