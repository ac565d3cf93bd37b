//! The operator console in a real headless Chromium (over WebDriver) against the real server
//! and real OCPP chargers over sockets: what an operator sees and does in the browser.
//! Screenshots go to `$CHARGEGRID_SCREENSHOTS` when it is set (the README's images).

use serde_json::json;

use crate::charger_client::{connect16, TestCharger};
use crate::helpers::{spawn_app, spawn_app_with_workers, TestApp, CHARGER_PASSWORD};
use crate::webdriver::Browser;

const STAFF_PASSWORD: &str = "operator password";

/// Registers a user with `role` and returns their email (password `STAFF_PASSWORD`).
async fn user_with_role(app: &TestApp, role: &str) -> String {
    let email = format!(
        "{}-{}@example.com",
        role.to_lowercase(),
        uuid::Uuid::new_v4().simple()
    );
    let (_, _, id) = app.register(&email, STAFF_PASSWORD).await;
    sqlx::query("UPDATE users SET role = $2 WHERE id = $1::uuid")
        .bind(&id)
        .bind(role)
        .execute(&app.db)
        .await
        .expect("set the role");
    email
}

/// Opens the console and signs in through the form, as a person would.
async fn sign_in(browser: &Browser, app: &TestApp, email: &str) {
    browser.goto(&format!("{}/console", app.address)).await;
    browser.type_into("#email", email).await;
    browser.type_into("#password", STAFF_PASSWORD).await;
    browser.click("#signin-submit").await;
}

/// A booted 1.6 charger with connector 1 Available.
async fn online_charger(app: &TestApp, id: &str) -> TestCharger {
    let mut cp = connect16(app.port, id, Some((id, CHARGER_PASSWORD))).await;
    cp.boot().await;
    cp.call(
        "StatusNotification",
        json!({ "connectorId": 1, "errorCode": "NoError", "status": "Available" }),
    )
    .await
    .expect("status accepted");
    cp
}

struct Fleet {
    app: TestApp,
    operator: String,
    station: uuid::Uuid,
}

/// A server with `registered` chargers at one station, and an operator who may sign in.
async fn fleet(registered: &[&str]) -> Fleet {
    let app = spawn_app().await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Console station").await;
    for id in registered {
        app.register_charger(&token, id, station, None).await;
    }
    let operator = user_with_role(&app, "OPERATOR").await;
    Fleet {
        app,
        operator,
        station,
    }
}

#[actix_web::test]
async fn the_overview_counts_the_chargers_that_are_connected() {
    let f = fleet(&["CP-C1", "CP-C2", "CP-C3"]).await;
    let _one = online_charger(&f.app, "CP-C1").await;
    let _two = online_charger(&f.app, "CP-C2").await;
    let browser = Browser::start().await;
    sign_in(&browser, &f.app, &f.operator).await;

    browser.wait_text("#overview-online", |t| t == "2").await;
    browser.wait_text("#overview-offline", |t| t == "1").await;
    browser.wait_text("#overview-faulted", |t| t == "0").await;
    let who = browser.wait_text("#whoami", |t| !t.is_empty()).await;
    assert!(who.contains("operator"), "{who}");
    browser.screenshot("console-overview").await;

    // a third charger connecting is counted without a reload
    browser
        .eval("window.__sameDocument = true; return null;", json!([]))
        .await;
    let _three = online_charger(&f.app, "CP-C3").await;
    browser.wait_text("#overview-online", |t| t == "3").await;
    browser.wait_text("#overview-offline", |t| t == "0").await;
    assert_eq!(
        browser
            .eval("return window.__sameDocument === true;", json!([]))
            .await,
        true
    );

    browser
        .goto(&format!("{}/console#/chargers", f.app.address))
        .await;
    browser
        .wait_text("#main tbody", |t| t.contains("CP-C3"))
        .await;
    browser.screenshot("console-chargers").await;
    browser
        .goto(&format!("{}/console#/map", f.app.address))
        .await;
    browser
        .wait_text("#main tbody", |t| t.contains("Console station"))
        .await;
    assert!(browser
        .attribute("[data-testid=station-map]", "aria-label")
        .await
        .is_some_and(|l| l.contains("1 stations")));
}

#[actix_web::test]
async fn a_charger_going_offline_turns_offline_in_the_page_without_reload() {
    let f = fleet(&["CP-OFF"]).await;
    let cp = online_charger(&f.app, "CP-OFF").await;
    let browser = Browser::start().await;
    sign_in(&browser, &f.app, &f.operator).await;
    browser.wait_text("#overview-online", |t| t == "1").await;
    browser
        .goto(&format!("{}/console#/chargers/CP-OFF", f.app.address))
        .await;
    browser
        .wait_text("[data-testid=charger-state]", |t| t == "online")
        .await;
    browser
        .eval("window.__sameDocument = true; return null;", json!([]))
        .await;

    drop(cp); // the charger's socket closes

    browser
        .wait_text("[data-testid=charger-state]", |t| t == "offline")
        .await;
    assert_eq!(
        browser
            .eval("return window.__sameDocument === true;", json!([]))
            .await,
        true,
        "the page was not reloaded"
    );
}

