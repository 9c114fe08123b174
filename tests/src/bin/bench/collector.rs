//! `caretaker-bench collector`: N simulated agents against a real collector process.
//!
//! Untimed set-up: enrol every agent and submit one small inventory each. Timed phase: every
//! agent submits M status reports, one per `Submit`, in order, with at most C RPCs in flight
//! over a few shared HTTP/2 channels (plaintext) or each agent's own mTLS connection with its
//! own client certificate (mTLS, as real agents). Each answer's `acked_seq` must equal the seq
//! just sent. `--transport both` (the default) runs plaintext, then mTLS, and prints the ratio.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use caretaker_proto::v1::agent_service_client::AgentServiceClient;
use caretaker_proto::v1::{
    EnrollRequest, Inventory, NetworkInterface, Report, Software, Status, SubmitRequest, System,
    VolumeUsage, report,
};
use caretaker_tests::tls::Direct;
use rand::Rng;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::harness::{self, Collector, mib, ms, percentile};

/// A simulated agent's gRPC client: hyper's HTTP/2 connection driven directly (see
/// [`Direct`]), so the load generator spends less of the shared cores per call.
type Client = AgentServiceClient<Direct>;

/// Shared HTTP/2 connections the simulated agents spread over.
const CHANNELS: usize = 8;
/// One RPC that takes longer than this counts as an error.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on each phase, so the benchmark always ends.
const PHASE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Error messages kept for the report.
const KEPT_ERRORS: usize = 5;

const TARGET_RATE: f64 = 10_000.0;
const TARGET_P99_MS: f64 = 50.0;

pub struct Options {
    pub agents: usize,
    pub reports_per_agent: u64,
    pub concurrency: usize,
    pub collector_bin: std::path::PathBuf,
    pub json: bool,
    /// `both`, `mtls` or `plaintext`.
    pub transport: String,
}

/// One enrolled simulated agent.
struct Agent {
    index: usize,
    id: String,
    /// `Bearer <secret>`, ready to be a metadata value.
    auth: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    /// A shared connection (plaintext) or the agent's own (mTLS, or plaintext per agent).
    client: Client,
}

/// What a phase's RPCs came to.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    errors: u64,
    ack_mismatches: u64,
    messages: Vec<String>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.ack_mismatches += other.ack_mismatches;
        for m in other.messages {
            if self.messages.len() < KEPT_ERRORS {
                self.messages.push(m);
            }
        }
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.messages.len() < KEPT_ERRORS {
            self.messages.push(message);
        }
    }
}

