//! One headless Chromium for the whole test binary, driven over WebDriver (ChromeDriver)
//! by a small client on the reqwest the tests already use: a WebDriver crate would add a
//! second HTTP stack to build for the few commands these tests need.
//!
//! Tests take the browser in turn ([`browser`] returns a guard); ChromeDriver and Chromium
//! are stopped when the test binary exits (an `atexit` hook ends the session, which closes
//! Chromium, then terminates ChromeDriver by its pid).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::{Mutex, OwnedMutexGuard};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The running ChromeDriver and its one session.
struct Driver {
    pid: u32,
    port: u16,
    session: String,
    profile: PathBuf,
}

static DRIVER: OnceLock<Driver> = OnceLock::new();
static TURN: LazyLock<Arc<Mutex<()>>> = LazyLock::new(|| Arc::new(Mutex::new(())));
/// Serialises the start: only one test starts ChromeDriver.
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The browser, for this test alone until the guard is dropped.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    _turn: OwnedMutexGuard<()>,
}

/// Waits for the browser's turn, starting ChromeDriver and Chromium on first use. Fails
/// (never skips) when they are not installed.
pub async fn browser() -> Browser {
    let turn = TURN.clone().lock_owned().await;
    let driver = match DRIVER.get() {
        Some(driver) => driver,
        None => {
            let started = tokio::task::spawn_blocking(start_driver).await.unwrap();
            let _ = DRIVER.set(started);
            DRIVER.get().unwrap()
        }
    };
    let browser = Browser {
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        base: format!("http://127.0.0.1:{}/session/{}", driver.port, driver.session),
        _turn: turn,
    };
    browser.command("POST", "/window/rect", json!({ "width": 1280, "height": 900 })).await;
    browser
}

fn start_driver() -> Driver {
    let _one = STARTING.lock().unwrap();
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            std::path::Path::new(path).exists(),
            "the browser tests need Chromium and ChromeDriver: {path} is missing. Install Debian's \
             packages: apt-get install -y chromium chromium-driver (this one is `{package}`)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    #[expect(clippy::zombie_processes, reason = "reaped by pid in the atexit hook, when the test binary ends")]
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let pid = child.id();
    // SAFETY: registering a plain extern "C" function with no captured state.
    unsafe { libc::atexit(stop_driver_at_exit) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while raw_request(port, "GET", "/status").is_none_or(|answer| !answer.contains("\"ready\":true")) {
        assert!(Instant::now() < deadline, "chromedriver did not get ready on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let profile = std::env::temp_dir().join(format!("webhookd-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&profile).unwrap();
    let capabilities = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            // Without the networking flags Chromium keeps calling Google's services, which
            // this closed network refuses (and stalls on).
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display())],
        },
    } } });
    let answer = raw_post(port, "/session", &capabilities.to_string()).expect("chromedriver answers POST /session");
    let body = &answer[answer.find("\r\n\r\n").map(|i| i + 4).unwrap_or(0)..];
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("no session from chromedriver: {answer}"));
    let session = value["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("Chromium did not start: {value}")).to_owned();
    Driver { pid, port, session, profile }
}

