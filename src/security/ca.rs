//! The CSMS certificate authority: it signs the certificates chargers ask for with
//! SignCertificate (OCPP 2.0.1 A02/A03, 1.6 security whitepaper), after checking the request.
//!
//! A CSR is signed only when its signature verifies, its key is RSA of at least 2048 bits or
//! ECDSA on P-256/P-384 (OCPP's key requirements), and its subject's common name is the
//! charger's own id: a charger can never obtain a certificate in another charger's name. The
//! certificate is a client certificate (`clientAuth`) valid for `validity_days`.

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::FromDer;

use super::tls::serial_hex;

/// Why a CSR was not signed; the message is what the charger and the operator are told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the CSR is not a PEM or DER PKCS#10 request")]
    Unparsable,
    #[error("the CSR's signature does not verify")]
    BadSignature,
    #[error("key not accepted: {0}")]
    WeakKey(String),
    #[error("the CSR's subject CN {found:?} is not the charger's id")]
    SubjectMismatch { found: Option<String> },
    #[error("the CSR cannot be signed: {0}")]
    Unsupported(String),
}

/// Why the CA itself cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CSMS CA: {0}")]
    Invalid(String),
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The charger's own TLS client certificate: CN must be the charger's id.
    ChargingStation,
    /// An ISO 15118 SECC certificate (the station is the TLS server towards the car): its CN
    /// is the SECC/EVSE id, which the CSMS cannot check against anything, so it is signed by a
    /// V2G CA that the chargers' TLS listener never trusts.
    V2g,
}

/// A certificate this CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pem: String,
    pub serial: String,
    pub subject: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// The CSMS CA: its certificate and signing key.
pub struct CsmsCa {
    issuer: Certificate,
    key: KeyPair,
    /// The CA certificate exactly as configured (what chargers and the TLS verifier trust).
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for CsmsCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsmsCa").finish_non_exhaustive()
    }
}

