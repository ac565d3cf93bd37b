//! Chargers over TLS (OCPP security profiles 2 and 3) against real TLS sockets: the profile
//! each charger must use, certificates signed through SignCertificate/CertificateSigned from a
//! real CSR, refused certificates (another charger's, expired, foreign CA, revoked), a server
//! certificate reload, Basic password rotation and security events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

use crate::charger_client::{connect, connect_tls, handshake_status, ConnectError, TestCharger};
use crate::helpers::{spawn_app_with, TestApp, CHARGER_PASSWORD};

/// A certificate authority made for a test (the server's, or a foreign one).
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A server certificate for 127.0.0.1 and its key (PEM).
    fn server_cert(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "csms.test");
        params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate for `cn`, valid from `not_before` to `not_after` (days from now).
    fn client_cert(&self, cn: &str, not_before: i64, not_after: i64) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(not_before);
        params.not_after = now + time::Duration::days(not_after);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key)
    }
}

/// The files a TLS test server reads, in a directory of their own.
struct TlsFiles {
    dir: PathBuf,
    server_ca: TestCa,
    /// The CSMS CA (signs chargers' certificates), as the server loads it.
    csms_ca_pem: String,
    csms_ca_key_pem: String,
}

impl TlsFiles {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("chargegrid-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let server_ca = TestCa::new("Test server CA");
        let (cert, key) = server_ca.server_cert();
        std::fs::write(dir.join("server.pem"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key).unwrap();
        let (csms_ca_pem, csms_ca_key_pem) =
            chargegrid::security::ca::CsmsCa::generate("Test CPO").unwrap();
        std::fs::write(dir.join("csms-ca.pem"), &csms_ca_pem).unwrap();
        std::fs::write(dir.join("csms-ca.key"), &csms_ca_key_pem).unwrap();
        let (v2g_pem, v2g_key) = chargegrid::security::ca::CsmsCa::generate("Test V2G").unwrap();
        std::fs::write(dir.join("v2g-ca.pem"), v2g_pem).unwrap();
        std::fs::write(dir.join("v2g-ca.key"), v2g_key).unwrap();
        Self {
            dir,
            server_ca,
            csms_ca_pem,
            csms_ca_key_pem,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The CSMS CA as a signer (to make certificates the server would have signed).
    fn csms_ca(&self) -> TestCa {
        let key = KeyPair::from_pem(&self.csms_ca_key_pem).unwrap();
        let params = CertificateParams::from_ca_cert_pem(&self.csms_ca_pem).unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn spawn_tls(files: &TlsFiles) -> TestApp {
    spawn_app_with(|s| {
        s.ocpp.tls_bind = Some("127.0.0.1:0".into());
        s.ocpp.tls_cert = Some(files.path("server.pem"));
        s.ocpp.tls_key = Some(files.path("server.key"));
        s.ocpp.ca_cert = Some(files.path("csms-ca.pem"));
        s.ocpp.ca_key = Some(files.path("csms-ca.key"));
        s.ocpp.tls_reload_check_secs = 1;
        s.ocpp.v2g_ca_cert = Some(files.path("v2g-ca.pem"));
        s.ocpp.v2g_ca_key = Some(files.path("v2g-ca.key"));
    })
    .await
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A client configuration trusting `server_ca`, with a client certificate if given.
fn client_tls(
    server_ca: &rcgen::Certificate,
    client: Option<(&str, &KeyPair)>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((chain_pem, key)) => builder
            .with_client_auth_cert(
                pem_certs(chain_pem),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

async fn operator_setup(app: &TestApp, charger_id: &str, profile: i32) -> (String, String) {
    let admin = app.staff_token("ADMIN").await;
    let station = app.create_station("TLS station").await;
    let r = app
        .graphql(
            "mutation($i: RegisterChargerInput!) { registerCharger(input: $i) { id securityProfile } }",
            json!({ "i": { "chargerId": charger_id, "stationId": station.to_string(), "password": CHARGER_PASSWORD, "securityProfile": profile } }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        r["data"]["registerCharger"]["securityProfile"], profile,
        "{r}"
    );
    (admin, station.to_string())
}

/// The TLS handshake (or the WebSocket upgrade behind it) failed without an HTTP answer.
fn refused_at_tls(result: Result<TestCharger, ConnectError>) -> String {
    match result {
        Ok(_) => panic!("the connection was accepted"),
        Err(ConnectError::Status(code)) => {
            panic!("refused with HTTP {code}, not at the TLS handshake")
        }
        Err(ConnectError::Other(e)) => e,
    }
}

/// A CSR for `cn` made with a fresh P-256 key, as a charger makes one.
fn csr(cn: &str) -> (String, KeyPair) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Test CPO");
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (pem, key)
}

/// Sends SignCertificate and answers the CertificateSigned that follows; returns the chain.
async fn obtain_certificate(charger: &mut TestCharger, csr_pem: &str, v201: bool) -> String {
    let payload = if v201 {
        json!({ "csr": csr_pem, "certificateType": "ChargingStationCertificate" })
    } else {
        json!({ "csr": csr_pem })
    };
    let answer = charger.call("SignCertificate", payload).await.unwrap();
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let (id, action, payload) = charger.next_server_call().await;
    assert_eq!(action, "CertificateSigned");
    charger.reply(&id, json!({ "status": "Accepted" })).await;
    payload["certificateChain"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn a_profile_2_charger_connects_over_tls_with_its_password_and_is_refused_on_plain() {
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let tls_port = app.ctx.tls_port.get().copied().expect("TLS listener");
    operator_setup(&app, "TLS-P2", 2).await;
    let tls = client_tls(&files.server_ca.cert, None);

    // plain WebSocket: below its profile, refused before any password check
    let plain = connect(
        app.port,
        "TLS-P2",
        "ocpp1.6",
        Some(("TLS-P2", CHARGER_PASSWORD)),
    )
    .await;
    assert_eq!(handshake_status(plain), 403);
    // TLS with the wrong password, then with none
    let wrong = connect_tls(
        tls_port,
        "TLS-P2",
        "ocpp1.6",
        Some(("TLS-P2", "not-the-password-00")),
        tls.clone(),
    )
    .await;
    assert_eq!(handshake_status(wrong), 401);
    let none = connect_tls(tls_port, "TLS-P2", "ocpp1.6", None, tls.clone()).await;
    assert_eq!(handshake_status(none), 401);
    // TLS with its password: connected, and it works
    let mut charger = connect_tls(
        tls_port,
        "TLS-P2",
        "ocpp1.6",
        Some(("TLS-P2", CHARGER_PASSWORD)),
        tls.clone(),
    )
    .await
    .unwrap();
    assert_eq!(charger.boot().await["status"], "Accepted");
    // the wrong password was recorded too
    let wrong_password: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM security_events WHERE charger_id = 'TLS-P2' AND event_type = 'InvalidCredentials'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(wrong_password, 2, "the wrong and the missing password");
    // the refusal on the plain listener was recorded as a security event
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM security_events WHERE charger_id = 'TLS-P2' AND source = 'server'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(
        events.contains(&"SecurityProfileViolation".to_string()),
        "{events:?}"
    );
}

#[actix_web::test]
async fn a_trusted_proxy_that_terminated_tls_gives_profile_2_and_no_one_else_does() {
    use crate::charger_client::connect_with_headers;
    let https = [("X-Forwarded-Proto", "https")];
    // the proxy is trusted: its word that TLS was used counts
    let app = spawn_app_with(|s| s.http.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    operator_setup(&app, "PROXY-P2", 2).await;
    let basic = Some(("PROXY-P2", CHARGER_PASSWORD));
    let plain = connect(app.port, "PROXY-P2", "ocpp1.6", basic).await;
    assert_eq!(handshake_status(plain), 403);
    let proxied = connect_with_headers(app.port, "PROXY-P2", "ocpp1.6", basic, &https).await;
    assert_eq!(handshake_status(proxied), 101);
    // profile 3 needs the certificate itself, which no proxy header can stand for
    operator_setup(&app, "PROXY-P3", 3).await;
    let p3 = connect_with_headers(
        app.port,
        "PROXY-P3",
        "ocpp1.6",
        Some(("PROXY-P3", CHARGER_PASSWORD)),
        &https,
    )
    .await;
    assert_eq!(handshake_status(p3), 403);
    // anyone else writing the header is not believed
    let app = spawn_app_with(|_| {}).await;
    operator_setup(&app, "PROXY-X", 2).await;
    let spoofed = connect_with_headers(
        app.port,
        "PROXY-X",
        "ocpp1.6",
        Some(("PROXY-X", CHARGER_PASSWORD)),
        &https,
    )
    .await;
    assert_eq!(handshake_status(spoofed), 403);
}

#[actix_web::test]
async fn a_profile_3_charger_gets_its_certificate_through_sign_certificate_then_connects_with_it() {
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let tls_port = app.ctx.tls_port.get().copied().expect("TLS listener");
    let (admin, _) = operator_setup(&app, "TLS-P3", 2).await;
    let tls = client_tls(&files.server_ca.cert, None);
    let mut charger = connect_tls(
        tls_port,
        "TLS-P3",
        "ocpp1.6",
        Some(("TLS-P3", CHARGER_PASSWORD)),
        tls,
    )
    .await
    .unwrap();
    charger.boot().await;

    // a CSR in another charger's name is rejected, and nothing is sent back
    let (foreign_csr, _) = csr("TLS-OTHER");
    let rejected = charger
        .call("SignCertificate", json!({ "csr": foreign_csr }))
        .await
        .unwrap();
    assert_eq!(rejected["status"], "Rejected");
    // its own CSR is signed, and the certificate arrives with CertificateSigned
    let (own_csr, key) = csr("TLS-P3");
    let chain = obtain_certificate(&mut charger, &own_csr, false).await;
    assert_eq!(pem_certs(&chain).len(), 2, "certificate and CSMS CA");

    // the operator raises the charger to profile 3: ChangeConfiguration SecurityProfile
    let raise = app.graphql(
        "mutation($c: ID!) { raiseChargerSecurityProfile(input: {chargerId: $c, profile: 3}) { securityProfile pendingSecurityProfile certificates { serial notAfter } } }",
        json!({ "c": "TLS-P3" }),
        Some(&admin),
    );
    let answer = async {
        let (id, action, payload) = charger.next_server_call().await;
        assert_eq!(action, "ChangeConfiguration");
        assert_eq!(payload, json!({ "key": "SecurityProfile", "value": "3" }));
        charger.reply(&id, json!({ "status": "Accepted" })).await;
        let (id, action, payload) = charger.next_server_call().await;
        assert_eq!(
            (action.as_str(), payload),
            ("Reset", json!({ "type": "Hard" }))
        );
        charger.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (raised, ()) = tokio::join!(raise, answer);
    let view = &raised["data"]["raiseChargerSecurityProfile"];
    assert_eq!(view["securityProfile"], 2, "{raised}");
    assert_eq!(view["pendingSecurityProfile"], 3);
    assert_eq!(view["certificates"].as_array().map(Vec::len), Some(1));

    // it reconnects with its certificate, without a password: profile 3, now its minimum
    drop(charger);
    let with_cert = client_tls(&files.server_ca.cert, Some((&chain, &key)));
    let mut charger = connect_tls(tls_port, "TLS-P3", "ocpp1.6", None, with_cert)
        .await
        .unwrap();
    assert_eq!(charger.boot().await["status"], "Accepted");
    let profile: i16 =
        sqlx::query_scalar("SELECT security_profile FROM chargers WHERE id = 'TLS-P3'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(profile, 3);
    // and TLS with only the password is now below its profile
    let tls = client_tls(&files.server_ca.cert, None);
    let below = connect_tls(
        tls_port,
        "TLS-P3",
        "ocpp1.6",
        Some(("TLS-P3", CHARGER_PASSWORD)),
        tls,
    )
    .await;
    assert_eq!(handshake_status(below), 403);
}

#[actix_web::test]
async fn a_2_0_1_station_gets_its_certificate_signed() {
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let tls_port = app.ctx.tls_port.get().copied().expect("TLS listener");
    operator_setup(&app, "TLS-201", 2).await;
    let tls = client_tls(&files.server_ca.cert, None);
    let mut station = connect_tls(
        tls_port,
        "TLS-201",
        "ocpp2.0.1",
        Some(("TLS-201", CHARGER_PASSWORD)),
        tls,
    )
    .await
    .unwrap();
    station.boot201().await;
    let (own_csr, key) = csr("TLS-201");
    let chain = obtain_certificate(&mut station, &own_csr, true).await;
    // the certificate works for a profile 3 connection at once
    let with_cert = client_tls(&files.server_ca.cert, Some((&chain, &key)));
    let mut again = connect_tls(tls_port, "TLS-201", "ocpp2.0.1", None, with_cert)
        .await
        .unwrap();
    assert_eq!(again.boot201().await["status"], "Accepted");
    // a weak or garbled CSR is rejected with a reason
    let rejected = again
        .call("SignCertificate", json!({ "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----" }))
        .await
        .unwrap();
    assert_eq!(rejected["status"], "Rejected");
    assert_eq!(rejected["statusInfo"]["reasonCode"], "InvalidCSR");
}

#[actix_web::test]
async fn certificates_of_another_charger_expired_foreign_or_revoked_are_refused() {
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let tls_port = app.ctx.tls_port.get().copied().expect("TLS listener");
    let (admin, _) = operator_setup(&app, "TLS-A", 3).await;
    let csms = files.csms_ca();
    let csms_pem = files.csms_ca_pem.clone();
    let server_ca = &files.server_ca.cert;
    let try_with = |chain: String, key: KeyPair| {
        let config = client_tls(server_ca, Some((&chain, &key)));
        async move { connect_tls(tls_port, "TLS-A", "ocpp1.6", None, config).await }
    };

    // a valid certificate of its own: accepted (the control)
    let (own, own_key) = csms.client_cert("TLS-A", -1, 30);
    let ok = try_with(format!("{own}{csms_pem}"), own_key).await;
    assert_eq!(handshake_status(ok), 101);
    // another charger's certificate, from the same CA: refused at the WebSocket handshake
    let (other, other_key) = csms.client_cert("TLS-B", -1, 30);
    let result = try_with(format!("{other}{csms_pem}"), other_key).await;
    assert_eq!(handshake_status(result), 403);
    // expired
    let (expired, expired_key) = csms.client_cert("TLS-A", -30, -1);
    let e = refused_at_tls(try_with(format!("{expired}{csms_pem}"), expired_key).await);
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // from a foreign CA
    let foreign = TestCa::new("Foreign CA");
    let (alien, alien_key) = foreign.client_cert("TLS-A", -1, 30);
    refused_at_tls(try_with(alien, alien_key).await);
    // no certificate at all: a profile 3 charger gets 403 (below its profile)
    let bare = connect_tls(
        tls_port,
        "TLS-A",
        "ocpp1.6",
        Some(("TLS-A", CHARGER_PASSWORD)),
        client_tls(server_ca, None),
    )
    .await;
    assert_eq!(handshake_status(bare), 403);

    // revoked: a certificate the CSMS signed, then revoked by an ADMIN
    let (signed_csr, signed_key) = csr("TLS-A");
    let (fresh, fresh_key) = csms.client_cert("TLS-A", -1, 30);
    let mut charger = try_with(format!("{fresh}{csms_pem}"), fresh_key)
        .await
        .unwrap();
    charger.boot().await;
    let chain = obtain_certificate(&mut charger, &signed_csr, false).await;
    let serial: String = sqlx::query_scalar(
        "SELECT serial FROM charger_certificates WHERE charger_id = 'TLS-A' ORDER BY issued_at DESC LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    // one client configuration for before and after: a client that could resume its TLS
    // session would skip the certificate checks, so the server offers no resumption
    let same_client = client_tls(server_ca, Some((&chain, &signed_key)));
    let before = connect_tls(tls_port, "TLS-A", "ocpp1.6", None, same_client.clone()).await;
    assert_eq!(
        handshake_status(before),
        101,
        "the signed certificate works before revocation"
    );
    let revoked = app
        .graphql(
            "mutation($c: ID!, $s: String!) { revokeChargerCertificate(chargerId: $c, serial: $s, reason: \"key compromised\") { serial revokedAt revokedReason } }",
            json!({ "c": "TLS-A", "s": serial }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        revoked["data"]["revokeChargerCertificate"]["revokedReason"], "key compromised",
        "{revoked}"
    );
    let e = refused_at_tls(try_with(chain, signed_key).await);
    assert!(e.to_lowercase().contains("revoked"), "{e}");
    let resumed = connect_tls(tls_port, "TLS-A", "ocpp1.6", None, same_client).await;
    assert!(
        resumed.is_err(),
        "the client that connected before the revocation is refused too"
    );
    let refused = app
        .ctx
        .metrics
        .tls_client_certificates_refused_total
        .with_label_values(&["revoked"])
        .get();
    assert!(refused >= 1);
    // an OPERATOR cannot revoke (ADMIN only)
    let operator = app.staff_token("OPERATOR").await;
    let denied = app
        .graphql(
            "mutation($c: ID!, $s: String!) { revokeChargerCertificate(chargerId: $c, serial: $s) { serial } }",
            json!({ "c": "TLS-A", "s": serial }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        crate::helpers::error_code(&denied).as_deref(),
        Some("FORBIDDEN")
    );
    // each certificate refused at the TLS handshake (expired, foreign, revoked) became a
    // security event of the charger it claimed to be
    let recorded = app
        .wait_until(Duration::from_secs(10), || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM security_events WHERE charger_id = 'TLS-A' AND event_type = 'InvalidChargingStationCertificate' AND critical",
            )
            .fetch_one(&app.db)
            .await
            .unwrap()
                >= 3
        })
        .await;
    assert!(recorded, "refused client certificates are security events");
    // the mismatch was recorded as a critical server event, and published
    let critical: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM security_events WHERE charger_id = 'TLS-A' AND event_type = 'CertificateOfAnotherCharger' AND critical",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(critical, 1);
    let published: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'SECURITY_EVENT'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(published >= 1);
}

fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[actix_web::test]
async fn a_server_certificate_reload_keeps_existing_connections_and_serves_the_new_one() {
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let tls_port = app.ctx.tls_port.get().copied().expect("TLS listener");
    operator_setup(&app, "TLS-R", 2).await;
    let old_tls = client_tls(&files.server_ca.cert, None);
    let mut old = connect_tls(
        tls_port,
        "TLS-R",
        "ocpp1.6",
        Some(("TLS-R", CHARGER_PASSWORD)),
        old_tls.clone(),
    )
    .await
    .unwrap();
    old.boot().await;

    // the operator rotates the server certificate to one from a new CA
    let new_ca = TestCa::new("Rotated server CA");
    let (cert, key) = new_ca.server_cert();
    write_atomically(&files.dir.join("server.key"), &key);
    write_atomically(&files.dir.join("server.pem"), &cert);
    let new_tls = client_tls(&new_ca.cert, None);
    let served = app
        .wait_until(Duration::from_secs(15), || {
            let tls = new_tls.clone();
            async move {
                // a client trusting only the new CA gets through once the reload happened
                connect_tls(tls_port, "TLS-R2", "ocpp1.6", None, tls)
                    .await
                    .err()
                    .is_some_and(|e| matches!(e, ConnectError::Status(404)))
            }
        })
        .await;
    assert!(served, "the new certificate was never served");
    // clients trusting only the old CA no longer get through (a fresh client: a remembered
    // TLS session would resume without looking at the certificate)
    let stale_tls = client_tls(&files.server_ca.cert, None);
    let stale = connect_tls(
        tls_port,
        "TLS-R",
        "ocpp1.6",
        Some(("TLS-R", CHARGER_PASSWORD)),
        stale_tls,
    )
    .await;
    refused_at_tls(stale);
    // the connection opened before the reload still works
    let beat = old.call("Heartbeat", json!({})).await.unwrap();
    assert!(beat["currentTime"].is_string());
}

#[actix_web::test]
async fn a_rotated_password_is_accepted_once_the_charger_uses_it_and_then_only_it() {
    let app = spawn_app_with(|_| {}).await;
    let (admin, _) = operator_setup(&app, "ROT-1", 1).await;
    let mut charger =
        crate::charger_client::connect16(app.port, "ROT-1", Some(("ROT-1", CHARGER_PASSWORD)))
            .await;
    charger.boot().await;
    let rotate = app.graphql(
        "mutation($c: ID!) { rotateChargerPassword(chargerId: $c) { chargerId password } }",
        json!({ "c": "ROT-1" }),
        Some(&admin),
    );
    let answer = async {
        let (id, action, payload) = charger.next_server_call().await;
        assert_eq!(action, "ChangeConfiguration");
        assert_eq!(payload["key"], "AuthorizationKey");
        charger.reply(&id, json!({ "status": "Accepted" })).await;
        payload["value"].as_str().unwrap().to_string()
    };
    let (rotated, sent): (Value, String) = tokio::join!(rotate, answer);
    let password = rotated["data"]["rotateChargerPassword"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    // TC_073: AuthorizationKey is the password hex-encoded (16 to 20 bytes)
    assert_eq!(
        sent,
        hex::encode(&password),
        "the charger got the password the operator saw"
    );
    assert_eq!(password.len(), 20);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    // until the charger uses the new password, the old one still works (it may not have
    // switched yet)...
    let old = connect(
        app.port,
        "ROT-1",
        "ocpp1.6",
        Some(("ROT-1", CHARGER_PASSWORD)),
    )
    .await;
    assert_eq!(handshake_status(old), 101);
    // ...the new one works (TC_073: the charger reconnects with it)...
    let new = connect(app.port, "ROT-1", "ocpp1.6", Some(("ROT-1", &password))).await;
    assert_eq!(handshake_status(new), 101);
    // ...and from then on only the new one
    let old = connect(
        app.port,
        "ROT-1",
        "ocpp1.6",
        Some(("ROT-1", CHARGER_PASSWORD)),
    )
    .await;
    assert_eq!(handshake_status(old), 401);
    let new = connect(app.port, "ROT-1", "ocpp1.6", Some(("ROT-1", &password))).await;
    assert_eq!(handshake_status(new), 101);
    // the password is never stored in the clear, nor in the audit log
    let audit: Vec<String> = sqlx::query_scalar(
        "SELECT details::text FROM audit_log WHERE action = 'rotateChargerPassword'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(audit.len(), 1);
    assert!(!audit[0].contains(&password));
}

#[actix_web::test]
async fn a_refused_password_change_keeps_the_old_password_alone() {
    let app = spawn_app_with(|_| {}).await;
    let (admin, _) = operator_setup(&app, "ROT-2", 1).await;
    let mut charger =
        crate::charger_client::connect201(app.port, "ROT-2", Some(("ROT-2", CHARGER_PASSWORD)))
            .await;
    charger.boot201().await;
    let rotate = app.graphql(
        "mutation($c: ID!) { rotateChargerPassword(chargerId: $c) { password } }",
        json!({ "c": "ROT-2" }),
        Some(&admin),
    );
    let answer = async {
        let (id, action, payload) = charger.next_server_call().await;
        assert_eq!(action, "SetVariables");
        assert_eq!(
            payload["setVariableData"][0]["variable"]["name"],
            "BasicAuthPassword"
        );
        charger
            .reply(&id, json!({ "setVariableResult": [{ "attributeStatus": "Rejected", "component": { "name": "SecurityCtrlr" }, "variable": { "name": "BasicAuthPassword" } }] }))
            .await;
        payload["setVariableData"][0]["attributeValue"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (rotated, sent): (Value, String) = tokio::join!(rotate, answer);
    assert_eq!(
        crate::helpers::error_code(&rotated).as_deref(),
        Some("CHARGER_REJECTED"),
        "{rotated}"
    );
    let refused = connect(app.port, "ROT-2", "ocpp2.0.1", Some(("ROT-2", &sent))).await;
    assert_eq!(handshake_status(refused), 401);
    let old = connect(
        app.port,
        "ROT-2",
        "ocpp2.0.1",
        Some(("ROT-2", CHARGER_PASSWORD)),
    )
    .await;
    assert_eq!(handshake_status(old), 101);
}

#[actix_web::test]
async fn security_events_are_stored_and_the_critical_ones_published() {
    let app = spawn_app_with(|_| {}).await;
    let (admin, _) = operator_setup(&app, "SEC-201", 1).await;
    let mut station =
        crate::charger_client::connect201(app.port, "SEC-201", Some(("SEC-201", CHARGER_PASSWORD)))
            .await;
    station.boot201().await;
    station
        .call("SecurityEventNotification", json!({ "type": "TamperDetectionActivated", "timestamp": "2026-12-03T10:00:00Z", "techInfo": "lid opened" }))
        .await
        .unwrap();
    station
        .call(
            "SecurityEventNotification",
            json!({ "type": "InvalidMessages", "timestamp": "2026-12-03T10:01:00Z" }),
        )
        .await
        .unwrap();
    operator_setup(&app, "SEC-16", 1).await;
    let mut charger =
        crate::charger_client::connect16(app.port, "SEC-16", Some(("SEC-16", CHARGER_PASSWORD)))
            .await;
    charger.boot().await;
    charger
        .call(
            "SecurityEventNotification",
            json!({ "type": "FirmwareUpdated", "timestamp": "2026-12-03T10:02:00Z" }),
        )
        .await
        .unwrap();
    // a malformed one is refused with a CallError and the connection stays
    let bad = charger
        .call(
            "SecurityEventNotification",
            json!({ "type": "FirmwareUpdated" }),
        )
        .await
        .unwrap_err();
    assert_eq!(bad.0, "OccurenceConstraintViolation", "{bad:?}");
    let events = app
        .graphql(
            "{ charger(id: \"SEC-201\") { securityEvents { type source critical techInfo occurredAt } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    let list = events["data"]["charger"]["securityEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 2, "{events}");
    assert_eq!(list[0]["type"], "InvalidMessages");
    assert_eq!(list[0]["critical"], false);
    assert_eq!(list[1]["type"], "TamperDetectionActivated");
    assert_eq!(list[1]["critical"], true);
    assert_eq!(list[1]["source"], "CHARGER");
    assert_eq!(list[1]["techInfo"], "lid opened");
    let published: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM outbox WHERE event_type = 'SECURITY_EVENT' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(published.len(), 2, "{published:?}");
    assert!(published[0].contains("TamperDetectionActivated"));
    assert!(published[1].contains("FirmwareUpdated"));
    // drivers see nothing
    let (driver, _, _) = app
        .register("sec-driver@example.com", "driver password")
        .await;
    let denied = app
        .graphql("{ securityEvents { type } }", json!({}), Some(&driver))
        .await;
    assert_eq!(
        crate::helpers::error_code(&denied).as_deref(),
        Some("FORBIDDEN")
    );
}

/// Runs `query` as `token` while the charger answers the one call it causes with `reply`;
/// returns the GraphQL answer and the call the charger received (action, payload).
async fn operate(
    app: &TestApp,
    charger: &mut TestCharger,
    query: &str,
    variables: Value,
    token: &str,
    reply: Value,
) -> (Value, String, Value) {
    let request = app.graphql(query, variables, Some(token));
    let answer = async {
        let frame = charger.recv_within(Duration::from_secs(10)).await?;
        let (id, action, payload) = (
            frame[1].as_str()?.to_string(),
            frame[2].as_str()?.to_string(),
            frame[3].clone(),
        );
        charger.reply(&id, reply).await;
        Some((action, payload))
    };
    let (response, answered) = tokio::join!(request, answer);
    let Some((action, payload)) = answered else {
        panic!("no call reached the charger; the API answered {response}");
    };
    (response, action, payload)
}

#[actix_web::test]
async fn operators_manage_a_2_0_1_stations_trust_store() {
    let app = spawn_app_with(|_| {}).await;
    let (admin, _) = operator_setup(&app, "TRUST-201", 1).await;
    let mut station = crate::charger_client::connect201(
        app.port,
        "TRUST-201",
        Some(("TRUST-201", CHARGER_PASSWORD)),
    )
    .await;
    station.boot201().await;
    let root = TestCa::new("Some root").cert.pem();

    // M_01-M_04: install each kind of root; M_05: the station fails to
    for (kind, ocpp, status) in [
        ("CSMS_ROOT_CERTIFICATE", "CSMSRootCertificate", "Accepted"),
        (
            "MANUFACTURER_ROOT_CERTIFICATE",
            "ManufacturerRootCertificate",
            "Accepted",
        ),
        ("V2G_ROOT_CERTIFICATE", "V2GRootCertificate", "Accepted"),
        ("MO_ROOT_CERTIFICATE", "MORootCertificate", "Failed"),
    ] {
        let (response, action, payload) = operate(
            &app,
            &mut station,
            "mutation($c: ID!, $t: InstallCertificateUse!, $p: String!) { installChargerCertificate(chargerId: $c, certificateType: $t, certificate: $p) }",
            json!({ "c": "TRUST-201", "t": kind, "p": root }),
            &admin,
            json!({ "status": status }),
        )
        .await;
        assert_eq!(action, "InstallCertificate");
        assert_eq!(payload["certificateType"], ocpp);
        assert_eq!(payload["certificate"], root.as_str());
        assert_eq!(
            response["data"]["installChargerCertificate"], status,
            "{response}"
        );
    }
    // garbage is refused before anything is sent
    let garbage = app
        .graphql(
            "mutation { installChargerCertificate(chargerId: \"TRUST-201\", certificateType: CSMS_ROOT_CERTIFICATE, certificate: \"not a certificate\") }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        crate::helpers::error_code(&garbage).as_deref(),
        Some("BAD_USER_INPUT")
    );

    // M_12-M_19: list them (a chain with a child, and nothing found)
    let hash = json!({ "hashAlgorithm": "SHA256", "issuerNameHash": "aa", "issuerKeyHash": "bb", "serialNumber": "01" });
    let (response, action, payload) = operate(
        &app,
        &mut station,
        "query($c: ID!) { chargerInstalledCertificates(chargerId: $c, certificateTypes: [CSMS_ROOT_CERTIFICATE, V2G_CERTIFICATE_CHAIN]) { status certificates { certificateType hashData { serialNumber } children { serialNumber } } } }",
        json!({ "c": "TRUST-201" }),
        &admin,
        json!({ "status": "Accepted", "certificateHashDataChain": [
            { "certificateType": "CSMSRootCertificate", "certificateHashData": hash },
            { "certificateType": "V2GCertificateChain", "certificateHashData": hash, "childCertificateHashData": [hash] }
        ]}),
    )
    .await;
    assert_eq!(action, "GetInstalledCertificateIds");
    assert_eq!(
        payload,
        json!({ "certificateType": ["CSMSRootCertificate", "V2GCertificateChain"] })
    );
    let listed = &response["data"]["chargerInstalledCertificates"];
    assert_eq!(listed["status"], "Accepted", "{response}");
    assert_eq!(
        listed["certificates"][1]["certificateType"],
        "V2GCertificateChain"
    );
    assert_eq!(
        listed["certificates"][1]["children"][0]["serialNumber"],
        "01"
    );
    let (response, _, payload) = operate(
        &app,
        &mut station,
        "query { chargerInstalledCertificates(chargerId: \"TRUST-201\") { status certificates { certificateType } } }",
        json!({}),
        &admin,
        json!({ "status": "NotFound" }),
    )
    .await;
    assert_eq!(payload, json!({}), "all types when none are given");
    assert_eq!(
        response["data"]["chargerInstalledCertificates"]["status"],
        "NotFound"
    );

    // M_20, M_21: delete one, and one that fails
    for status in ["Accepted", "Failed"] {
        let (response, action, payload) = operate(
            &app,
            &mut station,
            "mutation($c: ID!, $h: CertificateHashDataInput!) { deleteChargerCertificate(chargerId: $c, hashData: $h) }",
            json!({ "c": "TRUST-201", "h": hash }),
            &admin,
            json!({ "status": status }),
        )
        .await;
        assert_eq!(action, "DeleteCertificate");
        assert_eq!(payload["certificateHashData"], hash);
        assert_eq!(
            response["data"]["deleteChargerCertificate"], status,
            "{response}"
        );
    }
    // installing and deleting are ADMIN only; listing is for operators too
    let operator = app.staff_token("OPERATOR").await;
    let denied = app
        .graphql(
            "mutation($c: ID!, $h: CertificateHashDataInput!) { deleteChargerCertificate(chargerId: $c, hashData: $h) }",
            json!({ "c": "TRUST-201", "h": hash }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        crate::helpers::error_code(&denied).as_deref(),
        Some("FORBIDDEN")
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action IN ('installChargerCertificate', 'deleteChargerCertificate')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(audited, 6);
}

#[actix_web::test]
async fn a_1_6_chargers_trust_store_uses_the_security_extensions_names() {
    let app = spawn_app_with(|_| {}).await;
    let (admin, _) = operator_setup(&app, "TRUST-16", 1).await;
    let mut charger = crate::charger_client::connect16(
        app.port,
        "TRUST-16",
        Some(("TRUST-16", CHARGER_PASSWORD)),
    )
    .await;
    charger.boot().await;
    let root = TestCa::new("Central root").cert.pem();
    let (response, action, payload) = operate(
        &app,
        &mut charger,
        "mutation($p: String!) { installChargerCertificate(chargerId: \"TRUST-16\", certificateType: CSMS_ROOT_CERTIFICATE, certificate: $p) }",
        json!({ "p": root }),
        &admin,
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(action, "InstallCertificate");
    assert_eq!(payload["certificateType"], "CentralSystemRootCertificate");
    assert_eq!(response["data"]["installChargerCertificate"], "Accepted");
    let hash = json!({ "hashAlgorithm": "SHA256", "issuerNameHash": "aa", "issuerKeyHash": "bb", "serialNumber": "02" });
    let (response, _, payload) = operate(
        &app,
        &mut charger,
        "query { chargerInstalledCertificates(chargerId: \"TRUST-16\", certificateTypes: [MANUFACTURER_ROOT_CERTIFICATE]) { status certificates { certificateType hashData { serialNumber } } } }",
        json!({}),
        &admin,
        json!({ "status": "Accepted", "certificateHashData": [hash] }),
    )
    .await;
    assert_eq!(
        payload,
        json!({ "certificateType": "ManufacturerRootCertificate" })
    );
    let listed = &response["data"]["chargerInstalledCertificates"];
    assert_eq!(
        listed["certificates"][0]["hashData"]["serialNumber"], "02",
        "{response}"
    );
    assert!(listed["certificates"][0]["certificateType"].is_null());
    // what 1.6 cannot hold is refused before anything is sent
    for query in [
        "query { chargerInstalledCertificates(chargerId: \"TRUST-16\", certificateTypes: [V2G_CERTIFICATE_CHAIN]) { status } }",
        "query { chargerInstalledCertificates(chargerId: \"TRUST-16\") { status } }",
    ] {
        let refused = app.graphql(query, json!({}), Some(&admin)).await;
        assert_eq!(crate::helpers::error_code(&refused).as_deref(), Some("BAD_USER_INPUT"), "{refused}");
    }
    // an answer that does not match the security extension's schema is refused
    let (response, _, _) = operate(
        &app,
        &mut charger,
        "mutation($h: CertificateHashDataInput!) { deleteChargerCertificate(chargerId: \"TRUST-16\", hashData: $h) }",
        json!({ "h": hash }),
        &admin,
        json!({ "status": "Maybe" }),
    )
    .await;
    assert_eq!(
        crate::helpers::error_code(&response).as_deref(),
        Some("CHARGER_REJECTED"),
        "{response}"
    );
}

#[actix_web::test]
async fn a_2_0_1_station_renews_both_certificates_on_request_and_a_v2g_one_is_no_tls_credential() {
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let tls_port = app.ctx.tls_port.get().copied().expect("TLS listener");
    let (admin, _) = operator_setup(&app, "RENEW-201", 2).await;
    let tls = client_tls(&files.server_ca.cert, None);
    let mut station = connect_tls(
        tls_port,
        "RENEW-201",
        "ocpp2.0.1",
        Some(("RENEW-201", CHARGER_PASSWORD)),
        tls,
    )
    .await
    .unwrap();
    station.boot201().await;
    // A_11/A_13: the operator asks for both certificates
    let (response, action, payload) = operate(
        &app,
        &mut station,
        "mutation { renewChargerCertificate(chargerId: \"RENEW-201\", certificateType: COMBINED) }",
        json!({}),
        &admin,
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(action, "TriggerMessage");
    assert_eq!(payload["requestedMessage"], "SignCombinedCertificate");
    assert_eq!(
        response["data"]["renewChargerCertificate"], "Accepted",
        "{response}"
    );
    // the station sends its two CSRs; the V2G one names its SECC, not the station
    let (own_csr, own_key) = csr("RENEW-201");
    let chain = obtain_certificate(&mut station, &own_csr, true).await;
    let (v2g_csr, v2g_key) = csr("DE*CGR*E0001");
    let answer = station
        .call(
            "SignCertificate",
            json!({ "csr": v2g_csr, "certificateType": "V2GCertificate" }),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let (id, action, payload) = station.next_server_call().await;
    assert_eq!(action, "CertificateSigned");
    assert_eq!(payload["certificateType"], "V2GCertificate");
    station.reply(&id, json!({ "status": "Accepted" })).await;
    let v2g_chain = payload["certificateChain"].as_str().unwrap().to_string();
    // the station certificate is a TLS credential, the V2G one is not (another CA)
    let ok = connect_tls(
        tls_port,
        "RENEW-201",
        "ocpp2.0.1",
        None,
        client_tls(&files.server_ca.cert, Some((&chain, &own_key))),
    )
    .await;
    assert_eq!(handshake_status(ok), 101);
    refused_at_tls(
        connect_tls(
            tls_port,
            "RENEW-201",
            "ocpp2.0.1",
            None,
            client_tls(&files.server_ca.cert, Some((&v2g_chain, &v2g_key))),
        )
        .await,
    );
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT certificate_type FROM charger_certificates WHERE charger_id = 'RENEW-201' ORDER BY issued_at",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(types, ["ChargingStationCertificate", "V2GCertificate"]);
}

#[actix_web::test]
async fn a_signed_certificate_the_station_refuses_is_recorded_and_its_profile_upgrade_follows_the_spec(
) {
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let tls_port = app.ctx.tls_port.get().copied().expect("TLS listener");
    let (admin, _) = operator_setup(&app, "UP-201", 2).await;
    let tls = client_tls(&files.server_ca.cert, None);
    let mut station = connect_tls(
        tls_port,
        "UP-201",
        "ocpp2.0.1",
        Some(("UP-201", CHARGER_PASSWORD)),
        tls,
    )
    .await
    .unwrap();
    station.boot201().await;
    // A_14: the station refuses the certificate it is sent
    let (own_csr, _) = csr("UP-201");
    let answer = station
        .call("SignCertificate", json!({ "csr": own_csr }))
        .await
        .unwrap();
    assert_eq!(answer["status"], "Accepted");
    let (id, action, _) = station.next_server_call().await;
    assert_eq!(action, "CertificateSigned");
    station.reply(&id, json!({ "status": "Rejected" })).await;
    let recorded = app
        .wait_until(Duration::from_secs(5), || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM security_events WHERE charger_id = 'UP-201' AND event_type = 'CertificateSignedNotAccepted'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap()
                == 1
        })
        .await;
    assert!(recorded);
    // A_19: raising a 2.0.1 station's profile: SetNetworkProfile, NetworkConfigurationPriority,
    // Reset, in that order
    let raise = app.graphql(
        "mutation { raiseChargerSecurityProfile(input: {chargerId: \"UP-201\", profile: 3, csmsUrl: \"wss://csms.test:8443/ocpp\", configurationSlot: 2}) { securityProfile pendingSecurityProfile } }",
        json!({}),
        Some(&admin),
    );
    let answers = async {
        let mut seen = Vec::new();
        for reply in [
            json!({ "status": "Accepted" }),
            json!({ "setVariableResult": [{ "attributeStatus": "Accepted", "component": { "name": "OCPPCommCtrlr" }, "variable": { "name": "NetworkConfigurationPriority" } }] }),
            json!({ "status": "Scheduled" }),
        ] {
            let (id, action, payload) = station.next_server_call().await;
            station.reply(&id, reply).await;
            seen.push((action, payload));
        }
        seen
    };
    let (raised, seen) = tokio::join!(raise, answers);
    assert_eq!(
        raised["data"]["raiseChargerSecurityProfile"]["pendingSecurityProfile"], 3,
        "{raised}"
    );
    assert_eq!(seen[0].0, "SetNetworkProfile");
    assert_eq!(seen[0].1["configurationSlot"], 2);
    assert_eq!(seen[0].1["connectionData"]["securityProfile"], 3);
    assert_eq!(
        seen[0].1["connectionData"]["ocppCsmsUrl"],
        "wss://csms.test:8443/ocpp"
    );
    assert_eq!(seen[1].0, "SetVariables");
    assert_eq!(seen[1].1["setVariableData"][0]["attributeValue"], "2");
    assert_eq!(seen[2].0, "Reset");
    // until it connects with profile 3, its old profile still works (the fallback)
    let tls = client_tls(&files.server_ca.cert, None);
    let fallback = connect_tls(
        tls_port,
        "UP-201",
        "ocpp2.0.1",
        Some(("UP-201", CHARGER_PASSWORD)),
        tls,
    )
    .await;
    assert_eq!(handshake_status(fallback), 101);
    // lowering is refused
    let lower = app
        .graphql(
            "mutation { raiseChargerSecurityProfile(input: {chargerId: \"UP-201\", profile: 2, csmsUrl: \"wss://x\"}) { securityProfile } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        crate::helpers::error_code(&lower).as_deref(),
        Some("BAD_USER_INPUT")
    );
}

#[actix_web::test]
async fn v2g_requests_are_rejected_without_a_v2g_ca() {
    let files = TlsFiles::new();
    let app = spawn_app_with(|s| {
        s.ocpp.ca_cert = Some(files.path("csms-ca.pem"));
        s.ocpp.ca_key = Some(files.path("csms-ca.key"));
    })
    .await;
    operator_setup(&app, "NOV2G", 1).await;
    let mut station =
        crate::charger_client::connect201(app.port, "NOV2G", Some(("NOV2G", CHARGER_PASSWORD)))
            .await;
    station.boot201().await;
    let (v2g_csr, _) = csr("DE*CGR*E0002");
    let answer = station
        .call(
            "SignCertificate",
            json!({ "csr": v2g_csr, "certificateType": "V2GCertificate" }),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Rejected");
    assert!(answer["statusInfo"]["additionalInfo"]
        .as_str()
        .unwrap()
        .contains("V2G"));
    assert!(
        station
            .recv_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing is sent"
    );
}

/// `openssl s_client` with `args` against the TLS port; true when the TLS handshake succeeded.
fn openssl_handshake(port: u16, args: &[&str]) -> bool {
    let output = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-brief",
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.contains("CONNECTION ESTABLISHED")
}

#[actix_web::test]
async fn tls_versions_below_1_2_are_refused() {
    // A_06: the client offers TLS 1.0 or 1.1 only (its own security level lowered so that the
    // refusal can only come from the server); TLS 1.2 and 1.3 are the controls
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let port = app.ctx.tls_port.get().copied().expect("TLS listener");
    let run = |args: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || openssl_handshake(port, args))
    };
    assert!(run(&["-tls1_2"]).await.unwrap(), "TLS 1.2 works");
    assert!(run(&["-tls1_3"]).await.unwrap(), "TLS 1.3 works");
    assert!(
        !run(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
            .await
            .unwrap(),
        "TLS 1.1 refused"
    );
    assert!(
        !run(&["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"])
            .await
            .unwrap(),
        "TLS 1.0 refused"
    );
}

#[actix_web::test]
async fn a_refused_profile_upgrade_changes_nothing() {
    // TC_084-like: the charger refuses the new SecurityProfile; the stored profile stays and no
    // upgrade is pending
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let (admin, _) = operator_setup(&app, "UP-16", 1).await;
    let mut charger =
        crate::charger_client::connect16(app.port, "UP-16", Some(("UP-16", CHARGER_PASSWORD)))
            .await;
    charger.boot().await;
    let (response, action, payload) = operate(
        &app,
        &mut charger,
        "mutation { raiseChargerSecurityProfile(input: {chargerId: \"UP-16\", profile: 2}) { securityProfile } }",
        json!({}),
        &admin,
        json!({ "status": "Rejected" }),
    )
    .await;
    assert_eq!(action, "ChangeConfiguration");
    assert_eq!(payload["value"], "2");
    assert_eq!(
        crate::helpers::error_code(&response).as_deref(),
        Some("CHARGER_REJECTED"),
        "{response}"
    );
    let (profile, pending): (i16, Option<i16>) = sqlx::query_as(
        "SELECT security_profile, pending_security_profile FROM chargers WHERE id = 'UP-16'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((profile, pending), (1, None));
    assert!(
        charger
            .recv_within(Duration::from_millis(300))
            .await
            .is_none(),
        "no Reset follows"
    );
}

#[actix_web::test]
async fn the_1_6_security_extension_runs_end_to_end() {
    // TC_074 (renewal on request), TC_079 (GetLog), TC_080/081 (SignedUpdateFirmware and its
    // notifications), and TC_078 (a security event about the CSMS certificate)
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    let (admin, _) = operator_setup(&app, "EXT-16", 1).await;
    let mut charger =
        crate::charger_client::connect16(app.port, "EXT-16", Some(("EXT-16", CHARGER_PASSWORD)))
            .await;
    charger.boot().await;
    // TC_074: ExtendedTriggerMessage, then the charger's CSR is signed
    let (response, action, payload) = operate(
        &app,
        &mut charger,
        "mutation { renewChargerCertificate(chargerId: \"EXT-16\") }",
        json!({}),
        &admin,
        json!({ "status": "Accepted" }),
    )
    .await;
    assert_eq!(action, "ExtendedTriggerMessage");
    assert_eq!(
        payload,
        json!({ "requestedMessage": "SignChargePointCertificate" })
    );
    assert_eq!(
        response["data"]["renewChargerCertificate"], "Accepted",
        "{response}"
    );
    let (own_csr, _) = csr("EXT-16");
    let chain = obtain_certificate(&mut charger, &own_csr, false).await;
    assert_eq!(pem_certs(&chain).len(), 2);
    // V2G certificates do not exist in 1.6
    let v2g = app
        .graphql("mutation { renewChargerCertificate(chargerId: \"EXT-16\", certificateType: V2G_CERTIFICATE) }", json!({}), Some(&admin))
        .await;
    assert_eq!(
        crate::helpers::error_code(&v2g).as_deref(),
        Some("BAD_USER_INPUT")
    );
    // TC_079 and TC_080: the operator's raw commands are checked against the whitepaper's
    // schemas and reach the charger; its notifications are answered and kept
    for (command_action, command_payload, reply) in [
        (
            "GetLog",
            json!({ "log": { "remoteLocation": "ftp://logs.test/" }, "logType": "SecurityLog", "requestId": 7 }),
            json!({ "status": "Accepted", "filename": "security.log" }),
        ),
        (
            "SignedUpdateFirmware",
            json!({ "requestId": 8, "firmware": { "location": "https://fw.test/1.2.bin", "retrieveDateTime": "2026-12-03T10:00:00Z", "signingCertificate": "-----BEGIN CERTIFICATE-----", "signature": "c2ln" } }),
            json!({ "status": "Accepted" }),
        ),
    ] {
        let (response, action, payload) = operate(
            &app,
            &mut charger,
            "mutation($a: String!, $p: JSON!) { sendChargerCommand(chargerId: \"EXT-16\", action: $a, payload: $p) }",
            json!({ "a": command_action, "p": command_payload }),
            &admin,
            reply.clone(),
        )
        .await;
        assert_eq!(action, command_action);
        assert_eq!(payload, command_payload);
        assert_eq!(response["data"]["sendChargerCommand"], reply, "{response}");
    }
    // a malformed one is refused before it is sent
    let bad = app
        .graphql(
            "mutation { sendChargerCommand(chargerId: \"EXT-16\", action: \"GetLog\", payload: {logType: \"EverythingLog\"}) }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        crate::helpers::error_code(&bad).as_deref(),
        Some("BAD_USER_INPUT"),
        "{bad}"
    );
    for (notification, payload) in [
        (
            "LogStatusNotification",
            json!({ "status": "Uploading", "requestId": 7 }),
        ),
        (
            "LogStatusNotification",
            json!({ "status": "Uploaded", "requestId": 7 }),
        ),
        (
            "SignedFirmwareStatusNotification",
            json!({ "status": "Downloading", "requestId": 8 }),
        ),
        (
            "SignedFirmwareStatusNotification",
            json!({ "status": "InvalidSignature", "requestId": 8 }),
        ),
        (
            "SecurityEventNotification",
            json!({ "type": "InvalidCentralSystemCertificate", "timestamp": "2026-12-03T10:05:00Z" }),
        ),
    ] {
        assert_eq!(
            charger.call(notification, payload).await.unwrap(),
            json!({}),
            "{notification}"
        );
    }
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM charger_reports WHERE charger_id = 'EXT-16' AND kind IN ('LogStatusNotification', 'SignedFirmwareStatusNotification')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(kept, 4);
    let critical: bool = sqlx::query_scalar(
        "SELECT critical FROM security_events WHERE charger_id = 'EXT-16' AND event_type = 'InvalidCentralSystemCertificate'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(critical);
}

#[actix_web::test]
async fn a_2_0_1_station_switches_to_its_rotated_password() {
    // A_09: SetVariables BasicAuthPassword accepted, then only the new password
    let app = spawn_app_with(|_| {}).await;
    let (admin, _) = operator_setup(&app, "ROT-3", 1).await;
    let mut station =
        crate::charger_client::connect201(app.port, "ROT-3", Some(("ROT-3", CHARGER_PASSWORD)))
            .await;
    station.boot201().await;
    let (response, action, payload) = operate(
        &app,
        &mut station,
        "mutation { rotateChargerPassword(chargerId: \"ROT-3\") { password } }",
        json!({}),
        &admin,
        json!({ "setVariableResult": [{ "attributeStatus": "Accepted", "component": { "name": "SecurityCtrlr" }, "variable": { "name": "BasicAuthPassword" } }] }),
    )
    .await;
    assert_eq!(action, "SetVariables");
    let password = response["data"]["rotateChargerPassword"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        payload["setVariableData"][0]["attributeValue"],
        password.as_str()
    );
    let new = connect(app.port, "ROT-3", "ocpp2.0.1", Some(("ROT-3", &password))).await;
    assert_eq!(handshake_status(new), 101);
    let old = connect(
        app.port,
        "ROT-3",
        "ocpp2.0.1",
        Some(("ROT-3", CHARGER_PASSWORD)),
    )
    .await;
    assert_eq!(handshake_status(old), 401);
}

#[actix_web::test]
async fn certificates_close_to_expiry_are_renewed_by_the_replica_holding_the_charger() {
    let files = TlsFiles::new();
    let app = spawn_tls(&files).await;
    operator_setup(&app, "RENEW-SOON", 1).await;
    operator_setup(&app, "RENEW-LATER", 1).await;
    let mut soon = crate::charger_client::connect16(
        app.port,
        "RENEW-SOON",
        Some(("RENEW-SOON", CHARGER_PASSWORD)),
    )
    .await;
    soon.boot().await;
    let mut later = crate::charger_client::connect201(
        app.port,
        "RENEW-LATER",
        Some(("RENEW-LATER", CHARGER_PASSWORD)),
    )
    .await;
    later.boot201().await;
    for (charger, days, serial) in [("RENEW-SOON", 10, "aa01"), ("RENEW-LATER", 300, "aa02")] {
        sqlx::query(
            "INSERT INTO charger_certificates (serial, charger_id, certificate_type, subject, certificate_pem, not_before, not_after) \
             VALUES ($1, $2, 'ChargingStationCertificate', 'CN=' || $2, 'pem', now() - interval '1 day', now() + make_interval(days => $3))",
        )
        .bind(serial)
        .bind(charger)
        .bind(days)
        .execute(&app.db)
        .await
        .unwrap();
    }
    // both are online here (the renewal asks the chargers this replica holds)
    let online = app
        .wait_until(Duration::from_secs(10), || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM chargers WHERE id LIKE 'RENEW-%' AND online AND node_id IS NOT NULL")
                .fetch_one(&app.db)
                .await
                .unwrap()
                == 2
        })
        .await;
    assert!(online);
    let renew = chargegrid::security::renewals::renew_due(&app.ctx);
    let answer = async {
        let (id, action, payload) = soon.next_server_call().await;
        soon.reply(&id, json!({ "status": "Accepted" })).await;
        (action, payload)
    };
    let (asked, (action, payload)) = tokio::join!(renew, answer);
    assert_eq!(
        asked.unwrap(),
        1,
        "only the certificate within 30 days of expiry"
    );
    assert_eq!(action, "ExtendedTriggerMessage");
    assert_eq!(payload["requestedMessage"], "SignChargePointCertificate");
    assert!(
        later
            .recv_within(Duration::from_millis(300))
            .await
            .is_none(),
        "the other is left alone"
    );
}

#[actix_web::test]
async fn only_an_admin_lowers_a_chargers_security_profile() {
    let app = spawn_app_with(|_| {}).await;
    let (admin, station) = operator_setup(&app, "LOW-1", 3).await;
    let operator = app.staff_token("OPERATOR").await;
    let lower = "mutation($s: ID!, $p: Int!) { registerCharger(input: {chargerId: \"LOW-1\", stationId: $s, securityProfile: $p}) { securityProfile } }";
    let denied = app
        .graphql(lower, json!({ "s": station, "p": 1 }), Some(&operator))
        .await;
    assert_eq!(
        crate::helpers::error_code(&denied).as_deref(),
        Some("FORBIDDEN"),
        "{denied}"
    );
    let allowed = app
        .graphql(lower, json!({ "s": station, "p": 1 }), Some(&admin))
        .await;
    assert_eq!(
        allowed["data"]["registerCharger"]["securityProfile"], 1,
        "{allowed}"
    );
}

#[actix_web::test]
async fn a_rotation_the_charger_applies_after_a_reboot_counts_and_one_runs_at_a_time() {
    let app = spawn_app_with(|_| {}).await;
    let (admin, _) = operator_setup(&app, "ROT-4", 1).await;
    let mut charger =
        crate::charger_client::connect16(app.port, "ROT-4", Some(("ROT-4", CHARGER_PASSWORD)))
            .await;
    charger.boot().await;
    let rotate = "mutation { rotateChargerPassword(chargerId: \"ROT-4\") { password } }";
    let (response, _, _) = operate(
        &app,
        &mut charger,
        rotate,
        json!({}),
        &admin,
        json!({ "status": "RebootRequired" }),
    )
    .await;
    let password = response["data"]["rotateChargerPassword"]["password"]
        .as_str()
        .unwrap_or_else(|| panic!("{response}"))
        .to_string();
    // a second rotation while the first is pending is refused before anything is sent
    let again = app.graphql(rotate, json!({}), Some(&admin)).await;
    assert_eq!(
        crate::helpers::error_code(&again).as_deref(),
        Some("BAD_USER_INPUT"),
        "{again}"
    );
    assert!(charger
        .recv_within(Duration::from_millis(300))
        .await
        .is_none());
    // after its reboot the charger uses the new password
    let new = connect(app.port, "ROT-4", "ocpp1.6", Some(("ROT-4", &password))).await;
    assert_eq!(handshake_status(new), 101);
}

#[actix_web::test]
async fn an_adopted_charger_gets_the_default_profile_and_oversized_events_are_refused() {
    let app = spawn_app_with(|s| s.ocpp.auto_provision = true).await;
    let admin = app.staff_token("ADMIN").await;
    let station = app.create_station("Adoption").await;
    // auto-provisioned (quarantined, profile 1 in the table), then adopted without a profile
    let first = connect(app.port, "ADOPT-1", "ocpp2.0.1", None).await;
    assert_eq!(handshake_status(first), 101);
    let adopted = app
        .graphql(
            "mutation($s: ID!) { registerCharger(input: {chargerId: \"ADOPT-1\", stationId: $s, password: \"adopted-password-0001\"}) { securityProfile registrationStatus } }",
            json!({ "s": station.to_string() }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        adopted["data"]["registerCharger"]["securityProfile"], 2,
        "{adopted}"
    );
    assert_eq!(
        adopted["data"]["registerCharger"]["registrationStatus"],
        "ACCEPTED"
    );
    // security events longer than OCPP allows: a CallError, and the connection stays
    operator_setup(&app, "LONG-EV", 1).await;
    let mut station_cs =
        crate::charger_client::connect201(app.port, "LONG-EV", Some(("LONG-EV", CHARGER_PASSWORD)))
            .await;
    station_cs.boot201().await;
    let (code, _) = station_cs
        .call(
            "SecurityEventNotification",
            json!({ "type": "T".repeat(51), "timestamp": "2026-12-03T10:00:00Z" }),
        )
        .await
        .unwrap_err();
    assert_eq!(code, "PropertyConstraintViolation");
    let (code, _) = station_cs
        .call(
            "SecurityEventNotification",
            json!({ "type": "MemoryExhaustion", "timestamp": "2026-12-03T10:00:00Z", "techInfo": "x".repeat(256) }),
        )
        .await
        .unwrap_err();
    assert_eq!(code, "PropertyConstraintViolation");
    assert!(station_cs.call("Heartbeat", json!({})).await.is_ok());
}
