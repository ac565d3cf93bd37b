//! Authorize with an ISO 15118 contract certificate (OCPP 2.0.1 C07): the CSMS decides
//! whether the car's contract certificate is good before the eMAID is accepted.
//!
//! - **Central validation** (the station sends the `certificate` chain): the chain must lead
//!   to one of the configured contract roots (`pnc.contract_roots`: V2G and MO roots) and be
//!   valid now; the leaf's revocation status is then asked of the OCSP responder its Authority
//!   Information Access names, with a CertID computed here.
//! - **Local validation** (the station validated the chain and sends
//!   `iso15118CertificateHashData`): each certificate's status is asked of the responder given.
//!
//! An OCSP answer counts only if it is signed by a responder certificate (in the answer, with
//! the OCSPSigning purpose) that chains to a contract root, or by the leaf's issuer itself, and
//! if it is current (`thisUpdate` not in the future, `nextUpdate` not in the past). Responders
//! must be in `pnc.ocsp_responders`, as for GetCertificateStatus.

use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

use super::pnc::{OcspQuery, PlugAndCharge};

/// The `certificateStatus` of an AuthorizeResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    SignatureError,
    CertificateExpired,
    CertificateRevoked,
    NoCertificateAvailable,
    CertChainError,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "Accepted",
            Verdict::SignatureError => "SignatureError",
            Verdict::CertificateExpired => "CertificateExpired",
            Verdict::CertificateRevoked => "CertificateRevoked",
            Verdict::NoCertificateAvailable => "NoCertificateAvailable",
            Verdict::CertChainError => "CertChainError",
        }
    }
}

/// How old an OCSP answer without `nextUpdate` may be (seconds).
const MAX_AGE_WITHOUT_NEXT_UPDATE: i64 = 24 * 3600;

/// `data` hashed with an OCPP hash algorithm name.
fn digest(algorithm: &str, data: &[u8]) -> Option<Vec<u8>> {
    use sha2::{Sha384, Sha512};
    Some(match algorithm {
        "SHA256" => Sha256::digest(data).to_vec(),
        "SHA384" => Sha384::digest(data).to_vec(),
        "SHA512" => Sha512::digest(data).to_vec(),
        _ => return None,
    })
}

/// id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9), DER value bytes.
const OCSP_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

// ---- a minimal DER reader (OCSP responses are small and their shape fixed) -----------------

#[derive(Clone, Copy)]
pub(super) struct Tlv<'a> {
    pub(super) tag: u8,
    /// the whole element, header included (what a signature covers)
    pub(super) raw: &'a [u8],
    pub(super) content: &'a [u8],
}

