//! What both benchmarks share: a real `caretaker-collector` process on loopback (temp dir,
//! config, port 0 and its `listen.json`, enrolment token, SIGTERM on the way out), `/proc` readings of another
//! process, directory sizes, a tiny HTTP GET for the collector's JSON API, and percentiles.
//!
//! Nothing here talks to anything but 127.0.0.1. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use caretaker_tests::Listening;
use tokio::process::{Child, Command};

/// How long a started process gets to open its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `--collector-bin` / `--agent-bin` default: the named binary next to this executable.
pub fn sibling_binary(explicit: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot locate this executable")?
            .with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX)),
    };
    ensure!(
        path.is_file(),
        "{name} not found at {}; build it (e.g. `cargo build --release -p {name}`) or pass its path",
        path.display()
    );
    Ok(path)
}

/// A process this benchmark started; SIGTERM (then SIGKILL) when stopped or dropped.
pub struct Proc {
    pub name: &'static str,
    pub pid: u32,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program args…` with stdout/stderr appended to `log`.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[&str],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().context("started process has no pid")?;
        Ok(Self {
            name,
            pid,
            child,
            log,
        })
    }

    /// Fails (with the log's tail) if the process has already exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}); last log lines:\n{}",
                self.name,
                log_tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL. Returns how the process ended and
    /// how long it took to go.
    pub async fn stop(mut self) -> anyhow::Result<(String, Duration)> {
        let started = Instant::now();
        if self.child.try_wait()?.is_some() {
            bail!("{} had already exited", self.name);
        }
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if !matches!(sent, Ok(s) if s.success()) {
            eprintln!(
                "warning: `kill -TERM {}` failed ({sent:?}); killing",
                self.pid
            );
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok((status?.to_string(), started.elapsed())),
            Err(_) => {
                self.child.kill().await?;
                Ok((
                    format!("did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed"),
                    started.elapsed(),
                ))
            }
        }
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A real collector on loopback in its own temp dir (removed on drop, after the process).
pub struct Collector {
    pub proc: Option<Proc>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub enroll_token: String,
    pub api_token: String,
    /// Holds the temp dir; declared last so it is removed after the process is gone.
    pub dir: tempfile::TempDir,
}

impl Collector {
    /// Writes the config, starts `collector_bin run --config …`, waits for the gRPC port.
    pub async fn start(collector_bin: &Path) -> anyhow::Result<Self> {
        Self::start_with(collector_bin, "").await
    }

    /// [`Collector::start`] with `extra` TOML appended to the config.
    pub async fn start_with(collector_bin: &Path, extra: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("caretaker-bench-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let data_dir = dir.path().join("data");
        let config = dir.path().join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\n\n[grpc]\nlisten = \"127.0.0.1:0\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}",
                data = data_dir.display().to_string(),
            ),
        )
        .with_context(|| format!("cannot write {}", config.display()))?;
        let config_arg = config.display().to_string();
        let mut proc = Proc::spawn(
            "caretaker-collector",
            collector_bin,
            &["run", "--config", &config_arg],
            dir.path().join("collector.log"),
        )?;
        let Listening { grpc, http, .. } = wait_for_listening(&mut proc, &data_dir).await?;
        let read_token = |name: &str| -> anyhow::Result<String> {
            let path = data_dir.join(name);
            let token = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok(token.trim().to_owned())
        };
        let enroll_token = read_token("enroll-token")?;
        let api_token = read_token("api-token")?;
        ensure!(!enroll_token.is_empty(), "the enrolment token is empty");
        Ok(Self {
            proc: Some(proc),
            grpc,
            http,
            data_dir,
            enroll_token,
            api_token,
            dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, |p| p.pid)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Bytes in `<data_dir>/store` (sum of file sizes).
    pub fn store_bytes(&self) -> u64 {
        dir_size(&self.data_dir.join("store"))
    }

    /// Number of assets the collector's JSON API lists, if it answers.
    pub fn asset_count(&self) -> Option<usize> {
        let body = http_get(self.http, "/api/v1/assets", &self.api_token).ok()?;
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        value.as_array().map(Vec::len)
    }

    /// Stops the collector (SIGTERM) and removes the temp dir.
    pub async fn stop(mut self) -> anyhow::Result<String> {
        let proc = self.proc.take().context("collector already stopped")?;
        let (how, _) = proc.stop().await?;
        Ok(how)
    }
}

/// Waits for the `listen.json` the collector writes once its listeners (port 0) are bound.
async fn wait_for_listening(proc: &mut Proc, data_dir: &Path) -> anyhow::Result<Listening> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        proc.ensure_running()?;
        if let Some(listening) = Listening::read(data_dir) {
            return Ok(listening);
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not write {}/listen.json within {START_TIMEOUT:?}; last log lines:\n{}",
                proc.name,
                data_dir.display(),
                log_tail(&proc.log, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sum of the sizes of all files under `dir` (0 if it does not exist).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Clock ticks per second for `/proc/<pid>/stat` (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces; fields after it start at
    // `state` (field 3), so utime (14) and stime (15) are at 11 and 12.
    let rest = stat
        .rsplit_once(')')
        .context("unexpected /proc/<pid>/stat format")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse()
            .context("bad number in /proc/<pid>/stat")
    };
    Ok(field(11)? + field(12)?)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    let kib: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("bad {key} in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// `GET path` over HTTP/1.1 with a bearer token; returns the body of a 200 answer.
fn http_get(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "HTTP answer: {}",
        head.lines().next().unwrap_or("")
    );
    ensure!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked HTTP answers are not supported"
    );
    Ok(body.to_owned())
}

/// The `q`-quantile (0..=1) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
