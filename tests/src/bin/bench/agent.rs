//! `caretaker-bench agent`: the real agent's footprint against a real collector.
//!
//! Starts a collector and `caretaker-agent run` (default intervals), samples the agent once a
//! second for S seconds (RSS, CPU ticks), then times `caretaker-agent inventory --json` and
//! reports the binary's size.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;

use crate::harness::{self, Collector, Proc, mib, ms};

/// Seconds of start-up excluded from the steady-state CPU figure.
const STARTUP: u64 = 10;
const INVENTORY_RUNS: usize = 5;
const INVENTORY_TIMEOUT: Duration = Duration::from_secs(120);

const TARGET_RSS_MIB: f64 = 8.0;
const TARGET_CPU_PERCENT: f64 = 0.1;
const TARGET_BINARY_MIB: f64 = 8.0;

pub struct Options {
    pub seconds: u64,
    pub agent_bin: std::path::PathBuf,
    pub collector_bin: std::path::PathBuf,
    pub json: bool,
}

pub async fn run(opts: Options) -> anyhow::Result<bool> {
    ensure!(
        opts.seconds > STARTUP,
        "--seconds must be more than {STARTUP} (the first {STARTUP} s are start-up)"
    );
    let collector = Collector::start(&opts.collector_bin).await?;
    let result = measure(&collector, &opts).await;
    let stopped = collector.stop().await;
    let mut figures = result?;
    figures["collector_exit"] = json!(stopped.context("stopping the collector")?);

    if opts.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print_text(&figures);
    }
    // Missing a target is a finding, not a failure: the figures were measured.
    Ok(true)
}

async fn measure(collector: &Collector, opts: &Options) -> anyhow::Result<serde_json::Value> {
    let state_dir = collector.dir.path().join("agent");
    let state_arg = state_dir.display().to_string();
    let endpoint = collector.endpoint();
    let mut agent = Proc::spawn(
        "caretaker-agent",
        &opts.agent_bin,
        &[
            "run",
            "--collector",
            &endpoint,
            "--enroll-token",
            &collector.enroll_token,
            "--state-dir",
            &state_arg,
        ],
        collector.dir.path().join("agent.log"),
    )?;
    let sampled = sample(&mut agent, opts.seconds).await;
    let assets = collector.asset_count();
    let store = collector.store_bytes();
    let (agent_exit, agent_stop) = agent.stop().await?;
    let sampled = sampled?;

    let inventory = time_inventory(&opts.agent_bin).await?;
    let binary = binary_facts(&opts.agent_bin)?;

    let ticks = harness::clock_ticks() as f64;
    let steady_secs = (opts.seconds - STARTUP) as f64;
    let cpu_percent =
        (sampled.ticks_end - sampled.ticks_startup) as f64 / ticks / steady_secs * 100.0;
    let startup_cpu = sampled.ticks_startup as f64 / ticks;
    let max_rss = mib(sampled.max_rss);
    let binary_mib = mib(binary.bytes);
    Ok(json!({
        "seconds": opts.seconds,
        "rss_max_mib": max_rss,
        "rss_final_mib": mib(sampled.final_rss),
        "rss_hwm_mib": mib(sampled.hwm),
        "cpu_percent_of_one_core": cpu_percent,
        "cpu_window_seconds": steady_secs,
        // One clock tick over the window: smaller shares read as 0.
        "cpu_resolution_percent": 100.0 / ticks / steady_secs,
        "startup_cpu_seconds": startup_cpu,
        "startup_window_seconds": STARTUP,
        "collector_assets_listed": assets,
        "collector_store_bytes": store,
        "agent_exit": agent_exit,
        "agent_stop_ms": ms(agent_stop),
        "inventory_runs": INVENTORY_RUNS,
        "inventory_median_ms": inventory.median_ms,
        "inventory_software_count": inventory.software,
        "binary_bytes": binary.bytes,
        "binary_mib": binary_mib,
        "binary_file": binary.file,
        "targets": { "rss_mib_max": TARGET_RSS_MIB, "cpu_percent_max": TARGET_CPU_PERCENT, "binary_mib_max": TARGET_BINARY_MIB },
        "meets_targets": max_rss <= TARGET_RSS_MIB && cpu_percent <= TARGET_CPU_PERCENT && binary_mib <= TARGET_BINARY_MIB,
    }))
}

struct Samples {
    max_rss: u64,
    final_rss: u64,
    hwm: u64,
    ticks_startup: u64,
    ticks_end: u64,
}

