//! The Stripe API as far as top-ups need it: creating a PaymentIntent, and verifying and reading
//! the webhook events that report its outcome (`Stripe-Signature`: HMAC-SHA256 over
//! `timestamp.body` with the endpoint's secret, within a tolerance).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// How old a signed webhook may be.
pub const TOLERANCE_SECS: i64 = 300;

pub struct Stripe {
    http: reqwest::Client,
    base: String,
    api_key: String,
    webhook_secret: String,
}

/// A created PaymentIntent.
#[derive(Debug, Clone, Deserialize)]
pub struct Intent {
    pub id: String,
    pub client_secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("the payment provider is unreachable: {0}")]
    Unreachable(String),
    #[error("the payment provider refused: {0}")]
    Refused(String),
}

impl Stripe {
    pub fn new(base: String, api_key: String, webhook_secret: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            api_key,
            webhook_secret,
        }
    }

    /// Creates the PaymentIntent of top-up `top_up_id`; Stripe's idempotency key makes a retry
    /// return the same intent.
    pub async fn create_intent(
        &self,
        top_up_id: uuid::Uuid,
        user_id: uuid::Uuid,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Intent, StripeError> {
        let response = self
            .http
            .post(format!("{}/v1/payment_intents", self.base))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", format!("topup-{top_up_id}"))
            .form(&[
                ("amount", amount_minor.to_string()),
                ("currency", currency.to_ascii_lowercase()),
                ("automatic_payment_methods[enabled]", "true".into()),
                ("metadata[top_up_id]", top_up_id.to_string()),
                ("metadata[user_id]", user_id.to_string()),
            ])
            .send()
            .await
            .map_err(|e| StripeError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            #[derive(Deserialize)]
            struct ErrorBody {
                error: Option<ErrorDetail>,
            }
            #[derive(Deserialize)]
            struct ErrorDetail {
                message: Option<String>,
            }
            let detail = response
                .json::<ErrorBody>()
                .await
                .ok()
                .and_then(|b| b.error)
                .and_then(|e| e.message)
                .unwrap_or_default();
            return Err(StripeError::Refused(format!("HTTP {status}: {detail}")));
        }
        response
            .json::<Intent>()
            .await
            .map_err(|e| StripeError::Refused(format!("unreadable answer: {e}")))
    }

    /// Checks a webhook's `Stripe-Signature` header against its raw body at `now`.
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        verify_signature(&self.webhook_secret, header, body, now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the webhook's timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Stripe's scheme: `t=<unix seconds>,v1=<hex hmac>[,v1=…]`, HMAC-SHA256 over `"{t}.{body}"`.
pub fn verify_signature(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => {
                if let Ok(bytes) = hex::decode(sig) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    for signature in signatures {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return Err(SignatureError::Mismatch);
        };
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // constant-time comparison
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The part of a webhook event that matters to top-ups.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: IntentObject,
}

/// A PaymentIntent as events carry it.
#[derive(Debug, Clone, Deserialize)]
pub struct IntentObject {
    pub id: String,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub amount_received: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return String::new();
        };
        mac.update(format!("{t}.{body}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn a_signature_is_checked_against_secret_body_and_time() {
        let body = r#"{"id":"evt_1"}"#;
        let good = format!("t=1000,v1={}", sign("whsec_a", 1000, body));
        assert_eq!(
            verify_signature("whsec_a", Some(&good), body.as_bytes(), 1100),
            Ok(())
        );
        // a second, rotated secret's signature alongside is fine
        let two = format!(
            "t=1000,v1={},v1={}",
            sign("whsec_old", 1000, body),
            sign("whsec_a", 1000, body)
        );
        assert_eq!(
            verify_signature("whsec_a", Some(&two), body.as_bytes(), 1000),
            Ok(())
        );
        assert_eq!(
            verify_signature("whsec_b", Some(&good), body.as_bytes(), 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature("whsec_a", Some(&good), br#"{"id":"evt_2"}"#, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature("whsec_a", Some(&good), body.as_bytes(), 1000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature("whsec_a", None, body.as_bytes(), 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature("whsec_a", Some("v1=abc"), body.as_bytes(), 1000),
            Err(SignatureError::Malformed)
        );
    }
}
