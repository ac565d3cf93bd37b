//! Plug & Charge certificate services (ISO 15118 through OCPP 2.0.1, use cases M01/M02/M06):
//! the CSMS forwards a car's certificate installation or update (Get15118EVCertificate) to a
//! contract-certificate provider, and asks the OCSP responder a station names for the status
//! of one of its certificates (GetCertificateStatus). Both providers are outside services,
//! reached over HTTP.
//!
//! - The contract-certificate provider (`pnc.contract_provider_url`) gets
//!   `POST {url}/ev-certificates` with `{chargerId, iso15118SchemaVersion, action,
//!   exiRequest}` (and `Authorization: Bearer` with `pnc.contract_provider_token`) and answers
//!   `{status: Accepted|Failed, exiResponse}`: the EXI stream is the car's, passed through
//!   unchanged.
//! - OCSP (RFC 6960): the request is built here from the station's hash data and POSTed
//!   (`application/ocsp-request`) to its responder URL, but only to responders listed in
//!   `pnc.ocsp_responders` (a station must not make the CSMS call arbitrary addresses). The
//!   DER answer is relayed when the responder says `successful`; the station checks the
//!   response's signature itself (it holds the trust anchors).

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::configuration::Settings;

/// Largest OCSP response relayed: base64 of it must fit OCPP's 5500 characters.
const MAX_OCSP_RESPONSE: usize = 4096;

/// The HTTP clients of the two providers.
pub struct PlugAndCharge {
    http: reqwest::Client,
    provider: Option<String>,
    token: Option<secrecy::SecretString>,
    responders: Vec<String>,
    /// V2G and MO root certificates contract certificates chain to (`pnc.contract_roots`).
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl std::fmt::Debug for PlugAndCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlugAndCharge")
            .field("provider", &self.provider)
            .field("responders", &self.responders)
            .finish_non_exhaustive()
    }
}

/// What a station sent to identify a certificate for OCSP.
#[derive(Debug, Clone)]
pub struct OcspQuery {
    pub hash_algorithm: String,
    pub issuer_name_hash: String,
    pub issuer_key_hash: String,
    pub serial_number: String,
    pub responder_url: String,
}

impl PlugAndCharge {
    /// The clients; fails when `pnc.contract_roots` cannot be read.
    pub fn from_settings(settings: &Settings) -> Result<Self, super::tls::TlsError> {
        let timeout = Duration::from_secs(settings.pnc.timeout_secs.max(1));
        let roots = match &settings.pnc.contract_roots {
            Some(path) => super::tls::pem_certificates(std::path::Path::new(path))?,
            None => Vec::new(),
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            provider: settings
                .pnc
                .contract_provider_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            token: settings.pnc.contract_provider_token.clone(),
            responders: settings.pnc.ocsp_responders.clone(),
            roots,
        })
    }

    /// The configured contract roots.
    pub fn contract_roots(&self) -> &[rustls::pki_types::CertificateDer<'static>] {
        &self.roots
    }

    /// Get15118EVCertificate: the provider's (status, exiResponse), or why there is none.
    pub async fn ev_certificate(
        &self,
        charger_id: &str,
        schema_version: &str,
        action: &str,
        exi_request: &str,
    ) -> Result<(String, String), String> {
        let Some(base) = &self.provider else {
            return Err("no contract-certificate provider is configured".into());
        };
        let mut request = self
            .http
            .post(format!("{base}/ev-certificates"))
            .json(&json!({
                "chargerId": charger_id,
                "iso15118SchemaVersion": schema_version,
                "action": action,
                "exiRequest": exi_request,
            }));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("the contract-certificate provider is unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "the contract-certificate provider answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("the contract-certificate provider's answer is not JSON: {e}"))?;
        let status = match body["status"].as_str() {
            Some(s @ ("Accepted" | "Failed")) => s.to_string(),
            _ => {
                return Err("the contract-certificate provider's answer has no valid status".into())
            }
        };
        let exi = body["exiResponse"].as_str().unwrap_or_default();
        if exi.len() > 7500 {
            return Err("the contract-certificate provider's exiResponse is too long".into());
        }
        Ok((status, exi.to_string()))
    }

    /// GetCertificateStatus: the responder's DER OCSPResponse (status `successful`), or why
    /// there is none.
    pub async fn certificate_status(&self, query: &OcspQuery) -> Result<Vec<u8>, String> {
        let der = self.fetch_ocsp(query).await?;
        match ocsp_response_status(&der)? {
            0 => Ok(der),
            other => Err(format!(
                "the OCSP responder answered status {other} (not successful)"
            )),
        }
    }

    /// The responder's DER answer to an OCSP request for `query`, if it may be asked.
    pub(super) async fn fetch_ocsp(&self, query: &OcspQuery) -> Result<Vec<u8>, String> {
        if !responder_allowed(&self.responders, &query.responder_url) {
            return Err(format!(
                "the OCSP responder {} is not one this CSMS may call (pnc.ocsp_responders)",
                query.responder_url
            ));
        }
        let body = ocsp_request_der(query)?;
        let response = self
            .http
            .post(&query.responder_url)
            .header("Content-Type", "application/ocsp-request")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("the OCSP responder is unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "the OCSP responder answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let der = response
            .bytes()
            .await
            .map_err(|e| format!("the OCSP responder's answer could not be read: {e}"))?;
        if der.len() > MAX_OCSP_RESPONSE {
            return Err("the OCSP response is too long to relay".into());
        }
        match ocsp_response_status(&der)? {
            0 => Ok(der.to_vec()),
            other => Err(format!(
                "the OCSP responder answered status {other} (not successful)"
            )),
        }
    }
}

