//! Firmware campaigns: chargers updated a few at a time, progress from their
//! FirmwareStatusNotifications, failed attempts retried up to the limit, signed firmware,
//! cancelling, and the refusals; 1.6 and 2.0.1 over real sockets.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::{connect16, connect201, TestCharger};
use crate::helpers::{error_code, spawn_app_with, TestApp, CHARGER_PASSWORD};

const START: &str =
    "mutation($i: FirmwareCampaignInput!) { startFirmwareCampaign(input: $i) { id status } }";
const CAMPAIGN: &str = "query($id: ID!) { firmwareCampaign(id: $id) { status chargers { chargerId status state attempts } } }";

async fn app() -> (TestApp, String) {
    let app = spawn_app_with(|s| {
        s.firmware.tick_ms = 100;
        s.firmware.retry_secs = 0;
    })
    .await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("Firmware station").await;
    for charger in ["CP-F1", "CP-F2", "CS-F3", "CP-F4", "CP-F5"] {
        app.register_charger(&operator, charger, station, None)
            .await;
    }
    (app, operator)
}

async fn campaign(app: &TestApp, operator: &str, id: &str) -> Value {
    let response = app
        .graphql(CAMPAIGN, json!({ "id": id }), Some(operator))
        .await;
    assert!(response["errors"].is_null(), "{response}");
    response["data"]["firmwareCampaign"].clone()
}

/// The next call, which must be the firmware update, answered with `answer`.
async fn update_arrives(cp: &mut TestCharger, answer: Value) -> (String, Value) {
    let (id, action, payload) =
        tokio::time::timeout(Duration::from_secs(10), cp.next_server_call())
            .await
            .expect("the firmware update");
    cp.reply(&id, answer).await;
    (action, payload)
}

async fn report(cp: &mut TestCharger, status: &str) {
    cp.call("FirmwareStatusNotification", json!({ "status": status }))
        .await
        .unwrap();
}