#[actix_web::test]
async fn a_reset_sent_from_the_page_reaches_the_charger_and_its_answer_is_shown() {
    let f = fleet(&["CP-RST"]).await;
    let mut cp = online_charger(&f.app, "CP-RST").await;
    let browser = Browser::start().await;
    sign_in(&browser, &f.app, &f.operator).await;
    browser.wait_text("#overview-online", |t| t == "1").await;
    browser
        .goto(&format!("{}/console#/chargers/CP-RST", f.app.address))
        .await;
    browser
        .wait_text("[data-testid=charger-state]", |t| t == "online")
        .await;

    browser.click("#reset-hard").await;
    let (id, action, payload) = cp.next_server_call().await;
    assert_eq!(action, "Reset");
    assert_eq!(payload["type"], "Hard");
    cp.reply(&id, json!({ "status": "Rejected" })).await;
    browser
        .wait_text("#command-answer", |t| {
            t.contains("Reset (hard): Rejected by the charger")
        })
        .await;

    browser.click("#reset-soft").await;
    let (id, action, payload) = cp.next_server_call().await;
    assert_eq!(action, "Reset");
    assert_eq!(payload["type"], "Soft");
    cp.reply(&id, json!({ "status": "Accepted" })).await;
    browser
        .wait_text("#command-answer", |t| {
            t.contains("Reset (soft): Accepted by the charger")
        })
        .await;
    // both commands are in the history, as the audit log recorded them
    browser
        .wait_text("#main", |t| t.matches("resetCharger").count() >= 2)
        .await;
    browser.screenshot("console-charger").await;
}

fn meter(tid: i64, wh: i64, w: i64, at: &str) -> serde_json::Value {
    json!({ "connectorId": 1, "transactionId": tid, "meterValue": [{ "timestamp": at, "sampledValue": [
        { "value": wh.to_string(), "unit": "Wh", "measurand": "Energy.Active.Import.Register" },
        { "value": w.to_string(), "unit": "W", "measurand": "Power.Active.Import" }
    ] }] })
}

#[actix_web::test]
async fn a_session_started_through_the_api_appears_live_and_its_meter_chart_grows() {
    let f = fleet(&["CP-SES"]).await;
    let mut cp = online_charger(&f.app, "CP-SES").await;
    let (driver, _, _) = f
        .app
        .register("driver@example.com", "driver password")
        .await;
    f.app.fund(&driver, "50.00").await;
    let browser = Browser::start().await;
    sign_in(&browser, &f.app, &f.operator).await;
    browser.wait_text("#overview-online", |t| t == "1").await;
    browser
        .goto(&format!("{}/console#/sessions", f.app.address))
        .await;
    browser
        .wait_text("#main tbody", |t| t.contains("Nothing"))
        .await;

    // the driver starts a session through the API; the charger accepts and starts
    let start = f.app.graphql(
        "mutation($i: StartSessionInput!) { startSession(input: $i) { id status } }",
        json!({ "i": { "stationId": f.station.to_string() } }),
        Some(&driver),
    );
    let charger = async {
        let (id, action, payload) = cp.next_server_call().await;
        assert_eq!(action, "RemoteStartTransaction");
        cp.reply(&id, json!({ "status": "Accepted" })).await;
        payload["idTag"].as_str().unwrap().to_string()
    };
    let (started, id_tag) = tokio::join!(start, charger);
    let session = started["data"]["startSession"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("startSession: {started}"))
        .to_string();
    let tid = cp
        .call("StartTransaction", json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 1000, "timestamp": "2026-11-21T10:00:00Z" }))
        .await
        .unwrap()["transactionId"]
        .as_i64()
        .unwrap();

    // it appears in the list without a reload
    let row = format!("[data-session='{session}']");
    browser.wait_text(&row, |t| t.contains("in progress")).await;
    browser.click(&format!("{row} a")).await;
    browser
        .wait_text("[data-testid=session-status]", |t| t == "in progress")
        .await;

    for (i, (wh, w)) in [(2500, 7400), (4200, 7300), (6100, 7200)]
        .iter()
        .enumerate()
    {
        let at = format!("2026-11-21T10:0{}:00Z", i + 1);
        cp.call("MeterValues", meter(tid, *wh, *w, &at))
            .await
            .unwrap();
        let want = (i + 1).to_string();
        let deadline = std::time::Instant::now() + crate::webdriver::PAGE_WAIT;
        while browser
            .attribute("[data-testid=meter-chart]", "data-points")
            .await
            .as_deref()
            != Some(want.as_str())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the chart never showed {want} samples"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    browser
        .wait_text("[data-testid=session-energy]", |t| t == "5.100 kWh")
        .await;
    let label = browser
        .attribute("[data-testid=meter-chart]", "aria-label")
        .await
        .unwrap_or_default();
    assert!(label.contains("5.100 kWh delivered"), "{label}");
    browser.screenshot("console-session").await;
}

