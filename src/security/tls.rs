//! The chargers' TLS listener (OCPP security profiles 2 and 3), built on rustls.
//!
//! - TLS 1.2 and 1.3 only. The TLS 1.2 suites are the ECDHE AES-GCM ones OCPP 2.0.1 requires
//!   (`TLS_ECDHE_{ECDSA,RSA}_WITH_AES_{128,256}_GCM_SHA{256,384}`); 1.3 offers its standard
//!   suites. The 1.6 whitepaper's non-ECDHE `TLS_RSA_*` suites are not offered: rustls has no
//!   static-RSA key exchange (it has no forward secrecy).
//! - The server certificate is served through a resolver whose key can be swapped: `reload`
//!   reads the files again (on SIGHUP or when their modification time changes), new handshakes
//!   get the new certificate, existing connections keep theirs.
//! - Client certificates (profile 3) are asked for but not required (profile 2 chargers have
//!   none). A presented certificate must chain to `OCPP_CLIENT_CA` or to the CSMS CA that signs
//!   the chargers' certificates (SignCertificate), be within its validity, and not be revoked;
//!   anything else fails the TLS handshake. Whether its subject CN is the charger's id is
//!   checked at the WebSocket handshake, where the id is known (`TlsPeer`).

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use chrono::{DateTime, Utc};
use prometheus::IntCounterVec;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// Why the TLS material could not be used; one line each.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where the listener's material comes from (`OCPP_TLS_CERT`, `OCPP_TLS_KEY`, `OCPP_CLIENT_CA`).
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// What the WebSocket handshake learns about a connection that came over the TLS listener.
#[derive(Debug, Clone)]
pub struct TlsPeer {
    /// The client certificate, verified during the TLS handshake (profile 3), if one was sent.
    pub certificate: Option<PeerCertificate>,
}

/// The parts of a verified client certificate the server decides on.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    pub common_name: Option<String>,
    /// Serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    pub not_after: DateTime<Utc>,
}

impl PeerCertificate {
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        Some(Self {
            common_name,
            serial: serial_hex(cert.raw_serial()),
            not_after: DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)?,
        })
    }
}

/// A certificate serial as this server stores it: lower-case hex, leading zero bytes dropped.
pub fn serial_hex(raw: &[u8]) -> String {
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let trimmed = &raw[first..];
    if trimmed.is_empty() {
        "00".into()
    } else {
        hex::encode(trimmed)
    }
}

/// The TLS peer of an accepted connection (for `HttpServer::on_connect`): `Some` for a
/// connection of the TLS listener, with its verified client certificate if it sent one.
pub fn peer_of(conn: &dyn Any) -> Option<TlsPeer> {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let tls = conn.downcast_ref::<Tls>()?;
    let (_, session) = tls.get_ref();
    let certificate = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|der| PeerCertificate::parse(der));
    Some(TlsPeer { certificate })
}

