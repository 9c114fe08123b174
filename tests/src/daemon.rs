//! A collector daemon running inside a lab's scanner namespace, and its API through curl
//! (the API listens on the namespace's own loopback).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::lab::Lab;
use crate::{Listening, bin};

pub struct Daemon<'a> {
    lab: &'a Lab,
    child: Child,
    /// Ports the collector reported in its `listen.json` (it binds port 0): the API on the
    /// scanner namespace's loopback, gRPC on every address of the namespace.
    pub http: u16,
    pub grpc: u16,
    token: String,
    pub dir: tempfile::TempDir,
}

impl Daemon<'_> {
    /// Starts `caretaker-collector run` in the lab's scanner namespace, sweeping the lab LAN
    /// every 5 s; `extra` is appended to the generated config.
    pub fn start<'a>(lab: &'a Lab, extra: &str) -> Result<Daemon<'a>> {
        Self::start_with_ranges(lab, &[lab.lan().to_string()], extra)
    }

    /// [`Daemon::start`] sweeping `ranges` instead of the lab LAN alone.
    pub fn start_with_ranges<'a>(
        lab: &'a Lab,
        ranges: &[String],
        extra: &str,
    ) -> Result<Daemon<'a>> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\n[grpc]\nlisten = \"0.0.0.0:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
                 [agents]\nheartbeat_interval = \"2s\"\nstale_after = \"8s\"\n\
                 [scan]\nranges = {ranges:?}\ninterval = \"5s\"\nwatch_interval = \"1s\"\ngone_after = \"4s\"\ntimeout = \"400ms\"\ntcp_ports = []\nreverse_dns = false\n\
                 [snmp]\ncommunities = [\"public\"]\ntimeout = \"2s\"\n{extra}",
                data = dir.path().join("data").display().to_string(),
                ranges = ranges,
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("collector.log"))?;
        let mut child = lab
            .scanner_cmd(
                bin("caretaker-collector"),
                &["run", "--config", &config.display().to_string()],
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let listening = Listening::wait(&dir.path().join("data"), Duration::from_secs(30), || {
            child.try_wait().ok().flatten().map(|s| s.to_string())
        });
        let listening = match listening {
            Ok(listening) => listening,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("collector.log")).unwrap_or_default();
                bail!("{error:#}; collector log:\n{log}");
            }
        };
        let (grpc, http) = (listening.grpc.port(), listening.http.port());
        let mut daemon = Daemon {
            lab,
            child,
            http,
            grpc,
            token: String::new(),
            dir,
        };
        daemon.wait_until("the API", Duration::from_secs(30), |d| {
            Ok(d.curl("/api/v1/health").is_ok())
        })?;
        daemon.token = std::fs::read_to_string(daemon.dir.path().join("data/api-token"))?
            .trim()
            .to_owned();
        Ok(daemon)
    }

    pub fn enroll_token(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.dir.path().join("data/enroll-token"))?
                .trim()
                .to_owned(),
        )
    }

    /// POST a JSON body through curl inside the scanner namespace.
    pub fn post(&self, path: &str, body: &str) -> Result<(u16, Value)> {
        let output = self
            .lab
            .scanner_cmd(
                "curl",
                &[
                    "-s",
                    "-w",
                    "\n%{http_code}",
                    "-X",
                    "POST",
                    "-H",
                    &format!("Authorization: Bearer {}", self.token),
                    "-H",
                    "Content-Type: application/json",
                    "--data",
                    body,
                    &format!("http://127.0.0.1:{}{path}", self.http),
                ],
            )
            .output()?;
        let text = String::from_utf8(output.stdout)?;
        let (body, code) = text.rsplit_once('\n').context("curl output")?;
        Ok((
            code.trim().parse()?,
            serde_json::from_str(body).unwrap_or(Value::Null),
        ))
    }

    /// GET through curl inside the scanner namespace, where the API listens.
    pub fn curl(&self, path: &str) -> Result<Value> {
        let output = self
            .lab
            .scanner_cmd(
                "curl",
                &[
                    "-sf",
                    "-H",
                    &format!("Authorization: Bearer {}", self.token),
                    &format!("http://127.0.0.1:{}{path}", self.http),
                ],
            )
            .output()?;
        ensure!(output.status.success(), "curl {path}: {}", output.status);
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    pub fn assets(&self) -> Result<Vec<Value>> {
        self.curl("/api/v1/assets")?
            .as_array()
            .cloned()
            .context("asset list")
    }

    pub fn asset_with_ip(&self, ip: &str) -> Result<Option<Value>> {
        Ok(self.assets()?.into_iter().find(|a| {
            a["ips"]
                .as_array()
                .is_some_and(|ips| ips.iter().any(|i| i == ip))
        }))
    }

    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "the collector exited ({status}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            if check(self).unwrap_or(false) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; collector log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn log(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("collector.log")).unwrap_or_default();
        text.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
