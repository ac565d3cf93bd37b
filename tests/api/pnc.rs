//! Plug & Charge certificate services over OCPP 2.0.1, against local fakes of the
//! contract-certificate provider and of an OCSP responder (the outside world we cannot
//! reach): Get15118EVCertificate forwarded (OCA M_26, M_28), GetCertificateStatus answered
//! from OCSP (M_24), and what happens when either is missing, refuses or is not allowed.

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use serde_json::{json, Value};

use crate::charger_client::{connect201, TestCharger};
use crate::helpers::{spawn_app_with, TestApp, CHARGER_PASSWORD};

#[derive(Clone, Default)]
struct Fakes {
    /// Requests the contract provider received (JSON body, Authorization header).
    provider: Arc<Mutex<Vec<(Value, String)>>>,
    /// DER bodies the OCSP responder received.
    ocsp: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// An OCSPResponse with `status` and, when successful, a (placeholder) basic response.
fn ocsp_response(status: u8) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_enum(i64::from(status));
            if status == 0 {
                w.next().write_tagged(yasna::Tag::context(0), |w| {
                    w.write_sequence(|w| {
                        w.next()
                            .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                                1, 3, 6, 1, 5, 5, 7, 48, 1, 1,
                            ]));
                        w.next()
                            .write_bytes(b"basic response of the fake responder");
                    });
                });
            }
        })
    })
}

async fn provider(
    req: HttpRequest,
    body: web::Json<Value>,
    fakes: web::Data<Fakes>,
) -> HttpResponse {
    let auth = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    fakes.provider.lock().unwrap().push((body.0.clone(), auth));
    HttpResponse::Ok().json(json!({ "status": "Accepted", "exiResponse": format!("EXI-RESPONSE-{}", body.0["action"].as_str().unwrap_or("")) }))
}

async fn responder(path: web::Path<u8>, body: web::Bytes, fakes: web::Data<Fakes>) -> HttpResponse {
    fakes.ocsp.lock().unwrap().push(body.to_vec());
    HttpResponse::Ok()
        .content_type("application/ocsp-response")
        .body(ocsp_response(path.into_inner()))
}

async fn start_fakes() -> (String, Fakes) {
    let fakes = Fakes::default();
    let data = web::Data::new(fakes.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/mo/ev-certificates", web::post().to(provider))
            .route("/ocsp/{status}", web::post().to(responder))
    })
    .workers(1)
    // longer than any pause of a test: the app's pooled client never reuses a closing connection
    .keep_alive(std::time::Duration::from_secs(300))
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), fakes)
}

async fn station(app: &TestApp, id: &str) -> TestCharger {
    let token = app.staff_token("OPERATOR").await;
    let site = app.create_station("PnC").await;
    app.register_charger(&token, id, site, None).await;
    let mut cs = connect201(app.port, id, Some((id, CHARGER_PASSWORD))).await;
    cs.boot201().await;
    cs
}

fn status_request(responder: &str, serial: &str) -> Value {
    json!({ "ocspRequestData": {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "11".repeat(32),
        "issuerKeyHash": "22".repeat(32),
        "serialNumber": serial,
        "responderURL": responder,
    }})
}