/// Runs the benchmark; returns whether every RPC succeeded with the right ack.
pub async fn run(opts: Options) -> anyhow::Result<bool> {
    match opts.transport.as_str() {
        "plaintext" => run_one(&opts, false, false).await.map(|(ok, _)| ok),
        "mtls" => run_one(&opts, true, true).await.map(|(ok, _)| ok),
        _ => {
            let (shared_ok, shared) = run_one(&opts, false, false).await?;
            // Plaintext with one connection per agent, as mTLS must have: isolates what TLS
            // costs from what many connections cost.
            let (plain_ok, plain) = run_one(&opts, false, true).await?;
            let (tls_ok, tls) = run_one(&opts, true, true).await?;
            let plain_ok = plain_ok && shared_ok;
            let num = |f: &serde_json::Value, k: &str| f[k].as_f64().unwrap_or(f64::NAN);
            let p99 = |f: &serde_json::Value| f["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
            let ratio = json!({
                "throughput_mtls_over_plaintext": num(&tls, "reports_per_second") / num(&plain, "reports_per_second"),
                "p99_mtls_over_plaintext": p99(&tls) / p99(&plain),
                "cpu_per_report_mtls_over_plaintext": num(&tls, "collector_cpu_ms_per_1000_reports") / num(&plain, "collector_cpu_ms_per_1000_reports"),
                "setup_mtls_over_plaintext": num(&tls, "setup_seconds") / num(&plain, "setup_seconds"),
                "throughput_mtls_over_plaintext_shared_connections": num(&tls, "reports_per_second") / num(&shared, "reports_per_second"),
            });
            if opts.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"ratios": ratio}))?
                );
            } else {
                println!(
                    "mTLS vs plaintext (both one connection per agent):   throughput x{:.2} ({:.0} vs {:.0} reports/s), p99 x{:.2} ({:.2} vs {:.2} ms), CPU per report x{:.2}, set-up (enrol + inventory) x{:.2}",
                    ratio["throughput_mtls_over_plaintext"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                    num(&tls, "reports_per_second"),
                    num(&plain, "reports_per_second"),
                    ratio["p99_mtls_over_plaintext"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                    p99(&tls),
                    p99(&plain),
                    ratio["cpu_per_report_mtls_over_plaintext"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                    ratio["setup_mtls_over_plaintext"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                );
            }
            println!(
                "mTLS vs plaintext over {CHANNELS} shared connections: throughput x{:.2}",
                num(&tls, "reports_per_second") / num(&shared, "reports_per_second")
            );
            Ok(plain_ok && tls_ok)
        }
    }
}

/// One run on one transport: whether every RPC succeeded, and the figures.
async fn run_one(
    opts: &Options,
    mtls: bool,
    per_agent: bool,
) -> anyhow::Result<(bool, serde_json::Value)> {
    ensure!(opts.agents > 0, "--agents must be at least 1");
    ensure!(
        opts.reports_per_agent > 0,
        "--reports-per-agent must be at least 1"
    );
    ensure!(opts.concurrency > 0, "--concurrency must be at least 1");
    let extra = if mtls {
        ""
    } else {
        "[tls]\nplaintext = true\n"
    };
    let collector = Collector::start_with(&opts.collector_bin, extra).await?;
    let result = measure(&collector, opts, mtls, per_agent).await;
    let stopped = collector.stop().await;
    let figures = result?;
    let stopped = stopped.context("stopping the collector")?;

    let ok = figures["errors"] == 0 && figures["ack_mismatches"] == 0;
    if opts.json {
        let mut figures = figures.clone();
        figures["collector_exit"] = json!(stopped);
        figures["ok"] = json!(ok);
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print_text(&figures);
        println!("collector exit:      {stopped}");
    }
    Ok((ok, figures))
}

async fn measure(
    collector: &Collector,
    opts: &Options,
    mtls: bool,
    per_agent: bool,
) -> anyhow::Result<serde_json::Value> {
    let pid = collector.pid();
    let ticks_per_sec = harness::clock_ticks() as f64;
    let channels = connect(collector, mtls).await?;
    let limit = Arc::new(Semaphore::new(opts.concurrency));
    let store_empty = collector.store_bytes();

    // Untimed: enrol, then one inventory per agent.
    let setup_started = Instant::now();
    let roots = mtls.then(|| {
        (
            collector.grpc,
            caretaker_tests::tls::collector_cas(&collector.data_dir),
        )
    });
    let own = per_agent.then_some(collector.grpc);
    let (agents, enrol) =
        enrol_all(&channels, &collector.enroll_token, opts, &limit, roots, own).await?;
    let inventory = submit_inventories(&agents, &limit).await?;
    let setup_wall = setup_started.elapsed();
    ensure!(
        enrol.errors == 0 && inventory.errors == 0 && inventory.ack_mismatches == 0,
        "set-up failed: {} enrol errors, {} inventory errors, {} inventory ack mismatches; first: {:?}",
        enrol.errors,
        inventory.errors,
        inventory.ack_mismatches,
        enrol.messages.iter().chain(&inventory.messages).next()
    );
    let store_after_inventory = collector.store_bytes();
    let assets = collector.asset_count();

    // Timed: M status reports per agent.
    let cpu_before = harness::cpu_ticks(pid)?;
    let own_before = harness::cpu_ticks(std::process::id())?;
    let started = Instant::now();
    let status = submit_statuses(&agents, opts.reports_per_agent, &limit).await?;
    let wall = started.elapsed();
    let cpu_after = harness::cpu_ticks(pid)?;
    let own_after = harness::cpu_ticks(std::process::id())?;
    let store_after_status = collector.store_bytes();
    let peak_rss = harness::status_bytes(pid, "VmHWM")?;

    let mut latencies = status.latencies;
    latencies.sort_unstable();
    let total = agents.len() as u64 * opts.reports_per_agent;
    let rate = total as f64 / wall.as_secs_f64();
    let p = |q| ms(percentile(&latencies, q));
    let cpu_timed = (cpu_after - cpu_before) as f64 / ticks_per_sec;
    let cpu_total = cpu_after as f64 / ticks_per_sec;
    let own_timed = (own_after - own_before) as f64 / ticks_per_sec;
    let n = agents.len() as u64;
    Ok(json!({
        "agents": n,
        "reports_per_agent": opts.reports_per_agent,
        "concurrency": opts.concurrency,
        "transport": if mtls { "mtls" } else { "plaintext" },
        "channels": if per_agent { n as usize } else { CHANNELS },
        "setup_seconds": setup_wall.as_secs_f64(),
        "reports": total,
        "wall_seconds": wall.as_secs_f64(),
        "reports_per_second": rate,
        "latency_ms": { "p50": p(0.50), "p90": p(0.90), "p99": p(0.99), "max": latencies.last().map_or(0.0, |d| ms(*d)) },
        "errors": status.errors,
        "ack_mismatches": status.ack_mismatches,
        "first_errors": status.messages,
        "collector_cpu_seconds_timed": cpu_timed,
        "collector_cpu_percent_of_one_core_timed": cpu_timed / wall.as_secs_f64() * 100.0,
        "collector_cpu_seconds_total": cpu_total,
        "collector_cpu_ms_per_1000_reports": cpu_timed * 1000.0 / (total as f64 / 1000.0),
        "collector_peak_rss_bytes": peak_rss,
        // The simulated agents share the machine's cores with the collector.
        "agents_cpu_ms_per_1000_reports": own_timed * 1000.0 / (total as f64 / 1000.0),
        "assets_listed": assets,
        "store_bytes_empty": store_empty,
        "store_bytes_after_inventory": store_after_inventory,
        "store_bytes_after_status": store_after_status,
        "bytes_per_asset": store_after_inventory as f64 / n as f64,
        "bytes_per_asset_above_empty": store_after_inventory.saturating_sub(store_empty) as f64 / n as f64,
        "bytes_per_status_report": store_after_status.saturating_sub(store_after_inventory) as f64 / total as f64,
        "targets": { "reports_per_second_min": TARGET_RATE, "p99_ms_max": TARGET_P99_MS },
        "meets_targets": rate >= TARGET_RATE && p(0.99) <= TARGET_P99_MS,
    }))
}

fn print_text(f: &serde_json::Value) {
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let lat = &f["latency_ms"];
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let rate = num(&f["reports_per_second"]);
    let p99 = num(&lat["p99"]);
    println!(
        "caretaker-bench collector ({}): {} agents x {} status reports, {} in flight over {} connections",
        f["transport"].as_str().unwrap_or_default(),
        f["agents"],
        f["reports_per_agent"],
        f["concurrency"],
        f["channels"]
    );
    println!(
        "set-up (enrol + inventory, untimed): {:.1} s; assets listed by the API: {}",
        num(&f["setup_seconds"]),
        f["assets_listed"]
    );
    println!("reports:             {}", f["reports"]);
    println!("wall time:           {:.2} s", num(&f["wall_seconds"]));
    println!(
        "throughput:          {rate:.0} reports/s   (target >= 10,000 reports/s: {})",
        verdict(rate >= TARGET_RATE)
    );
    println!(
        "latency:             p50 {:.2} ms, p90 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms   (target p99 <= 50 ms: {})",
        num(&lat["p50"]),
        num(&lat["p90"]),
        num(&lat["max"]),
        verdict(p99 <= TARGET_P99_MS)
    );
    println!(
        "errors:              {} failed RPCs, {} wrong acked_seq",
        f["errors"], f["ack_mismatches"]
    );
    if let Some(first) = f["first_errors"].as_array().filter(|a| !a.is_empty()) {
        for e in first {
            println!("  e.g. {e}");
        }
    }
    println!(
        "collector CPU:       {:.2} s in the timed phase ({:.0} % of one core, {:.1} ms per 1000 reports); {:.2} s since start",
        num(&f["collector_cpu_seconds_timed"]),
        num(&f["collector_cpu_percent_of_one_core_timed"]),
        num(&f["collector_cpu_ms_per_1000_reports"]),
        num(&f["collector_cpu_seconds_total"]),
    );
    println!(
        "simulated agents:    {:.1} ms CPU per 1000 reports (this process, on the same cores)",
        num(&f["agents_cpu_ms_per_1000_reports"])
    );
    println!(
        "collector peak RSS:  {:.1} MiB (VmHWM)",
        mib(f["collector_peak_rss_bytes"].as_u64().unwrap_or(0))
    );
    println!(
        "store on disk:       {:.1} MiB empty, {:.1} MiB after inventories, {:.1} MiB after status reports",
        mib(f["store_bytes_empty"].as_u64().unwrap_or(0)),
        mib(f["store_bytes_after_inventory"].as_u64().unwrap_or(0)),
        mib(f["store_bytes_after_status"].as_u64().unwrap_or(0)),
    );
    println!(
        "bytes per asset:     {:.0} (size after inventories / N; {:.0} above the empty store)",
        num(&f["bytes_per_asset"]),
        num(&f["bytes_per_asset_above_empty"])
    );
    println!(
        "bytes per status:    {:.0}",
        num(&f["bytes_per_status_report"])
    );
}

/// Shared connections: plaintext, or (mTLS) TLS without a client certificate for enrolment.
async fn connect(collector: &Collector, mtls: bool) -> anyhow::Result<Vec<Client>> {
    let config = mtls.then(|| {
        let roots = caretaker_tests::tls::collector_cas(&collector.data_dir);
        caretaker_tests::tls::client_config(&roots, None)
    });
    let mut clients = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        clients.push(open(collector.grpc, config.clone()).await?);
    }
    Ok(clients)
}