#[actix_web::test]
async fn a_campaign_updates_chargers_a_few_at_a_time_and_retries_failures_up_to_its_limit() {
    let (app, operator) = app().await;
    let mut f1 = connect16(app.port, "CP-F1", Some(("CP-F1", CHARGER_PASSWORD))).await;
    f1.boot().await;
    let mut f2 = connect16(app.port, "CP-F2", Some(("CP-F2", CHARGER_PASSWORD))).await;
    f2.boot().await;
    let mut f3 = connect201(app.port, "CS-F3", Some(("CS-F3", CHARGER_PASSWORD))).await;
    f3.boot201().await;
    let started = app
        .graphql(
            START,
            json!({ "i": { "chargerIds": ["CP-F1", "CP-F2", "CS-F3"], "location": "https://fw.example.com/cg-2.0.bin",
                           "concurrency": 1, "maxAttempts": 2 } }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        started["data"]["startFirmwareCampaign"]["status"], "RUNNING",
        "{started}"
    );
    let id = started["data"]["startFirmwareCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // one at a time: CP-F1 first; the others wait until it installed
    let (action, payload) = update_arrives(&mut f1, json!({})).await;
    assert_eq!(action, "UpdateFirmware");
    assert_eq!(payload["location"], "https://fw.example.com/cg-2.0.bin");
    assert!(payload["retrieveDate"].is_string(), "{payload}");
    report(&mut f1, "Downloading").await;
    assert!(
        f2.recv_within(Duration::from_millis(400)).await.is_none(),
        "concurrency 1"
    );
    let view = campaign(&app, &operator, &id).await;
    assert_eq!(
        view["chargers"][0],
        json!({ "chargerId": "CP-F1", "status": "Downloading", "state": "SENT", "attempts": 1 })
    );
    report(&mut f1, "Installing").await;
    report(&mut f1, "Installed").await;

    // CP-F2 fails, and the next turn is CS-F3's (fewer attempts go first)
    update_arrives(&mut f2, json!({})).await;
    report(&mut f2, "InstallationFailed").await;
    let (action, payload) = update_arrives(&mut f3, json!({ "status": "Accepted" })).await;
    assert_eq!(action, "UpdateFirmware");
    assert_eq!(
        payload["firmware"]["location"],
        "https://fw.example.com/cg-2.0.bin"
    );
    let request_id = payload["requestId"].clone();
    assert!(request_id.is_i64(), "{payload}");
    // a notification for another request changes nothing; its own finishes it
    f3.call(
        "FirmwareStatusNotification",
        json!({ "status": "Installed", "requestId": 999_999 }),
    )
    .await
    .unwrap();
    f3.call(
        "FirmwareStatusNotification",
        json!({ "status": "Installed", "requestId": request_id }),
    )
    .await
    .unwrap();
    // CP-F2's second and last attempt
    update_arrives(&mut f2, json!({})).await;
    report(&mut f2, "DownloadFailed").await;

    let ended = app
        .wait_until(Duration::from_secs(10), || async {
            campaign(&app, &operator, &id).await["status"] == "FAILED"
        })
        .await;
    let view = campaign(&app, &operator, &id).await;
    assert!(ended, "{view}");
    assert_eq!(
        view["chargers"],
        json!([
            { "chargerId": "CP-F1", "status": "Installed", "state": "DONE", "attempts": 1 },
            { "chargerId": "CP-F2", "status": "DownloadFailed", "state": "FAILED", "attempts": 2 },
            { "chargerId": "CS-F3", "status": "Installed", "state": "DONE", "attempts": 1 },
        ])
    );
}

#[actix_web::test]
async fn signed_firmware_a_refusal_a_cancel_and_bad_campaigns() {
    let (app, operator) = app().await;
    let mut f4 = connect16(app.port, "CP-F4", Some(("CP-F4", CHARGER_PASSWORD))).await;
    f4.boot().await;
    let certificate = "-----BEGIN CERTIFICATE-----\nMIIBfirmwaresigner\n-----END CERTIFICATE-----";
    let started = app
        .graphql(
            START,
            json!({ "i": { "chargerIds": ["CP-F4", "CP-F5"], "location": "https://fw.example.com/signed.bin",
                           "signature": "c2lnbmF0dXJl", "signingCertificate": certificate,
                           "concurrency": 1, "maxAttempts": 1 } }),
            Some(&operator),
        )
        .await;
    let id = started["data"]["startFirmwareCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // a 1.6 charger gets the security extension's SignedUpdateFirmware, and refuses it
    let (action, payload) =
        update_arrives(&mut f4, json!({ "status": "InvalidCertificate" })).await;
    assert_eq!(action, "SignedUpdateFirmware");
    assert_eq!(payload["firmware"]["signature"], "c2lnbmF0dXJl");
    assert_eq!(payload["firmware"]["signingCertificate"], certificate);
    let refused = app
        .wait_until(Duration::from_secs(10), || async {
            campaign(&app, &operator, &id).await["chargers"][0]["state"] == "FAILED"
        })
        .await;
    assert!(refused, "{}", campaign(&app, &operator, &id).await);
    // CP-F5 is offline: it waits; cancelling ends the campaign without it
    let cancelled = app
        .graphql(
            "mutation($id: ID!) { cancelFirmwareCampaign(id: $id) { status chargers { chargerId state } } }",
            json!({ "id": id }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelFirmwareCampaign"]["status"], "CANCELLED",
        "{cancelled}"
    );
    assert_eq!(
        cancelled["data"]["cancelFirmwareCampaign"]["chargers"][1],
        json!({ "chargerId": "CP-F5", "state": "CANCELLED" })
    );

    for (input, code) in [
        (
            json!({ "chargerIds": ["CP-NONE"], "location": "https://fw.example.com/a.bin" }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "chargerIds": ["CP-F4"], "location": "file:///etc/passwd" }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "chargerIds": ["CP-F4"], "location": "https://fw.example.com/a.bin", "signature": "abc" }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "chargerIds": [], "location": "https://fw.example.com/a.bin" }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "chargerIds": ["CP-F4"], "location": "https://fw.example.com/a.bin", "concurrency": 0 }),
            "BAD_USER_INPUT",
        ),
    ] {
        let refused = app
            .graphql(START, json!({ "i": input }), Some(&operator))
            .await;
        assert_eq!(error_code(&refused).as_deref(), Some(code), "{refused}");
    }
    let (driver, _, _) = app.register("d@example.com", "correct horse battery").await;
    let forbidden = app
        .graphql(
            START,
            json!({ "i": { "chargerIds": ["CP-F4"], "location": "https://fw.example.com/a.bin" } }),
            Some(&driver),
        )
        .await;
    assert_eq!(error_code(&forbidden).as_deref(), Some("FORBIDDEN"));
}

