//! What a new user meets first: `caretaker-collector demo` on loopback (port 0), the CLI
//! pointed at it with the command the demo prints, the agent it starts, and their logs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use caretaker_tests::{Listening, bin, get_raw, wait_for};

/// A `caretaker-collector demo` process run from `cwd`, stdout and stderr in files there.
struct Demo {
    cwd: PathBuf,
    child: Child,
}

impl Demo {
    fn start(cwd: &Path, args: &[&str]) -> Self {
        let child = Command::new(bin("caretaker-collector"))
            .arg("demo")
            .args(args)
            .current_dir(cwd)
            .env("CARETAKER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(cwd.join("demo.out")).expect("stdout file"))
            .stderr(std::fs::File::create(cwd.join("demo.log")).expect("log file"))
            .spawn()
            .expect("start the demo");
        Self {
            cwd: cwd.to_owned(),
            child,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.cwd.join("demo.out")).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.cwd.join("demo.log")).unwrap_or_default()
    }

    /// Waits (bounded) for the demo to exit by itself.
    fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("demo status") {
                return status.code();
            }
            assert!(
                start.elapsed() < timeout,
                "the demo still runs after {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Processes whose parent is `pid`, with their command lines (NUL-separated arguments).
fn children(pid: u32) -> Vec<(u32, Vec<String>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            found.push((child, args));
        }
    }
    found
}

fn run_printed(cwd: &Path, line: &str, extra: &[&str]) -> Output {
    assert!(
        !line.contains(['\'', '"']),
        "the test's paths need no quoting: {line}"
    );
    let mut words = line.split_whitespace();
    let program = words.next().expect("a command");
    Command::new(program)
        .args(words)
        .args(extra)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("running `{line}`: {e}"))
}

#[test]
fn the_demo_prints_a_cli_command_that_works_and_keeps_the_token_out_of_ps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo::start(
        dir.path(),
        &[
            "--dir",
            "demo",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let data = dir.path().join("demo/collector");
    let listening = Listening::wait(&data, Duration::from_secs(30), || {
        demo.child.try_wait().ok().flatten().map(|s| s.to_string())
    })
    .unwrap_or_else(|e| panic!("{e:#}; log:\n{}", demo.log()));
    assert_eq!(listening.pid, demo.child.id());
    let out = wait_for(Duration::from_secs(30), "the demo's banner", || {
        Some(demo.stdout()).filter(|o| o.contains("incidents --config"))
    });
    let api_token = std::fs::read_to_string(data.join("api-token"))
        .expect("api token")
        .trim()
        .to_owned();
    assert!(
        out.contains(&api_token),
        "the banner shows the API token:\n{out}"
    );
    assert!(
        out.contains(&format!("http://{}/api/v1", listening.http)),
        "the banner shows the API address:\n{out}"
    );
    assert!(
        out.contains(&format!("http://{}/ ", listening.http)),
        "the banner shows the dashboard address:\n{out}"
    );

    // The command the banner prints works as printed, from where the demo was started.
    let line = out
        .lines()
        .find(|l| l.contains(" incidents --config "))
        .expect("an incidents command")
        .trim();
    let output = run_printed(dir.path(), line, &[]);
    assert!(
        output.status.success(),
        "`{line}` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        listed.contains("No open incidents.") || listed.starts_with("INC"),
        "`{line}` printed: {listed}"
    );
    let output = run_printed(dir.path(), line, &["--json", "--status", "all"]);
    assert!(output.status.success(), "{output:?}");
    let incidents: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("incidents JSON");
    assert!(incidents.is_array(), "{incidents}");

    // The agent enrols with the token from the collector's file; `ps` never shows it.
    wait_for(
        Duration::from_secs(60),
        "the demo's agent as an asset",
        || {
            let (status, body) =
                get_raw(listening.http, "/api/v1/assets", Some(&api_token)).ok()?;
            (status == 200 && body.contains("\"agent\"")).then_some(())
        },
    );
    let enroll_token = std::fs::read_to_string(data.join("enroll-token"))
        .expect("enrolment token")
        .trim()
        .to_owned();
    let agents: Vec<_> = children(demo.child.id())
        .into_iter()
        .filter(|(_, args)| args.first().is_some_and(|a| a.ends_with("caretaker-agent")))
        .collect();
    assert_eq!(agents.len(), 1, "one agent child: {agents:?}");
    let args = &agents[0].1;
    assert!(
        !args.iter().any(|a| a.contains(&enroll_token)),
        "the enrolment token is on the agent's command line: {args:?}"
    );
    assert!(args.iter().any(|a| a == "--enroll-token-file"), "{args:?}");

    // Both processes log to the same file (the agent inherits the demo's stderr): plain text.
    let log = wait_for(
        Duration::from_secs(30),
        "the agent's enrolment in the log",
        || Some(demo.log()).filter(|l| l.contains("Enrolled with the collector")),
    );
    assert!(log.contains("Collector ready"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file:\n{}",
        log.escape_debug()
    );

    // SIGTERM stops the demo and its agent.
    let agent_pid = agents[0].0;
    let _ = Command::new("kill")
        .arg(demo.child.id().to_string())
        .status();
    assert_eq!(
        demo.exit_code(Duration::from_secs(30)),
        Some(0),
        "{}",
        demo.log()
    );
    wait_for(Duration::from_secs(10), "the agent to stop", || {
        let stat = std::fs::read_to_string(format!("/proc/{agent_pid}/stat")).ok();
        // Gone, or a zombie nobody reaps any more.
        stat.is_none_or(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .then_some(())
    });
}

#[test]
fn a_busy_port_names_the_flag_that_moves_it() {
    // Held for the whole test, so the demo cannot have it.
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = busy.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    for (flag, other) in [("--http", "--grpc"), ("--grpc", "--http")] {
        let busy_arg = addr.to_string();
        let mut demo = Demo::start(
            dir.path(),
            &["--dir", "demo", flag, &busy_arg, other, "127.0.0.1:0"],
        );
        assert_eq!(
            demo.exit_code(Duration::from_secs(30)),
            Some(69),
            "{}",
            demo.log()
        );
        let log = demo.log();
        assert!(
            log.contains(&format!("{addr} is in use; pass {flag} 127.0.0.1:PORT")),
            "{log}"
        );
        assert!(!log.contains('\u{1b}'), "{}", log.escape_debug());
    }
}
