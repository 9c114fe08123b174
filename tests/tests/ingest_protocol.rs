//! The collector's gRPC ingest against a real collector process, played by the test as one
//! or many agents: durability across SIGKILL, idempotent retries, identity of clones, and
//! what bad input gets.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caretaker_tests::v1::{self, EnrollRequest, Report, SubmitRequest, report};
use caretaker_tests::{Collector, authed, grpc_client, now_timestamp, wait_for};
use serde_json::Value;
use tonic::Code;

struct FakeAgent {
    id: String,
    secret: String,
}

async fn enrol(collector: &Collector, hostname: &str, mac: &str, uuid: &str) -> FakeAgent {
    let mut client = grpc_client(collector).await;
    let response = client
        .enroll(EnrollRequest {
            enroll_token: collector.enroll_token(),
            hostname: hostname.to_owned(),
            smbios_uuid: uuid.to_owned(),
            macs: vec![mac.to_owned()],
            ..Default::default()
        })
        .await
        .expect("enrol")
        .into_inner();
    FakeAgent {
        id: response.agent_id,
        secret: response.agent_secret,
    }
}

fn inventory(seq: u64, hostname: &str, mac: &str, uuid: &str, serial: &str) -> Report {
    Report {
        seq,
        collected_at: Some(now_timestamp()),
        body: Some(report::Body::Inventory(v1::Inventory {
            system: Some(v1::System {
                hostname: hostname.to_owned(),
                os_name: "Windows 11 Education".to_owned(),
                machine_id: "same-image".to_owned(),
                ..Default::default()
            }),
            hardware: Some(v1::Hardware {
                vendor: "Dell Inc.".to_owned(),
                model: "OptiPlex 7010".to_owned(),
                serial: serial.to_owned(),
                smbios_uuid: uuid.to_owned(),
                ram_bytes: 8 << 30,
                ..Default::default()
            }),
            interfaces: vec![v1::NetworkInterface {
                name: "Ethernet".to_owned(),
                mac: mac.to_owned(),
                ipv4: vec!["198.18.0.10/24".to_owned()],
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn status(seq: u64, uptime: u64) -> Report {
    Report {
        seq,
        collected_at: Some(now_timestamp()),
        body: Some(report::Body::Status(v1::Status {
            uptime_secs: uptime,
            cpu_percent: 3.5,
            memory_total_bytes: 8 << 30,
            memory_used_bytes: 3 << 30,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn asset_of(collector: &Collector, agent_id: &str) -> Option<Value> {
    collector.assets().into_iter().find(|a| {
        a["agent_ids"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|i| i == agent_id))
    })
}

fn sample_seqs(collector: &Collector, asset_id: &str) -> BTreeSet<u64> {
    collector.get(&format!("/capacity?asset={asset_id}"))["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| s["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_that_was_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut collector = Collector::start(dir.path());
    let mut agents = Vec::new();
    for i in 0..16 {
        let mac = format!("00:16:3e:00:01:{i:02x}");
        let uuid = format!("4c4c4544-0000-1000-8000-0000000001{i:02x}");
        let agent = enrol(&collector, &format!("R12-PC{i:02}"), &mac, &uuid).await;
        let mut client = grpc_client(&collector).await;
        client
            .submit(authed(
                SubmitRequest {
                    epoch: 0,
                    agent_id: agent.id.clone(),
                    reports: vec![inventory(
                        1,
                        &format!("R12-PC{i:02}"),
                        &mac,
                        &uuid,
                        &format!("SN{i}"),
                    )],
                },
                &agent.secret,
            ))
            .await
            .expect("inventory");
        agents.push(agent);
    }

    // Every agent streams status reports as fast as the collector acknowledges them.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for agent in &agents {
        let (id, secret, acked) = (agent.id.clone(), agent.secret.clone(), acked.clone());
        let url = collector.url();
        tasks.push(tokio::spawn(async move {
            let Ok(mut client) = v1::agent_service_client::AgentServiceClient::connect(url).await
            else {
                return;
            };
            for seq in 2.. {
                let request = authed(
                    SubmitRequest {
                        epoch: 0,
                        agent_id: id.clone(),
                        reports: vec![status(seq, seq)],
                    },
                    &secret,
                );
                match client.submit(request).await {
                    Ok(response) => {
                        assert_eq!(response.into_inner().acked_seq, seq);
                        acked.lock().expect("lock").insert(id.clone(), seq);
                    }
                    Err(_) => return, // the collector is gone
                }
            }
        }));
    }
    wait_for(
        Duration::from_secs(30),
        "a few hundred acknowledged reports",
        || {
            let total: u64 = acked.lock().expect("lock").values().sum();
            (total > 16 * 40).then_some(())
        },
    );
    collector.kill9();
    for task in tasks {
        task.await.expect("stream task");
    }
    let acked = acked.lock().expect("lock").clone();

    collector.restart();
    for agent in &agents {
        let asset = asset_of(&collector, &agent.id).expect("asset survives");
        let seqs = sample_seqs(&collector, asset["id"].as_str().expect("id"));
        let last = acked.get(&agent.id).copied().unwrap_or(1);
        let missing: Vec<u64> = (2..=last).filter(|s| !seqs.contains(s)).collect();
        assert!(
            missing.is_empty(),
            "agent {} lost acknowledged reports {missing:?}",
            agent.id
        );
    }

    // A retry of something already stored is acknowledged without storing it twice.
    let agent = &agents[0];
    let last = acked[&agent.id];
    let mut client = grpc_client(&collector).await;
    let response = client
        .submit(authed(
            SubmitRequest {
                epoch: 0,
                agent_id: agent.id.clone(),
                reports: vec![status(last, 1)],
            },
            &agent.secret,
        ))
        .await
        .expect("retry")
        .into_inner();
    // The collector may hold one more than the client saw acknowledged: stored, then killed
    // before the answer left. It never holds less.
    assert!(
        response.acked_seq == last || response.acked_seq == last + 1,
        "{} vs {last}",
        response.acked_seq
    );
    let asset = asset_of(&collector, &agent.id).expect("asset");
    let samples = collector.get(&format!(
        "/capacity?asset={}",
        asset["id"].as_str().expect("id")
    ));
    let with_last: Vec<_> = samples["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter(|s| s["seq"] == last)
        .collect();
    assert_eq!(with_last.len(), 1);
    assert_ne!(
        with_last[0]["uptime_secs"], 1,
        "the retry must not overwrite the stored report"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_of_one_image_are_two_assets_and_a_reenrolled_pc_is_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    // Two PCs imaged from one master: same hostname and OS installation id, own hardware.
    let pcs = [
        (
            "00:16:3e:aa:00:01",
            "4C4C4544-0042-3910-8036-B4C04F4B3732",
            "B4K2",
        ),
        (
            "00:16:3e:aa:00:02",
            "4C4C4544-0051-3710-8048-C7C04F4B3732",
            "C7K9",
        ),
    ];
    let mut ids = Vec::new();
    for (mac, uuid, serial) in pcs {
        let agent = enrol(&collector, "MINWINPC", mac, uuid).await;
        let mut client = grpc_client(&collector).await;
        client
            .submit(authed(
                SubmitRequest {
                    epoch: 0,
                    agent_id: agent.id.clone(),
                    reports: vec![inventory(1, "MINWINPC", mac, uuid, serial)],
                },
                &agent.secret,
            ))
            .await
            .expect("inventory");
        ids.push(asset_of(&collector, &agent.id).expect("asset")["id"].clone());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(collector.assets().len(), 2);

    // The first PC is reimaged and renamed: a new agent identity on the same hardware.
    let (mac, uuid, serial) = pcs[0];
    let agent = enrol(&collector, "R12-PC03", mac, uuid).await;
    let mut client = grpc_client(&collector).await;
    client
        .submit(authed(
            SubmitRequest {
                epoch: 0,
                agent_id: agent.id.clone(),
                reports: vec![inventory(1, "R12-PC03", mac, uuid, serial)],
            },
            &agent.secret,
        ))
        .await
        .expect("inventory");
    let asset = asset_of(&collector, &agent.id).expect("asset");
    assert_eq!(asset["id"], ids[0]);
    assert_eq!(asset["hostname"], "R12-PC03");
    assert_eq!(collector.assets().len(), 2);
    let notes = asset["identity_notes"].as_array().expect("notes");
    assert!(
        notes
            .iter()
            .any(|n| n["reasons"].to_string().contains("SMBIOS UUID")),
        "{notes:?}"
    );
    let changes = collector.get(&format!("/changes?asset={}", ids[0].as_str().expect("id")));
    assert!(
        changes
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c["field"] == "system.hostname"
                && c["before"] == "MINWINPC"
                && c["after"] == "R12-PC03"),
        "{changes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_error_status_and_the_collector_keeps_going() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let mut client = grpc_client(&collector).await;

    let wrong = client
        .enroll(EnrollRequest {
            enroll_token: "not-the-token".to_owned(),
            hostname: "x".to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("a wrong token must not enrol");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    // Logged once per source, however often it is tried.
    for _ in 0..5 {
        let _ = client
            .enroll(EnrollRequest {
                enroll_token: "again".to_owned(),
                ..Default::default()
            })
            .await;
    }

    let agent = enrol(&collector, "LIB-PC01", "00:16:3e:bb:00:01", "").await;
    let no_secret = client
        .submit(SubmitRequest {
            epoch: 0,
            agent_id: agent.id.clone(),
            reports: vec![status(1, 1)],
        })
        .await
        .expect_err("no credential");
    assert_eq!(no_secret.code(), Code::Unauthenticated);
    let stolen_id = client
        .submit(authed(
            SubmitRequest {
                epoch: 0,
                agent_id: agent.id.clone(),
                reports: vec![status(1, 1)],
            },
            "guess",
        ))
        .await
        .expect_err("wrong secret");
    assert_eq!(stolen_id.code(), Code::Unauthenticated);

    let malformed = [
        SubmitRequest {
            epoch: 0,
            agent_id: agent.id.clone(),
            reports: vec![],
        },
        SubmitRequest {
            epoch: 0,
            agent_id: agent.id.clone(),
            reports: vec![status(0, 1)],
        },
        SubmitRequest {
            epoch: 0,
            agent_id: agent.id.clone(),
            reports: vec![status(3, 1), status(2, 1)],
        },
        SubmitRequest {
            epoch: 0,
            agent_id: agent.id.clone(),
            reports: vec![Report {
                seq: 1,
                ..Default::default()
            }],
        },
    ];
    for request in malformed {
        let error = client
            .submit(authed(request, &agent.secret))
            .await
            .expect_err("malformed");
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    }

    // Larger than the 4 MiB default message limit.
    let huge = v1::Inventory {
        software: (0..60_000)
            .map(|i| v1::Software {
                name: format!("package-{i:08}"),
                version: "1.0.0-1".repeat(8),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let oversized = Report {
        seq: 1,
        collected_at: Some(now_timestamp()),
        body: Some(report::Body::Inventory(huge)),
        ..Default::default()
    };
    let error = client
        .submit(authed(
            SubmitRequest {
                epoch: 0,
                agent_id: agent.id.clone(),
                reports: vec![oversized],
            },
            &agent.secret,
        ))
        .await
        .expect_err("oversized");
    assert!(error.code() == Code::ResourceExhausted, "{error:?}");

    // A report from a clock a day ahead is stored, flagged, at the time it arrived.
    let mut future = status(1, 42);
    let ahead = now_timestamp();
    future.collected_at = Some(prost_types::Timestamp {
        seconds: ahead.seconds + 86_400,
        nanos: 0,
    });
    let mut client = grpc_client(&collector).await;
    let acked = client
        .submit(authed(
            SubmitRequest {
                epoch: 0,
                agent_id: agent.id.clone(),
                reports: vec![future],
            },
            &agent.secret,
        ))
        .await
        .expect("a flagged report is still stored")
        .into_inner()
        .acked_seq;
    assert_eq!(acked, 1);
    let asset = asset_of(&collector, &agent.id).expect("asset from enrolment");
    let samples = collector.get(&format!(
        "/capacity?asset={}",
        asset["id"].as_str().expect("id")
    ));
    let sample = &samples["samples"][0];
    assert_eq!(sample["clock_suspect"], true);
    assert_eq!(sample["uptime_secs"], 42);
    let at = sample["at"].as_str().expect("at");
    let stored = time_of(at);
    assert!(
        (stored - ahead.seconds).abs() < 600,
        "stored at {at}, not at the agent's future time"
    );

    let log = collector.log();
    assert_eq!(
        log.matches("Rejected a request with a wrong or missing credential")
            .count(),
        1,
        "log once per source:\n{log}"
    );
}

fn time_of(rfc3339: &str) -> i64 {
    // Seconds since the epoch of "YYYY-MM-DDTHH:MM:SS...Z", enough for comparisons here.
    let output = std::process::Command::new("date")
        .args(["-u", "-d", rfc3339, "+%s"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("epoch seconds")
}

#[test]
fn the_api_wants_its_token_and_answers_errors_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let (status, body) =
        caretaker_tests::get_raw(collector.http, "/api/v1/assets", None).expect("get");
    assert_eq!(status, 401);
    assert!(body.contains("\"error\""), "{body}");
    let (status, _) =
        caretaker_tests::get_raw(collector.http, "/api/v1/assets", Some("wrong")).expect("get");
    assert_eq!(status, 401);
    let (status, body) = collector.get_status("/assets/0123456789abcdef");
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .expect("error text")
            .contains("0123456789abcdef")
    );
    let (status, _) = collector.get_status("/changes?limit=zero");
    assert_eq!(status, 400);
    let (status, _) = collector.get_status("/changes?asset=nope");
    assert_eq!(status, 404);
    let (status, body) = collector.get_status("/nothing-here");
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[test]
fn a_mistyped_config_key_exits_78_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("caretaker.toml");
    std::fs::write(
        &path,
        "data_dir = \"/tmp/x\"\n[grpc]\nlisten = \"127.0.0.1:0\"\nmax_mesage_bytes = 1\n",
    )
    .expect("write");
    let output = std::process::Command::new(caretaker_tests::bin("caretaker-collector"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:4:1:", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("max_mesage_bytes"), "{stderr}");

    // `run` refuses the same file the same way, before touching anything.
    let output = std::process::Command::new(caretaker_tests::bin("caretaker-collector"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(78));

    std::fs::write(&path, "data_dir = \"/tmp/x\"\n[smtp]\nserver = \"m\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\"]\nsecurity = \"ssl\"\n").expect("write");
    let output = std::process::Command::new(caretaker_tests::bin("caretaker-collector"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains(":6:"));
}
