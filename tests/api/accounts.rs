//! Accounts over GraphQL: registration, login, tokens, wallet top-ups, vehicles.

use serde_json::json;

use crate::helpers::{error_code, spawn_app, spawn_app_with, TEST_JWT_SECRET};

const ME: &str =
    "{ me { id email name role walletBalance idTag vehicles { brand model batteryCapacity } } }";
const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken user { id } } }";
const REFRESH: &str = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { id } } }";
const TOP_UP: &str = "mutation($a: Decimal!, $k: String!) { topUpWallet(amount: $a, idempotencyKey: $k) { walletBalance } }";

#[actix_web::test]
async fn register_login_refresh_and_me_round_trip() {
    let app = spawn_app().await;
    let (access, refresh, user_id) = app
        .register("ana@example.com", "correct horse battery")
        .await;

    let me = app.graphql(ME, json!({}), Some(&access)).await;
    assert_eq!(me["data"]["me"]["id"], user_id.as_str());
    assert_eq!(me["data"]["me"]["email"], "ana@example.com");
    assert_eq!(me["data"]["me"]["role"], "DRIVER");
    assert_eq!(me["data"]["me"]["walletBalance"], "0.00");
    let id_tag = me["data"]["me"]["idTag"].as_str().unwrap_or_default();
    assert!(!id_tag.is_empty() && id_tag.len() <= 20, "idTag {id_tag:?}");

    let login = app
        .graphql(
            LOGIN,
            json!({ "e": "ANA@Example.com", "p": "correct horse battery" }),
            None,
        )
        .await;
    assert_eq!(
        login["data"]["login"]["user"]["id"],
        user_id.as_str(),
        "{login}"
    );

    let refreshed = app.graphql(REFRESH, json!({ "t": refresh }), None).await;
    let new_access = refreshed["data"]["refreshToken"]["accessToken"]
        .as_str()
        .unwrap_or_default();
    assert!(!new_access.is_empty(), "{refreshed}");
    let me_again = app.graphql(ME, json!({}), Some(new_access)).await;
    assert_eq!(me_again["data"]["me"]["id"], user_id.as_str());
}