/// The crypto provider with the suites OCPP allows (see the module comment).
fn provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite as s;
    CryptoProvider {
        cipher_suites: vec![
            s::TLS13_AES_256_GCM_SHA384,
            s::TLS13_AES_128_GCM_SHA256,
            s::TLS13_CHACHA20_POLY1305_SHA256,
            s::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            s::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            s::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            s::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Every certificate in a PEM file.
pub fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: path.display().to_string(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.display().to_string(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn pem_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| TlsError::File {
            path: path.display().to_string(),
            reason: format!("not a PEM private key: {e}"),
        })?
        .ok_or_else(|| TlsError::File {
            path: path.display().to_string(),
            reason: "no private key in the file".into(),
        })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The swappable state the rustls callbacks read on every handshake.
struct Shared {
    provider: Arc<CryptoProvider>,
    server_key: ArcSwap<CertifiedKey>,
    /// The verifier of client certificates; `None` while no CA is trusted (no profile 3).
    clients: ArcSwapOption<Arc<dyn ClientCertVerifier>>,
    /// Serials of revoked charger certificates.
    revoked: ArcSwap<HashSet<String>>,
    /// Refused client certificates by reason (`chain`, `revoked`).
    refused: Option<IntCounterVec>,
    /// Where refusals are reported to be recorded as security events (bounded; a flood of
    /// bad certificates drops reports rather than block handshakes).
    reports: Mutex<Option<tokio::sync::mpsc::Sender<Refusal>>>,
}

/// A client certificate refused during a TLS handshake.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `chain` (untrusted, expired, malformed), `revoked` or `not_accepted`
    pub reason: &'static str,
    /// The certificate's subject CN (the charger it claims to be), when readable.
    pub common_name: Option<String>,
    pub serial: Option<String>,
    pub detail: String,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChargerTls").finish_non_exhaustive()
    }
}

/// The TLS listener's material and the rules for client certificates; cheap to share.
#[derive(Clone)]
pub struct ChargerTls {
    shared: Arc<Shared>,
    paths: TlsPaths,
    /// CA certificates trusted besides `OCPP_CLIENT_CA` (the CSMS CA).
    extra_roots: Arc<ArcSwap<Vec<CertificateDer<'static>>>>,
    /// Modification times of the files when they were last read.
    stamps: Arc<Mutex<Vec<Option<SystemTime>>>>,
}

impl ChargerTls {
    /// Reads the certificate, key and client CA files; fails on anything unusable.
    pub fn load(paths: TlsPaths, refused: Option<IntCounterVec>) -> Result<Self, TlsError> {
        let provider = Arc::new(provider());
        let server_key = certified_key(&provider, &paths)?;
        let tls = Self {
            shared: Arc::new(Shared {
                provider,
                server_key: ArcSwap::from_pointee(server_key),
                clients: ArcSwapOption::empty(),
                revoked: ArcSwap::default(),
                refused,
                reports: Mutex::new(None),
            }),
            stamps: Arc::new(Mutex::new(Self::stamps_of(&paths))),
            paths,
            extra_roots: Arc::default(),
        };
        tls.rebuild_clients()?;
        Ok(tls)
    }

    fn stamps_of(paths: &TlsPaths) -> Vec<Option<SystemTime>> {
        let mut files = vec![paths.cert.as_path(), paths.key.as_path()];
        files.extend(paths.client_ca.as_deref());
        files.into_iter().map(modified).collect()
    }

    /// The rustls configuration of the listener (its resolver and verifier read this value's
    /// current state on every handshake).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.shared.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(Arc::new(Verifier(self.shared.clone())))
            .with_cert_resolver(Arc::new(Resolver(self.shared.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // no session resumption: a resumed session would skip the client-certificate checks
        // (revocation, expiry, a CA removed by a reload); chargers reconnect rarely, so the
        // full handshake costs little
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }

    /// Reads every file again and swaps the new material in; on error the old stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = Self::stamps_of(&self.paths);
        let key = certified_key(&self.shared.provider, &self.paths)?;
        self.rebuild_clients()?;
        self.shared.server_key.store(Arc::new(key));
        if let Ok(mut old) = self.stamps.lock() {
            *old = stamps;
        }
        Ok(())
    }

    /// Reloads when a file's modification time changed since it was last read.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let changed = self
            .stamps
            .lock()
            .map(|old| *old != Self::stamps_of(&self.paths))
            .unwrap_or(true);
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }

    /// Trusts these CA certificates for client certificates besides `OCPP_CLIENT_CA` (the CSMS
    /// CA that signs chargers' certificates).
    pub fn trust_issuers(&self, roots: Vec<CertificateDer<'static>>) -> Result<(), TlsError> {
        self.extra_roots.store(Arc::new(roots));
        self.rebuild_clients()
    }

    /// Replaces the set of revoked certificate serials (lower-case hex).
    pub fn set_revoked(&self, serials: HashSet<String>) {
        self.shared.revoked.store(Arc::new(serials));
    }

    /// Whether the certificate with this serial is revoked (checked again at the WebSocket
    /// handshake, whatever the TLS layer did).
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.shared.revoked.load().contains(serial)
    }

    /// Reports refused client certificates to `sender` from now on.
    pub fn report_refusals(&self, sender: tokio::sync::mpsc::Sender<Refusal>) {
        if let Ok(mut reports) = self.shared.reports.lock() {
            *reports = Some(sender);
        }
    }

    /// Whether client certificates (profile 3) are accepted at all.
    pub fn client_certificates_enabled(&self) -> bool {
        self.shared.clients.load().is_some()
    }

    fn rebuild_clients(&self) -> Result<(), TlsError> {
        let mut roots = RootCertStore::empty();
        let mut configured = Vec::new();
        if let Some(path) = &self.paths.client_ca {
            configured = pem_certificates(path)?;
        }
        for cert in configured.iter().chain(self.extra_roots.load().iter()) {
            roots.add(cert.clone()).map_err(|e| {
                TlsError::Config(format!("a client CA certificate is not usable: {e}"))
            })?;
        }
        if roots.is_empty() {
            self.shared.clients.store(None);
            return Ok(());
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            self.shared.provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        self.shared.clients.store(Some(Arc::new(verifier)));
        Ok(())
    }

    /// Reloads on SIGHUP and whenever a file changes (checked every `every`), until `stop`.
    pub fn spawn_reloader(
        &self,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let forced = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => false,
                    Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                let result = if forced {
                    tls.reload().map(|()| true)
                } else {
                    tls.reload_if_changed()
                };
                match result {
                    Ok(true) => tracing::info!(
                        cert = %tls.paths.cert.display(),
                        "TLS certificate reloaded; new connections get it"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::error!(
                        error = %e,
                        "TLS certificate reload failed; the previous certificate stays in use"
                    ),
                }
            }
        })
    }
}

