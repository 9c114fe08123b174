//! `caretaker-bench dashboard`: every dashboard page's time to answer and first-load bytes
//! against a real collector whose store holds a synthetic school (by default 3,000 assets
//! with 150 programs per PC, 100,000 incidents and 1,000,000 change records, written by the
//! hidden `caretaker-collector bench-seed`). Requests go over loopback with a logged-in
//! session cookie; each page is fetched `rounds` times after a warm-up, and p50/p99 are
//! reported against the targets (p99 ≤ 50 ms, first load ≤ 150 KB: page + stylesheet +
//! htmx, uncompressed).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::harness::{ms, percentile};

pub struct Options {
    pub collector_bin: PathBuf,
    pub assets: usize,
    pub incidents: usize,
    pub changes: usize,
    pub rounds: usize,
    pub json: bool,
}

const P99_TARGET_MS: f64 = 50.0;
const FIRST_LOAD_TARGET: usize = 150 * 1024;

/// One GET: `(status, headers, body)`.
fn get(addr: SocketAddr, path: &str, cookie: &str) -> anyhow::Result<(u16, String, Vec<u8>)> {
    request(addr, "GET", path, cookie, "")
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    body: &str,
) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status")?;
    Ok((status, head, raw[split + 4..].to_vec()))
}

fn cookie_of(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim()))
        .filter_map(|v| v.split(';').next())
        .find(|kv| kv.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

pub fn run(options: &Options) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new()
        .prefix("caretaker-bench-dashboard-")
        .tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    eprintln!(
        "Seeding {} assets, {} incidents, {} changes ...",
        options.assets, options.incidents, options.changes
    );
    let seeded = Instant::now();
    let status = Command::new(&options.collector_bin)
        .args(["bench-seed", "--data-dir"])
        .arg(&data)
        .args([
            "--assets",
            &options.assets.to_string(),
            "--incidents",
            &options.incidents.to_string(),
            "--changes",
            &options.changes.to_string(),
        ])
        .status()
        .context("run caretaker-collector bench-seed")?;
    ensure!(status.success(), "bench-seed failed: {status}");
    let seed_time = seeded.elapsed();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [incidents]\nevaluate_every = \"1h\"\n",
            data.display().to_string()
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("collector.log"))?;
    let started = Instant::now();
    let mut child = Command::new(&options.collector_bin)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let result = measure(options, &data, &config, &mut child, started, seed_time);
    let _ = child.kill();
    let _ = child.wait();
    if result.is_err() {
        eprintln!(
            "collector log:\n{}",
            super::harness::log_tail(&dir.path().join("collector.log"), 30)
        );
    }
    result
}

