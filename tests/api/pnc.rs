//! Plug & Charge certificate services over OCPP 2.0.1, against local fakes of the
//! contract-certificate provider and of an OCSP responder (the outside world we cannot
//! reach): Get15118EVCertificate forwarded (OCA M_26, M_28), GetCertificateStatus answered
//! from OCSP (M_24), and what happens when either is missing, refuses or is not allowed.

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
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