#[actix_web::test]
async fn certificate_status_comes_from_an_allowed_ocsp_responder_and_only_from_one() {
    let (base, fakes) = start_fakes().await;
    let allowed = format!("{base}/ocsp/");
    let app = spawn_app_with(|s| s.pnc.ocsp_responders = vec![allowed.clone()]).await;
    let mut cs = station(&app, "PNC-OCSP").await;

    // M_24: the status of a certificate, relayed from the responder
    let answer = cs
        .call(
            "GetCertificateStatus",
            status_request(&format!("{base}/ocsp/0"), "0a1b"),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let relayed = base64::engine::general_purpose::STANDARD
        .decode(answer["ocspResult"].as_str().unwrap())
        .unwrap();
    assert_eq!(relayed, ocsp_response(0));
    // the responder got a DER OCSPRequest for that certificate
    let received = fakes.ocsp.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (_, request) = der_parser::parse_der(&received[0]).unwrap();
    let cert_id = &request.as_sequence().unwrap()[0].as_sequence().unwrap()[0]
        .as_sequence()
        .unwrap()[0]
        .as_sequence()
        .unwrap()[0];
    let fields = cert_id.as_sequence().unwrap();
    assert_eq!(fields[1].as_slice().unwrap(), [0x11; 32]);
    assert_eq!(fields[3].as_slice().unwrap(), [0x0a, 0x1b]);

    // a responder that says tryLater: Failed, nothing relayed
    let answer = cs
        .call(
            "GetCertificateStatus",
            status_request(&format!("{base}/ocsp/3"), "01"),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Failed", "{answer}");
    assert!(answer.get("ocspResult").is_none());
    // a responder URL the CSMS may not call: Failed, and it is not called
    let before = fakes.ocsp.lock().unwrap().len();
    let answer = cs
        .call(
            "GetCertificateStatus",
            status_request(&format!("{base}/mo/ev-certificates"), "01"),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Failed");
    assert!(answer["statusInfo"]["additionalInfo"]
        .as_str()
        .unwrap()
        .contains("not one this CSMS may call"));
    let answer = cs
        .call(
            "GetCertificateStatus",
            status_request("http://169.254.169.254/latest/meta-data", "01"),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Failed");
    assert_eq!(fakes.ocsp.lock().unwrap().len(), before);
    // hash data that is not hexadecimal: Failed with the reason, the connection stays
    let mut bad = status_request(&format!("{base}/ocsp/0"), "zz");
    bad["ocspRequestData"]["serialNumber"] = json!("not-hex");
    let answer = cs.call("GetCertificateStatus", bad).await.unwrap();
    assert_eq!(answer["status"], "Failed");
    assert!(cs.call("Heartbeat", json!({})).await.is_ok());
}

#[actix_web::test]
async fn ev_certificates_are_forwarded_to_the_contract_provider() {
    let (base, fakes) = start_fakes().await;
    let app = spawn_app_with(|s| {
        s.pnc.contract_provider_url = Some(format!("{base}/mo"));
        s.pnc.contract_provider_token = Some("provider-token".to_string().into());
    })
    .await;
    let mut cs = station(&app, "PNC-EV").await;
    // M_26 install, M_28 update
    for action in ["Install", "Update"] {
        let answer = cs
            .call(
                "Get15118EVCertificate",
                json!({ "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": action, "exiRequest": "RVhJLXJlcXVlc3Q=" }),
            )
            .await
            .unwrap();
        assert_eq!(answer["status"], "Accepted", "{answer}");
        assert_eq!(answer["exiResponse"], format!("EXI-RESPONSE-{action}"));
    }
    let received = fakes.provider.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].0["chargerId"], "PNC-EV");
    assert_eq!(received[0].0["exiRequest"], "RVhJLXJlcXVlc3Q=");
    assert_eq!(received[1].0["action"], "Update");
    assert_eq!(received[0].1, "Bearer provider-token");
}

#[actix_web::test]
async fn without_providers_the_station_is_told_failed_and_nothing_breaks() {
    let app = spawn_app_with(|_| {}).await;
    let mut cs = station(&app, "PNC-NONE").await;
    let answer = cs
        .call(
            "Get15118EVCertificate",
            json!({ "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": "AA==" }),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Failed");
    assert_eq!(answer["exiResponse"], "");
    let answer = cs
        .call(
            "GetCertificateStatus",
            status_request("http://127.0.0.1:9/ocsp", "01"),
        )
        .await
        .unwrap();
    assert_eq!(answer["status"], "Failed");
    // a malformed request is a CallError, as for any action
    let (code, _) = cs
        .call("Get15118EVCertificate", json!({ "action": "Install" }))
        .await
        .unwrap_err();
    assert_eq!(code, "OccurrenceConstraintViolation");
}

// ---- Authorize with a contract certificate (C_50-C_52) -------------------------------------

/// A contract PKI: a root (configured at the CSMS), its OCSP responder's certificate, and
/// contract certificates whose AIA names the fake responder.
struct ContractPki {
    root: rcgen::Certificate,
    root_key: KeyPair,
    responder: rcgen::Certificate,
    responder_key: KeyPair,
}

/// The raw first element inside a constructed DER element (short or long lengths).
fn first_child(der: &[u8]) -> &[u8] {
    let header = |b: &[u8]| -> (usize, usize) {
        if b[1] < 0x80 {
            (2, usize::from(b[1]))
        } else {
            let n = usize::from(b[1] & 0x7f);
            (
                2 + n,
                b[2..2 + n]
                    .iter()
                    .fold(0, |a, x| (a << 8) | usize::from(*x)),
            )
        }
    };
    let (outer, _) = header(der);
    let inner = &der[outer..];
    let (h, len) = header(inner);
    &inner[..h + len]
}

fn gen_time(at: time::OffsetDateTime) -> Vec<u8> {
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let mut out = vec![0x18, text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

impl ContractPki {
    fn new(name: &str) -> Self {
        let root_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = params.self_signed(&root_key).unwrap();
        let responder_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} OCSP"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        let responder = params.signed_by(&responder_key, &root, &root_key).unwrap();
        Self {
            root,
            root_key,
            responder,
            responder_key,
        }
    }

    /// A contract certificate for `emaid` whose OCSP responder is `ocsp_url`.
    fn contract(&self, emaid: &str, ocsp_url: &str) -> rcgen::Certificate {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, emaid);
        let aia = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                            1, 3, 6, 1, 5, 5, 7, 48, 1,
                        ]));
                    w.next().write_tagged_implicit(yasna::Tag::context(6), |w| {
                        w.write_ia5_string(ocsp_url)
                    });
                });
            })
        });
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            aia,
        )];
        params.signed_by(&key, &self.root, &self.root_key).unwrap()
    }

    /// A signed OCSP response for the CertID of `request` (raw DER), revoked or good.
    fn respond(&self, request: &[u8], revoked: bool) -> Vec<u8> {
        // OCSPRequest > TBSRequest > requestList > Request > CertID: its raw encoding
        let mut cert_id = request;
        for _ in 0..4 {
            cert_id = first_child(cert_id);
        }
        let cert_id = cert_id.to_vec();
        let now = time::OffsetDateTime::now_utc();
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                // responderID byKey [2]
                w.next()
                    .write_tagged(yasna::Tag::context(2), |w| w.write_bytes(&[0u8; 20]));
                w.next().write_der(&gen_time(now));
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_der(&cert_id);
                        if revoked {
                            w.next().write_tagged_implicit(yasna::Tag::context(1), |w| {
                                w.write_sequence(|w| {
                                    w.next().write_der(&gen_time(now - time::Duration::days(1)))
                                })
                            });
                        } else {
                            w.next()
                                .write_tagged_implicit(yasna::Tag::context(0), |w| w.write_null());
                        }
                        w.next()
                            .write_der(&gen_time(now - time::Duration::minutes(1)));
                        w.next().write_tagged(yasna::Tag::context(0), |w| {
                            w.write_der(&gen_time(now + time::Duration::hours(1)))
                        });
                    });
                });
            })
        });
        let rng = ring::rand::SystemRandom::new();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.responder_key.serialize_der(),
            &rng,
        )
        .unwrap();
        let signature = signer.sign(&rng, &tbs).unwrap();
        let basic = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&tbs);
                w.next().write_sequence(|w| {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                            1, 2, 840, 10045, 4, 3, 2,
                        ]));
                });
                w.next()
                    .write_bitvec_bytes(signature.as_ref(), signature.as_ref().len() * 8);
                w.next().write_tagged(yasna::Tag::context(0), |w| {
                    w.write_sequence(|w| w.next().write_der(self.responder.der()))
                });
            })
        });
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_enum(0);
                w.next().write_tagged(yasna::Tag::context(0), |w| {
                    w.write_sequence(|w| {
                        w.next()
                            .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                                1, 3, 6, 1, 5, 5, 7, 48, 1, 1,
                            ]));
                        w.next().write_bytes(&basic);
                    });
                });
            })
        })
    }
}

