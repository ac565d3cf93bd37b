//! The OpenChargeMap `/poi` client: compact pages (`compact=true&verbose=false`) by ID
//! (`sortby=id_asc&greaterthanid=`) or by modification time (`sortby=modified_asc&modifiedsince=`),
//! the key in the `X-API-Key` header, our own User-Agent, a minimum interval between requests
//! (OCM's fair-use rules), and retries with exponential backoff on 429, 5xx and transport errors,
//! honouring `Retry-After`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::configuration::OcmSettings;

/// Why OCM did not give us a page.
#[derive(Debug, thiserror::Error)]
pub enum OcmError {
    #[error(
        "OCM_API_KEY is not set: the OpenChargeMap API needs a key (create one at \
         https://openchargemap.org/site/profile/applications), or import a dump with \
         `chargegrid sync-ocm --from-file PATH`"
    )]
    MissingKey,
    #[error("OpenChargeMap refused the API key (HTTP {status}): {message}; check OCM_API_KEY")]
    KeyRefused { status: u16, message: String },
    #[error("OpenChargeMap answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("OpenChargeMap asked us to wait {0} s before retrying, longer than we wait")]
    RetryAfterTooLong(u64),
    #[error("OpenChargeMap failed {attempts} times in a row; last: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("OpenChargeMap sent something other than a JSON array of POIs: {0}")]
    Body(String),
    #[error("invalid OpenChargeMap settings: {0}")]
    Config(String),
}

/// Which slice of the data set a page request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageQuery {
    /// `sortby=id_asc&greaterthanid=ID` (strictly greater).
    AfterId(i32),
    /// `sortby=modified_asc&modifiedsince=T` (inclusive, minute precision).
    ModifiedSince(DateTime<Utc>),
}

/// A client for one OCM API base URL.
pub struct OcmClient {
    http: reqwest::Client,
    poi_url: String,
    client_id: String,
    open_data_only: bool,
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    min_interval: Duration,
    /// When the last request went out (pacing is shared by all requests of this client).
    last_request: Mutex<Option<Instant>>,
}

impl OcmClient {
    /// Fails with [`OcmError::MissingKey`] when no API key is configured.
    pub fn new(settings: &OcmSettings) -> Result<Self, OcmError> {
        let api_key = settings
            .api_key
            .clone()
            .filter(|k| !k.expose_secret().trim().is_empty())
            .ok_or(OcmError::MissingKey)?;
        let mut key = HeaderValue::from_str(api_key.expose_secret().trim())
            .map_err(|_| OcmError::Config("OCM_API_KEY contains invalid characters".into()))?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("X-API-Key", key);
        let http = reqwest::Client::builder()
            .user_agent(settings.user_agent.clone())
            .default_headers(headers)
            .timeout(Duration::from_secs(settings.request_timeout_secs))
            .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .build()
            .map_err(|e| OcmError::Config(e.to_string()))?;
        Ok(Self {
            http,
            poi_url: format!("{}/poi", settings.base_url.trim_end_matches('/')),
            client_id: settings.client_id.clone(),
            open_data_only: settings.open_data_only,
            max_retries: settings.max_retries,
            base_delay: Duration::from_millis(settings.retry_base_delay_ms),
            max_delay: Duration::from_secs(settings.retry_max_delay_secs),
            min_interval: Duration::from_millis(settings.request_interval_ms),
            last_request: Mutex::new(None),
        })
    }

    /// The base URL this client talks to (for logs and events; it never holds the key).
    pub fn poi_url(&self) -> &str {
        &self.poi_url
    }