/// A client on a new connection to `addr` (TLS with `config`, else plaintext).
async fn open(
    addr: std::net::SocketAddr,
    config: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
) -> anyhow::Result<Client> {
    let tls = config.is_some();
    let direct = tokio::time::timeout(RPC_TIMEOUT, Direct::connect(addr, config))
        .await
        .map_err(|_| anyhow::anyhow!("cannot connect to {addr}: no answer within {RPC_TIMEOUT:?}"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    Ok(AgentServiceClient::with_origin(
        direct,
        Direct::origin(addr, tls),
    ))
}

fn client(channels: &[Client], index: usize) -> Client {
    channels[index % channels.len()].clone()
}

fn mac(index: usize) -> String {
    let b = (index as u32).to_be_bytes();
    format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

fn hostname(index: usize) -> String {
    format!("bench-pc-{:04}", index + 1)
}

fn now() -> prost_types::Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

/// Awaits every task, or gives up (aborting the rest) after [`PHASE_TIMEOUT`].
async fn join_all<T: Send + 'static>(
    what: &str,
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> anyhow::Result<Vec<T>> {
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let all = async {
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await.context("benchmark task panicked")?);
        }
        anyhow::Ok(out)
    };
    match tokio::time::timeout(PHASE_TIMEOUT, all).await {
        Ok(out) => out,
        Err(_) => {
            aborts.iter().for_each(|a| a.abort());
            anyhow::bail!("{what} did not finish within {PHASE_TIMEOUT:?}")
        }
    }
}

async fn enrol_all(
    channels: &[Client],
    token: &str,
    opts: &Options,
    limit: &Arc<Semaphore>,
    mtls: Option<(std::net::SocketAddr, String)>,
    own_plaintext: Option<std::net::SocketAddr>,
) -> anyhow::Result<(Vec<Agent>, Outcome)> {
    let tasks = (0..opts.agents)
        .map(|index| {
            let mut client = client(channels, index);
            let shared = client.clone();
            let mtls = mtls.clone();
            let limit = limit.clone();
            let (key_pem, csr_pem) = if mtls.is_some() {
                caretaker_tests::tls::key_and_csr()
            } else {
                (String::new(), String::new())
            };
            let request = EnrollRequest {
                csr_pem,
                enroll_token: token.to_owned(),
                hostname: hostname(index),
                smbios_uuid: String::new(),
                macs: vec![mac(index)],
                agent_version: "bench".into(),
                ..Default::default()
            };
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                match tokio::time::timeout(RPC_TIMEOUT, client.enroll(request)).await {
                    Ok(Ok(r)) => {
                        let r = r.into_inner();
                        let auth = format!("Bearer {}", r.agent_secret)
                            .parse()
                            .map_err(|_| "agent secret is not valid metadata".to_owned())?;
                        let own = match mtls {
                            Some((addr, _)) => Some((
                                addr,
                                Some(caretaker_tests::tls::client_config(
                                    &r.ca_pem,
                                    Some((&r.certificate_pem, &key_pem)),
                                )),
                            )),
                            None => own_plaintext.map(|addr| (addr, None)),
                        };
                        let client = match own {
                            Some((addr, config)) => {
                                open(addr, config).await.map_err(|e| format!("{e:#}"))?
                            }
                            None => shared,
                        };
                        Ok(Agent {
                            index,
                            id: r.agent_id,
                            auth,
                            client,
                        })
                    }
                    Ok(Err(status)) => Err(format!("enrol: {status}")),
                    Err(_) => Err(format!("enrol: no answer within {RPC_TIMEOUT:?}")),
                }
            })
        })
        .collect();
    let mut outcome = Outcome::default();
    let mut agents = Vec::with_capacity(opts.agents);
    for result in join_all("enrolment", tasks).await? {
        match result {
            Ok(agent) => agents.push(agent),
            Err(message) => outcome.error(message),
        }
    }
    Ok((agents, outcome))
}