impl CsmsCa {
    /// The CA from its PEM certificate and PEM (PKCS#8) key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| CaError::Invalid(format!("the CA key is not usable: {e}")))?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)
            .map_err(|e| CaError::Invalid(format!("the CA certificate is not usable: {e}")))?;
        let cert_der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| CaError::Invalid("no certificate in the CA file".into()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| CaError::Invalid(format!("the CA certificate does not parse: {e}")))?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(CaError::Invalid(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        // the issuer as rcgen needs it: same name and key as the configured certificate
        let issuer = params
            .self_signed(&key)
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        Ok(Self {
            issuer,
            key,
            cert_pem: cert_pem.to_string(),
            cert_der,
        })
    }

    /// A new CA (ECDSA P-256, ten years) named after `organization`; for development, where no
    /// CA is configured.
    pub fn generate(organization: &str) -> Result<(String, String), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{organization} CSMS CA"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Invalid(e.to_string()))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn certificate_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Checks a charger's CSR (PEM, or base64 DER as some 1.6 chargers send it) and signs it.
    pub fn sign_csr(
        &self,
        csr: &str,
        charger_id: &str,
        validity_days: u32,
    ) -> Result<Issued, CsrError> {
        self.sign_for(csr, charger_id, validity_days, Purpose::ChargingStation)
    }

    /// `sign_csr` for a certificate of `purpose`.
    pub fn sign_for(
        &self,
        csr: &str,
        charger_id: &str,
        validity_days: u32,
        purpose: Purpose,
    ) -> Result<Issued, CsrError> {
        let der = csr_der(csr)?;
        let common_name = check_csr(&der, charger_id, purpose)?;
        let mut request = CertificateSigningRequestParams::from_der(&der.as_slice().into())
            .map_err(|e| match e {
                rcgen::Error::RingUnspecified => CsrError::BadSignature,
                other => CsrError::Unsupported(other.to_string()),
            })?;
        let now = Utc::now();
        let not_before = now - Duration::minutes(5);
        let not_after = now + Duration::days(i64::from(validity_days));
        let params = &mut request.params;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![match purpose {
            Purpose::ChargingStation => ExtendedKeyUsagePurpose::ClientAuth,
            Purpose::V2g => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.subject_alt_names.clear();
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = to_offset(not_before);
        params.not_after = to_offset(not_after);
        let subject = format!("CN={common_name}");
        let cert = request
            .signed_by(&self.issuer, &self.key)
            .map_err(|e| CsrError::Unsupported(e.to_string()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der())
            .map_err(|e| CsrError::Unsupported(e.to_string()))?;
        Ok(Issued {
            pem: cert.pem(),
            serial: serial_hex(parsed.raw_serial()),
            subject,
            not_before: trunc(not_before),
            not_after: trunc(not_after),
        })
    }
}

fn trunc(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

fn to_offset(at: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// 16 random bytes, positive.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// The DER of a CSR sent as PEM, or as bare base64 DER.
fn csr_der(csr: &str) -> Result<Vec<u8>, CsrError> {
    let trimmed = csr.trim();
    if trimmed.len() > 16 * 1024 {
        return Err(CsrError::Unparsable);
    }
    if trimmed.starts_with("-----BEGIN") {
        let mut reader = trimmed.as_bytes();
        return match rustls_pemfile::read_one(&mut reader) {
            Ok(Some(rustls_pemfile::Item::Csr(der))) => Ok(der.to_vec()),
            _ => Err(CsrError::Unparsable),
        };
    }
    use base64::Engine;
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| CsrError::Unparsable)
}

const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";

/// Signature, key and subject of a CSR, as OCPP requires them; the subject's CN.
fn check_csr(der: &[u8], charger_id: &str, purpose: Purpose) -> Result<String, CsrError> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::public_key::PublicKey;
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|_| CsrError::Unparsable)?;
    if !rest.is_empty() {
        return Err(CsrError::Unparsable);
    }
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    let info = &csr.certification_request_info;
    let signature_alg = csr.signature_algorithm.algorithm.to_id_string();
    match info.subject_pki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if bits < 2048 {
                return Err(CsrError::WeakKey(format!(
                    "RSA keys need at least 2048 bits, this one has {bits}"
                )));
            }
        }
        Ok(PublicKey::EC(_)) => {
            let curve = info
                .subject_pki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            match (curve.as_str(), signature_alg.as_str()) {
                (P256, ECDSA_SHA256) | (P384, ECDSA_SHA384) => {}
                (P256 | P384, _) => {
                    return Err(CsrError::Unsupported(
                        "sign a P-256 request with ECDSA-SHA256 and a P-384 one with ECDSA-SHA384"
                            .into(),
                    ))
                }
                _ => {
                    return Err(CsrError::WeakKey(
                        "elliptic-curve keys must be on P-256 or P-384".into(),
                    ))
                }
            }
        }
        Ok(_) | Err(_) => {
            return Err(CsrError::WeakKey(
                "only RSA (2048 bits or more) and ECDSA (P-256, P-384) keys are accepted".into(),
            ))
        }
    }
    let found = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let common_names = info.subject.iter_common_name().count();
    let matches = match purpose {
        Purpose::ChargingStation => found.as_deref() == Some(charger_id),
        Purpose::V2g => found.as_ref().is_some_and(|cn| !cn.is_empty()),
    };
    match found {
        Some(cn) if matches && common_names == 1 => Ok(cn),
        found => Err(CsrError::SubjectMismatch { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr_for(cn: &str, key: &KeyPair) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme CPO");
        params
            .serialize_request(key)
            .map(|csr| csr.pem().unwrap_or_default())
            .unwrap_or_default()
    }

    fn ca() -> CsmsCa {
        let (cert, key) = CsmsCa::generate("Test").unwrap_or_default_pair();
        CsmsCa::from_pem(&cert, &key).unwrap_or_else(|e| panic!("{e}"))
    }

    trait OrDefaultPair {
        fn unwrap_or_default_pair(self) -> (String, String);
    }
    impl OrDefaultPair for Result<(String, String), CaError> {
        fn unwrap_or_default_pair(self) -> (String, String) {
            self.unwrap_or_else(|e| panic!("{e}"))
        }
    }

    #[test]
    fn a_csr_in_the_chargers_name_is_signed_as_a_client_certificate() {
        let ca = ca();
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"));
        let issued = ca
            .sign_csr(&csr_for("CP-1", &key), "CP-1", 365)
            .unwrap_or_else(|e| panic!("{e}"));
        let der = rustls_pemfile::certs(&mut issued.pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no certificate"));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok()),
            Some("CP-1")
        );
        assert_eq!(cert.issuer().to_string(), "CN=Test CSMS CA, O=Test");
        assert_eq!(cert.public_key().raw, key.public_key_der().as_slice());
        assert_eq!(serial_hex(cert.raw_serial()), issued.serial);
        let days = (issued.not_after - issued.not_before).num_days();
        assert!((365..=366).contains(&days), "{days}");
    }

    #[test]
    fn a_csr_in_another_name_or_with_a_weak_key_is_refused() {
        let ca = ca();
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ca.sign_csr(&csr_for("CP-2", &key), "CP-1", 365).err(),
            Some(CsrError::SubjectMismatch {
                found: Some("CP-2".into())
            })
        );
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            ca.sign_csr(&csr_for("CP-1", &ed), "CP-1", 365),
            Err(CsrError::WeakKey(_))
        ));
        assert_eq!(
            ca.sign_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
                "CP-1",
                365
            )
            .err(),
            Some(CsrError::Unparsable)
        );
    }

    #[test]
    fn a_v2g_csr_keeps_its_own_common_name_and_is_a_server_certificate() {
        let ca = ca();
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"));
        let issued = ca
            .sign_for(&csr_for("DE*CGR*E0001", &key), "CP-1", 365, Purpose::V2g)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(issued.subject, "CN=DE*CGR*E0001");
        let der = rustls_pemfile::certs(&mut issued.pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no certificate"));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap_or_else(|e| panic!("{e}"));
        let eku = cert
            .extended_key_usage()
            .ok()
            .flatten()
            .map(|e| (e.value.server_auth, e.value.client_auth));
        assert_eq!(eku, Some((true, false)));
        // a charging-station certificate in that name is still refused
        assert!(matches!(
            ca.sign_csr(&csr_for("DE*CGR*E0001", &key), "CP-1", 365),
            Err(CsrError::SubjectMismatch { .. })
        ));
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let ca = ca();
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"));
        let pem = csr_for("CP-1", &key);
        let mut der = csr_der(&pem).unwrap_or_else(|e| panic!("{e}"));
        // flip a bit of the organisation name, inside the signed part
        let at = der
            .windows(8)
            .position(|w| w == b"Acme CPO")
            .unwrap_or_else(|| panic!("no organisation in the CSR"));
        der[at] ^= 0x01;
        use base64::Engine;
        let tampered = base64::engine::general_purpose::STANDARD.encode(&der);
        assert_eq!(
            ca.sign_csr(&tampered, "CP-1", 365).err(),
            Some(CsrError::BadSignature)
        );
    }
}