#[actix_web::test]
async fn registering_a_taken_email_in_any_case_is_a_conflict() {
    let app = spawn_app().await;
    app.register("bo@example.com", "correct horse battery")
        .await;
    let again = app
        .graphql(
            "mutation { register(input: {email: \"BO@EXAMPLE.COM\", name: \"Bo\", password: \"another password\"}) { accessToken } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(error_code(&again).as_deref(), Some("CONFLICT"), "{again}");
}

#[actix_web::test]
async fn wrong_password_and_unknown_email_are_indistinguishable() {
    let app = spawn_app().await;
    app.register("cy@example.com", "correct horse battery")
        .await;
    let wrong = app
        .graphql(
            LOGIN,
            json!({ "e": "cy@example.com", "p": "wrong password!" }),
            None,
        )
        .await;
    let unknown = app
        .graphql(
            LOGIN,
            json!({ "e": "nobody@example.com", "p": "wrong password!" }),
            None,
        )
        .await;
    assert_eq!(error_code(&wrong).as_deref(), Some("UNAUTHENTICATED"));
    assert_eq!(error_code(&unknown).as_deref(), Some("UNAUTHENTICATED"));
    assert_eq!(
        wrong["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
    assert!(wrong["data"].is_null());
}

#[actix_web::test]
async fn invalid_registration_input_is_bad_user_input() {
    let app = spawn_app().await;
    for (email, password, name) in [
        ("not-an-email", "correct horse battery", "X"),
        ("dee@example.com", "short", "X"),
        ("dee@example.com", "correct horse battery", "   "),
    ] {
        let response = app
            .graphql(
                "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
                json!({ "i": { "email": email, "name": name, "password": password } }),
                None,
            )
            .await;
        assert_eq!(
            error_code(&response).as_deref(),
            Some("BAD_USER_INPUT"),
            "{response}"
        );
    }
    let bad_vehicle = app
        .graphql(
            "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
            json!({ "i": { "email": "dee@example.com", "name": "Dee", "password": "correct horse battery",
                           "vehicle": { "brand": "Kia", "model": "EV6", "batteryCapacity": -3 } } }),
            None,
        )
        .await;
    assert_eq!(error_code(&bad_vehicle).as_deref(), Some("BAD_USER_INPUT"));
    // nothing was created by the rejected attempts
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db)
        .await
        .unwrap_or(-1);
    assert_eq!(users, 0);
}

fn forge_token(secret: &str, sub: &str, exp_offset: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": sub, "role": "ADMIN", "iat": now, "exp": now + exp_offset,
        "iss": "chargegrid", "aud": "chargegrid-api", "jti": uuid::Uuid::new_v4(),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

#[actix_web::test]
async fn expired_and_tampered_tokens_are_rejected() {
    let app = spawn_app().await;
    let (access, _, user_id) = app
        .register("eve@example.com", "correct horse battery")
        .await;

    let expired = forge_token(TEST_JWT_SECRET, &user_id, -3600);
    let response = app.graphql(ME, json!({}), Some(&expired)).await;
    assert_eq!(error_code(&response).as_deref(), Some("UNAUTHENTICATED"));
    assert!(response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("expired"));

    let wrong_key = forge_token("some-other-secret-some-other-secret-00", &user_id, 600);
    let response = app.graphql(ME, json!({}), Some(&wrong_key)).await;
    assert_eq!(error_code(&response).as_deref(), Some("UNAUTHENTICATED"));

    // flip one character of the signature
    let mut tampered = access.clone();
    let last = tampered.pop().unwrap_or('A');
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let response = app.graphql(ME, json!({}), Some(&tampered)).await;
    assert_eq!(error_code(&response).as_deref(), Some("UNAUTHENTICATED"));

    let response = app.graphql(ME, json!({}), None).await;
    assert_eq!(error_code(&response).as_deref(), Some("UNAUTHENTICATED"));
}

#[actix_web::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let app = spawn_app().await;
    let (_, first, _) = app
        .register("fay@example.com", "correct horse battery")
        .await;
    let rotated = app.graphql(REFRESH, json!({ "t": first }), None).await;
    let second = rotated["data"]["refreshToken"]["refreshToken"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!second.is_empty() && second != first);

    // the first token was used: presenting it again is theft, and revokes the second too
    let replay = app.graphql(REFRESH, json!({ "t": first }), None).await;
    assert_eq!(error_code(&replay).as_deref(), Some("UNAUTHENTICATED"));
    let after = app.graphql(REFRESH, json!({ "t": second }), None).await;
    assert_eq!(error_code(&after).as_deref(), Some("UNAUTHENTICATED"));
}

#[actix_web::test]
async fn logout_revokes_the_refresh_token() {
    let app = spawn_app().await;
    let (_, refresh, _) = app
        .register("gus@example.com", "correct horse battery")
        .await;
    let out = app
        .graphql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": refresh }),
            None,
        )
        .await;
    assert_eq!(out["data"]["logout"], true);
    let after = app.graphql(REFRESH, json!({ "t": refresh }), None).await;
    assert_eq!(error_code(&after).as_deref(), Some("UNAUTHENTICATED"));
}

#[actix_web::test]
async fn top_up_with_one_key_credits_once_even_when_concurrent() {
    // topUpWallet is the development provider's (payments have tests of their own)
    let app = spawn_app_with(|s| s.dev = true).await;
    let (access, _, user_id) = app
        .register("hal@example.com", "correct horse battery")
        .await;
    let calls =
        (0..5).map(|_| app.graphql(TOP_UP, json!({ "a": "25.50", "k": "key-1" }), Some(&access)));
    let responses = futures_util::future::join_all(calls).await;
    for response in &responses {
        assert_eq!(
            response["data"]["topUpWallet"]["walletBalance"], "25.50",
            "{response}"
        );
    }
    let second = app
        .graphql(TOP_UP, json!({ "a": "10", "k": "key-2" }), Some(&access))
        .await;
    assert_eq!(second["data"]["topUpWallet"]["walletBalance"], "35.50");

    let reused = app
        .graphql(TOP_UP, json!({ "a": "99", "k": "key-1" }), Some(&access))
        .await;
    assert_eq!(error_code(&reused).as_deref(), Some("CONFLICT"));

    let entries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM wallet_ledger WHERE user_id = $1::uuid")
            .bind(&user_id)
            .fetch_one(&app.db)
            .await
            .unwrap_or(-1);
    assert_eq!(entries, 2);
}

#[actix_web::test]
async fn top_up_rejects_bad_amounts() {
    let app = spawn_app_with(|s| s.dev = true).await;
    let (access, _, _) = app
        .register("ida@example.com", "correct horse battery")
        .await;
    for amount in ["0", "-5", "1.234", "1000000"] {
        let response = app
            .graphql(
                TOP_UP,
                json!({ "a": amount, "k": format!("k{amount}") }),
                Some(&access),
            )
            .await;
        assert_eq!(
            error_code(&response).as_deref(),
            Some("BAD_USER_INPUT"),
            "{amount}: {response}"
        );
    }
    let anonymous = app
        .graphql(TOP_UP, json!({ "a": "5", "k": "k" }), None)
        .await;
    assert_eq!(error_code(&anonymous).as_deref(), Some("UNAUTHENTICATED"));
}

#[actix_web::test]
async fn vehicles_are_added_and_listed() {
    let app = spawn_app().await;
    let (access, _, _) = app
        .register("jo@example.com", "correct horse battery")
        .await;
    let response = app
        .graphql(
            "mutation { addVehicle(input: {brand: \"Tesla\", model: \"Model 3\", batteryCapacity: 75}) { vehicles { brand model batteryCapacity } } }",
            json!({}),
            Some(&access),
        )
        .await;
    assert_eq!(
        response["data"]["addVehicle"]["vehicles"],
        json!([{ "brand": "Tesla", "model": "Model 3", "batteryCapacity": 75.0 }])
    );
}

#[actix_web::test]
async fn registration_writes_user_registered_to_the_outbox() {
    let app = spawn_app().await;
    let (_, _, user_id) = app
        .register("kim@example.com", "correct horse battery")
        .await;
    let body: String =
        sqlx::query_scalar("SELECT body FROM outbox WHERE event_type = 'USER_REGISTERED'")
            .fetch_one(&app.db)
            .await
            .unwrap_or_default();
    let event: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(event["userId"], user_id.as_str());
    assert_eq!(event["version"], 1);
    assert_eq!(event["source"], "chargegrid-serve/test-node");
    assert!(body.starts_with("{\"eventId\":"), "{body}");
}

#[actix_web::test]
async fn repeated_failed_logins_are_rate_limited_per_email() {
    let app = spawn_app_with(|s| s.auth.login_max_per_email = 3).await;
    app.register("lee@example.com", "correct horse battery")
        .await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = app
            .graphql(
                LOGIN,
                json!({ "e": "lee@example.com", "p": "wrong password!" }),
                None,
            )
            .await;
        codes.push(error_code(&r).unwrap_or_default());
    }
    assert_eq!(
        codes,
        [
            "UNAUTHENTICATED",
            "UNAUTHENTICATED",
            "UNAUTHENTICATED",
            "RATE_LIMITED"
        ]
    );
    // even the right password is refused while limited
    let r = app
        .graphql(
            LOGIN,
            json!({ "e": "lee@example.com", "p": "correct horse battery" }),
            None,
        )
        .await;
    assert_eq!(error_code(&r).as_deref(), Some("RATE_LIMITED"));
    assert!(
        r["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
}

#[actix_web::test]
async fn logins_are_rate_limited_per_client_address() {
    let app = spawn_app_with(|s| s.auth.login_max_per_client = 2).await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let r = app
            .graphql(
                LOGIN,
                json!({ "e": format!("u{i}@example.com"), "p": "whatever123" }),
                None,
            )
            .await;
        codes.push(error_code(&r).unwrap_or_default());
    }
    assert_eq!(
        codes,
        ["UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"]
    );
}

/// A refresh token's successor expires when the sign-in does: using it never extends the
/// sign-in.
#[actix_web::test]
async fn refreshing_never_extends_a_sign_in() {
    let app = spawn_app().await;
    let (_, first, user_id) = app
        .register("slide@example.com", "correct horse battery")
        .await;
    let expiry = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT max(expires_at) FROM refresh_tokens WHERE user_id = $1::uuid",
        )
        .bind(&user_id)
        .fetch_one(&app.db)
        .await
        .unwrap()
    };
    let signed_in_until = expiry().await;
    let mut token = first;
    for _ in 0..3 {
        let rotated = app.graphql(REFRESH, json!({ "t": token }), None).await;
        token = rotated["data"]["refreshToken"]["refreshToken"]
            .as_str()
            .unwrap_or_else(|| panic!("{rotated}"))
            .to_string();
        assert_eq!(expiry().await, signed_in_until);
    }
    // past the sign-in's end, the newest token is refused like any other
    sqlx::query("UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1::uuid")
        .bind(&user_id)
        .execute(&app.db)
        .await
        .unwrap();
    let late = app.graphql(REFRESH, json!({ "t": token }), None).await;
    assert_eq!(error_code(&late).as_deref(), Some("UNAUTHENTICATED"));
}