/// Submits `report` for `agent` and checks the ack; records latency on success.
async fn submit_one(client: &mut Client, agent: &Agent, report: Report, outcome: &mut Outcome) {
    let seq = report.seq;
    let mut request = tonic::Request::new(SubmitRequest {
        agent_id: agent.id.clone(),
        reports: vec![report],
        epoch: 0,
    });
    request
        .metadata_mut()
        .insert("authorization", agent.auth.clone());
    let started = Instant::now();
    match tokio::time::timeout(RPC_TIMEOUT, client.submit(request)).await {
        Ok(Ok(response)) => {
            outcome.latencies.push(started.elapsed());
            let acked = response.into_inner().acked_seq;
            if acked != seq {
                outcome.ack_mismatches += 1;
                if outcome.messages.len() < KEPT_ERRORS {
                    outcome
                        .messages
                        .push(format!("agent {}: sent seq {seq}, acked {acked}", agent.id));
                }
            }
        }
        Ok(Err(status)) => outcome.error(format!("submit seq {seq}: {status}")),
        Err(_) => outcome.error(format!(
            "submit seq {seq}: no answer within {RPC_TIMEOUT:?}"
        )),
    }
}

async fn submit_inventories(agents: &[Agent], limit: &Arc<Semaphore>) -> anyhow::Result<Outcome> {
    let tasks = agents
        .iter()
        .map(|agent| {
            let mut client = agent.client.clone();
            let limit = limit.clone();
            let agent = Agent {
                index: agent.index,
                id: agent.id.clone(),
                auth: agent.auth.clone(),
                client: agent.client.clone(),
            };
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                let _permit = limit.acquire_owned().await.expect("semaphore open");
                submit_one(
                    &mut client,
                    &agent,
                    inventory_report(agent.index),
                    &mut outcome,
                )
                .await;
                outcome
            })
        })
        .collect();
    let mut outcome = Outcome::default();
    for o in join_all("inventory submission", tasks).await? {
        outcome.merge(o);
    }
    Ok(outcome)
}

