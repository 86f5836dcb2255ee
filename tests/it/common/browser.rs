//! A real headless Chromium, driven over the WebDriver protocol (Debian's `chromium` and
//! `chromium-driver`), with plain HTTP and JSON: no browser-automation crate needed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh browser (its own profile) whose pages ask for `language` first. `None` when
    /// Chromium is not installed, which CI does not allow (`.ci/run` installs it).
    pub async fn start(language: &str) -> Option<Browser> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but {CHROMIUM} or {CHROMEDRIVER} is missing: the browser tests must run"
            );
            eprintln!("skipping a browser test: install chromium and chromium-driver");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = super::client();
        let start = Instant::now();
        while client.get(format!("{base}/status")).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--lang={language}"),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args,
                "prefs": {"intl.accept_languages": language}}}}});
        let mut browser = Browser { driver, base, session: String::new(), client, _profile: profile };
        let created = browser.call(reqwest::Method::POST, "/session", capabilities).await;
        browser.session = created["sessionId"].as_str().expect("a WebDriver session").to_owned();
        Some(browser)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let answer = self.try_call(method, path, body).await;
        assert!(answer.get("error").is_none(), "WebDriver {path}: {answer}");
        answer
    }

    async fn try_call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = self.client.request(method, url).header("content-type", "application/json");
        let response = request.body(body.to_string()).send().await.expect("chromedriver answers");
        let answer: Value = serde_json::from_str(&response.text().await.unwrap()).expect("WebDriver JSON");
        answer["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, &self.session_path("/url"), json!({"url": url})).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, &self.session_path("/url"), json!({})).await.as_str().unwrap().to_owned()
    }

    /// Waits up to five seconds for the address to hold `part` (after a click that navigates).
    pub async fn wait_for_url(&self, part: &str) {
        let start = Instant::now();
        loop {
            let url = self.url().await;
            if url.contains(part) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "at {url}, not at …{part}…");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element matching `css`, waiting up to five seconds for it (a click that submits
    /// a form returns before the next page is there).
    async fn element(&self, css: &str) -> String {
        let start = Instant::now();
        loop {
            let query = json!({"using": "css selector", "value": css});
            let found = self.try_call(reqwest::Method::POST, &self.session_path("/element"), query).await;
            if let Some(id) = found[ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no element {css}: {found}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(reqwest::Method::POST, &self.session_path(&format!("/element/{id}/value")), json!({"text": text}))
            .await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(reqwest::Method::POST, &self.session_path(&format!("/element/{id}/click")), json!({})).await;
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        let text = self.call(reqwest::Method::GET, &self.session_path(&format!("/element/{id}/text")), json!({})).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    pub async fn quit(mut self) {
        let _ = self.client.delete(format!("{}{}", self.base, self.session_path(""))).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
