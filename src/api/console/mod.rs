//! The operator console: hand-written HTML, CSS and JavaScript modules embedded in the binary
//! and served under `/console` with a strict Content-Security-Policy. It talks to the server
//! only through the public GraphQL API (POST /graphql and graphql-transport-ws), as any
//! third-party client does; there is no build step (ADR 014).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Scripts, styles and connections only from this origin; no inline code, no frames, no
/// plugins. `connect-src 'self'` covers the same-origin WebSocket of subscriptions.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_str!(concat!("assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/ui.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/pages/signin.js", JS),
    asset!("js/pages/overview.js", JS),
    asset!("js/pages/chargers.js", JS),
    asset!("js/pages/charger.js", JS),
    asset!("js/pages/sessions.js", JS),
    asset!("js/pages/session.js", JS),
    asset!("js/pages/map.js", JS),
    asset!("js/pages/billing.js", JS),
    asset!("js/pages/deadletters.js", JS),
    asset!("js/pages/sites.js", JS),
    asset!("js/pages/site.js", JS),
    asset!("js/pages/siteforms.js", JS),
    asset!("js/pages/reservations.js", JS),
    asset!("js/pages/tokens.js", JS),
    asset!("js/pages/firmware.js", JS),
    asset!("js/pages/campaign.js", JS),
    asset!("js/parts/reservations.js", JS),
    asset!("js/parts/locallists.js", JS),
    asset!("js/parts/locallist.js", JS),
    asset!("js/parts/logs.js", JS),
];

/// Strong ETags of the assets, computed once (the content cannot change while running).
fn etags() -> &'static Vec<String> {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                format!("\"{}\"", hex::encode(&digest[..12]))
            })
            .collect()
    })
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(index))
        .route("/console/", web::get().to(index))
        .route("/console/{path:.*}", web::get().to(file));
}

/// `/console`: the single page; the client-side router reads the `#/...` fragment.
async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, "index.html")
}

/// `/console/{path}`: an asset, or 404.
async fn file(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    serve(&req, &path)
}

fn serve(req: &HttpRequest, path: &str) -> HttpResponse {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return with_security_headers(&mut HttpResponse::NotFound())
            .content_type("text/plain; charset=utf-8")
            .body("not found");
    };
    let (asset, etag) = (&ASSETS[i], &etags()[i]);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    let response = with_security_headers(&mut response)
        .insert_header((header::ETAG, etag.as_str()))
        // revalidated on every load (a 304 when unchanged): a new binary's console is never
        // mixed with an old cached module
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        response.finish()
    } else {
        response.content_type(asset.content_type).body(asset.body)
    }
}

fn with_security_headers(
    response: &mut actix_web::HttpResponseBuilder,
) -> &mut actix_web::HttpResponseBuilder {
    response
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_console_imports_is_embedded() {
        let embedded: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let dir = asset.path.rsplit_once('/').map_or("", |(d, _)| d);
            for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['"', '\'']).nth(1) else {
                    continue;
                };
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for part in spec.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        p => parts.push(p),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    embedded.contains(&resolved.as_str()),
                    "{} imports {spec}, which is not embedded",
                    asset.path
                );
            }
        }
    }
}