    /// One page of at most `max_results` POIs, retried as configured.
    #[tracing::instrument(skip_all, fields(query = ?query, max_results))]
    pub async fn page(&self, query: PageQuery, max_results: u32) -> Result<Vec<Value>, OcmError> {
        let mut params: Vec<(&str, String)> = vec![
            ("output", "json".into()),
            ("compact", "true".into()),
            ("verbose", "false".into()),
            ("includecomments", "false".into()),
            ("client", self.client_id.clone()),
            ("maxresults", max_results.to_string()),
        ];
        if self.open_data_only {
            params.push(("opendata", "true".into()));
        }
        match query {
            PageQuery::AfterId(id) => {
                params.push(("sortby", "id_asc".into()));
                params.push(("greaterthanid", id.to_string()));
            }
            PageQuery::ModifiedSince(since) => {
                params.push(("sortby", "modified_asc".into()));
                params.push((
                    "modifiedsince",
                    since.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                ));
            }
        }
        let mut attempt = 0;
        loop {
            let delay = match self.attempt(&params).await {
                Attempt::Done(result) => return result,
                Attempt::Retry { reason, after } => {
                    if attempt >= self.max_retries {
                        return Err(OcmError::GaveUp {
                            attempts: attempt + 1,
                            last: reason,
                        });
                    }
                    let delay = match after {
                        Some(after) if after > self.max_delay => {
                            return Err(OcmError::RetryAfterTooLong(after.as_secs()))
                        }
                        Some(after) => after,
                        None => self.backoff(attempt),
                    };
                    tracing::warn!(
                        attempt = attempt + 1,
                        delay_ms = delay.as_millis() as u64,
                        reason = %reason,
                        "OpenChargeMap request failed; retrying"
                    );
                    delay
                }
            };
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, params: &[(&str, String)]) -> Attempt {
        self.pace().await;
        let response = match self.http.get(&self.poi_url).query(params).send().await {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Retry {
                    reason: transport_reason(e),
                    after: None,
                }
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => Attempt::Done(
                    serde_json::from_slice::<Vec<Value>>(&body)
                        .map_err(|e| OcmError::Body(e.to_string())),
                ),
                // a body cut off half-way is a transport failure
                Err(e) => Attempt::Retry {
                    reason: transport_reason(e),
                    after: None,
                },
            };
        }
        let message = snippet(&response.text().await.unwrap_or_default());
        match status {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                Attempt::Done(Err(OcmError::KeyRefused {
                    status: status.as_u16(),
                    message,
                }))
            }
            StatusCode::TOO_MANY_REQUESTS => Attempt::Retry {
                reason: format!("HTTP 429 {message}"),
                after: retry_after,
            },
            s if s.is_server_error() => Attempt::Retry {
                reason: format!("HTTP {} {message}", s.as_u16()),
                after: retry_after,
            },
            s => Attempt::Done(Err(OcmError::Status {
                status: s.as_u16(),
                message,
            })),
        }
    }

    /// Waits until `min_interval` has passed since the previous request.
    async fn pace(&self) {
        let mut last = self.last_request.lock().await;
        if let Some(previous) = *last {
            let ready = previous + self.min_interval;
            if ready > Instant::now() {
                tokio::time::sleep_until(ready).await;
            }
        }
        *last = Some(Instant::now());
    }

    /// base * 2^attempt, capped, with ±10 % jitter so replicas do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max_delay);
        exponential.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
    }
}

enum Attempt {
    Done(Result<Vec<Value>, OcmError>),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&Utc) - Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn transport_reason(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "request timed out".into()
    } else if error.is_connect() {
        "cannot connect".into()
    } else {
        // without the URL: it is ours, and repeating it in every line helps nobody
        error.without_url().to_string()
    }
}

/// The start of an error body on one line, for messages.
fn snippet(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None if one_line.is_empty() => "(empty body)".into(),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn a_missing_or_blank_key_is_a_clear_error() {
        let mut settings = OcmSettings::default();
        assert!(matches!(
            OcmClient::new(&settings),
            Err(OcmError::MissingKey)
        ));
        settings.api_key = Some(SecretString::from("  "));
        let err = OcmClient::new(&settings).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("OCM_API_KEY is not set")));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = OcmSettings {
            api_key: Some(SecretString::from("k")),
            retry_base_delay_ms: 1000,
            retry_max_delay_secs: 5,
            ..OcmSettings::default()
        };
        let Ok(client) = OcmClient::new(&settings) else {
            panic!("client builds")
        };
        let b1 = client.backoff(1).as_secs_f64();
        assert!((1.8..=2.2).contains(&b1), "{b1}");
        let b9 = client.backoff(9).as_secs_f64();
        assert!((4.5..=5.5).contains(&b9), "{b9}");
    }
}
