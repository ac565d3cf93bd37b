//! The GraphQL API: schema assembly, the HTTP POST handler (with body-size, depth and complexity
//! limits), and the guarantee that every error carries an `extensions.code`.

pub mod accounts;
pub mod auth;
pub mod charger_logs;
pub mod chargers;
pub mod dead_letters;
pub mod device_model;
pub mod error;
pub mod firmware;
pub mod firmware_publications;
pub mod fuzz;
pub mod id_tokens;
pub mod invoices;
pub mod limits;
pub mod loaders;
pub mod local_lists;
pub mod operations;
pub mod payments;
pub mod reservations;
pub mod security;
pub mod sessions;
pub mod sites;
pub mod stations;
pub mod subscription;
pub mod timing;
pub mod types;
pub mod ws;

use actix_web::{web, HttpRequest, HttpResponse};
use async_graphql::{MergedObject, Schema};
use futures_util::StreamExt;
use serde_json::json;

use self::auth::{Caller, ClientAddr};
use crate::context::AppContext;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    accounts::AccountQuery,
    chargers::ChargerQuery,
    sessions::SessionQuery,
    invoices::InvoiceQuery,
    stations::StationQuery,
    payments::PaymentQuery,
    security::SecurityQuery,
    security::CertificateQuery,
    operations::OperationsQuery,
    dead_letters::DeadLetterQuery,
    sites::SiteQuery,
    reservations::ReservationQuery,
    id_tokens::IdTokenQuery,
    local_lists::LocalListQuery,
    firmware::FirmwareQuery,
    firmware_publications::FirmwarePublicationQuery,
    charger_logs::ChargerLogQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    accounts::AccountMutation,
    chargers::ChargerMutation,
    sessions::SessionMutation,
    invoices::InvoiceMutation,
    payments::PaymentMutation,
    security::SecurityMutation,
    security::CertificateMutation,
    dead_letters::DeadLetterMutation,
    sites::SiteMutation,
    reservations::ReservationMutation,
    id_tokens::IdTokenMutation,
    local_lists::LocalListMutation,
    firmware::FirmwareMutation,
    firmware_publications::FirmwarePublicationMutation,
    charger_logs::ChargerLogMutation,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, subscription::SubscriptionRoot>;

/// What a list counts for in a query's complexity: its page size times what one item costs, so
/// that a thousand aliases of a large page are refused before anything runs.
pub fn list_complexity(first: i32, child_complexity: usize) -> usize {
    usize::try_from(first.max(1))
        .unwrap_or(1)
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// Builds the schema once, outside `HttpServer::new`. Resolvers run on the API's own Postgres
/// pool (`AppContext::api_db`): however busy the API is, chargers' queries never wait for it.
pub fn build_schema(ctx: AppContext) -> AppSchema {
    let settings = ctx.settings.graphql.clone();
    let ctx = AppContext {
        db: ctx.api_db.clone(),
        ..ctx
    };
    let mut builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        subscription::SubscriptionRoot,
    )
    .data(loaders::loader(ctx.api_db.clone(), ctx.metrics.clone()))
    .data(ctx)
    .limit_depth(settings.max_depth)
    .limit_complexity(settings.max_complexity)
    .limit_recursive_depth(32)
    .limit_directives(16);
    if !settings.introspection {
        builder = builder.disable_introspection();
    }
    let schema = builder.finish();
    timing::RootFields::install(&schema.sdl());
    schema
}

/// The SDL of the schema this build serves (for `chargegrid` docs and contract tests).
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        subscription::SubscriptionRoot,
    )
    .finish()
    .sdl()
}

fn error_body(message: &str, code: &str) -> serde_json::Value {
    json!({ "data": null, "errors": [{ "message": message, "extensions": { "code": code } }] })
}

/// Who the request comes from, for rate limits: the TCP peer, unless the peer is a trusted proxy
/// (`http.trusted_proxies`, or with `http.trust_forwarded_for` the peer itself); then the
/// right-most `X-Forwarded-For` address that is not a trusted proxy. Addresses a client writes
/// into the header itself sit left of what its proxies add, so they are never believed.
pub fn client_addr(req: &HttpRequest, http: &crate::configuration::HttpSettings) -> String {
    use std::net::IpAddr;
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return "unknown".into();
    };
    let proxies: Vec<ipnet::IpNet> = http
        .trusted_proxies
        .iter()
        .filter_map(|p| crate::configuration::parse_net(p))
        .collect();
    let trusted = |ip: &IpAddr| {
        proxies.iter().any(|net| net.contains(ip)) || (http.trust_forwarded_for && *ip == peer)
    };
    if !trusted(&peer) {
        return peer.to_string();
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("X-Forwarded-For")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !trusted(ip))
        .or_else(|| forwarded.first())
        .unwrap_or(&peer)
        .to_string()
}