async fn submit_statuses(
    agents: &[Agent],
    per_agent: u64,
    limit: &Arc<Semaphore>,
) -> anyhow::Result<Outcome> {
    let tasks = agents
        .iter()
        .map(|agent| {
            let mut client = agent.client.clone();
            let limit = limit.clone();
            let agent = Agent {
                index: agent.index,
                id: agent.id.clone(),
                auth: agent.auth.clone(),
                client: agent.client.clone(),
            };
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                outcome.latencies.reserve(per_agent as usize);
                for seq in 2..=per_agent + 1 {
                    let report = status_report(seq);
                    // A permit per RPC: the semaphore is fair, so agents take turns.
                    let _permit = limit.acquire().await.expect("semaphore open");
                    submit_one(&mut client, &agent, report, &mut outcome).await;
                }
                outcome
            })
        })
        .collect();
    let mut outcome = Outcome::default();
    for o in join_all("status submission", tasks).await? {
        outcome.merge(o);
    }
    Ok(outcome)
}

fn inventory_report(index: usize) -> Report {
    const PACKAGES: [&str; 20] = [
        "firefox-esr",
        "libreoffice-writer",
        "libreoffice-calc",
        "libreoffice-impress",
        "gimp",
        "inkscape",
        "vlc",
        "audacity",
        "scratch",
        "geogebra",
        "thunderbird",
        "openssh-client",
        "cups",
        "network-manager",
        "xorg",
        "lightdm",
        "python3",
        "git",
        "vim",
        "unattended-upgrades",
    ];
    let software = PACKAGES
        .iter()
        .enumerate()
        .map(|(i, name)| Software {
            name: (*name).into(),
            version: format!("{}.{}.{}-1", 1 + i % 7, i % 5, i),
            publisher: "Debian".into(),
            installed_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + i as i64 * 3600,
                nanos: 0,
            }),
            source: "dpkg".into(),
            arch: "amd64".into(),
        })
        .collect();
    Report {
        seq: 1,
        collected_at: Some(now()),
        missing: vec![],
        agent_version: "bench".into(),
        body: Some(report::Body::Inventory(Inventory {
            system: Some(System {
                hostname: hostname(index),
                os_name: "Debian GNU/Linux".into(),
                os_version: "12".into(),
                os_build: "12.5".into(),
                kernel: "6.1.0-18-amd64".into(),
                arch: "x86_64".into(),
                machine_id: format!("{:032x}", 0xbe_0000_0000_u64 + index as u64),
                ..Default::default()
            }),
            hardware: None,
            disks: vec![],
            volumes: vec![],
            interfaces: vec![NetworkInterface {
                name: "eth0".into(),
                mac: mac(index),
                ipv4: vec![format!("10.{}.{}.{}/16", 20, index / 250, 1 + index % 250)],
                ipv6: vec![],
                speed_mbps: 1000,
                up: true,
                r#virtual: false,
            }],
            software,
            ..Default::default()
        })),
    }
}