fn certified_key(provider: &CryptoProvider, paths: &TlsPaths) -> Result<CertifiedKey, TlsError> {
    let chain = pem_certificates(&paths.cert)?;
    let key = pem_key(&paths.key)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::File {
            path: paths.key.display().to_string(),
            reason: format!("unsupported private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::File {
        path: paths.key.display().to_string(),
        reason: format!("the key does not belong to the certificate: {e}"),
    })?;
    Ok(certified)
}

#[derive(Debug)]
struct Resolver(Arc<Shared>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.server_key.load_full())
    }
}

#[derive(Debug)]
struct Verifier(Arc<Shared>);

impl Verifier {
    fn refused(&self, reason: &'static str, end_entity: &[u8], detail: String) {
        if let Some(counter) = &self.0.refused {
            counter.with_label_values(&[reason]).inc();
        }
        let sender = self.0.reports.lock().ok().and_then(|r| r.clone());
        if let Some(sender) = sender {
            let parsed = PeerCertificate::parse(end_entity);
            let _ = sender.try_send(Refusal {
                reason,
                common_name: parsed.as_ref().and_then(|p| p.common_name.clone()),
                serial: parsed.map(|p| p.serial),
                detail,
            });
        }
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        self.0.clients.load().is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // no hints: the trusted CAs change at run time, and a charger sends the one
        // certificate it has anyway
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let Some(inner) = self.0.clients.load_full() else {
            self.refused(
                "not_accepted",
                end_entity,
                "client certificates are not accepted".into(),
            );
            return Err(rustls::Error::General(
                "client certificates are not accepted here".into(),
            ));
        };
        if let Err(e) = inner.verify_client_cert(end_entity, intermediates, now) {
            self.refused("chain", end_entity, e.to_string());
            tracing::warn!(error = %e, "a charger's client certificate was refused");
            return Err(e);
        }
        let serial = x509_parser::parse_x509_certificate(end_entity)
            .map(|(_, c)| serial_hex(c.raw_serial()))
            .map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
            })?;
        if self.0.revoked.load().contains(&serial) {
            self.refused("revoked", end_entity, "the certificate is revoked".into());
            tracing::warn!(%serial, "a revoked charger certificate was refused");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_leading_zero_bytes() {
        assert_eq!(serial_hex(&[0, 0x1f, 0xa0]), "1fa0");
        assert_eq!(serial_hex(&[0x80]), "80");
        assert_eq!(serial_hex(&[0, 0]), "00");
    }
}
