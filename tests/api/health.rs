//! Health, readiness, metrics, and the GraphQL request limits.

use serde_json::json;

use crate::helpers::{error_code, spawn_app, spawn_app_with, spawn_app_with_workers, TestApp};

/// `/ready`'s status code and the services it names as down.
async fn readiness(app: &TestApp) -> (u16, Vec<String>) {
    let response = app
        .http
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .expect("ready");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("json");
    let down = body["down"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (status, down)
}

/// Waits (up to 10 s) for `/ready` to answer 200: RabbitMQ connects in the background. The
/// last status seen.
async fn until_ready(app: &TestApp) -> u16 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = readiness(app).await.0;
        if status == 200 || std::time::Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn ready_is_200_when_every_service_is_up() {
    let app = spawn_app().await;
    // RabbitMQ connects in the background: wait for it rather than sleep
    assert_eq!(until_ready(&app).await, 200);
    let live = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("healthz");
    assert_eq!(live.status(), 200);
}

#[actix_web::test]
async fn ready_is_503_and_names_redis_when_redis_is_unreachable() {
    let app = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".into()).await;
    let (status, down) = readiness(&app).await;
    assert_eq!(status, 503);
    assert!(down.iter().any(|d| d == "redis"), "{down:?}");
    assert!(!down.iter().any(|d| d == "postgres"), "{down:?}");
    // liveness is unaffected
    let live = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("healthz");
    assert_eq!(live.status(), 200);
}

#[actix_web::test]
async fn ready_is_503_when_the_in_process_workers_lose_their_rabbitmq_connection() {
    let app = spawn_app_with_workers(|_| {}).await;
    // both connections come up in the background: wait for them rather than sleep
    assert_eq!(until_ready(&app).await, 200, "never ready");
    // the workers' own connection goes (and stays) away; the server's stays up
    let workers = app.ctx.worker_amqp.get().expect("workers run in process");
    workers.close().await;
    assert!(app.ctx.amqp.is_connected());
    let (status, down) = readiness(&app).await;
    assert_eq!(status, 503, "{down:?}");
    assert_eq!(down, vec!["rabbitmq".to_string()]);
}

#[actix_web::test]
async fn metrics_are_exported_in_prometheus_format() {
    let app = spawn_app().await;
    app.graphql("{ me { id } }", json!({}), None).await;
    let text = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("chargegrid_http_requests_total{route=\"/graphql\",status=\"2xx\"}"),
        "{text}"
    );
    assert!(
        text.contains("chargegrid_graphql_errors_total{code=\"UNAUTHENTICATED\"} 1"),
        "{text}"
    );
    // each operation is timed apart from the rest of /graphql, by its first top-level field,
    // refused ones too
    assert!(
        text.contains(
            "chargegrid_graphql_field_duration_seconds_count{field=\"me\",type=\"Query\"} 1"
        ),
        "{text}"
    );
}

#[actix_web::test]
async fn oversized_graphql_bodies_are_rejected() {
    let app = spawn_app().await;
    let padding = "x".repeat(64 * 1024);
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": format!("{{ me {{ id }} }} # {padding}") }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
}

#[actix_web::test]
async fn over_deep_and_over_complex_queries_are_rejected() {
    let app = spawn_app().await;
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } }";
    let response = app.graphql(deep, json!({}), None).await;
    assert_eq!(
        error_code(&response).as_deref(),
        Some("BAD_USER_INPUT"),
        "{response}"
    );
    assert!(response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("deep"));

    let aliases: String = (0..1000)
        .map(|i| format!("a{i}: me {{ id email }} "))
        .collect();
    let response = app
        .graphql(&format!("{{ {aliases} }}"), json!({}), None)
        .await;
    assert_eq!(
        error_code(&response).as_deref(),
        Some("BAD_USER_INPUT"),
        "{response}"
    );
    assert!(response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("complex"));
}

#[actix_web::test]
async fn malformed_graphql_requests_get_codes() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"));

    let syntax = app.graphql("{ me { id ", json!({}), None).await;
    assert_eq!(error_code(&syntax).as_deref(), Some("BAD_USER_INPUT"));
    let unknown = app.graphql("{ nope }", json!({}), None).await;
    assert_eq!(error_code(&unknown).as_deref(), Some("BAD_USER_INPUT"));
}

#[actix_web::test]
async fn healthz_fails_once_the_registry_or_the_session_supervisor_is_gone() {
    use chargegrid::actors::messages::Shutdown;
    let live = |app: &crate::helpers::TestApp| {
        let request = app.http.get(format!("{}/healthz", app.address)).send();
        async move {
            let response = request.await.expect("healthz");
            let status = response.status().as_u16();
            (
                status,
                response.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    for (which, name) in [(0, "sessionSupervisor"), (1, "registry")] {
        let app = spawn_app().await;
        assert_eq!(live(&app).await.0, 200);
        match which {
            0 => app.ctx.sessions.do_send(Shutdown),
            _ => app.ctx.registry.do_send(Shutdown),
        }
        let gone = app
            .wait_until(std::time::Duration::from_secs(5), || async {
                live(&app).await.0 == 503
            })
            .await;
        assert!(gone, "{name} stopped but /healthz still says ok");
        let (_, body) = live(&app).await;
        assert_eq!(body["dead"], json!([name]), "{body}");
    }
}