/// Whether `url` is one of the allowed responders: same scheme, host and port as an entry of
/// `allowed`, no credentials, and a path under the entry's path (both normalised, so `..` and
/// `host.evil` or `host@evil` tricks do not pass).
pub fn responder_allowed(allowed: &[String], url: &str) -> bool {
    let Ok(target) = url::Url::parse(url) else {
        return false;
    };
    if !matches!(target.scheme(), "http" | "https")
        || !target.username().is_empty()
        || target.password().is_some()
    {
        return false;
    }
    allowed.iter().any(|entry| {
        url::Url::parse(entry).is_ok_and(|entry| {
            entry.scheme() == target.scheme()
                && entry.host_str().is_some()
                && entry.host_str() == target.host_str()
                && entry.port_or_known_default() == target.port_or_known_default()
                && under(target.path(), entry.path())
        })
    })
}

/// `path` is `base` or below it, at a segment boundary (`/v1` admits `/v1/x`, not `/v10`).
fn under(path: &str, base: &str) -> bool {
    path == base
        || base.ends_with('/') && path.starts_with(base)
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn hex_field(name: &str, value: &str) -> Result<Vec<u8>, String> {
    hex::decode(value.trim()).map_err(|_| format!("{name} is not hexadecimal"))
}

/// An RFC 6960 OCSPRequest (one CertID, unsigned, no nonce) for `query`.
pub fn ocsp_request_der(query: &OcspQuery) -> Result<Vec<u8>, String> {
    let oid: &[u64] = match query.hash_algorithm.as_str() {
        "SHA256" => &[2, 16, 840, 1, 101, 3, 4, 2, 1],
        "SHA384" => &[2, 16, 840, 1, 101, 3, 4, 2, 2],
        "SHA512" => &[2, 16, 840, 1, 101, 3, 4, 2, 3],
        other => return Err(format!("unknown hash algorithm {other}")),
    };
    let name_hash = hex_field("issuerNameHash", &query.issuer_name_hash)?;
    let key_hash = hex_field("issuerKeyHash", &query.issuer_key_hash)?;
    let serial = hex_field("serialNumber", &query.serial_number)?;
    if serial.is_empty() || serial.len() > 20 {
        return Err("serialNumber must have 1 to 20 bytes".into());
    }
    let algorithm = yasna::models::ObjectIdentifier::from_slice(oid);
    Ok(yasna::construct_der(|w| {
        // OCSPRequest
        w.write_sequence(|w| {
            // TBSRequest
            w.next().write_sequence(|w| {
                // requestList
                w.next().write_sequence(|w| {
                    // Request
                    w.next().write_sequence(|w| {
                        // CertID
                        w.next().write_sequence(|w| {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&algorithm);
                                w.next().write_null();
                            });
                            w.next().write_bytes(&name_hash);
                            w.next().write_bytes(&key_hash);
                            w.next().write_bigint_bytes(&serial, true);
                        });
                    });
                });
            });
        });
    }))
}