fn measure(
    options: &Options,
    data: &std::path::Path,
    config: &std::path::Path,
    child: &mut std::process::Child,
    started: Instant,
    seed_time: Duration,
) -> anyhow::Result<bool> {
    let http = loop {
        if let Some(listening) = caretaker_tests::Listening::read(data) {
            break listening.http;
        }
        if let Some(status) = child.try_wait()? {
            bail!("the collector exited: {status}");
        }
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the collector did not listen within 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let ready = started.elapsed();
    // A technician account, then a logged-in session.
    let pw = data.join("bench-password");
    std::fs::write(&pw, "bench-password-1\n")?;
    let out = Command::new(&options.collector_bin)
        .args([
            "user",
            "add",
            "bench",
            "--role",
            "technician",
            "--password-file",
        ])
        .arg(&pw)
        .arg("--config")
        .arg(config)
        .output()?;
    ensure!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, head, body) = get(http, "/login", "")?;
    let form = cookie_of(&head, "caretaker_form").context("form cookie")?;
    let page = String::from_utf8_lossy(&body);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("csrf")?
        .to_owned();
    let (status, head, _) = request(
        http,
        "POST",
        "/login",
        &form,
        &format!("username=bench&password=bench-password-1&csrf={csrf}"),
    )?;
    ensure!(status == 303, "login answered {status}");
    let cookie = cookie_of(&head, "caretaker_session").context("session cookie")?;

    // The cold first query fills the read cache from the store.
    let cold = Instant::now();
    let (status, _, _) = get(http, "/assets", &cookie)?;
    ensure!(status == 200, "/assets answered {status}");
    let cold = cold.elapsed();

    let asset = "/assets/0000a5e700000007";
    let incident = "/incidents/00001ac1000003e8";
    let pages: Vec<(&str, String)> = vec![
        ("overview", "/".to_owned()),
        ("overview refresh (htmx)", "/ui/overview".to_owned()),
        ("assets", "/assets".to_owned()),
        (
            "assets: search a hostname",
            "/assets?q=rm05-pc007".to_owned(),
        ),
        (
            "assets: search software",
            "/assets?q=program+0042".to_owned(),
        ),
        (
            "assets: search IP (htmx)",
            "/ui/assets?q=198.18.3.".to_owned(),
        ),
        (
            "assets: sorted, page 30",
            "/assets?sort=last_seen&page=30".to_owned(),
        ),
        ("asset page", asset.to_owned()),
        ("asset page 30 d", format!("{asset}?window=30d")),
        ("incidents (open)", "/incidents".to_owned()),
        ("incidents: all, page 1", "/incidents?status=all".to_owned()),
        (
            "incidents: all, page 1000",
            "/incidents?status=all&page=1000".to_owned(),
        ),
        (
            "incidents: search",
            "/incidents?status=all&q=rm07".to_owned(),
        ),
        ("incident page", incident.to_owned()),
        ("problems", "/problems".to_owned()),
        ("changes", "/changes".to_owned()),
        (
            "changes: one asset",
            "/changes?asset=0000a5e700000007".to_owned(),
        ),
        (
            "changes: by kind, page 5",
            "/changes?kind=upgraded&page=5".to_owned(),
        ),
        ("report form", "/report".to_owned()),
    ];
    let (_, _, css) = get(http, "/static/caretaker.css", "")?;
    let (_, _, js) = get(http, "/static/htmx.min.js", "")?;
    let statics = css.len() + js.len();
    let mut rows = Vec::new();
    let mut ok = true;
    for (name, path) in &pages {
        let htmx = path.starts_with("/ui/");
        let cookie_header = if htmx {
            format!("{cookie}\r\nHX-Request: true")
        } else {
            cookie.clone()
        };
        let mut times = Vec::with_capacity(options.rounds);
        let mut bytes = 0;
        for round in 0..options.rounds + 3 {
            let start = Instant::now();
            let (status, _, body) = get(http, path, &cookie_header)?;
            let took = start.elapsed();
            ensure!(status == 200, "{path} answered {status}");
            if round >= 3 {
                times.push(took);
            }
            bytes = body.len();
        }
        times.sort();
        let p50 = ms(percentile(&times, 0.5));
        let p99 = ms(percentile(&times, 0.99));
        let first_load = if htmx { bytes } else { bytes + statics };
        let pass = p99 <= P99_TARGET_MS && first_load <= FIRST_LOAD_TARGET;
        ok &= pass;
        rows.push((name.to_string(), p50, p99, bytes, first_load, pass));
    }
    if options.json {
        let pages: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, p50, p99, bytes, first, pass)| {
                serde_json::json!({"page": name, "p50_ms": p50, "p99_ms": p99,
                    "p99_vs_target": p99 / P99_TARGET_MS, "html_bytes": bytes,
                    "first_load_bytes": first,
                    "first_load_vs_target": *first as f64 / FIRST_LOAD_TARGET as f64,
                    "pass": pass})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"assets": options.assets, "incidents": options.incidents,
                "changes": options.changes, "rounds": options.rounds,
                "seed_s": seed_time.as_secs_f64(), "ready_s": ready.as_secs_f64(),
                "cold_first_query_ms": ms(cold), "static_bytes": statics, "pages": pages})
        );
    } else {
        println!(
            "Dashboard on a store of {} assets, {} incidents, {} changes ({} rounds per page)",
            options.assets, options.incidents, options.changes, options.rounds
        );
        println!(
            "seeded in {:.0} s; collector listening after {:.1} s; first query (cache fill) {:.0} ms",
            seed_time.as_secs_f64(),
            ready.as_secs_f64(),
            ms(cold)
        );
        println!(
            "{:<28} {:>8} {:>8} {:>7} {:>9} {:>11} {:>7}",
            "page", "p50 ms", "p99 ms", "p99/50", "HTML KB", "1st load KB", "1st/150"
        );
        for (name, p50, p99, bytes, first, pass) in &rows {
            println!(
                "{:<28} {:>8.1} {:>8.1} {:>7.2} {:>9.1} {:>11.1} {:>7.2} {}",
                name,
                p50,
                p99,
                p99 / P99_TARGET_MS,
                *bytes as f64 / 1024.0,
                *first as f64 / 1024.0,
                *first as f64 / FIRST_LOAD_TARGET as f64,
                if *pass { "" } else { "OVER TARGET" }
            );
        }
        println!(
            "first load = page + stylesheet + htmx ({:.1} KB, uncompressed); htmx fragments count alone",
            statics as f64 / 1024.0
        );
    }
    Ok(ok)
}