/// Reads the agent's RSS and CPU ticks once a second for `seconds` seconds.
async fn sample(agent: &mut Proc, seconds: u64) -> anyhow::Result<Samples> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut out = Samples {
        max_rss: 0,
        final_rss: 0,
        hwm: 0,
        ticks_startup: 0,
        ticks_end: 0,
    };
    for second in 0..=seconds {
        tick.tick().await;
        agent.ensure_running()?;
        let rss = harness::status_bytes(agent.pid, "VmRSS")?;
        let ticks = harness::cpu_ticks(agent.pid)?;
        out.max_rss = out.max_rss.max(rss);
        out.final_rss = rss;
        if second == STARTUP {
            out.ticks_startup = ticks;
        }
        out.ticks_end = ticks;
    }
    out.hwm = harness::status_bytes(agent.pid, "VmHWM")?;
    Ok(out)
}

struct InventoryTiming {
    median_ms: f64,
    software: usize,
}

async fn time_inventory(agent_bin: &Path) -> anyhow::Result<InventoryTiming> {
    let mut walls = Vec::with_capacity(INVENTORY_RUNS);
    let mut software = 0;
    for _ in 0..INVENTORY_RUNS {
        let started = Instant::now();
        let child = tokio::process::Command::new(agent_bin)
            .args(["inventory", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", agent_bin.display()))?;
        let output = tokio::time::timeout(INVENTORY_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| {
                format!("`caretaker-agent inventory --json` took longer than {INVENTORY_TIMEOUT:?}")
            })??;
        walls.push(started.elapsed());
        ensure!(
            output.status.success(),
            "`caretaker-agent inventory --json` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .context("`caretaker-agent inventory --json` printed invalid JSON")?;
        software = find_array(&report, "software").map_or(0, Vec::len);
    }
    walls.sort_unstable();
    Ok(InventoryTiming {
        median_ms: ms(walls[walls.len() / 2]),
        software,
    })
}

/// The first array stored under `key`, searching the JSON tree depth-first.
fn find_array<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a Vec<serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => map
            .get(key)
            .and_then(|v| v.as_array())
            .or_else(|| map.values().find_map(|v| find_array(v, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_array(v, key)),
        _ => None,
    }
}

struct BinaryFacts {
    bytes: u64,
    /// `file`'s description (says "stripped" or "not stripped"), when `file` is installed.
    file: Option<String>,
}

fn binary_facts(path: &Path) -> anyhow::Result<BinaryFacts> {
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    let file = std::process::Command::new("file")
        .arg("-b")
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    Ok(BinaryFacts { bytes, file })
}

fn print_text(f: &serde_json::Value) {
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let rss = num(&f["rss_max_mib"]);
    let cpu = num(&f["cpu_percent_of_one_core"]);
    let bin = num(&f["binary_mib"]);
    println!(
        "caretaker-bench agent: {} s of `caretaker-agent run` (default intervals) against a local collector",
        f["seconds"]
    );
    println!(
        "RSS:              max {rss:.2} MiB, final {:.2} MiB, VmHWM {:.2} MiB   (target <= 8 MiB: {})",
        num(&f["rss_final_mib"]),
        num(&f["rss_hwm_mib"]),
        verdict(rss <= TARGET_RSS_MIB)
    );
    println!(
        "CPU:              {cpu:.3} % of one core over the last {:.0} s, resolution {:.4} %   (target <= 0.1 %: {})",
        num(&f["cpu_window_seconds"]),
        num(&f["cpu_resolution_percent"]),
        verdict(cpu <= TARGET_CPU_PERCENT)
    );
    println!(
        "start-up CPU:     {:.2} s in the first {} s",
        num(&f["startup_cpu_seconds"]),
        f["startup_window_seconds"]
    );
    println!(
        "collector saw:    {} asset(s), store {} bytes",
        f["collector_assets_listed"], f["collector_store_bytes"]
    );
    println!(
        "agent stop:       {} after {:.0} ms",
        f["agent_exit"].as_str().unwrap_or("?"),
        num(&f["agent_stop_ms"])
    );
    println!(
        "inventory --json: median {:.0} ms over {} runs, {} software entries",
        num(&f["inventory_median_ms"]),
        f["inventory_runs"],
        f["inventory_software_count"]
    );
    println!(
        "binary:           {} bytes = {bin:.2} MiB   (target <= 8 MiB: {})",
        f["binary_bytes"],
        verdict(bin <= TARGET_BINARY_MIB)
    );
    if let Some(file) = f["binary_file"].as_str() {
        println!("                  {file}");
    } else {
        println!("                  (`file` not available; strip state unknown)");
    }
    println!(
        "collector exit:   {}",
        f["collector_exit"].as_str().unwrap_or("?")
    );
}
