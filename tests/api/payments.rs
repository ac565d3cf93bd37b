//! Money enters a wallet only with proof of payment: top-ups through a local fake of the
//! payment provider's HTTP API (Stripe's PaymentIntents), credited by its signed webhook once;
//! the development top-up refused outside `--dev`; the administrators' audited credit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{error_code, spawn_app_with, TestApp};

const API_KEY: &str = "sk_test_fake_provider_key";
const WEBHOOK_SECRET: &str = "whsec_test_fake_webhook_secret";
const CREATE: &str = "mutation($a: Decimal!, $k: String!) { createTopUp(amount: $a, idempotencyKey: $k) { id amount currency status clientSecret } }";
const BALANCE: &str = "{ me { walletBalance } }";

/// What the fake provider was asked: the form of every PaymentIntent created.
#[derive(Clone, Default)]
struct Provider {
    intents: Arc<Mutex<Vec<HashMap<String, String>>>>,
    by_key: Arc<Mutex<HashMap<String, Value>>>,
}

async fn create_intent(
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
    provider: web::Data<Provider>,
) -> HttpResponse {
    let authorized = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {API_KEY}"));
    if !authorized {
        return HttpResponse::Unauthorized()
            .json(json!({ "error": { "type": "invalid_request_error", "message": "Invalid API Key provided" } }));
    }
    let key = req
        .headers()
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Some(existing) = provider.by_key.lock().unwrap().get(&key) {
        return HttpResponse::Ok().json(existing);
    }
    let mut intents = provider.intents.lock().unwrap();
    intents.push(form.0.clone());
    let id = format!("pi_fake_{}", intents.len());
    let intent = json!({
        "id": id, "object": "payment_intent", "status": "requires_payment_method",
        "client_secret": format!("{id}_secret_abc"),
        "amount": form.0.get("amount").and_then(|a| a.parse::<i64>().ok()),
        "currency": form.0.get("currency"),
    });
    provider.by_key.lock().unwrap().insert(key, intent.clone());
    HttpResponse::Ok().json(intent)
}

/// Starts the fake provider; returns its base URL and what it records.
async fn fake_provider() -> (String, Provider) {
    let provider = Provider::default();
    let data = web::Data::new(provider.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/v1/payment_intents", web::post().to(create_intent))
    })
    .workers(1)
    // longer than any pause of a test: the app's pooled client never reuses a closing connection
    .keep_alive(std::time::Duration::from_secs(300))
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), provider)
}

async fn app_with_provider() -> (TestApp, Provider) {
    let (base, provider) = fake_provider().await;
    let app = spawn_app_with(|s| {
        s.payments.stripe_api_base = base;
        s.payments.stripe_api_key = Some(API_KEY.to_string().into());
        s.payments.stripe_webhook_secret = Some(WEBHOOK_SECRET.to_string().into());
    })
    .await;
    (app, provider)
}

/// A provider event as Stripe signs it.
fn event(id: &str, kind: &str, intent: &str, amount: i64, currency: &str) -> String {
    json!({
        "id": id, "object": "event", "type": kind,
        "data": { "object": { "id": intent, "object": "payment_intent", "amount": amount, "amount_received": amount, "currency": currency } }
    })
    .to_string()
}

fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

