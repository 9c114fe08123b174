//! End-to-end test harness: real `caretaker-collector` and `caretaker-agent` processes on
//! loopback, a tiny HTTP client for the JSON API, and a gRPC client for playing agents.
//!
//! Binaries are taken from `CARETAKER_BIN_DIR`, else from the workspace's `target/debug`
//! (the README's test command builds them first). A missing binary fails the test loudly.
//!
//! Nothing here picks a port by binding and releasing it: collectors and the SMTP server bind
//! port 0 and say which port they got ([`Listening`], a port file, [`bound_ports`]); a restart
//! binds the same port again.

pub mod browser;
pub mod daemon;
pub mod lab;
pub mod smtp;
pub mod tls;
pub mod wine;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

pub use caretaker_proto::v1;

/// Path of one of the project's binaries; panics with instructions when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARETAKER_BIN_DIR").map_or_else(
        || {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
                PathBuf::from,
            );
            target.join("debug")
        },
        PathBuf::from,
    );
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (or set CARETAKER_BIN_DIR)",
        path.display()
    );
    path
}

/// Where a collector listens, from the `<data_dir>/listen.json` it writes once its listeners
/// are bound. Tests start collectors on port 0 and learn the real ports from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    pub pid: u32,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Listening {
    /// `<data_dir>/listen.json`, or `None` while it is absent.
    pub fn read(data_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(data_dir.join("listen.json")).ok()?;
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}/listen.json: {e}: {text}", data_dir.display()));
        let addr = |key: &str| -> SocketAddr {
            value[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("listen.json has no {key} address: {text}"))
        };
        Some(Self {
            pid: value["pid"].as_u64().expect("listen.json pid") as u32,
            grpc: addr("grpc"),
            http: addr("http"),
        })
    }

    /// Waits (bounded) for `<data_dir>/listen.json`; `exited` says whether the process is
    /// already gone (then waiting is pointless and the caller's message says why).
    pub fn wait(
        data_dir: &Path,
        timeout: Duration,
        mut exited: impl FnMut() -> Option<String>,
    ) -> anyhow::Result<Self> {
        let start = Instant::now();
        loop {
            if let Some(listening) = Self::read(data_dir) {
                return Ok(listening);
            }
            if let Some(why) = exited() {
                bail!("the collector exited before it listened: {why}");
            }
            if start.elapsed() > timeout {
                bail!("no {}/listen.json after {timeout:?}", data_dir.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The local ports of the UDP (or TCP, `proto = "tcp"`) sockets process `pid` holds, from
/// `/proc/<pid>/fd` and `/proc/<pid>/net/<proto>`: for peers that bind port 0 but only log the
/// address they were given (snmpsimd). Empty when the process is gone.
pub fn bound_ports(pid: u32, proto: &str) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().into_owned();
                    Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap_or_default();
    // `sl local_address rem_address st … uid timeout inode …`, the address as HEX:HEXPORT.
    let mut ports: Vec<u16> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode = cols.get(9)?;
            let port = cols.get(1)?.rsplit_once(':')?.1;
            inodes
                .iter()
                .any(|i| i == inode)
                .then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A collector process with its own data directory and ports.
pub struct Collector {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    extra: String,
    /// Extra keys for the `[grpc]` and `[http]` sections.
    grpc_keys: String,
    http_keys: String,
    child: Option<Child>,
    /// The enrolling proxy in front of `grpc` (see [`tls`]), started with the collector.
    proxy: Option<tls::Proxy>,
}

impl Collector {
    /// Writes a config under `dir` and starts the collector; waits until the API answers.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    /// Like `start`, with extra TOML appended to the config. The first start listens on port
    /// 0; the config is then rewritten with the ports it got, so [`restart`](Self::restart)
    /// comes back where agents expect it.
    pub fn start_with(dir: &Path, extra: &str) -> Self {
        Self::start_with_sections(dir, extra, "", "")
    }

    /// Like `start_with`, with extra keys for the `[grpc]` and `[http]` sections too.
    pub fn start_with_sections(dir: &Path, extra: &str, grpc_keys: &str, http_keys: &str) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        Self::start_full(dir, extra, any, any, grpc_keys, http_keys)
    }

    /// Like `start_with`, listening on the given addresses (e.g. where a stopped collector
    /// listened, as a replacement server would).
    pub fn start_at(dir: &Path, extra: &str, grpc: SocketAddr, http: SocketAddr) -> Self {
        Self::start_full(dir, extra, grpc, http, "", "")
    }

    fn start_full(
        dir: &Path,
        extra: &str,
        grpc: SocketAddr,
        http: SocketAddr,
        grpc_keys: &str,
        http_keys: &str,
    ) -> Self {
        std::fs::create_dir_all(dir).expect("collector dir");
        let mut collector = Self {
            dir: dir.to_owned(),
            config: dir.join("collector.toml"),
            grpc,
            http,
            extra: extra.to_owned(),
            grpc_keys: grpc_keys.to_owned(),
            http_keys: http_keys.to_owned(),
            child: None,
            proxy: None,
        };
        collector.write_config();
        let _ = std::fs::remove_file(collector.data_dir().join("listen.json"));
        collector.spawn();
        let child = collector.child.as_mut().expect("just started");
        let listening =
            Listening::wait(&collector.dir.join("data"), Duration::from_secs(30), || {
                child.try_wait().ok().flatten().map(|s| s.to_string())
            })
            .unwrap_or_else(|e| panic!("{e:#}; log:\n{}", collector.log()));
        collector.grpc = listening.grpc;
        collector.http = listening.http;
        collector.proxy = Some(tls::Proxy::start(listening.grpc, collector.data_dir()));
        collector.write_config();
        collector.wait_healthy();
        collector
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn write_config(&self) {
        std::fs::write(
            &self.config,
            format!(
                "data_dir = {data:?}\n{extra}\n[grpc]\nlisten = \"{grpc}\"\n{grpc_keys}\n[http]\nlisten = \"{http}\"\n{http_keys}\n",
                data = self.data_dir().display().to_string(),
                extra = self.extra,
                grpc = self.grpc,
                http = self.http,
                grpc_keys = self.grpc_keys,
                http_keys = self.http_keys,
            ),
        )
        .expect("write config");
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "collector already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("collector.log"))
            .expect("log file");
        let child = Command::new(bin("caretaker-collector"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("CARETAKER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start collector");
        self.child = Some(child);
    }

    fn wait_healthy(&self) {
        let http = self.http;
        wait_for(Duration::from_secs(30), "the collector's API", || {
            get_raw(http, "/api/v1/health", None)
                .ok()
                .filter(|(s, _)| *s == 200)
        });
    }

    /// Starts the process again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_healthy();
    }

    pub fn api_token(&self) -> String {
        read_token(&self.dir.join("data/api-token"))
    }

    pub fn enroll_token(&self) -> String {
        read_token(&self.dir.join("data/enroll-token"))
    }

    /// Where agents and tests connect: the enrolling proxy (see [`tls`]), which relays real
    /// agents' TLS untouched and gives plaintext test clients an agent's mTLS.
    pub fn url(&self) -> String {
        match &self.proxy {
            Some(proxy) => format!("http://{}", proxy.addr),
            None => self.direct_url(),
        }
    }

    /// The collector's own gRPC port (TLS only), without the proxy.
    pub fn direct_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// GET an API path (under `/api/v1`) with the bearer token; panics unless 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.get_status(path);
        assert_eq!(status, 200, "GET {path} answered {status}: {body}");
        body
    }

    /// GET an API path with the bearer token; returns the status and the JSON body.
    pub fn get_status(&self, path: &str) -> (u16, Value) {
        let (status, body) = get_raw(
            self.http,
            &format!("/api/v1{path}"),
            Some(&self.api_token()),
        )
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
        let json =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
        (status, json)
    }

    pub fn assets(&self) -> Vec<Value> {
        self.get("/assets").as_array().expect("asset list").clone()
    }

    /// Stops the process with SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with SIGTERM and waits for it to drain.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("collector did not stop within 20 s of SIGTERM");
        }
    }

    /// Sends a signal (`"TERM"`, `"INT"`) to the running process.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("collector running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if it still runs
    /// (then it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("collector running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("collector.log")).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn read_token(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// A minimal HTTP/1.1 GET; enough for a JSON API on loopback.
pub fn get_raw(addr: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8(response).context("response is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            bail!("truncated chunk");
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
}

/// Runs the agent with `args` after `caretaker-agent`, waiting at most `timeout`.
pub fn agent(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(bin("caretaker-agent"))
        .args(args)
        .env("CARETAKER_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start agent");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("agent status").is_some() {
            return child.wait_with_output().expect("agent output");
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let output = child.wait_with_output().expect("agent output");
            panic!(
                "agent {args:?} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `caretaker-agent run --once` against `collector` with `state_dir` and extra args.
pub fn agent_once(collector: &Collector, state_dir: &Path, extra: &[&str]) -> Output {
    let state = state_dir.display().to_string();
    let url = collector.url();
    let token = collector.enroll_token();
    let mut args = vec![
        "run",
        "--once",
        "--collector",
        &url,
        "--enroll-token",
        &token,
        "--state-dir",
        &state,
    ];
    args.extend_from_slice(extra);
    let output = agent(&args, Duration::from_secs(120));
    assert!(
        output.status.success(),
        "agent run --once failed ({:?}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A long-running agent process, killed on drop.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    pub fn start(collector: &Collector, state_dir: &Path, extra: &[&str]) -> Self {
        let child = Command::new(bin("caretaker-agent"))
            .args([
                "run",
                "--collector",
                &collector.url(),
                "--enroll-token",
                &collector.enroll_token(),
                "--state-dir",
            ])
            .arg(state_dir)
            .args(extra)
            .env("CARETAKER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start agent");
        Self { child }
    }
}

/// A long-running agent with exactly `args` after `caretaker-agent`, killed on drop.
pub fn agent_process(args: &[&str]) -> AgentProcess {
    let child = Command::new(bin("caretaker-agent"))
        .args(args)
        .env("CARETAKER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start agent");
    AgentProcess { child }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This machine's hostname as the kernel knows it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

/// MACs of this machine's physical (non-virtual) interfaces, from sysfs.
pub fn physical_macs() -> Vec<String> {
    let mut macs = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net")
        .expect("sysfs net")
        .flatten()
    {
        let real = std::fs::canonicalize(entry.path()).unwrap_or_default();
        if real.starts_with("/sys/devices/virtual") {
            continue;
        }
        if let Ok(mac) = std::fs::read_to_string(entry.path().join("address")) {
            let mac = mac.trim().to_ascii_lowercase();
            if !mac.is_empty() && mac != "00:00:00:00:00:00" {
                macs.push(mac);
            }
        }
    }
    macs.sort();
    macs
}

/// Total RAM from /proc/meminfo, in bytes.
pub fn mem_total_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal");
    kib * 1024
}

/// Installed packages according to dpkg itself (`--admindir` when given).
pub fn dpkg_installed_count(admindir: Option<&Path>) -> usize {
    let mut command = Command::new("dpkg-query");
    if let Some(dir) = admindir {
        command.arg(format!("--admindir={}", dir.display()));
    }
    let output = command
        .args(["-W", "-f=${db:Status-Abbrev}\\n"])
        .output()
        .expect("dpkg-query must be installed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("ii"))
        .count()
}

/// A gRPC client for playing agents directly.
pub async fn grpc_client(
    collector: &Collector,
) -> v1::agent_service_client::AgentServiceClient<tonic::transport::Channel> {
    v1::agent_service_client::AgentServiceClient::connect(collector.url())
        .await
        .expect("connect to the collector")
        .max_encoding_message_size(64 * 1024 * 1024)
}

/// Adds `authorization: Bearer <secret>` to a request.
pub fn authed<T>(message: T, secret: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {secret}").parse().expect("ascii metadata"),
    );
    request
}

pub fn now_timestamp() -> prost_types::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    prost_types::Timestamp {
        seconds: now.as_secs() as i64,
        nanos: now.subsec_nanos() as i32,
    }
}
