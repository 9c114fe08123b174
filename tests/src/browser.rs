//! Real headless Chromium for the dashboard tests: Debian's `chromium` driven through
//! `chromedriver` (WebDriver) with fantoccini, a fresh profile per browser, screenshots under
//! `target/screenshots/`. A missing browser or driver panics with what to install.
//!
//! `Forward` makes a page server inside a lab's network namespace (where the collector's
//! HTTP listens on the namespace's loopback) reachable on the host's loopback, so the
//! browser runs on the host and still only talks to loopback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// curl on the host (against a forwarded dashboard): `(status, body)`.
pub fn curl(args: &[&str]) -> Result<(u16, String)> {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').context("curl output")?;
    Ok((code.trim().parse()?, body.to_owned()))
}

/// The hidden `csrf` field of a form page.
pub fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// Logs `user` in with curl, keeping the session in the cookie jar `jar` (the login page's
/// form token first, as a browser would): the answer's status, 303 when it worked.
pub fn curl_login(base: &str, jar: &str, user: &str, password: &str) -> Result<u16> {
    let (_, login_page) = curl(&["-c", jar, "-b", jar, &format!("{base}/login")])?;
    let form = csrf_of(&login_page);
    let (status, _) = curl(&[
        "-c",
        jar,
        "-b",
        jar,
        "-d",
        &format!(
            "username={user}&password={}&csrf={form}",
            password.replace(' ', "+")
        ),
        &format!("{base}/login"),
    ])?;
    Ok(status)
}

/// The page's source once it contains `needle`; an error showing the page after `timeout`.
pub async fn wait_text(browser: &Browser, needle: &str, timeout: Duration) -> Result<String> {
    let start = Instant::now();
    loop {
        let source = browser.client.source().await?;
        if source.contains(needle) {
            return Ok(source);
        }
        anyhow::ensure!(
            start.elapsed() < timeout,
            "the page never showed {needle:?}; it shows:\n{source}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A chromedriver process and one browser session.
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

/// Where screenshots go: `<workspace>/target/screenshots/`.
pub fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session with
    /// a fresh profile, `width`×`height` pixels.
    pub async fn start(width: u32, height: u32) -> Result<Self> {
        Self::start_with(width, height, &[]).await
    }

    /// [`Browser::start`] with extra Chromium flags (e.g. `--force-dark-mode`).
    pub async fn start_with(width: u32, height: u32, extra: &[&str]) -> Result<Self> {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's {package} (apt-get install -y chromium chromium-driver); \
                 the dashboard tests need a real browser"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("chromedriver-{port}.log")))?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start chromedriver")?;
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("chromedriver did not listen on {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir()?;
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .context("open a Chromium session through chromedriver")?;
        Ok(Self {
            client,
            driver,
            _profile: profile,
            shots: screenshots_dir(),
        })
    }

    /// Saves a PNG of the current page as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Bytes between a host loopback port and a port on a network namespace's loopback: each
/// connection runs a small python3 bridge inside the namespace (`ip netns exec`).
pub struct Forward {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

const BRIDGE: &str = r#"
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def up():
    while True:
        d = os.read(0, 65536)
        if not d:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(d)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d:
        break
    os.write(1, d)
"#;

impl Forward {
    /// Listens on a free host loopback port now; connections go to `port()` in `netns`
    /// once [`Forward::to`] has named it.
    pub fn listen() -> Result<(Self, TcpListener)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        Ok((
            Self {
                port,
                stop: Arc::new(AtomicBool::new(false)),
            },
            listener,
        ))
    }

    /// Starts forwarding `listener`'s connections to `target` on `netns`'s loopback.
    pub fn to(&self, listener: TcpListener, netns: &str, target: u16) {
        let stop = self.stop.clone();
        let netns = netns.to_owned();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let netns = netns.clone();
                        std::thread::spawn(move || bridge(stream, &netns, target));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            }
        });
    }
}

fn bridge(stream: TcpStream, netns: &str, target: u16) {
    let _ = stream.set_nonblocking(false);
    let Ok(mut child) = Command::new("ip")
        .args(["netns", "exec", netns, "python3", "-c", BRIDGE])
        .arg(target.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    let mut to_child = child.stdin.take().expect("piped stdin");
    let mut from_child = child.stdout.take().expect("piped stdout");
    let mut reader = stream.try_clone().expect("clone stream");
    let mut writer = stream;
    let up = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || to_child.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 65536];
    while let Ok(n) = from_child.read(&mut buf) {
        if n == 0 || writer.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = writer.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
