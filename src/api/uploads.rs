//! Charger log uploads and their download.
//!
//! - `PUT` / `POST /uploads/logs/{secret}` (optionally `/{fileName}`): where a charger asked
//!   for its diagnostics or log (GetDiagnostics / GetLog) uploads the file, the body as is, at
//!   most `ocpp.max_log_upload_bytes` (and never more than 64 MiB). The secret in the URL was made for that one request and
//!   takes one upload; anything else is 404.
//! - `GET /api/logs/{id}`: the uploaded file, for OPERATORs and ADMINs (bearer token).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use crate::api::graphql::auth::Caller;
use crate::context::AppContext;
use crate::store::charger_logs;

/// A file name as kept: printable ASCII without path separators, at most 255 characters.
pub fn clean_name(raw: &str) -> Option<String> {
    let name: String = raw
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '/' | '\\' | '"'))
        .take(255)
        .collect();
    (!name.is_empty()).then_some(name)
}

pub async fn upload(
    req: HttpRequest,
    body: web::Bytes,
    ctx: web::Data<AppContext>,
) -> HttpResponse {
    let Some(token) = req.match_info().get("secret") else {
        return HttpResponse::NotFound().finish();
    };
    let name = req.match_info().get("name").and_then(clean_name);
    if body.len() > ctx.settings.ocpp.max_log_upload_bytes {
        return HttpResponse::PayloadTooLarge().finish();
    }
    match charger_logs::upload(&ctx.db, token, name.as_deref(), &body).await {
        Ok(true) => {
            tracing::info!(bytes = body.len(), "charger log uploaded");
            HttpResponse::Created().finish()
        }
        Ok(false) => HttpResponse::NotFound().finish(),
        Err(e) => {
            tracing::error!(error = %e, "charger log upload not stored");
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}

pub async fn download(
    req: HttpRequest,
    path: web::Path<String>,
    ctx: web::Data<AppContext>,
) -> HttpResponse {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match Caller::resolve(authorization, &ctx).await {
        Caller::User(claims) if claims.role.is_staff() => {}
        Caller::User(_) => {
            return HttpResponse::Forbidden().json(json!({ "error": "OPERATOR or ADMIN only" }))
        }
        _ => return HttpResponse::Unauthorized().json(json!({ "error": "sign in" })),
    }
    let Ok(id) = Uuid::parse_str(&path.into_inner()) else {
        return HttpResponse::NotFound().finish();
    };
    match charger_logs::content(&ctx.db, id).await {
        Ok(Some((name, content))) => {
            let name = name.unwrap_or_else(|| format!("{id}.log"));
            HttpResponse::Ok()
                .content_type("application/octet-stream")
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ))
                .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .body(content)
        }
        Ok(None) => HttpResponse::NotFound().finish(),
        Err(e) => {
            tracing::error!(error = %e, "charger log not read");
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}