/// The fake contract responder: good unless the serial is listed as revoked.
#[derive(Clone)]
struct Responder {
    pki: Arc<ContractPki>,
    revoked: Arc<Mutex<Vec<Vec<u8>>>>,
    asked: Arc<Mutex<usize>>,
}

async fn contract_ocsp(body: web::Bytes, responder: web::Data<Responder>) -> HttpResponse {
    *responder.asked.lock().unwrap() += 1;
    let (_, parsed) = der_parser::parse_der(&body).unwrap();
    let id = &parsed.as_sequence().unwrap()[0].as_sequence().unwrap()[0]
        .as_sequence()
        .unwrap()[0]
        .as_sequence()
        .unwrap()[0];
    let serial = id.as_sequence().unwrap()[3].as_slice().unwrap().to_vec();
    let revoked = responder
        .revoked
        .lock()
        .unwrap()
        .iter()
        .any(|s| s == &serial);
    HttpResponse::Ok()
        .content_type("application/ocsp-response")
        .body(responder.pki.respond(&body, revoked))
}

async fn start_responder(pki: Arc<ContractPki>) -> (String, Responder) {
    let responder = Responder {
        pki,
        revoked: Arc::default(),
        asked: Arc::default(),
    };
    let data = web::Data::new(responder.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/contract-ocsp", web::post().to(contract_ocsp))
    })
    .workers(1)
    // longer than any pause of a test: the app's pooled client never reuses a closing connection
    .keep_alive(std::time::Duration::from_secs(300))
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}/contract-ocsp"), responder)
}