/// Parses a GraphQL request body. serde_json is built with `arbitrary_precision` (rust-ocpp
/// needs it for exact decimals), which hands most JSON floats to async-graphql as an opaque map
/// and makes every `Float` variable "invalid"; floats are re-encoded as plain `f64` first.
fn parse_request(body: &[u8]) -> Result<async_graphql::Request, serde_json::Error> {
    fn plain_floats(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
                if let Some(plain) = n.as_f64().and_then(serde_json::Number::from_f64) {
                    *n = plain;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(plain_floats),
            serde_json::Value::Object(map) => map.values_mut().for_each(plain_floats),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body)?;
    plain_floats(&mut value);
    serde_json::from_value(value)
}

/// True when the document holds queries only (what a time budget may cancel). The parse is
/// kept in the request, so execution does not parse it again.
fn is_query(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(doc) = request.parsed_query() else {
        return true; // refused by validation anyway
    };
    match &doc.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Query,
        DocumentOperations::Multiple(ops) => {
            ops.values().all(|op| op.node.ty == OperationType::Query)
        }
    }
}

/// `POST /graphql`: one operation as `application/json`.
pub async fn graphql_http(
    req: HttpRequest,
    mut payload: web::Payload,
    schema: web::Data<AppSchema>,
    ctx: web::Data<AppContext>,
) -> HttpResponse {
    let limit = ctx.settings.graphql.max_body_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return HttpResponse::BadRequest().json(error_body(
                "could not read the request body",
                "BAD_USER_INPUT",
            ));
        };
        if body.len() + chunk.len() > limit {
            ctx.metrics
                .graphql_errors_total
                .with_label_values(&["BAD_USER_INPUT"])
                .inc();
            return HttpResponse::PayloadTooLarge().json(error_body(
                &format!("the request body exceeds {limit} bytes"),
                "BAD_USER_INPUT",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let mut request = match parse_request(&body) {
        Ok(request) => request,
        Err(e) => {
            ctx.metrics
                .graphql_errors_total
                .with_label_values(&["BAD_USER_INPUT"])
                .inc();
            return HttpResponse::BadRequest().json(error_body(
                &format!("the request body is not a GraphQL request: {e}"),
                "BAD_USER_INPUT",
            ));
        }
    };
    let authorization = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = Caller::resolve(authorization, &ctx).await;
    let client = ClientAddr(client_addr(&req, &ctx.settings.http));
    if let Err(retry_after_secs) = ctx.api_requests.take(&limits::client_key(&caller, &client)) {
        ctx.metrics
            .graphql_errors_total
            .with_label_values(&["RATE_LIMITED"])
            .inc();
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", retry_after_secs.to_string()))
            .json(json!({ "data": null, "errors": [{
                "message": format!("too many requests; retry in {retry_after_secs} s"),
                "extensions": { "code": "RATE_LIMITED", "retryAfterSeconds": retry_after_secs },
            }] }));
    }
    // queries get a time budget; mutations are bounded by their own waits (a charger's answer)
    // and are never cancelled half-way
    let budget = if is_query(&mut request) {
        std::time::Duration::from_millis(ctx.settings.graphql.request_timeout_ms.max(1))
    } else {
        std::time::Duration::MAX
    };
    let (ty, field) = timing::RootFields::label(&mut request);
    let started = std::time::Instant::now();
    let execution = schema.execute(request.data(caller).data(client));
    let executed = tokio::time::timeout(budget, execution).await;
    ctx.metrics
        .graphql_field_duration_seconds
        .with_label_values(&[ty, field.as_str()])
        .observe(started.elapsed().as_secs_f64());
    let Ok(mut response) = executed else {
        // the operation's futures are dropped here: its queries are cancelled with it
        ctx.metrics
            .graphql_errors_total
            .with_label_values(&["RATE_LIMITED"])
            .inc();
        return HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(json!({ "data": null, "errors": [{
                "message": format!(
                    "the request took longer than {} ms and was cancelled; ask for less or retry later",
                    budget.as_millis()
                ),
                "extensions": { "code": "RATE_LIMITED", "retryAfterSeconds": 1 },
            }] }));
    };
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            // parse and validation errors (syntax, unknown fields, depth, complexity, variables)
            extensions.set("code", "BAD_USER_INPUT");
        }
        if let Some(async_graphql::Value::String(code)) = extensions.get("code") {
            ctx.metrics
                .graphql_errors_total
                .with_label_values(&[code.as_str()])
                .inc();
        }
    }
    HttpResponse::Ok().json(response)
}

/// `GET /graphql`: subscriptions when it is a WebSocket upgrade, else the GraphiQL explorer
/// (when introspection is on).
pub async fn graphql_get(
    req: HttpRequest,
    body: web::Payload,
    schema: web::Data<AppSchema>,
    ctx: web::Data<AppContext>,
) -> Result<HttpResponse, actix_web::Error> {
    let upgrade = req
        .headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return ws::upgrade(req, body, schema, ctx).await;
    }
    if !ctx.settings.graphql.introspection {
        return Ok(HttpResponse::NotFound().finish());
    }
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            async_graphql::http::GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .finish(),
        ))
}