/// TC_L_17 - TC_L_24 (CSMS side): a local controller is asked to publish firmware
/// (PublishFirmware with location, MD5 checksum and requestId), its notifications move the
/// publication to Published with the locations the stations behind it use, UnpublishFirmware
/// takes it back; a bad checksum notification and a refusal are kept too.
#[actix_web::test]
async fn a_local_controller_publishes_firmware_and_takes_it_back() {
    const PUBLISH: &str = "mutation($i: PublishFirmwareInput!) { publishFirmware(input: $i) { id requestId status checksum } }";
    const LIST: &str = "query($c: ID!) { firmwarePublications(chargerId: $c) { requestId status publishedLocations } }";
    const UNPUBLISH: &str =
        "mutation($c: ID!, $s: String!) { unpublishFirmware(chargerId: $c, checksum: $s) }";
    let (app, viewer) = app().await;
    let operator = app.staff_token("ADMIN").await;
    let mut lc = connect201(app.port, "CS-F3", Some(("CS-F3", CHARGER_PASSWORD))).await;
    lc.boot201().await;
    let checksum = "0123456789ABCDEF0123456789abcdef";
    let input = json!({ "i": { "chargerId": "CS-F3", "location": "https://fw.example.com/lc-3.bin", "checksum": checksum } });
    let request = app.graphql(PUBLISH, input.clone(), Some(&operator));
    let controller = async {
        let (id, action, payload) = lc.next_server_call().await;
        lc.reply(&id, json!({ "status": "Accepted" })).await;
        (action, payload)
    };
    let (published, (action, payload)) = tokio::join!(request, controller);
    assert_eq!(action, "PublishFirmware");
    assert_eq!(payload["location"], "https://fw.example.com/lc-3.bin");
    assert_eq!(payload["checksum"], checksum.to_ascii_lowercase());
    let request_id = published["data"]["publishFirmware"]["requestId"].clone();
    assert_eq!(payload["requestId"], request_id, "{published}");
    assert_eq!(published["data"]["publishFirmware"]["status"], "SENT");

    for (status, location) in [
        ("Downloading", None),
        ("Downloaded", None),
        ("ChecksumVerified", None),
        (
            "Published",
            Some(json!([
                "http://192.168.1.10/fw/lc-3.bin",
                "ftp://192.168.1.10/lc-3.bin"
            ])),
        ),
    ] {
        let mut notification = json!({ "status": status, "requestId": request_id });
        if let Some(location) = location {
            notification["location"] = location;
        }
        let answer = lc
            .call("PublishFirmwareStatusNotification", notification)
            .await;
        assert_eq!(answer, Ok(json!({})));
    }
    let list = app
        .graphql(LIST, json!({ "c": "CS-F3" }), Some(&operator))
        .await;
    assert_eq!(
        list["data"]["firmwarePublications"][0],
        json!({ "requestId": request_id, "status": "Published",
                "publishedLocations": ["http://192.168.1.10/fw/lc-3.bin", "ftp://192.168.1.10/lc-3.bin"] }),
        "{list}"
    );

    // taken back
    let request = app.graphql(
        UNPUBLISH,
        json!({ "c": "CS-F3", "s": checksum }),
        Some(&operator),
    );
    let controller = async {
        let (id, action, payload) = lc.next_server_call().await;
        lc.reply(&id, json!({ "status": "Unpublished" })).await;
        (action, payload)
    };
    let (unpublished, (action, payload)) = tokio::join!(request, controller);
    assert_eq!(action, "UnpublishFirmware");
    assert_eq!(
        payload,
        json!({ "checksum": checksum.to_ascii_lowercase() })
    );
    assert_eq!(unpublished["data"]["unpublishFirmware"], "UNPUBLISHED");

    // a second image: the controller finds its checksum wrong (TC_L_19)
    let request = app.graphql(PUBLISH, input, Some(&operator));
    let controller = async {
        let (id, _, payload) = lc.next_server_call().await;
        lc.reply(&id, json!({ "status": "Accepted" })).await;
        payload["requestId"].clone()
    };
    let (_, second) = tokio::join!(request, controller);
    lc.call(
        "PublishFirmwareStatusNotification",
        json!({ "status": "InvalidChecksum", "requestId": second }),
    )
    .await
    .expect("answered");
    let list = app
        .graphql(LIST, json!({ "c": "CS-F3" }), Some(&operator))
        .await;
    let statuses: Vec<&Value> = list["data"]["firmwarePublications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| &p["status"])
        .collect();
    assert_eq!(statuses, vec!["InvalidChecksum", "UNPUBLISHED"], "{list}");
    // TC_L_24, TC_L_20: a failed download and a failed publication are what operators see
    for status in ["DownloadFailed", "PublishFailed"] {
        lc.call(
            "PublishFirmwareStatusNotification",
            json!({ "status": status, "requestId": second }),
        )
        .await
        .expect("answered");
        let list = app
            .graphql(LIST, json!({ "c": "CS-F3" }), Some(&operator))
            .await;
        assert_eq!(
            list["data"]["firmwarePublications"][0]["status"], status,
            "{list}"
        );
    }
    // TC_L_23, TC_L_22: a controller still downloading keeps it; one without it has none
    for (answer, expected, kept) in [
        ("DownloadOngoing", "DOWNLOAD_ONGOING", "PublishFailed"),
        ("NoFirmware", "NO_FIRMWARE", "UNPUBLISHED"),
    ] {
        let request = app.graphql(
            UNPUBLISH,
            json!({ "c": "CS-F3", "s": checksum }),
            Some(&operator),
        );
        let controller = async {
            let (id, _, _) = lc.next_server_call().await;
            lc.reply(&id, json!({ "status": answer })).await;
        };
        let (response, ()) = tokio::join!(request, controller);
        assert_eq!(
            response["data"]["unpublishFirmware"], expected,
            "{response}"
        );
        let list = app
            .graphql(LIST, json!({ "c": "CS-F3" }), Some(&operator))
            .await;
        assert_eq!(
            list["data"]["firmwarePublications"][0]["status"], kept,
            "{list}"
        );
    }

    // an OPERATOR sees publications but cannot publish (software is an ADMIN's decision)
    let refused = app
        .graphql(PUBLISH, json!({ "i": { "chargerId": "CS-F3", "location": "https://fw.example.com/y.bin", "checksum": checksum } }), Some(&viewer))
        .await;
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{refused}"
    );
    let seen = app
        .graphql(LIST, json!({ "c": "CS-F3" }), Some(&viewer))
        .await;
    assert!(seen["errors"].is_null(), "{seen}");
    // a checksum that is not an MD5 is refused before anything is sent; a driver cannot publish
    let bad = app
        .graphql(
            PUBLISH,
            json!({ "i": { "chargerId": "CS-F3", "location": "https://fw.example.com/x.bin", "checksum": "abc" } }),
            Some(&operator),
        )
        .await;
    assert_eq!(error_code(&bad).as_deref(), Some("BAD_USER_INPUT"), "{bad}");
    let (driver, _, _) = app
        .register("lc-driver@example.com", "correct horse battery")
        .await;
    let denied = app
        .graphql(LIST, json!({ "c": "CS-F3" }), Some(&driver))
        .await;
    assert_eq!(
        error_code(&denied).as_deref(),
        Some("FORBIDDEN"),
        "{denied}"
    );
}