/// The hash data a station sends for `cert` issued by `issuer` (local validation).
fn hash_data(cert: &rcgen::Certificate, issuer: &rcgen::Certificate, url: &str) -> Value {
    use sha2::Digest;
    let (_, leaf) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(issuer.der()).unwrap();
    json!({
        "hashAlgorithm": "SHA256",
        "issuerNameHash": hex::encode(sha2::Sha256::digest(ca.subject().as_raw())),
        "issuerKeyHash": hex::encode(sha2::Sha256::digest(&ca.public_key().subject_public_key.data)),
        "serialNumber": hex::encode(leaf.raw_serial()),
        "responderURL": url,
    })
}

fn serial_of(cert: &rcgen::Certificate) -> Vec<u8> {
    let (_, leaf) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    let raw = leaf.raw_serial();
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    raw[first..].to_vec()
}

#[actix_web::test]
async fn contract_certificates_are_checked_before_an_emaid_is_accepted() {
    let pki = Arc::new(ContractPki::new("Test MO root"));
    let (url, responder) = start_responder(pki.clone()).await;
    let dir = std::env::temp_dir().join(format!("chargegrid-pnc-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let roots = dir.join("contract-roots.pem");
    // two contract PKIs are trusted; the second one's responder must not vouch for the first's
    let other = Arc::new(ContractPki::new("Other MO root"));
    std::fs::write(&roots, format!("{}{}", pki.root.pem(), other.root.pem())).unwrap();
    let (other_url, _) = start_responder(other.clone()).await;
    let responders = url.clone();
    let app = spawn_app_with(|s| {
        s.pnc.contract_roots = Some(roots.display().to_string());
        s.pnc.ocsp_responders = vec![responders, other_url.clone()];
    })
    .await;
    let (_, _, user_id) = app
        .register("pnc-driver@example.com", "driver password")
        .await;
    let emaid: String =
        sqlx::query_scalar("SELECT id_tag FROM id_tags WHERE user_id = $1::uuid LIMIT 1")
            .bind(&user_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let mut cs = station(&app, "PNC-AUTH").await;
    let token = json!({ "idToken": emaid, "type": "eMAID" });

    // C_50: the station validated the chain and sends hash data; the responder says good
    let good = pki.contract(&emaid, &url);
    let answer = cs
        .call("Authorize", json!({ "idToken": token, "iso15118CertificateHashData": [hash_data(&good, &pki.root, &url)] }))
        .await
        .unwrap();
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted", "{answer}");
    assert_eq!(answer["certificateStatus"], "Accepted");

    // C_51: revoked
    let revoked = pki.contract(&emaid, &url);
    responder.revoked.lock().unwrap().push(serial_of(&revoked));
    let answer = cs
        .call("Authorize", json!({ "idToken": token, "iso15118CertificateHashData": [hash_data(&revoked, &pki.root, &url)] }))
        .await
        .unwrap();
    assert_eq!(answer["idTokenInfo"]["status"], "Invalid", "{answer}");
    assert_eq!(answer["certificateStatus"], "CertificateRevoked");

    // C_52: central validation from the certificate itself (CertID and responder computed here)
    let asked = *responder.asked.lock().unwrap();
    let answer = cs
        .call(
            "Authorize",
            json!({ "idToken": token, "certificate": good.pem() }),
        )
        .await
        .unwrap();
    assert_eq!(answer["certificateStatus"], "Accepted", "{answer}");
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted");
    assert_eq!(
        *responder.asked.lock().unwrap(),
        asked + 1,
        "the responder was asked"
    );
    let answer = cs
        .call(
            "Authorize",
            json!({ "idToken": token, "certificate": revoked.pem() }),
        )
        .await
        .unwrap();
    assert_eq!(
        answer["certificateStatus"], "CertificateRevoked",
        "{answer}"
    );

    // a contract certificate of another PKI: the chain is refused, nobody is asked
    let foreign = ContractPki::new("Foreign MO root");
    let alien = foreign.contract(&emaid, &url);
    let asked = *responder.asked.lock().unwrap();
    let answer = cs
        .call(
            "Authorize",
            json!({ "idToken": token, "certificate": alien.pem() }),
        )
        .await
        .unwrap();
    assert_eq!(answer["certificateStatus"], "CertChainError", "{answer}");
    assert_eq!(answer["idTokenInfo"]["status"], "Invalid");
    assert_eq!(*responder.asked.lock().unwrap(), asked);

    // an answer signed by a responder the contract roots do not vouch for: SignatureError
    let (rogue_url, _) = start_responder(Arc::new(ContractPki::new("Rogue"))).await;
    let app2 = spawn_app_with(|s| {
        s.pnc.contract_roots = Some(roots.display().to_string());
        s.pnc.ocsp_responders = vec![rogue_url.clone()];
    })
    .await;
    let (_, _, user2) = app2
        .register("pnc-driver2@example.com", "driver password")
        .await;
    let emaid2: String =
        sqlx::query_scalar("SELECT id_tag FROM id_tags WHERE user_id = $1::uuid LIMIT 1")
            .bind(&user2)
            .fetch_one(&app2.db)
            .await
            .unwrap();
    let mut cs2 = station(&app2, "PNC-ROGUE").await;
    let answer = cs2
        .call("Authorize", json!({ "idToken": { "idToken": emaid2, "type": "eMAID" }, "iso15118CertificateHashData": [hash_data(&good, &pki.root, &rogue_url)] }))
        .await
        .unwrap();
    assert_eq!(answer["certificateStatus"], "SignatureError", "{answer}");
    assert_eq!(answer["idTokenInfo"]["status"], "Invalid");
    // a responder certified by another trusted PKI answering about this PKI's certificate:
    // not its issuer's responder (RFC 6960 4.2.2.2)
    let answer = cs
        .call("Authorize", json!({ "idToken": token, "iso15118CertificateHashData": [hash_data(&good, &pki.root, &other_url)] }))
        .await
        .unwrap();
    assert_eq!(answer["certificateStatus"], "SignatureError", "{answer}");
    // a valid contract of another eMAID does not authorise this one
    let someone_else = pki.contract("DE8ACC000000042", &url);
    let answer = cs
        .call(
            "Authorize",
            json!({ "idToken": token, "certificate": someone_else.pem() }),
        )
        .await
        .unwrap();
    assert_eq!(answer["certificateStatus"], "CertChainError", "{answer}");
    assert_eq!(answer["idTokenInfo"]["status"], "Invalid");
    // without a certificate nothing changes for ordinary tokens
    let plain = cs
        .call("Authorize", json!({ "idToken": token }))
        .await
        .unwrap();
    assert!(plain.get("certificateStatus").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
