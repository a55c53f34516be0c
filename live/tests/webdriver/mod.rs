//! A real headless browser for the view's end-to-end tests: Debian's `chromium` driven by
//! `chromedriver` through plain WebDriver (W3C) HTTP/JSON requests with `ureq`.
//!
//! Shared by `io-smol/tests/browser.rs` (a live download) and `sim/tests/browser.rs` (a
//! replay), which include this file with `#[path]`. Everything listens on 127.0.0.1 only.
//! [`Browser::start`] returns `None` (and the test passes, printing why) when chromium or
//! chromedriver is missing, except under CI (`CI` set), where that fails the test. Dropping a
//! [`Browser`] ends the WebDriver session (which closes chromium) and kills chromedriver, also
//! when the test panics.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long any one wait may take before the test fails (a bound, not a measurement).
pub const LIMIT: Duration = Duration::from_secs(60);

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A chromedriver process and one headless chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: Option<String>,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless chromium (1400 x 900). `None`: not installed here
    /// (skip printed); panics if so under CI.
    pub fn start() -> Option<Browser> {
        let chromium = find_program(
            "HIVE_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let driver = find_program("HIVE_CHROMEDRIVER", &["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let why = "chromium and chromedriver are needed for the browser tests \
                       (Debian: apt-get install chromium chromium-driver)";
            if std::env::var_os("CI").is_some() {
                panic!("{why}; CI must have them");
            }
            eprintln!("skipped: {why}");
            return None;
        };
        let port = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(LIMIT))
            .build()
            .into();
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver: child,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            agent,
            _profile: profile,
        };
        let end = Instant::now() + LIMIT;
        loop {
            let ready = b
                .agent
                .get(format!("{}/status", b.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < end, "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Without the background-networking flags Chromium tries to reach Google's servers.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1400,900",
            &format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.to_string_lossy(), "args": args},
        }}});
        let v = b.post("/session", caps);
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        b.session = Some(id);
        Some(b)
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/session/{}{path}",
            self.base,
            self.session.as_deref().unwrap_or_default()
        )
    }

    fn check(path: &str, text: &str) -> Value {
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("WebDriver {path}: not JSON ({e}): {text}"));
        if v["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}/session", self.base)
        } else {
            self.url(path)
        };
        let r = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        Self::check(path, &read_body(r))
    }

    fn get(&self, path: &str) -> Value {
        let r = self
            .agent
            .get(self.url(path))
            .call()
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        Self::check(path, &read_body(r))
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url}));
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    pub fn exec(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
    }

    /// Polls `script` until it returns something truthy; returns that.
    pub fn wait_for(&self, what: &str, script: &str) -> Value {
        let end = Instant::now() + LIMIT;
        loop {
            let v = self.exec(script);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(Instant::now() < end, "no {what} within {LIMIT:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The element matching a CSS selector.
    pub fn find(&self, css: &str) -> String {
        let v = self.post("/element", json!({"using": "css selector", "value": css}));
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    /// Clicks an element in its centre, as a user would.
    pub fn click(&self, element: &str) {
        self.post(&format!("/element/{element}/click"), json!({}));
    }

    /// Saves a PNG screenshot of the window.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.get("/screenshot");
        let png = base64_decode(b64.as_str().expect("screenshot is base64"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            // Closes chromium; best effort (the driver may already be gone).
            let _ = self
                .agent
                .delete(format!("{}/session/{id}", self.base))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Where screenshots go: `target/screenshots/NAME` of the workspace (or `CARGO_TARGET_DIR`).
pub fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("screenshots").join(name)
}

/// Reads `child`'s stdout until a line contains `needle`; returns that line.
pub fn read_line_with(child: &mut Child, needle: &str) -> String {
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let want = needle.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if line.contains(&want) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("the program printed no line with {needle:?}"))
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGl2ZQ=="), b"hive");
    assert_eq!(base64_decode("aGl2ZXM="), b"hives");
}

/// A WebDriver reply's body (screenshots are megabytes of base64, past ureq's default limit).
fn read_body(mut r: ureq::http::Response<ureq::Body>) -> String {
    r.body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap()
}
