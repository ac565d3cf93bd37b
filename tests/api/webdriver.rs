//! A small W3C WebDriver client over reqwest, driving Debian's headless Chromium through
//! chromedriver: enough for the console's browser tests (navigate, click, type, read the page,
//! screenshots). Hand-written rather than a crate: the WebDriver crates pull in a second TLS
//! stack (aws-lc) that would add minutes to every cold build for a dozen HTTP calls.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// How long a test waits for the page to show what it expects.
pub const PAGE_WAIT: Duration = Duration::from_secs(15);

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session on it; both end when dropped.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    _driver: Child,
}

fn program(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    pub async fn start() -> Browser {
        let chromedriver = program("CHROMEDRIVER", "chromedriver");
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {chromedriver} ({e}): scripts/test.sh installs chromium and chromium-driver")
            });
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready {
                let status: Value = r.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=en-GB", "--no-first-run"]
            }
        } } });
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new WebDriver session")
            .json()
            .await
            .expect("session JSON");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {created}"))
            .to_string();
        Browser {
            http,
            base,
            session,
            _driver: driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err((error, message)) => panic!("WebDriver {path}: {error}: {message}"),
        }
    }

    /// `call`, with WebDriver's error (code, message) returned instead of panicking.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (String, Value)> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request
            .send()
            .await
            .expect("WebDriver request")
            .json()
            .await
            .expect("WebDriver JSON");
        if let Some(error) = reply["value"]["error"].as_str() {
            return Err((error.to_string(), reply["value"]["message"].clone()));
        }
        Ok(reply["value"].clone())
    }

    /// Runs `action` (e.g. `click`) on the element matching `css`. A page that re-rendered
    /// between finding the element and acting on it (a refresh) makes the element stale: it is
    /// found again, a few times at most.
    async fn on_element(&self, css: &str, action: &str, body: Value) {
        for _ in 0..5 {
            let id = self.element(css).await;
            match self
                .try_call(
                    reqwest::Method::POST,
                    &format!("/element/{id}/{action}"),
                    Some(body.clone()),
                )
                .await
            {
                Ok(_) => return,
                Err((error, _)) if error == "stale element reference" => continue,
                Err((error, message)) => panic!("WebDriver {action} on {css}: {error}: {message}"),
            }
        }
        panic!("{css} went stale five times in a row");
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The text of the first element matching `css`, or None while there is none.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([css]),
        )
        .await
        .as_str()
        .map(String::from)
    }

    /// An attribute of the first element matching `css`.
    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            json!([css, name]),
        )
        .await
        .as_str()
        .map(String::from)
    }

    /// Polls until the text of `css` satisfies `check`; panics with what the page showed.
    pub async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.text(css).await;
            if let Some(text) = last.as_deref().filter(|t| check(t)) {
                return text.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let main = self.text("main").await.unwrap_or_default();
        panic!("{css} never showed what was expected; last: {last:?}; page: {main}");
    }

    async fn element(&self, css: &str) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let found = self
                .eval(
                    "return document.querySelector(arguments[0]) !== null;",
                    json!([css]),
                )
                .await;
            if found == true {
                break;
            }
            assert!(Instant::now() < deadline, "no element {css} appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element id in {found}"))
            .to_string()
    }

    /// Clicks the element matching `css` once it exists.
    pub async fn click(&self, css: &str) {
        self.on_element(css, "click", json!({})).await;
    }

    /// Types `text` into the element matching `css`, as keystrokes.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "value", json!({ "text": text })).await;
    }

    /// Empties the input or textarea matching `css` (before typing a value over a default).
    pub async fn clear(&self, css: &str) {
        self.on_element(css, "clear", json!({})).await;
    }

    /// Polls `script` (see `eval`) until its value satisfies `check`; panics with the last one.
    pub async fn wait_eval(&self, script: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PAGE_WAIT;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.eval(script, json!([])).await;
            if check(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{script} never gave what was expected; last: {last}");
    }

    /// Saves a PNG of the page to `$CHARGEGRID_SCREENSHOTS/<name>.png` when that is set (the
    /// README's images are made this way); otherwise takes it and checks it is a PNG.
    pub async fn screenshot(&self, name: &str) {
        let shot = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().expect("base64 screenshot"))
            .expect("screenshot decodes");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        if let Some(dir) = std::env::var_os("CHARGEGRID_SCREENSHOTS") {
            let path = PathBuf::from(dir).join(format!("{name}.png"));
            std::fs::write(&path, png).expect("write the screenshot");
        }
    }
}

impl Drop for Browser {
    /// Ends the session, so that chromedriver quits its Chromium (killing chromedriver alone
    /// would leave the browser running). Plain blocking HTTP: drop cannot await, and this also
    /// runs when a test panics.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Some(addr) = self.base.strip_prefix("http://") else {
            return;
        };
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
    }
}