extern "C" fn stop_driver_at_exit() {
    if let Some(driver) = DRIVER.get() {
        // Ending the session makes ChromeDriver close Chromium and its helpers.
        let _ = raw_request(driver.port, "DELETE", &format!("/session/{}", driver.session));
        // SAFETY: a signal to the ChromeDriver process this binary started.
        unsafe {
            libc::kill(driver.pid as libc::pid_t, libc::SIGTERM);
            libc::waitpid(driver.pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
        let _ = std::fs::remove_dir_all(&driver.profile);
    }
}

/// A blocking HTTP/1.1 request without a body (usable where no async runtime runs).
fn raw_request(port: u16, method: &str, path: &str) -> Option<String> {
    send_raw(port, &format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
}

fn raw_post(port: u16, path: &str, body: &str) -> Option<String> {
    send_raw(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn send_raw(port: u16, request: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    // Read the headers, then exactly Content-Length bytes: ChromeDriver keeps the
    // connection open whatever the request says.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                break;
            }
        }
    }
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// A reference to an element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Sends one WebDriver command; returns its `value`, panicking on a WebDriver error.
    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let value = self.try_command(method, path, body).await;
        value.unwrap_or_else(|error| panic!("WebDriver {method} {path}: {error}"))
    }

    async fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let request = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        let request = if method == "GET" || method == "DELETE" {
            request
        } else {
            request.header("content-type", "application/json").body(body.to_string())
        };
        let response = request.send().await.unwrap();
        let ok = response.status().is_success();
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        if ok { Ok(answer["value"].clone()) } else { Err(answer["value"].clone()) }
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.command("GET", "/url", Value::Null).await.as_str().unwrap().to_owned()
    }

    /// The first element matching a CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let found = self.try_command("POST", "/element", json!({ "using": "css selector", "value": css })).await;
        let found = found.ok()?;
        Some(Element(found[ELEMENT].as_str()?.to_owned()))
    }

    /// How many elements match a CSS selector.
    pub async fn count(&self, css: &str) -> usize {
        let found = self.command("POST", "/elements", json!({ "using": "css selector", "value": css })).await;
        found.as_array().map_or(0, Vec::len)
    }

    /// Types `text` into the field matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let Some(field) = self.find(css).await else {
            let source = self.command("GET", "/source", Value::Null).await;
            panic!("no field {css} on {}: {source}", self.current_url().await);
        };
        self.command("POST", &format!("/element/{}/clear", field.0), json!({})).await;
        self.command("POST", &format!("/element/{}/value", field.0), json!({ "text": text })).await;
    }

    /// Clicks the button whose text is exactly `label` (and waits for the page it loads).
    pub async fn click_button(&self, label: &str) {
        let xpath = format!("//button[normalize-space()='{label}']");
        let found = self.try_command("POST", "/element", json!({ "using": "xpath", "value": xpath })).await;
        let found = found.unwrap_or_else(|_| panic!("no button named {label:?} on the page"));
        let id = found[ELEMENT].as_str().unwrap().to_owned();
        self.click_and_wait(&id).await;
    }

    /// Clicks the first element matching `css` (a link: waits for the page it opens).
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await.unwrap_or_else(|| panic!("nothing matches {css}"));
        self.click_and_wait(&element.0).await;
    }

    /// Ticks a checkbox (a click that stays on the page).
    pub async fn tick(&self, css: &str) {
        let element = self.find(css).await.unwrap_or_else(|| panic!("nothing matches {css}"));
        self.command("POST", &format!("/element/{}/click", element.0), json!({})).await;
    }

    /// Clicks an element that leads to another page and waits until that page has loaded:
    /// ChromeDriver does not wait for every navigation (not for one to another origin).
    async fn click_and_wait(&self, id: &str) {
        let old_page = self.find("html").await.expect("a page is open");
        self.command("POST", &format!("/element/{id}/click"), json!({})).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let old = self.try_command("GET", &format!("/element/{}/name", old_page.0), Value::Null).await;
            let replaced = old.is_err_and(|error| error["error"] == "stale element reference" || error["error"] == "no such element");
            if replaced && self.eval("return document.readyState").await == "complete" {
                return;
            }
            assert!(Instant::now() < deadline, "the click did not lead to another page");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        let body = self.find("body").await.expect("the page has a body");
        self.command("GET", &format!("/element/{}/text", body.0), Value::Null).await.as_str().unwrap_or("").to_owned()
    }

    /// Runs a script in the page (WebDriver's own, not subject to the page's CSP).
    pub async fn eval(&self, script: &str) -> Value {
        self.command("POST", "/execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// The value of the cookie `name` for the current page, if the browser has it.
    pub async fn cookie(&self, name: &str) -> Option<Value> {
        self.try_command("GET", &format!("/cookie/{name}"), Value::Null).await.ok()
    }

    /// Forgets every cookie of the current page's site.
    pub async fn clear_cookies(&self) {
        self.command("DELETE", "/cookie", Value::Null).await;
    }

    /// Saves a PNG of the viewport at `width`×`height` CSS pixels.
    pub async fn screenshot(&self, path: &std::path::Path, width: u32, height: u32) {
        self.command("POST", "/window/rect", json!({ "width": width, "height": height })).await;
        let png = self.command("GET", "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self.command("POST", "/window/rect", json!({ "width": 1280, "height": 900 })).await;
    }

    /// Logs in to the dashboard of the app at `address` with `token`.
    pub async fn log_in(&self, address: &str, token: &str) {
        self.goto(&format!("{address}/ui")).await;
        self.clear_cookies().await;
        self.goto(&format!("{address}/ui")).await;
        self.fill("input[name=token]", token).await;
        self.click_button("Log in").await;
    }
}
