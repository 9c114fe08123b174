//! `caretaker-bench flood`: what huge inventories cost the collector.
//!
//! Phase 1: every agent sends an inventory listing `--programs` programs (150,000 by default,
//! ≈ 3.5 MB, under the 4 MiB message limit), `--rounds` times, each round with other versions
//! so every diff is total. Phase 2: the same at `--at-cap` programs (what the collector still
//! accepts). Reports the collector's peak RSS (VmHWM) after each phase, what the RPCs were
//! answered, and how much the store grew per accepted inventory. Target: peak RSS ≤ 400 MiB.

use std::time::Instant;

use anyhow::{Context, ensure};
use caretaker_proto::v1::agent_service_client::AgentServiceClient;
use caretaker_proto::v1::{
    EnrollRequest, Hardware, Inventory, NetworkInterface, Report, Software, SubmitRequest, System,
    report,
};
use serde_json::json;
use tonic::transport::Endpoint;

use crate::harness::{self, Collector, mib};

const TARGET_RSS_MIB: f64 = 400.0;

pub struct Options {
    pub agents: usize,
    pub programs: usize,
    pub at_cap: usize,
    pub rounds: u64,
    pub collector_bin: std::path::PathBuf,
    pub json: bool,
}

fn inventory(seq: u64, agent: usize, programs: usize, round: u64) -> Report {
    let software = (0..programs)
        // Short names keep 150,000 entries under the 4 MiB message limit, as a hostile
        // client would.
        .map(|i| Software {
            name: format!("p{i}"),
            version: format!("{round}.{i}"),
            ..Default::default()
        })
        .collect();
    Report {
        seq,
        collected_at: Some(prost_types::Timestamp {
            seconds: time_now(),
            nanos: 0,
        }),
        body: Some(report::Body::Inventory(Inventory {
            system: Some(System {
                hostname: format!("FLOOD-{agent:02}"),
                os_name: "Debian GNU/Linux".to_owned(),
                ..Default::default()
            }),
            hardware: Some(Hardware {
                serial: format!("FLOOD-SN-{agent}"),
                ..Default::default()
            }),
            interfaces: vec![NetworkInterface {
                name: "eth0".to_owned(),
                mac: format!("00:16:3e:09:00:{agent:02x}"),
                ..Default::default()
            }],
            software,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What one phase's RPCs were answered: `code: message` → count.
type Answers = std::collections::BTreeMap<String, u64>;

pub async fn run(opts: Options) -> anyhow::Result<bool> {
    ensure!(
        opts.agents > 0 && opts.rounds > 0,
        "--agents and --rounds must be at least 1"
    );
    // Inventory size, not TLS, is measured here: the collector also takes plaintext.
    let collector = Collector::start_with(&opts.collector_bin, "[tls]\nplaintext = true\n").await?;
    let result = measure(&collector, &opts).await;
    let stopped = collector.stop().await;
    let figures = result?;
    stopped.context("stopping the collector")?;
    let ok = figures["peak_rss_mib"].as_f64().unwrap_or(f64::MAX) <= TARGET_RSS_MIB;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!("agents × rounds:        {} × {}", opts.agents, opts.rounds);
        for phase in ["oversized", "at_cap"] {
            let p = &figures[phase];
            println!(
                "{phase:<10} {:>7} programs: answers {}, peak RSS after {:.1} MiB, {:.1} s",
                p["programs"], p["answers"], p["peak_rss_mib"], p["seconds"]
            );
        }
        println!(
            "store growth per accepted inventory: {:.2} MiB",
            figures["store_mib_per_accepted"]
        );
        println!(
            "collector peak RSS: {:.1} MiB (target <= {TARGET_RSS_MIB} MiB: {})",
            figures["peak_rss_mib"],
            if ok { "ok" } else { "MISSED" }
        );
    }
    Ok(ok)
}

async fn measure(collector: &Collector, opts: &Options) -> anyhow::Result<serde_json::Value> {
    let channel = Endpoint::from_shared(collector.endpoint())?
        .connect()
        .await
        .context("connecting to the collector")?;
    let mut client = AgentServiceClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20);
    let mut agents = Vec::new();
    for i in 0..opts.agents {
        let enrolled = client
            .enroll(EnrollRequest {
                enroll_token: collector.enroll_token.clone(),
                hostname: format!("FLOOD-{i:02}"),
                ..Default::default()
            })
            .await
            .context("enrol")?
            .into_inner();
        agents.push((
            enrolled.agent_id,
            format!("Bearer {}", enrolled.agent_secret),
        ));
    }
    let pid = collector.pid();
    let mut seq = 0;
    let mut phases = serde_json::Map::new();
    let mut accepted = 0u64;
    let store_before = collector.store_bytes();
    for (phase, programs) in [("oversized", opts.programs), ("at_cap", opts.at_cap)] {
        let started = Instant::now();
        let mut answers = Answers::new();
        for round in 0..opts.rounds {
            seq += 1;
            // Every agent at once: the flood arrives together.
            let mut tasks = Vec::new();
            for (index, (id, auth)) in agents.iter().enumerate() {
                let mut client = client.clone();
                let mut request = tonic::Request::new(SubmitRequest {
                    agent_id: id.clone(),
                    reports: vec![inventory(seq, index, programs, round + seq)],
                    epoch: 0,
                });
                request
                    .metadata_mut()
                    .insert("authorization", auth.parse().expect("ascii"));
                tasks.push(tokio::spawn(async move { client.submit(request).await }));
            }
            for task in tasks {
                let key = match task.await? {
                    Ok(_) => {
                        accepted += 1;
                        "OK".to_owned()
                    }
                    Err(status) => format!("{:?}: {}", status.code(), status.message()),
                };
                *answers.entry(key).or_default() += 1;
            }
        }
        let peak = harness::status_bytes(pid, "VmHWM")?;
        phases.insert(
            phase.to_owned(),
            json!({
                "programs": programs,
                "answers": answers,
                "peak_rss_mib": mib(peak),
                "seconds": started.elapsed().as_secs_f64(),
            }),
        );
    }
    let store_after = collector.store_bytes();
    let peak = harness::status_bytes(pid, "VmHWM")?;
    let mut figures = serde_json::Value::Object(phases);
    figures["peak_rss_mib"] = json!(mib(peak));
    figures["store_mib_per_accepted"] =
        json!(mib(store_after.saturating_sub(store_before)) / accepted.max(1) as f64);
    figures["accepted"] = json!(accepted);
    Ok(figures)
}
