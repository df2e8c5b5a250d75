//! A real browser for the web interface's tests and benchmark: Debian's Chromium,
//! headless, driven over WebDriver by `chromedriver` (both from Debian's packages,
//! installed by `.ci/run`), with a fresh profile in a temporary folder. Nothing
//! leaves the machine: networking features that call home are switched off.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    pub client: Client,
    pub runtime: tokio::runtime::Runtime,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and one headless Chromium session.
    pub fn start() -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: install Debian's `chromium` and `chromium-driver` (.ci/run does)"
            );
        }
        let port = super::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        assert!(
            super::wait_for(Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "chromedriver did not listen on {port}"
        );
        let profile = tempfile::Builder::new().prefix("loom-chromium-").tempdir().unwrap();
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--hide-scrollbars".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = runtime
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a Chromium session starts");
        Browser { client, runtime, driver, profile }
    }

    /// Runs one step of a test against the browser.
    pub fn step<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// Loads `url` afresh (a new document, even when only its fragment differs) and
    /// waits until the page marks `page` as rendered (see the page's `rendered()`).
    pub async fn open(&self, url: &str, page: &str) {
        self.client.goto(url).await.unwrap();
        self.client.refresh().await.unwrap();
        self.rendered(page).await;
    }

    /// Waits until the page says it has rendered `page` with its data.
    pub async fn rendered(&self, page: &str) {
        let css = format!("body[data-rendered='{page}']");
        if let Err(err) = self.client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(&css)).await {
            let text = self.script("return document.body.innerText").await;
            panic!("the {page} page did not render ({err}); it shows: {text}");
        }
    }

    /// Follows a link or presses a button inside the page and waits for `page`.
    pub async fn then_rendered(&self, page: &str, action: impl std::future::Future<Output = ()>) {
        self.script("document.body.removeAttribute('data-rendered')").await;
        action.await;
        self.rendered(page).await;
    }

    pub async fn script(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until `script` (a function body returning a value) returns true.
    pub async fn until(&self, what: &str, script: &str) {
        for _ in 0..600 {
            if self.script(script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = self.script("return document.body.innerText").await;
        panic!("never saw {what}; the page shows: {text}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A Chromium left behind by a failed close is this profile's alone.
        let marker = format!("--user-data-dir={}", self.profile.path().display());
        let _ = Command::new("pkill").args(["-f", "--", &marker]).status();
    }
}