/// The `responseStatus` of a DER OCSPResponse (0 = successful).
pub fn ocsp_response_status(der: &[u8]) -> Result<u64, String> {
    use super::contract::{sequence, tlv};
    let (response, rest) = tlv(der).ok_or("the OCSP response is not DER")?;
    if !rest.is_empty() {
        return Err("the OCSP response has trailing bytes".into());
    }
    let items = sequence(response).ok_or("the OCSP response is not a SEQUENCE")?;
    match items.first() {
        // ENUMERATED, one byte (the statuses are 0 to 6)
        Some(status) if status.tag == 0x0a && status.content.len() == 1 => {
            Ok(u64::from(status.content[0]))
        }
        _ => Err("the OCSP response has no responseStatus".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ocsp_request_carries_the_cert_id_in_der() {
        let der = ocsp_request_der(&OcspQuery {
            hash_algorithm: "SHA256".into(),
            issuer_name_hash: "aa".repeat(32),
            issuer_key_hash: "bb".repeat(32),
            serial_number: "0102".into(),
            responder_url: "http://ocsp.test".into(),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        // SEQUENCE(SEQUENCE(SEQUENCE(SEQUENCE(CertID))))
        let (_, parsed) = der_parser::parse_der(&der).unwrap_or_else(|e| panic!("{e}"));
        let cert_id = &parsed.as_sequence().unwrap_or_else(|e| panic!("{e}"))[0]
            .as_sequence()
            .unwrap_or_else(|e| panic!("{e}"))[0]
            .as_sequence()
            .unwrap_or_else(|e| panic!("{e}"))[0]
            .as_sequence()
            .unwrap_or_else(|e| panic!("{e}"))[0];
        let fields = cert_id.as_sequence().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fields[1].as_slice().ok(), Some([0xaa; 32].as_slice()));
        assert_eq!(fields[2].as_slice().ok(), Some([0xbb; 32].as_slice()));
        assert_eq!(fields[3].as_slice().ok(), Some([1u8, 2].as_slice()));
        let bad = OcspQuery {
            hash_algorithm: "MD5".into(),
            issuer_name_hash: String::new(),
            issuer_key_hash: String::new(),
            serial_number: "01".into(),
            responder_url: String::new(),
        };
        assert!(ocsp_request_der(&bad).is_err());
    }

    #[test]
    fn only_listed_responders_are_called() {
        let allowed = vec!["http://ocsp.example.com/v1/".to_string()];
        assert!(responder_allowed(
            &allowed,
            "http://ocsp.example.com/v1/check"
        ));
        for bad in [
            "http://ocsp.example.com.evil.test/v1/",
            "http://ocsp.example.com@evil.test/v1/",
            "http://user:pw@ocsp.example.com/v1/",
            "http://ocsp.example.com/v1/../admin",
            "http://ocsp.example.com:8080/v1/",
            "https://ocsp.example.com/v1/",
            "http://ocsp.example.com/v2/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!responder_allowed(&allowed, bad), "{bad}");
        }
        assert!(!responder_allowed(&[], "http://ocsp.example.com/v1/"));
        let bare = vec!["http://ocsp.example.com/v1".to_string()];
        assert!(responder_allowed(&bare, "http://ocsp.example.com/v1/check"));
        assert!(!responder_allowed(&bare, "http://ocsp.example.com/v10"));
        assert!(!responder_allowed(
            &bare,
            "http://ocsp.example.com/v1-internal"
        ));
    }

    #[test]
    fn the_response_status_is_read_and_garbage_refused() {
        // OCSPResponse { responseStatus: tryLater (3) }
        assert_eq!(ocsp_response_status(&[0x30, 0x03, 0x0a, 0x01, 0x03]), Ok(3));
        assert!(ocsp_response_status(b"not der").is_err());
        assert!(ocsp_response_status(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    }
}