#[actix_web::test]
async fn a_drivers_sign_in_is_refused_by_the_console() {
    let app = spawn_app().await;
    let driver = user_with_role(&app, "DRIVER").await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, &driver).await;
    let refused = browser
        .wait_text("[data-testid=refused]", |t| !t.is_empty())
        .await;
    assert!(
        refused.contains("for operators and administrators") && refused.contains("driver account"),
        "{refused}"
    );
    assert_eq!(
        browser
            .eval("return document.getElementById('nav').hidden;", json!([]))
            .await,
        true,
        "a driver sees no navigation"
    );
    assert_eq!(
        browser
            .eval("return sessionStorage.getItem('cg.access');", json!([]))
            .await,
        serde_json::Value::Null,
        "no token is kept"
    );
    browser.screenshot("console-driver-refused").await;
}

#[actix_web::test]
async fn the_console_is_served_with_its_content_types_csp_and_revalidation() {
    let app = spawn_app().await;
    let page = app
        .http
        .get(format!("{}/console", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    let csp = header(&page, "content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&page, "cache-control"), "no-cache");

    let script = app
        .http
        .get(format!("{}/console/js/app.js", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&script, "content-type"),
        "text/javascript; charset=utf-8"
    );
    let etag = header(&script, "etag");
    assert!(etag.starts_with('"'), "{etag}");
    let again = app
        .http
        .get(format!("{}/console/js/app.js", app.address))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let missing = app
        .http
        .get(format!("{}/console/js/nope.js", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// No page answers with an error box (a query over the API's cost limit, a field that does not
/// exist): each shows the data of a finished, invoiced session.
#[actix_web::test]
async fn every_page_shows_its_data_without_an_error() {
    let app = spawn_app_with_workers(|_| {}).await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Pages station").await;
    app.register_charger(&token, "CP-PG", station, None).await;
    let operator = user_with_role(&app, "OPERATOR").await;
    let mut cp = online_charger(&app, "CP-PG").await;
    let (driver, _, _) = app.register("pages@example.com", "driver password").await;
    app.fund(&driver, "50.00").await;

    // a session from start to invoice, through the API and the charger, all within today (UTC)
    let now = chrono::Utc::now();
    let midnight = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    let base = (now - chrono::Duration::seconds(30)).max(midnight);
    let at = |seconds: i64| {
        (base + chrono::Duration::seconds(seconds))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let start = app.graphql(
        "mutation($i: StartSessionInput!) { startSession(input: $i) { id } }",
        json!({ "i": { "stationId": station.to_string() } }),
        Some(&driver),
    );
    let accept = async {
        let (id, _, payload) = cp.next_server_call().await;
        cp.reply(&id, json!({ "status": "Accepted" })).await;
        payload["idTag"].as_str().unwrap().to_string()
    };
    let (started, id_tag) = tokio::join!(start, accept);
    let session = started["data"]["startSession"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tid = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": at(0) }),
        )
        .await
        .unwrap()["transactionId"]
        .as_i64()
        .unwrap();
    cp.call("MeterValues", meter(tid, 3000, 7000, &at(10)))
        .await
        .unwrap();
    let end = app.graphql(
        "mutation($id: ID!) { endSession(sessionId: $id) { status } }",
        json!({ "id": session }),
        Some(&driver),
    );
    let stop = async {
        let (id, action, _) = cp.next_server_call().await;
        assert_eq!(action, "RemoteStopTransaction");
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    tokio::join!(end, stop);
    cp.call(
        "StopTransaction",
        json!({ "transactionId": tid, "meterStop": 4000, "timestamp": at(20), "reason": "Remote" }),
    )
    .await
    .unwrap();
    // a site (no charger attached: the charger above answers only what the test expects) and
    // a card, for the sites and cards pages
    let created = app
        .graphql(
            "mutation { createSite(input: { name: \"Pages site\", gridLimitAmps: 63 }) { id } }",
            json!({}),
            Some(&token),
        )
        .await;
    let site = created["data"]["createSite"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createSite: {created}"))
        .to_string();
    let card = app
        .graphql(
            "mutation { addIdToken(input: { idToken: \"04PAGES\", type: ISO14443 }) { idToken } }",
            json!({}),
            Some(&driver),
        )
        .await;
    assert!(card["errors"].is_null(), "{card}");
    let invoiced = app
        .wait_until(std::time::Duration::from_secs(15), || async {
            !app.graphql(
                "query($id: ID!) { session(id: $id) { invoice { id } } }",
                json!({ "id": session }),
                Some(&driver),
            )
            .await["data"]["session"]["invoice"]
                .is_null()
        })
        .await;
    assert!(invoiced, "billing wrote the invoice");

    let browser = Browser::start().await;
    sign_in(&browser, &app, &operator).await;
    browser
        .wait_text("#overview-energy", |t| t == "4.000 kWh")
        .await;
    let pages = [
        ("chargers", "#main tbody", "CP-PG"),
        ("chargers/CP-PG", "#main", "completed"),
        ("sessions", "#main tbody", "completed"),
        (
            &*format!("sessions/{session}"),
            "[data-testid=invoice]",
            "paid",
        ),
        ("map", "#main tbody", "Pages station"),
        ("billing", "#main", "pages@example.com"),
        (
            "chargers/CP-PG",
            "[data-testid=local-list-version]",
            "0 (never had one)",
        ),
        ("sites", "#main tbody", "Pages site"),
        (
            &*format!("sites/{site}"),
            "[data-testid=site-limit]",
            "63.0 A",
        ),
        (
            "reservations?charger=CP-PG",
            "#main tbody",
            "Nothing to show",
        ),
        ("tokens", "#main tbody", "04PAGES"),
        ("firmware", "#main tbody", "Nothing to show"),
    ];
    for (page, css, expected) in pages {
        browser
            .goto(&format!("{}/console#/{page}", app.address))
            .await;
        browser.wait_text(css, |t| t.contains(expected)).await;
        assert_eq!(
            browser.text("#main .error").await,
            None,
            "#/{page} shows an error"
        );
    }
    browser
        .goto(&format!("{}/console#/billing", app.address))
        .await;
    browser.wait_text("#main", |t| t.contains("paid")).await;
    browser.screenshot("console-billing").await;
}

#[actix_web::test]
async fn an_admin_replays_a_dead_letter_from_the_page() {
    let app = spawn_app_with_workers(|_| {}).await;
    let admin = user_with_role(&app, "ADMIN").await;
    let billing = app
        .ctx
        .topology()
        .queue(&chargegrid::events::topology::BILLING);
    crate::operations::dead_letter_one(&app).await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, &admin).await;
    browser.wait_text("#overview-online", |t| t == "0").await;
    browser
        .goto(&format!("{}/console#/dead-letters", app.address))
        .await;
    let section = format!("[data-dlq='{billing}']");
    // the letter arrives once billing has refused it: the page shows it after a reload of the view
    let deadline = std::time::Instant::now() + crate::webdriver::PAGE_WAIT;
    loop {
        let depth = browser
            .text(&format!("{section} [data-testid=dlq-depth]"))
            .await;
        if depth.as_deref() == Some("1 dead letter") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page never showed the dead letter: {depth:?}"
        );
        browser
            .goto(&format!("{}/console#/overview", app.address))
            .await;
        browser
            .goto(&format!("{}/console#/dead-letters", app.address))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    browser
        .wait_text(&format!("{section} tbody"), |t| t.contains("SESSION_ENDED"))
        .await;
    browser.screenshot("console-dead-letters").await;
    browser.click(&format!("{section} button")).await;
    browser
        .wait_text("[data-testid=replay-answer]", |t| {
            t == format!("1 message moved back into {billing}.")
        })
        .await;
}

/// Clicks a button that asks to be pressed twice (the console's confirmation for what cannot be
/// undone): once to arm it, once to confirm.
async fn confirm(browser: &Browser, css: &str) {
    browser.click(css).await;
    browser.wait_text(css, |t| t.starts_with("Confirm")).await;
    browser.click(css).await;
}

/// Chooses `value` in the `<select>` matching `css` once that option exists.
async fn choose(browser: &Browser, css: &str, value: &str) {
    browser
        .click(&format!("{css} option[value='{value}']"))
        .await;
}

/// A screenshot of the page from its top (a form the test used may have scrolled it).
async fn screenshot_from_top(browser: &Browser, name: &str) {
    browser
        .eval("window.scrollTo(0, 0); return null;", json!([]))
        .await;
    browser.screenshot(name).await;
}

async fn remember_document(browser: &Browser) {
    browser
        .eval("window.__sameDocument = true; return null;", json!([]))
        .await;
}

async fn assert_same_document(browser: &Browser) {
    assert_eq!(
        browser
            .eval("return window.__sameDocument === true;", json!([]))
            .await,
        true,
        "the page was reloaded"
    );
}

/// A call the test makes through an `Obliging` charger, and where its answer goes.
type TestCall = (
    String,
    serde_json::Value,
    tokio::sync::oneshot::Sender<serde_json::Value>,
);

/// A connected charger that answers every call of the server in the background (Accepted, or
/// what the action needs) while the test sends its own calls through `call`.
struct Obliging {
    commands: tokio::sync::mpsc::UnboundedSender<TestCall>,
}

fn obliging_answer(action: &str) -> serde_json::Value {
    match action {
        "GetCompositeSchedule" => json!({ "status": "Rejected" }),
        "GetLocalListVersion" => json!({ "listVersion": 0 }),
        _ => json!({ "status": "Accepted" }),
    }
}

impl Obliging {
    fn spawn(mut cp: TestCharger) -> Obliging {
        let (commands, mut rx) = tokio::sync::mpsc::unbounded_channel::<TestCall>();
        tokio::spawn(async move {
            loop {
                // the server's calls that arrived while the charger waited for an answer
                while let Some((id, action, _)) = cp.server_calls.pop_front() {
                    cp.reply(&id, obliging_answer(&action)).await;
                }
                tokio::select! {
                    command = rx.recv() => {
                        let Some((action, payload, done)) = command else { return };
                        let answer = cp.call(&action, payload).await.expect("answered");
                        let _ = done.send(answer);
                    }
                    frame = cp.recv_within(std::time::Duration::from_millis(200)) => {
                        let Some(call) = frame.filter(|f| f[0] == 2) else { continue };
                        let action = call[2].as_str().unwrap_or_default();
                        cp.reply(call[1].as_str().unwrap_or_default(), obliging_answer(action))
                            .await;
                    }
                }
            }
        });
        Obliging { commands }
    }

    async fn call(&self, action: &str, payload: serde_json::Value) -> serde_json::Value {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.commands
            .send((action.to_string(), payload, done))
            .expect("the charger runs");
        answer.await.expect("the charger's call is answered")
    }
}

#[actix_web::test]
async fn a_site_created_in_the_page_gets_a_charger_and_shows_its_load_live() {
    let app = crate::helpers::spawn_app_with(|s| s.smart_charging.verify_schedules = false).await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Depot station").await;
    app.register_charger(&token, "CP-SITE", station, None).await;
    let operator = user_with_role(&app, "OPERATOR").await;
    let cp = Obliging::spawn(online_charger(&app, "CP-SITE").await);
    let (driver, id_tag) = app.funded_driver("site-driver@example.com").await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, &operator).await;
    browser.wait_text("#overview-online", |t| t == "1").await;

    // the operator creates the site and attaches the charger, in the page
    browser
        .goto(&format!("{}/console#/sites", app.address))
        .await;
    browser
        .wait_text("#main tbody", |t| t.contains("Nothing"))
        .await;
    browser.type_into("#site-name", "Depot").await;
    browser.type_into("#site-limit", "63").await;
    browser.click("#create-site-submit").await;
    browser
        .wait_text("#main h1", |t| t.contains("Site Depot"))
        .await;
    choose(&browser, "#attach-charger-id", "CP-SITE").await;
    browser.clear("#attach-max").await;
    browser.type_into("#attach-max", "32").await;
    browser.click("#attach-submit").await;
    browser
        .wait_text("[data-testid=attach-answer]", |t| {
            t.contains("CP-SITE attached")
        })
        .await;
    browser
        .wait_text("#main [data-charger='CP-SITE']", |t| t.contains("32.0 A"))
        .await;
    let hash = browser.eval("return location.hash;", json!([])).await;
    let site_id = hash
        .as_str()
        .and_then(|h| h.strip_prefix("#/sites/"))
        .unwrap_or_else(|| panic!("the page shows a site: {hash}"))
        .to_string();
    let sites = app
        .graphql(
            "{ sites { id name gridLimitAmps chargers { chargerId maxAmps } } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(
        sites["data"]["sites"],
        json!([{ "id": site_id, "name": "Depot", "gridLimitAmps": 63.0,
                 "chargers": [{ "chargerId": "CP-SITE", "maxAmps": 32.0 }] }]),
        "{sites}"
    );
    remember_document(&browser).await;

    // a car charges there: its allocation and what it draws (6.9 kW on three 230 V phases is
    // 10 A per phase) reach the page through the site's subscription
    let started = app
        .graphql(
            "mutation($i: StartSessionInput!) { startSession(input: $i) { id } }",
            json!({ "i": { "stationId": station.to_string() } }),
            Some(&driver),
        )
        .await;
    let session = started["data"]["startSession"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("startSession: {started}"))
        .to_string();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let tid = cp
        .call(
            "StartTransaction",
            json!({ "connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": now }),
        )
        .await["transactionId"]
        .as_i64()
        .unwrap();
    cp.call("MeterValues", meter(tid, 500, 6900, &now)).await;
    browser
        .wait_text("[data-testid=site-measured]", |t| {
            t == "L1 10.0 · L2 10.0 · L3 10.0 A"
        })
        .await;
    let row = browser
        .wait_text(&format!("[data-session='{session}']"), |t| {
            t.contains("10.0 A") && t.contains("6.9 kW")
        })
        .await;
    assert!(!row.contains("paused"), "the session is allocated: {row}");
    assert_same_document(&browser).await;
    assert_eq!(browser.text("#main .error").await, None);
    screenshot_from_top(&browser, "console-site").await;

    // the list of sites shows it with its charger and load
    browser
        .goto(&format!("{}/console#/sites", app.address))
        .await;
    browser
        .wait_text(&format!("[data-site='{site_id}']"), |t| {
            t.contains("1 attached, 1 online") && t.contains("L1 10.0")
        })
        .await;
    browser.screenshot("console-sites").await;
}

#[actix_web::test]
async fn an_operator_cancels_a_drivers_reservation_from_the_page_and_the_charger_is_told() {
    let f = fleet(&["CP-RES"]).await;
    let mut cp = online_charger(&f.app, "CP-RES").await;
    let (driver, _) = f.app.funded_driver("reserver@example.com").await;
    let reserve = f.app.graphql(
        "mutation($i: ReserveConnectorInput!) { reserveConnector(input: $i) { id status } }",
        json!({ "i": { "stationId": f.station.to_string(), "chargerId": "CP-RES", "connectorId": 1, "minutes": 30 } }),
        Some(&driver),
    );
    let accept = async {
        let (id, action, _) = cp.next_server_call().await;
        assert_eq!(action, "ReserveNow");
        cp.reply(&id, json!({ "status": "Accepted" })).await;
    };
    let (reserved, ()) = tokio::join!(reserve, accept);
    assert_eq!(
        reserved["data"]["reserveConnector"]["status"], "ACCEPTED",
        "{reserved}"
    );
    let reservation = reserved["data"]["reserveConnector"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let row = format!("[data-reservation='{reservation}']");
    let browser = Browser::start().await;
    sign_in(&browser, &f.app, &f.operator).await;
    browser.wait_text("#overview-online", |t| t == "1").await;

    // the charger's page lists it
    browser
        .goto(&format!("{}/console#/chargers/CP-RES", f.app.address))
        .await;
    browser.wait_text(&row, |t| t.contains("accepted")).await;

    // the reservations page, with the charger chosen there, cancels it
    browser
        .goto(&format!("{}/console#/reservations", f.app.address))
        .await;
    choose(&browser, "#reservation-charger", "CP-RES").await;
    browser.wait_text(&row, |t| t.contains("accepted")).await;
    screenshot_from_top(&browser, "console-reservations").await;
    confirm(&browser, &format!("{row} button")).await;
    let (id, action, payload) = cp.next_server_call().await;
    assert_eq!(action, "CancelReservation");
    assert!(payload["reservationId"].is_i64(), "{payload}");
    cp.reply(&id, json!({ "status": "Accepted" })).await;
    browser
        .wait_text("[data-testid=reservation-answer]", |t| {
            t.contains("is cancelled (cancelled by an operator)")
        })
        .await;
    browser
        .wait_text("#main tbody", |t| t.contains("Nothing to show"))
        .await;
    let mine = f
        .app
        .graphql(
            "{ myReservations { id status reason } }",
            json!({}),
            Some(&driver),
        )
        .await;
    assert_eq!(
        mine["data"]["myReservations"],
        json!([{ "id": reservation, "status": "CANCELLED", "reason": "cancelled by an operator" }]),
        "{mine}"
    );
    assert_eq!(browser.text("#main .error").await, None);
}

#[actix_web::test]
async fn an_operator_sets_a_cards_group_and_blocks_it_from_the_page() {
    let f = fleet(&[]).await;
    let (driver, _, _) = f
        .app
        .register("card-holder@example.com", "driver password")
        .await;
    let added = f
        .app
        .graphql(
            "mutation($i: AddIdTokenInput!) { addIdToken(input: $i) { idToken } }",
            json!({ "i": { "idToken": "04C0FFEE01", "type": "ISO14443" } }),
            Some(&driver),
        )
        .await;
    assert!(added["errors"].is_null(), "{added}");
    let browser = Browser::start().await;
    sign_in(&browser, &f.app, &f.operator).await;
    browser.wait_text("#overview-online", |t| t == "0").await;
    browser
        .goto(&format!("{}/console#/tokens", f.app.address))
        .await;
    browser.type_into("#token-prefix", "04C0").await;
    browser.click("#token-search-submit").await;
    let row = "[data-token='04C0FFEE01']";
    browser.wait_text(row, |t| t.contains("active")).await;

    browser
        .type_into(&format!("{row} [data-group-of] input"), "FLEET-A")
        .await;
    browser
        .click(&format!("{row} [data-group-of] button"))
        .await;
    browser
        .wait_text("[data-testid=token-answer]", |t| {
            t == "04C0FFEE01 is in group FLEET-A now."
        })
        .await;
    browser.wait_text(row, |t| t.contains("FLEET-A")).await;
    let staff = f.app.staff_token("OPERATOR").await;
    let tokens = f
        .app
        .graphql(
            "{ idTokens(prefix: \"04C0\") { idToken groupIdToken blocked } }",
            json!({}),
            Some(&staff),
        )
        .await;
    assert_eq!(
        tokens["data"]["idTokens"],
        json!([{ "idToken": "04C0FFEE01", "groupIdToken": "FLEET-A", "blocked": false }]),
        "{tokens}"
    );

    confirm(&browser, &format!("{row} [data-block]")).await;
    browser
        .wait_text("[data-testid=token-answer]", |t| {
            t.contains("04C0FFEE01 is blocked")
        })
        .await;
    browser.wait_text(row, |t| t.contains("blocked")).await;
    let mine = f
        .app
        .graphql(
            "{ myIdTokens { idToken blocked } }",
            json!({}),
            Some(&driver),
        )
        .await;
    let card = mine["data"]["myIdTokens"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["idToken"] == "04C0FFEE01"))
        .cloned();
    assert_eq!(
        card,
        Some(json!({ "idToken": "04C0FFEE01", "blocked": true })),
        "{mine}"
    );
    assert_eq!(browser.text("#main .error").await, None);
    screenshot_from_top(&browser, "console-tokens").await;
}

#[actix_web::test]
async fn a_local_list_made_in_the_page_reaches_the_charger_it_is_given() {
    let f = fleet(&["CP-LL"]).await;
    let mut cp = online_charger(&f.app, "CP-LL").await;
    let (driver, _, _) = f
        .app
        .register("listed@example.com", "driver password")
        .await;
    let added = f
        .app
        .graphql(
            "mutation($i: AddIdTokenInput!) { addIdToken(input: $i) { idToken } }",
            json!({ "i": { "idToken": "04L157A", "type": "ISO14443" } }),
            Some(&driver),
        )
        .await;
    assert!(added["errors"].is_null(), "{added}");
    let browser = Browser::start().await;
    sign_in(&browser, &f.app, &f.operator).await;
    browser.wait_text("#overview-online", |t| t == "1").await;
    browser
        .goto(&format!("{}/console#/tokens", f.app.address))
        .await;

    browser.type_into("#list-name", "Depot drivers").await;
    browser.click("#create-list-submit").await;
    browser
        .wait_text("[data-list='Depot drivers']", |t| {
            t.contains("Depot drivers")
        })
        .await;
    browser.type_into("#edit-list-tokens", "04L157A").await;
    browser.click("#list-add").await;
    browser
        .wait_text("[data-testid=list-answer]", |t| {
            t == "1 token added to Depot drivers; it holds 1 now."
        })
        .await;

    // given to the charger from the page: it gets the whole list at once
    choose(&browser, "#list-charger", "CP-LL").await;
    browser
        .wait_text("[data-testid=local-list-given]", |t| t == "no list")
        .await;
    let staff = f.app.staff_token("OPERATOR").await;
    let lists = f
        .app
        .graphql("{ localLists { id name } }", json!({}), Some(&staff))
        .await;
    let list = lists["data"]["localLists"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the page made a list: {lists}"))
        .to_string();
    choose(&browser, "#list-choice", &list).await;
    browser.click("#list-assign").await;
    let (id, action, payload) = cp.next_server_call().await;
    assert_eq!(action, "SendLocalList");
    assert_eq!(payload["updateType"], "Full");
    assert_eq!(payload["localAuthorizationList"][0]["idTag"], "04L157A");
    cp.reply(&id, json!({ "status": "Accepted" })).await;
    browser
        .wait_text("[data-testid=local-list-version]", |t| t == "1")
        .await;
    browser
        .wait_text("[data-testid=local-list-entries]", |t| t == "1")
        .await;
    browser
        .wait_text("[data-testid=local-list-given]", |t| t == "Depot drivers")
        .await;

    // a whole push from the page is answered with the version the charger now holds
    browser.click("#list-push-full").await;
    let (id, action, payload) = cp.next_server_call().await;
    assert_eq!(action, "SendLocalList");
    assert_eq!(payload["updateType"], "Full");
    assert_eq!(payload["listVersion"], 2);
    cp.reply(&id, json!({ "status": "Accepted" })).await;
    browser
        .wait_text("[data-testid=local-list-answer]", |t| {
            t == "CP-LL holds version 2 of its list."
        })
        .await;
    assert_eq!(browser.text("#main .error").await, None);
}

#[actix_web::test]
async fn a_firmware_campaign_started_in_the_page_follows_its_charger_live() {
    let app = crate::helpers::spawn_app_with(|s| s.firmware.tick_ms = 100).await;
    let token = app.staff_token("OPERATOR").await;
    let station = app.create_station("Firmware station").await;
    app.register_charger(&token, "CP-FW", station, None).await;
    let operator = user_with_role(&app, "OPERATOR").await;
    let mut cp = online_charger(&app, "CP-FW").await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, &operator).await;
    browser.wait_text("#overview-online", |t| t == "1").await;
    browser
        .goto(&format!("{}/console#/firmware", app.address))
        .await;
    browser
        .click("#campaign-chargers input[value='CP-FW']")
        .await;
    browser
        .type_into("#campaign-location", "https://fw.example.com/cg-2.1.bin")
        .await;
    browser.click("#campaign-submit").await;
    browser
        .wait_text("#main h1", |t| t.contains("Campaign"))
        .await;
    remember_document(&browser).await;

    let (id, action, payload) = cp.next_server_call().await;
    assert_eq!(action, "UpdateFirmware");
    assert_eq!(payload["location"], "https://fw.example.com/cg-2.1.bin");
    cp.reply(&id, json!({})).await;
    let status = "[data-charger='CP-FW'] [data-testid=firmware-status]";
    for reported in ["Downloading", "Downloaded", "Installing", "Installed"] {
        cp.call("FirmwareStatusNotification", json!({ "status": reported }))
            .await
            .unwrap();
        browser.wait_text(status, |t| t == reported).await;
    }
    browser
        .wait_text("[data-testid=campaign-status]", |t| t == "completed")
        .await;
    browser
        .wait_text("[data-testid=campaign-done]", |t| t == "1")
        .await;
    assert_same_document(&browser).await;
    assert_eq!(browser.text("#main .error").await, None);
    screenshot_from_top(&browser, "console-firmware").await;
    browser
        .goto(&format!("{}/console#/firmware", app.address))
        .await;
    browser
        .wait_text("#main tbody", |t| {
            t.contains("completed") && t.contains("https://fw.example.com/cg-2.1.bin")
        })
        .await;
}

#[actix_web::test]
async fn a_diagnostics_log_requested_from_the_charger_page_is_downloaded_there() {
    let f = fleet(&["CP-DIAG"]).await;
    let mut cp = online_charger(&f.app, "CP-DIAG").await;
    let browser = Browser::start().await;
    sign_in(&browser, &f.app, &f.operator).await;
    browser.wait_text("#overview-online", |t| t == "1").await;
    browser
        .goto(&format!("{}/console#/chargers/CP-DIAG", f.app.address))
        .await;
    browser
        .wait_text("[data-testid=charger-state]", |t| t == "online")
        .await;

    browser.click("#log-request").await;
    let (id, action, payload) = cp.next_server_call().await;
    assert_eq!(action, "GetDiagnostics");
    cp.reply(&id, json!({ "fileName": "diag-console.txt" }))
        .await;
    browser
        .wait_text("[data-testid=log-answer]", |t| {
            t.contains("it uploads diag-console.txt to this server")
        })
        .await;
    browser
        .wait_text("[data-testid=log-status]", |t| t == "requested")
        .await;

    // the charger uploads it where it was told, and says so
    let location = payload["location"].as_str().unwrap().to_string();
    let uploaded = reqwest::Client::new()
        .put(&location)
        .body("boot ok\nmeter ok\n")
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 201);
    cp.call(
        "DiagnosticsStatusNotification",
        json!({ "status": "Uploaded" }),
    )
    .await
    .unwrap();
    browser
        .wait_text("[data-testid=log-status]", |t| t == "uploaded")
        .await;

    // the download carries the operator's token; what the page saves is the file
    browser
        .eval(
            "const make = URL.createObjectURL; \
             URL.createObjectURL = (blob) => { blob.text().then((t) => { window.__downloaded = t; }); return make.call(URL, blob); }; \
             HTMLAnchorElement.prototype.click = function () { window.__savedAs = this.download; }; \
             return null;",
            json!([]),
        )
        .await;
    browser.click("[data-download]").await;
    browser
        .wait_eval("return window.__downloaded ?? null;", |v| {
            v == "boot ok\nmeter ok\n"
        })
        .await;
    assert_eq!(
        browser.eval("return window.__savedAs;", json!([])).await,
        "diag-console.txt"
    );
    browser
        .wait_text("[data-testid=log-answer]", |t| {
            t == "diag-console.txt downloaded (17 B)."
        })
        .await;
    assert_eq!(browser.text("#main .error").await, None);
}