async fn deliver(app: &TestApp, body: &str, signature: Option<String>) -> u16 {
    let mut request = app
        .http
        .post(format!("{}/webhooks/payments", app.address))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn balance(app: &TestApp, token: &str) -> String {
    app.graphql(BALANCE, json!({}), Some(token)).await["data"]["me"]["walletBalance"]
        .as_str()
        .unwrap()
        .to_string()
}

#[actix_web::test]
async fn a_top_up_is_credited_once_when_the_provider_confirms_it() {
    let (app, provider) = app_with_provider().await;
    let (driver, _, user_id) = app
        .register("payer@example.com", "correct horse battery")
        .await;
    let created = app
        .graphql(CREATE, json!({ "a": "25.00", "k": "k1" }), Some(&driver))
        .await;
    let top_up = &created["data"]["createTopUp"];
    assert_eq!(top_up["status"], "PENDING", "{created}");
    assert_eq!(top_up["amount"], "25.00");
    assert_eq!(top_up["clientSecret"], "pi_fake_1_secret_abc");
    {
        let intents = provider.intents.lock().unwrap();
        assert_eq!(intents.len(), 1);
        assert_eq!(intents[0]["amount"], "2500");
        assert_eq!(intents[0]["currency"], "eur");
        assert_eq!(intents[0]["metadata[user_id]"], user_id);
    }
    // a retry with the same key is the same top-up, and the same intent
    let again = app
        .graphql(CREATE, json!({ "a": "25.00", "k": "k1" }), Some(&driver))
        .await;
    assert_eq!(again["data"]["createTopUp"]["id"], top_up["id"]);
    assert_eq!(provider.intents.lock().unwrap().len(), 1);
    assert_eq!(balance(&app, &driver).await, "0.00");

    let now = chrono::Utc::now().timestamp();
    let paid = event(
        "evt_1",
        "payment_intent.succeeded",
        "pi_fake_1",
        2500,
        "eur",
    );
    // no signature, another secret, an altered body, an old timestamp: refused, nothing moves
    assert_eq!(deliver(&app, &paid, None).await, 400);
    assert_eq!(
        deliver(&app, &paid, Some(signature("whsec_other", now, &paid))).await,
        400
    );
    let altered = paid.replace("2500", "9900");
    assert_eq!(
        deliver(&app, &altered, Some(signature(WEBHOOK_SECRET, now, &paid))).await,
        400
    );
    assert_eq!(
        deliver(
            &app,
            &paid,
            Some(signature(WEBHOOK_SECRET, now - 600, &paid))
        )
        .await,
        400
    );
    assert_eq!(balance(&app, &driver).await, "0.00");

    // the signed event credits the wallet; its retries and a second event for the same
    // payment do not
    assert_eq!(
        deliver(&app, &paid, Some(signature(WEBHOOK_SECRET, now, &paid))).await,
        200
    );
    assert_eq!(balance(&app, &driver).await, "25.00");
    assert_eq!(
        deliver(&app, &paid, Some(signature(WEBHOOK_SECRET, now, &paid))).await,
        200
    );
    let resent = event(
        "evt_2",
        "payment_intent.succeeded",
        "pi_fake_1",
        2500,
        "eur",
    );
    assert_eq!(
        deliver(&app, &resent, Some(signature(WEBHOOK_SECRET, now, &resent))).await,
        200
    );
    assert_eq!(balance(&app, &driver).await, "25.00");
    let mine = app
        .graphql(
            "{ myTopUps { id status clientSecret } }",
            json!({}),
            Some(&driver),
        )
        .await;
    assert_eq!(mine["data"]["myTopUps"][0]["status"], "SUCCEEDED", "{mine}");
    assert!(mine["data"]["myTopUps"][0]["clientSecret"].is_null());
    let credits: i64 =
        sqlx::query_scalar("SELECT count(*) FROM wallet_ledger WHERE kind = 'TOP_UP'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(credits, 1);
}

#[actix_web::test]
async fn a_payment_of_another_amount_or_a_failed_one_credits_nothing() {
    let (app, _provider) = app_with_provider().await;
    let (driver, _, _) = app
        .register("careful@example.com", "correct horse battery")
        .await;
    app.graphql(CREATE, json!({ "a": "10", "k": "k1" }), Some(&driver))
        .await;
    let now = chrono::Utc::now().timestamp();
    let less = event("evt_a", "payment_intent.succeeded", "pi_fake_1", 100, "eur");
    assert_eq!(
        deliver(&app, &less, Some(signature(WEBHOOK_SECRET, now, &less))).await,
        200
    );
    let other_currency = event(
        "evt_b",
        "payment_intent.succeeded",
        "pi_fake_1",
        1000,
        "usd",
    );
    assert_eq!(
        deliver(
            &app,
            &other_currency,
            Some(signature(WEBHOOK_SECRET, now, &other_currency))
        )
        .await,
        200
    );
    assert_eq!(balance(&app, &driver).await, "0.00");
    // a failed attempt, then the driver pays the same intent with another card
    let failed = event(
        "evt_c",
        "payment_intent.payment_failed",
        "pi_fake_1",
        1000,
        "eur",
    );
    assert_eq!(
        deliver(&app, &failed, Some(signature(WEBHOOK_SECRET, now, &failed))).await,
        200
    );
    let status = app
        .graphql("{ myTopUps { status } }", json!({}), Some(&driver))
        .await;
    assert_eq!(status["data"]["myTopUps"][0]["status"], "FAILED");
    assert_eq!(balance(&app, &driver).await, "0.00");
    let paid = event(
        "evt_d",
        "payment_intent.succeeded",
        "pi_fake_1",
        1000,
        "eur",
    );
    assert_eq!(
        deliver(&app, &paid, Some(signature(WEBHOOK_SECRET, now, &paid))).await,
        200
    );
    assert_eq!(balance(&app, &driver).await, "10.00");
    // a cancellation after the success changes nothing
    let cancelled = event("evt_e", "payment_intent.canceled", "pi_fake_1", 1000, "eur");
    assert_eq!(
        deliver(
            &app,
            &cancelled,
            Some(signature(WEBHOOK_SECRET, now, &cancelled))
        )
        .await,
        200
    );
    let status = app
        .graphql("{ myTopUps { status } }", json!({}), Some(&driver))
        .await;
    assert_eq!(status["data"]["myTopUps"][0]["status"], "SUCCEEDED");
}

#[actix_web::test]
async fn top_up_wallet_is_refused_outside_development() {
    let (app, _provider) = app_with_provider().await;
    let (driver, _, _) = app
        .register("free@example.com", "correct horse battery")
        .await;
    let response = app
        .graphql(
            "mutation { topUpWallet(amount: \"1000\", idempotencyKey: \"free\") { walletBalance } }",
            json!({}),
            Some(&driver),
        )
        .await;
    assert_eq!(
        error_code(&response).as_deref(),
        Some("FORBIDDEN"),
        "{response}"
    );
    assert_eq!(balance(&app, &driver).await, "0.00");

    // in development, the dev provider's createTopUp succeeds at once
    let dev = spawn_app_with(|s| s.dev = true).await;
    let (driver, _, _) = dev
        .register("dev@example.com", "correct horse battery")
        .await;
    let created = dev
        .graphql(CREATE, json!({ "a": "12.50", "k": "d" }), Some(&driver))
        .await;
    assert_eq!(
        created["data"]["createTopUp"]["status"], "SUCCEEDED",
        "{created}"
    );
    assert_eq!(balance(&dev, &driver).await, "12.50");
}

#[actix_web::test]
async fn only_an_admin_credits_a_wallet_once_per_key_and_it_is_audited() {
    let (app, _provider) = app_with_provider().await;
    let (driver, _, user_id) = app
        .register("refund@example.com", "correct horse battery")
        .await;
    let credit = "mutation($u: ID!, $k: String!) { creditWallet(userId: $u, amount: \"7.50\", reason: \"refund of session 42\", idempotencyKey: $k) { walletBalance } }";
    let vars = json!({ "u": user_id, "k": "refund-42" });
    let operator = app.staff_token("OPERATOR").await;
    for token in [&driver, &operator] {
        let refused = app.graphql(credit, vars.clone(), Some(token)).await;
        assert_eq!(
            error_code(&refused).as_deref(),
            Some("FORBIDDEN"),
            "{refused}"
        );
    }
    let admin = app.staff_token("ADMIN").await;
    for _ in 0..2 {
        let done = app.graphql(credit, vars.clone(), Some(&admin)).await;
        assert_eq!(
            done["data"]["creditWallet"]["walletBalance"], "7.50",
            "{done}"
        );
    }
    let audit: Vec<(Option<uuid::Uuid>, String, Value)> = sqlx::query_as(
        "SELECT actor_id, target, details FROM audit_log WHERE action = 'creditWallet'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(audit.len(), 1);
    assert!(audit[0].0.is_some());
    assert_eq!(audit[0].1, user_id);
    assert_eq!(audit[0].2["reason"], "refund of session 42");
    assert!(
        sqlx::query("UPDATE audit_log SET action = 'x'")
            .execute(&app.db)
            .await
            .is_err(),
        "the audit log is append-only"
    );
}

#[actix_web::test]
async fn an_unconfigured_provider_refuses_top_ups_clearly() {
    let app = spawn_app_with(|_| {}).await;
    let (driver, _, _) = app
        .register("nopay@example.com", "correct horse battery")
        .await;
    let response = app
        .graphql(CREATE, json!({ "a": "5", "k": "x" }), Some(&driver))
        .await;
    assert_eq!(
        error_code(&response).as_deref(),
        Some("FORBIDDEN"),
        "{response}"
    );
    assert!(response["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not configured"));
    assert_eq!(deliver(&app, "{}", None).await, 404);
}