pub(super) fn tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((
        Tlv {
            tag,
            raw: &input[..header + len],
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

fn children(content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (item, next) = tlv(rest)?;
        out.push(item);
        rest = next;
    }
    Some(out)
}

pub(super) fn sequence(t: Tlv<'_>) -> Option<Vec<Tlv<'_>>> {
    (t.tag == 0x30).then(|| children(t.content)).flatten()
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ` as seconds since the epoch.
fn generalized_time(t: Tlv<'_>) -> Option<i64> {
    if t.tag != 0x18 {
        return None;
    }
    let text = std::str::from_utf8(t.content).ok()?;
    chrono::NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y%m%d%H%M%S")
        .ok()
        .map(|at| at.and_utc().timestamp())
}

/// An OCSP CertID as bytes, to match a response against its request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CertId {
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
    serial: Vec<u8>,
}

fn cert_id(t: Tlv<'_>) -> Option<CertId> {
    let fields = sequence(t)?;
    let [_, name, key, serial] = fields.as_slice() else {
        return None;
    };
    let trim = |b: &[u8]| {
        let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        b[first..].to_vec()
    };
    Some(CertId {
        name_hash: name.content.to_vec(),
        key_hash: key.content.to_vec(),
        serial: trim(serial.content),
    })
}

fn query_id(q: &OcspQuery) -> Option<CertId> {
    let serial = hex::decode(q.serial_number.trim()).ok()?;
    let first = serial.iter().position(|x| *x != 0).unwrap_or(serial.len());
    Some(CertId {
        name_hash: hex::decode(q.issuer_name_hash.trim()).ok()?,
        key_hash: hex::decode(q.issuer_key_hash.trim()).ok()?,
        serial: serial[first..].to_vec(),
    })
}

/// What an OCSP response says about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Good,
    Revoked,
    Unknown,
}

/// Why an OCSP response was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    #[error("the OCSP response is malformed")]
    Malformed,
    #[error("the OCSP responder did not answer successfully")]
    NotSuccessful,
    #[error("the OCSP response's signature does not verify with a trusted responder")]
    Signature,
    #[error("the OCSP response is not current")]
    Stale,
    #[error("the OCSP response is about another certificate")]
    OtherCertificate,
}

fn signature_algorithms(
    oid: &[u8],
) -> &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm] {
    use webpki::ring as alg;
    const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    const RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    const RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    static E256: [&dyn rustls::pki_types::SignatureVerificationAlgorithm; 2] =
        [alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256];
    static E384: [&dyn rustls::pki_types::SignatureVerificationAlgorithm; 2] =
        [alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384];
    static R256: [&dyn rustls::pki_types::SignatureVerificationAlgorithm; 1] =
        [alg::RSA_PKCS1_2048_8192_SHA256];
    static R384: [&dyn rustls::pki_types::SignatureVerificationAlgorithm; 1] =
        [alg::RSA_PKCS1_2048_8192_SHA384];
    static R512: [&dyn rustls::pki_types::SignatureVerificationAlgorithm; 1] =
        [alg::RSA_PKCS1_2048_8192_SHA512];
    match oid {
        ECDSA_SHA256 => &E256,
        ECDSA_SHA384 => &E384,
        RSA_SHA256 => &R256,
        RSA_SHA384 => &R384,
        RSA_SHA512 => &R512,
        _ => &[],
    }
}

/// Every algorithm a chain may be signed with.
static CHAIN_ALGORITHMS: &[&dyn rustls::pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
];

/// Reads a DER OCSPResponse about `expected`: its status, once its signature (by a responder
/// chaining to `roots` with OCSPSigning, or by `issuer`) and its freshness are checked.
pub fn read_response(
    der: &[u8],
    expected: &OcspQuery,
    roots: &[CertificateDer<'static>],
    issuer: Option<&CertificateDer<'_>>,
) -> Result<Status, OcspError> {
    use OcspError::Malformed;
    let (outer, rest) = tlv(der).ok_or(Malformed)?;
    if !rest.is_empty() {
        return Err(Malformed);
    }
    let outer = sequence(outer).ok_or(Malformed)?;
    match outer.first() {
        Some(t) if t.tag == 0x0a && t.content == [0] => {}
        Some(t) if t.tag == 0x0a => return Err(OcspError::NotSuccessful),
        _ => return Err(Malformed),
    }
    // responseBytes [0] EXPLICIT SEQUENCE { responseType, response OCTET STRING }
    let bytes = outer.get(1).filter(|t| t.tag == 0xa0).ok_or(Malformed)?;
    let (inner, _) = tlv(bytes.content).ok_or(Malformed)?;
    let inner = sequence(inner).ok_or(Malformed)?;
    let basic = inner.get(1).filter(|t| t.tag == 0x04).ok_or(Malformed)?;
    let (basic, _) = tlv(basic.content).ok_or(Malformed)?;
    let basic = sequence(basic).ok_or(Malformed)?;
    let [tbs, algorithm, signature, more @ ..] = basic.as_slice() else {
        return Err(Malformed);
    };
    let algorithm_oid = sequence(*algorithm)
        .and_then(|a| a.first().copied())
        .filter(|t| t.tag == 0x06)
        .ok_or(Malformed)?
        .content;
    // BIT STRING: first byte is the number of unused bits (0)
    let signature = signature
        .content
        .split_first()
        .filter(|(unused, _)| **unused == 0 && signature.tag == 0x03)
        .map(|(_, s)| s)
        .ok_or(Malformed)?;
    let responder_certs: Vec<CertificateDer<'static>> = match more.first() {
        Some(t) if t.tag == 0xa0 => {
            let (list, _) = tlv(t.content).ok_or(Malformed)?;
            sequence(list)
                .ok_or(Malformed)?
                .into_iter()
                .map(|c| CertificateDer::from(c.raw.to_vec()))
                .collect()
        }
        _ => Vec::new(),
    };
    let algorithms = signature_algorithms(algorithm_oid);
    let verified_by = |signer: &CertificateDer<'_>| -> bool {
        webpki::EndEntityCert::try_from(signer).is_ok_and(|ee| {
            algorithms
                .iter()
                .any(|alg| ee.verify_signature(*alg, tbs.raw, signature).is_ok())
        })
    };
    let anchors: Vec<_> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let trusted_responder = responder_certs.first().is_some_and(|signer| {
        webpki::EndEntityCert::try_from(signer).is_ok_and(|ee| {
            ee.verify_for_usage(
                CHAIN_ALGORITHMS,
                &anchors,
                &responder_certs[1..],
                now(),
                webpki::KeyUsage::required(OCSP_SIGNING),
                None,
                None,
            )
            .is_ok()
        }) && verified_by(signer)
            && issued_by_the_certificates_issuer(signer, &responder_certs[1..], roots, expected)
    });
    let signed_by_issuer = issuer.is_some_and(verified_by);
    if !(trusted_responder || signed_by_issuer) {
        return Err(OcspError::Signature);
    }
    // ResponseData { [0] version?, responderID, producedAt, responses, [1] extensions? }
    let data = sequence(*tbs).ok_or(Malformed)?;
    let offset = usize::from(data.first().is_some_and(|t| t.tag == 0xa0));
    let responses = data
        .get(offset + 2)
        .copied()
        .and_then(sequence)
        .ok_or(Malformed)?;
    let wanted = query_id(expected).ok_or(Malformed)?;
    let now = now().as_secs() as i64;
    for single in responses {
        let fields = sequence(single).ok_or(Malformed)?;
        let (Some(id), Some(status), Some(this_update)) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(Malformed);
        };
        if cert_id(*id).as_ref() != Some(&wanted) {
            continue;
        }
        let this_update = generalized_time(*this_update).ok_or(Malformed)?;
        let next_update = match fields.get(3).filter(|t| t.tag == 0xa0) {
            Some(t) => Some(
                tlv(t.content)
                    .and_then(|(t, _)| generalized_time(t))
                    .ok_or(Malformed)?,
            ),
            None => None,
        };
        let too_old = next_update.is_none() && now - this_update > MAX_AGE_WITHOUT_NEXT_UPDATE;
        if this_update > now + 300 || next_update.is_some_and(|next| next < now) || too_old {
            return Err(OcspError::Stale);
        }
        return Ok(match status.tag {
            0x80 => Status::Good,
            0xa1 => Status::Revoked,
            _ => Status::Unknown,
        });
    }
    Err(OcspError::OtherCertificate)
}

/// RFC 6960 4.2.2.2: a delegated responder must be issued by the CA that issued the
/// certificate asked about, i.e. its issuer's name and key hash to the CertID's.
fn issued_by_the_certificates_issuer(
    responder: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[CertificateDer<'static>],
    expected: &OcspQuery,
) -> bool {
    let Ok((_, responder)) = x509_parser::parse_x509_certificate(responder) else {
        return false;
    };
    let issuer_name = responder.issuer().as_raw();
    let (Some(name_hash), Ok(want_name), Ok(want_key)) = (
        digest(&expected.hash_algorithm, issuer_name),
        hex::decode(expected.issuer_name_hash.trim()),
        hex::decode(expected.issuer_key_hash.trim()),
    ) else {
        return false;
    };
    if name_hash != want_name {
        return false;
    }
    intermediates
        .iter()
        .map(|c| c.as_ref())
        .chain(roots.iter().map(|c| c.as_ref()))
        .filter_map(|der| {
            x509_parser::parse_x509_certificate(der)
                .ok()
                .map(|(_, c)| c)
        })
        .any(|ca| {
            ca.subject().as_raw() == issuer_name
                && digest(
                    &expected.hash_algorithm,
                    &ca.public_key().subject_public_key.data,
                )
                .is_some_and(|key| key == want_key)
        })
}

/// The OCSP query for `leaf` issued by `issuer`: SHA-256 CertID and the leaf's OCSP URL.
pub fn query_for(leaf: &[u8], issuer: &[u8]) -> Option<OcspQuery> {
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let (_, issuer) = x509_parser::parse_x509_certificate(issuer).ok()?;
    let url = leaf
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityInfoAccess(aia) => {
                aia.accessdescs.iter().find_map(|d| {
                    let ocsp = d.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1";
                    match &d.access_location {
                        x509_parser::extensions::GeneralName::URI(uri) if ocsp => {
                            Some(uri.to_string())
                        }
                        _ => None,
                    }
                })
            }
            _ => None,
        })?;
    Some(OcspQuery {
        hash_algorithm: "SHA256".into(),
        issuer_name_hash: hex::encode(Sha256::digest(issuer.subject().as_raw())),
        issuer_key_hash: hex::encode(Sha256::digest(&issuer.public_key().subject_public_key.data)),
        serial_number: hex::encode(leaf.raw_serial()),
        responder_url: url,
    })
}

impl PlugAndCharge {
    /// The status of one certificate from its responder, checked as the module says.
    async fn status_of(&self, query: &OcspQuery, issuer: Option<&CertificateDer<'_>>) -> Verdict {
        let der = match self.fetch_ocsp(query).await {
            Ok(der) => der,
            Err(reason) => {
                tracing::warn!(%reason, "contract certificate status unavailable");
                return Verdict::NoCertificateAvailable;
            }
        };
        match read_response(&der, query, self.contract_roots(), issuer) {
            Ok(Status::Good) => Verdict::Accepted,
            Ok(Status::Revoked) => Verdict::CertificateRevoked,
            Ok(Status::Unknown) => Verdict::NoCertificateAvailable,
            Err(OcspError::Signature) => Verdict::SignatureError,
            Err(e) => {
                tracing::warn!(error = %e, "contract certificate OCSP response not usable");
                Verdict::NoCertificateAvailable
            }
        }
    }

    /// The verdict on a contract certificate: from its chain (`certificate`, central
    /// validation) or from the station's hash data (local validation).
    pub async fn check_contract(
        &self,
        emaid: &str,
        certificate: Option<&str>,
        hashes: &[OcspQuery],
    ) -> Verdict {
        if let Some(pem) = certificate {
            let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
                .filter_map(Result::ok)
                .collect();
            let Some(leaf) = chain.first() else {
                return Verdict::CertChainError;
            };
            let anchors: Vec<_> = self
                .contract_roots()
                .iter()
                .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
                .collect();
            let Ok(ee) = webpki::EndEntityCert::try_from(leaf) else {
                return Verdict::CertChainError;
            };
            let path = ee.verify_for_usage(
                CHAIN_ALGORITHMS,
                &anchors,
                &chain[1..],
                now(),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            );
            let issuer: CertificateDer<'static> = match &path {
                Ok(path) => match path.intermediate_certificates().next() {
                    Some(cert) => CertificateDer::from(cert.der().to_vec()),
                    None => {
                        let anchor = path.anchor();
                        match self.contract_roots().iter().find(|root| {
                            webpki::anchor_from_trusted_cert(root)
                                .is_ok_and(|a| a.subject.as_ref() == anchor.subject.as_ref())
                        }) {
                            Some(root) => root.clone(),
                            None => return Verdict::CertChainError,
                        }
                    }
                },
                Err(webpki::Error::CertExpired { .. }) => return Verdict::CertificateExpired,
                Err(e) => {
                    tracing::warn!(error = %e, "contract certificate chain refused");
                    return Verdict::CertChainError;
                }
            };
            // the contract is the eMAID's own (its subject CN, dashes ignored)
            let normalise = |s: &str| s.replace('-', "").to_ascii_uppercase();
            let holder = x509_parser::parse_x509_certificate(leaf)
                .ok()
                .and_then(|(_, c)| {
                    c.subject()
                        .iter_common_name()
                        .next()
                        .and_then(|cn| cn.as_str().ok())
                        .map(normalise)
                });
            if holder.as_deref() != Some(normalise(emaid).as_str()) {
                tracing::warn!("contract certificate of another eMAID");
                return Verdict::CertChainError;
            }
            let Some(query) = query_for(leaf, &issuer) else {
                return Verdict::CertChainError;
            };
            return self.status_of(&query, Some(&issuer)).await;
        }
        for query in hashes {
            let verdict = self.status_of(query, None).await;
            if verdict != Verdict::Accepted {
                return verdict;
            }
        }
        Verdict::Accepted
    }
}
