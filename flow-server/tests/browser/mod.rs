//! A headless Chromium driven over WebDriver (chromedriver on a loopback port), for the
//! console's browser tests. Debian's `chromium` and `chromium-driver` come from the
//! project's `scripts/install-chromium.sh`, run here when they are missing. Under
//! `CI=true` a browser that cannot be set up fails the test; elsewhere the test is
//! skipped with the reason printed.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any one wait for the page may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// A browser session and the chromedriver behind it (killed, by its PID, on drop).
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// chromedriver's port and the session's ID, to end the session from `drop`.
    port: u16,
    session: Option<String>,
    _profile: tempdir::Dir,
}

mod tempdir {
    /// A fresh directory, deleted on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "flow-console-{tag}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Browser {
    /// Ends the session (chromedriver then quits the browser it started, which killing
    /// the driver alone would leave running after a failed test), then the driver.
    fn drop(&mut self) {
        if let Some(session) = &self.session {
            use std::io::{Read, Write};
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
            if let Ok(mut stream) =
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let request = format!(
                    "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n",
                    self.port
                );
                if stream.write_all(request.as_bytes()).is_ok() {
                    let _ = stream.read_to_end(&mut Vec::new());
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Whether the environment says this is CI, where a missing browser is a failure.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Installs chromium and chromedriver when missing; `Err` says why they are not there.
fn ensure_installed() -> Result<(), String> {
    let present = || PathBuf::from(CHROMIUM).exists() && PathBuf::from(CHROMEDRIVER).exists();
    if present() {
        return Ok(());
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-chromium.sh");
    eprintln!(
        "console browser tests: installing chromium with {}",
        script.display()
    );
    let status = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("could not run {}: {e}", script.display()))?;
    if !status.success() || !present() {
        return Err(format!(
            "{CHROMIUM} or {CHROMEDRIVER} is missing and {} could not install them ({status}); \
             run it as root, or `apt-get install chromium chromium-driver`",
            script.display()
        ));
    }
    Ok(())
}

/// A headless browser session, or `None` (with the reason printed) when one cannot be
/// had outside CI. Panics under `CI=true` when the browser cannot be set up.
pub async fn browser(test: &str) -> Option<Browser> {
    match start().await {
        Ok(browser) => Some(browser),
        Err(reason) if in_ci() => {
            panic!("CI=true and the console's browser cannot be set up: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason} (set CI=true to make this a failure)");
            None
        }
    }
}

async fn start() -> Result<Browser, String> {
    ensure_installed()?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))?
        .port();
    let mut driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start {CHROMEDRIVER}: {e}"))?;
    let profile = tempdir::Dir::new("profile");
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.0.display()),
            ],
        },
    });
    let capabilities = match capabilities {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                if let Ok(Some(status)) = driver.try_wait() {
                    return Err(format!("{CHROMEDRIVER} exited ({status}) before answering"));
                }
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(format!(
                    "no browser session from {CHROMEDRIVER} in 20 s: {e}"
                ));
            }
        }
    };
    let session = client.session_id().await.ok().flatten();
    Ok(Browser {
        client,
        driver,
        port,
        session,
        _profile: profile,
    })
}

impl Browser {
    /// The element `css` selects, waiting for it to appear.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page within {WAIT:?}: {e}"))
    }

    /// Clicks the element `css` selects, once it is there.
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("could not click `{css}`: {e}"));
    }

    /// Replaces the text of the input or textarea `css` selects.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// The text of the element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Ends the session (closing the browser); the driver goes on drop.
    pub async fn close(mut self) {
        if self.client.clone().close().await.is_ok() {
            self.session = None;
        }
    }
}