fn status_report(seq: u64) -> Report {
    const GIB: u64 = 1024 * 1024 * 1024;
    let mut rng = rand::rng();
    let stamp = now();
    let uptime = 3600 + seq * 300;
    let volume = |mount: &str, total: u64, rng: &mut rand::rngs::ThreadRng| VolumeUsage {
        mount: mount.into(),
        total_bytes: total,
        free_bytes: rng.random_range(total / 10..total / 2),
    };
    Report {
        seq,
        collected_at: Some(stamp),
        missing: vec![],
        agent_version: "bench".into(),
        body: Some(report::Body::Status(Status {
            uptime_secs: uptime,
            cpu_percent: rng.random_range(0.0..60.0),
            load1: rng.random_range(0.0..2.0),
            load5: rng.random_range(0.0..1.5),
            load15: rng.random_range(0.0..1.0),
            memory_total_bytes: 8 * GIB,
            memory_used_bytes: rng.random_range(2 * GIB..7 * GIB),
            swap_total_bytes: 2 * GIB,
            swap_used_bytes: rng.random_range(0..GIB / 4),
            volumes: vec![
                volume("/", 64 * GIB, &mut rng),
                volume("/home", 400 * GIB, &mut rng),
                volume("/boot/efi", GIB / 2, &mut rng),
            ],
            logged_on_users: vec!["pupil".into()],
            journal_dropped: 0,
            boot_time: Some(prost_types::Timestamp {
                seconds: stamp.seconds - uptime as i64,
                nanos: 0,
            }),
        })),
    }
}
