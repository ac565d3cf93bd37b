//! Local authorization lists: a charger is given a list and gets it whole, then only the
//! differences (a token removed, a card blocked), a version mismatch is healed with the whole
//! list, and a charger that lost its list across a reboot gets it again; 1.6 and 2.0.1.

use std::time::Duration;

use serde_json::{json, Value};

use crate::charger_client::{connect16, connect201, TestCharger};
use crate::helpers::{error_code, spawn_app, TestApp, CHARGER_PASSWORD};

struct Fixture {
    app: TestApp,
    operator: String,
    /// (access token, card) of two drivers
    alice: (String, String),
    bob: (String, String),
    list: String,
}

async fn fixture(chargers: &[&str]) -> Fixture {
    let app = spawn_app().await;
    let operator = app.staff_token("OPERATOR").await;
    let station = app.create_station("List station").await;
    for charger in chargers {
        app.register_charger(&operator, charger, station, None)
            .await;
    }
    let mut drivers = Vec::new();
    for (email, card) in [
        ("alice@example.com", "04ALICE"),
        ("bob@example.com", "04BOB"),
    ] {
        let (token, _, _) = app.register(email, "correct horse battery").await;
        let added = app
            .graphql(
                "mutation($i: AddIdTokenInput!) { addIdToken(input: $i) { idToken } }",
                json!({ "i": { "idToken": card, "type": "ISO14443" } }),
                Some(&token),
            )
            .await;
        assert!(added["errors"].is_null(), "{added}");
        drivers.push((token, card.to_string()));
    }
    let created = app
        .graphql(
            "mutation { createLocalList(name: \"Depot drivers\") { id size } }",
            json!({}),
            Some(&operator),
        )
        .await;
    let list = created["data"]["createLocalList"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let added = app
        .graphql(
            "mutation($l: ID!, $t: [String!]!) { addToLocalList(listId: $l, idTokens: $t) { size idTokens } }",
            json!({ "l": list, "t": ["04ALICE", "04BOB"] }),
            Some(&operator),
        )
        .await;
    assert_eq!(added["data"]["addToLocalList"]["size"], 2, "{added}");
    let bob = drivers.pop().unwrap();
    let alice = drivers.pop().unwrap();
    Fixture {
        app,
        operator,
        alice,
        bob,
        list,
    }
}

/// The next call the charger gets (within 10 s), unanswered.
async fn next_call(cp: &mut TestCharger) -> (String, String, Value) {
    tokio::time::timeout(Duration::from_secs(10), cp.next_server_call())
        .await
        .expect("a call from the server")
}

/// The next call the charger gets (within 10 s), answered with `answer`.
async fn expect_call(cp: &mut TestCharger, answer: Value) -> (String, Value) {
    let (id, action, payload) = next_call(cp).await;
    cp.reply(&id, answer).await;
    (action, payload)
}

/// Like `expect_call`, for a charger that booted just before: the boot's reconciliation runs
/// beside the test, and when its look-up sees the list assigned it asks the charger's version
/// first. Such a GetLocalListVersion is answered with `holds` (the version the charger holds).
async fn expect_call_after_boot(
    cp: &mut TestCharger,
    answer: Value,
    holds: i64,
) -> (String, Value) {
    loop {
        let (id, action, payload) = next_call(cp).await;
        if action == "GetLocalListVersion" {
            cp.reply(&id, json!({ "listVersion": holds })).await;
            continue;
        }
        cp.reply(&id, answer).await;
        return (action, payload);
    }
}

/// No call within `within` but a boot's GetLocalListVersion (see `expect_call_after_boot`).
async fn no_call_after_boot(cp: &mut TestCharger, holds: i64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while let Ok((id, action, payload)) =
        tokio::time::timeout_at(deadline, cp.next_server_call()).await
    {
        assert_eq!(action, "GetLocalListVersion", "{payload}");
        cp.reply(&id, json!({ "listVersion": holds })).await;
    }
}

async fn held(f: &Fixture, charger: &str) -> Value {
    f.app
        .graphql(
            "query($c: ID!) { chargerLocalList(chargerId: $c) { listId version entries reportedVersion } }",
            json!({ "c": charger }),
            Some(&f.operator),
        )
        .await["data"]["chargerLocalList"]
        .clone()
}

async fn push(f: &Fixture, charger: &str, full: bool) -> Value {
    f.app
        .graphql(
            "mutation($c: ID!, $f: Boolean) { pushLocalList(chargerId: $c, full: $f) }",
            json!({ "c": charger, "f": full }),
            Some(&f.operator),
        )
        .await
}

#[actix_web::test]
async fn a_charger_gets_its_list_whole_then_only_what_changed() {
    let f = fixture(&["CP-L1"]).await;
    let mut cp = connect16(f.app.port, "CP-L1", Some(("CP-L1", CHARGER_PASSWORD))).await;
    cp.boot().await;

    // given the list while online: it is sent whole at once
    let assigned = f
        .app
        .graphql(
            "mutation($c: ID!, $l: ID) { assignLocalList(chargerId: $c, listId: $l) }",
            json!({ "c": "CP-L1", "l": f.list }),
            Some(&f.operator),
        )
        .await;
    assert_eq!(assigned["data"]["assignLocalList"], true, "{assigned}");
    let (action, payload) =
        expect_call_after_boot(&mut cp, json!({ "status": "Accepted" }), 0).await;
    assert_eq!(action, "SendLocalList");
    assert_eq!(payload["updateType"], "Full");
    assert_eq!(payload["listVersion"], 1);
    let list = payload["localAuthorizationList"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{payload}");
    assert_eq!(list[0]["idTag"], "04ALICE");
    assert_eq!(list[0]["idTagInfo"]["status"], "Accepted");
    assert!(list[0]["idTagInfo"]["parentIdTag"].is_string(), "{payload}");
    let synced = f
        .app
        .wait_until(Duration::from_secs(10), || async {
            held(&f, "CP-L1").await["version"] == 1
        })
        .await;
    assert!(synced, "{}", held(&f, "CP-L1").await);
    assert_eq!(held(&f, "CP-L1").await["entries"], 2);

    // nothing changed: nothing is sent
    let same = push(&f, "CP-L1", false).await;
    assert_eq!(same["data"]["pushLocalList"], 1, "{same}");
    no_call_after_boot(&mut cp, 1, Duration::from_millis(300)).await;

    // a token removed: the difference names it without content
    let removed = f
        .app
        .graphql(
            "mutation($l: ID!, $t: [String!]!) { removeFromLocalList(listId: $l, idTokens: $t) { size } }",
            json!({ "l": f.list, "t": ["04BOB"] }),
            Some(&f.operator),
        )
        .await;
    assert_eq!(removed["data"]["removeFromLocalList"]["size"], 1);
    let (action, payload) =
        expect_call_after_boot(&mut cp, json!({ "status": "Accepted" }), 1).await;
    assert_eq!(action, "SendLocalList");
    assert_eq!(
        payload,
        json!({ "listVersion": 2, "updateType": "Differential", "localAuthorizationList": [{ "idTag": "04BOB" }] })
    );

    // alice blocks her card: the charger's list says Blocked
    let blocked = f
        .app
        .graphql(
            "mutation { blockIdToken(idToken: \"04ALICE\") { blocked } }",
            json!({}),
            Some(&f.alice.0),
        )
        .await;
    assert_eq!(blocked["data"]["blockIdToken"]["blocked"], true);
    let (action, payload) = expect_call(&mut cp, json!({ "status": "Accepted" })).await;
    assert_eq!(action, "SendLocalList");
    assert_eq!(payload["listVersion"], 3);
    assert_eq!(payload["updateType"], "Differential");
    assert_eq!(
        payload["localAuthorizationList"][0]["idTagInfo"]["status"],
        "Blocked"
    );

    // the charger lost track: a difference it refuses with VersionMismatch is followed by the
    // whole list
    f.app
        .graphql(
            "mutation($l: ID!, $t: [String!]!) { addToLocalList(listId: $l, idTokens: $t) { size } }",
            json!({ "l": f.list, "t": ["04BOB"] }),
            Some(&f.operator),
        )
        .await;
    let (_, payload) = expect_call(&mut cp, json!({ "status": "VersionMismatch" })).await;
    assert_eq!(payload["updateType"], "Differential");
    let (_, payload) = expect_call(&mut cp, json!({ "status": "Accepted" })).await;
    assert_eq!(payload["updateType"], "Full");
    assert_eq!(payload["listVersion"], 4);
    assert_eq!(
        payload["localAuthorizationList"].as_array().map(Vec::len),
        Some(2)
    );

    // a refused whole list is reported, and the version stays
    let (refused, (_, payload)) = tokio::join!(
        push(&f, "CP-L1", true),
        expect_call(&mut cp, json!({ "status": "Failed" }))
    );
    assert_eq!(payload["updateType"], "Full");
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("CHARGER_REJECTED"),
        "{refused}"
    );
    let version = f
        .app
        .wait_until(Duration::from_secs(5), || async {
            held(&f, "CP-L1").await["version"] == 4
        })
        .await;
    assert!(version);

    // bad input and the wrong callers
    let unknown = f
        .app
        .graphql(
            "mutation($l: ID!, $t: [String!]!) { addToLocalList(listId: $l, idTokens: $t) { size } }",
            json!({ "l": f.list, "t": ["NOT-REGISTERED"] }),
            Some(&f.operator),
        )
        .await;
    assert_eq!(
        error_code(&unknown).as_deref(),
        Some("BAD_USER_INPUT"),
        "{unknown}"
    );
    let driver = f
        .app
        .graphql(
            "mutation { pushLocalList(chargerId: \"CP-L1\") }",
            json!({}),
            Some(&f.bob.0),
        )
        .await;
    assert_eq!(error_code(&driver).as_deref(), Some("FORBIDDEN"));
    let missing = push(&f, "CP-NOPE", false).await;
    assert_eq!(error_code(&missing).as_deref(), Some("NOT_FOUND"));

    // rebooted with its list wiped (TC_042: GetLocalListVersion answered 0): the whole list
    drop(cp);
    let mut cp = connect16(f.app.port, "CP-L1", Some(("CP-L1", CHARGER_PASSWORD))).await;
    cp.boot().await;
    let (action, _) = expect_call(&mut cp, json!({ "listVersion": 0 })).await;
    assert_eq!(action, "GetLocalListVersion");
    let (action, payload) = expect_call(&mut cp, json!({ "status": "Accepted" })).await;
    assert_eq!(action, "SendLocalList");
    assert_eq!(payload["updateType"], "Full");
    assert_eq!(payload["listVersion"], 5);
}

#[actix_web::test]
async fn a_2_0_1_station_that_lost_its_list_in_a_reboot_gets_it_again() {
    let f = fixture(&["CS-L2"]).await;
    f.app
        .graphql(
            "mutation($c: ID!, $l: ID) { assignLocalList(chargerId: $c, listId: $l) }",
            json!({ "c": "CS-L2", "l": f.list }),
            Some(&f.operator),
        )
        .await;
    // offline when given the list: it gets it at its boot
    let mut cs = connect201(f.app.port, "CS-L2", Some(("CS-L2", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    let (action, _) = expect_call(&mut cs, json!({ "versionNumber": 0 })).await;
    assert_eq!(action, "GetLocalListVersion");
    let (action, payload) = expect_call(&mut cs, json!({ "status": "Accepted" })).await;
    assert_eq!(action, "SendLocalList");
    assert_eq!(payload["versionNumber"], 1);
    assert_eq!(payload["updateType"], "Full");
    assert_eq!(
        payload["localAuthorizationList"][0]["idToken"],
        json!({ "idToken": "04ALICE", "type": "ISO14443" })
    );
    assert_eq!(
        payload["localAuthorizationList"][0]["idTokenInfo"]["status"],
        "Accepted"
    );
    assert_eq!(
        payload["localAuthorizationList"][0]["idTokenInfo"]["groupIdToken"]["type"],
        "Central"
    );
    let synced = f
        .app
        .wait_until(Duration::from_secs(10), || async {
            held(&f, "CS-L2").await["version"] == 1
        })
        .await;
    assert!(synced);
    drop(cs);

    // a reboot that kept the list: asked, and left alone
    let mut cs = connect201(f.app.port, "CS-L2", Some(("CS-L2", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    let (action, _) = expect_call(&mut cs, json!({ "versionNumber": 1 })).await;
    assert_eq!(action, "GetLocalListVersion");
    assert!(cs.recv_within(Duration::from_millis(500)).await.is_none());
    drop(cs);

    // a reboot that wiped it: the whole list again, under a new version
    let mut cs = connect201(f.app.port, "CS-L2", Some(("CS-L2", CHARGER_PASSWORD))).await;
    cs.boot201().await;
    let (_, _) = expect_call(&mut cs, json!({ "versionNumber": 0 })).await;
    let (action, payload) = expect_call(&mut cs, json!({ "status": "Accepted" })).await;
    assert_eq!(action, "SendLocalList");
    assert_eq!(payload["updateType"], "Full");
    assert_eq!(payload["versionNumber"], 2);
    let state = f
        .app
        .wait_until(Duration::from_secs(10), || async {
            let h = held(&f, "CS-L2").await;
            h["version"] == 2 && h["reportedVersion"] == 2
        })
        .await;
    assert!(state, "{}", held(&f, "CS-L2").await);

    // no list any more: its entries are removed, and a whole push is an empty Full (TC_D_04)
    f.app
        .graphql(
            "mutation($c: ID!) { assignLocalList(chargerId: $c, listId: null) }",
            json!({ "c": "CS-L2" }),
            Some(&f.operator),
        )
        .await;
    let (_, payload) = expect_call(&mut cs, json!({ "status": "Accepted" })).await;
    assert_eq!(payload["updateType"], "Differential");
    assert_eq!(
        payload["localAuthorizationList"],
        json!([{ "idToken": { "idToken": "04ALICE", "type": "ISO14443" } },
               { "idToken": { "idToken": "04BOB", "type": "ISO14443" } }])
    );
    let (pushed, (_, payload)) = tokio::join!(
        push(&f, "CS-L2", true),
        expect_call(&mut cs, json!({ "status": "Accepted" }))
    );
    assert_eq!(pushed["data"]["pushLocalList"], 4, "{pushed}");
    assert_eq!(payload, json!({ "versionNumber": 4, "updateType": "Full" }));
}
