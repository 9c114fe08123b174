//! Faults the collector must survive without a person: a full disk under ingest, corrupt files,
//! hostile clients. Real collector binary, real filesystem limits (a small tmpfs the test
//! mounts; root, as CI runs).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use caretaker_tests::v1::{self, EnrollRequest, Report, SubmitRequest, report};
use caretaker_tests::{Collector, authed, get_raw, grpc_client, now_timestamp};
use tonic::Code;

/// A tmpfs of `mib` MiB mounted at `at` for the life of the value.
struct Tmpfs {
    at: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("mount (the fault tests run as root, as CI does)");
        assert!(
            status.success(),
            "mount -t tmpfs failed: run the tests as root"
        );
        Tmpfs { at: at.to_owned() }
    }

    /// Bytes still free.
    fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.at)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df avail")
    }

    /// Fills the filesystem until only `leave` bytes are free; returns the filler's path.
    fn fill(&self, leave: u64) -> std::path::PathBuf {
        let path = self.at.join("filler");
        let size = self.free().saturating_sub(leave);
        let file = std::fs::File::create(&path).expect("filler");
        // tmpfs allocates on write: write real bytes.
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = size;
        let mut writer = std::io::BufWriter::new(file);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if std::io::Write::write_all(&mut writer, &chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = std::io::Write::flush(&mut writer);
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn status(seq: u64) -> Report {
    Report {
        seq,
        collected_at: Some(now_timestamp()),
        body: Some(report::Body::Status(v1::Status {
            uptime_secs: seq,
            cpu_percent: 12.5,
            // Some bulk, so the small filesystem fills in seconds.
            volumes: (0..8)
                .map(|i| v1::VolumeUsage {
                    mount: format!("/srv/volume-{i}-with-a-long-name-to-take-room"),
                    total_bytes: 1 << 40,
                    free_bytes: 1 << 39,
                })
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_unavailable_not_fatal_and_the_collector_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let tmpfs = Tmpfs::mount(&data, 48);
    let mut collector = Collector::start(dir.path());

    let mut agents = Vec::new();
    for i in 0..4 {
        let enrolled = grpc_client(&collector)
            .await
            .enroll(EnrollRequest {
                enroll_token: collector.enroll_token(),
                hostname: format!("FULL-PC{i}"),
                macs: vec![format!("00:16:3e:00:03:{i:02x}")],
                ..Default::default()
            })
            .await
            .expect("enrol")
            .into_inner();
        agents.push((enrolled.agent_id, enrolled.agent_secret));
    }
    let filler = tmpfs.fill(2 << 20);

    // Agents keep sending; each resends what was refused, as the real agent does.
    let mut client = grpc_client(&collector).await;
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut next: HashMap<String, u64> = agents.iter().map(|(id, _)| (id.clone(), 1)).collect();
    let mut full_seen = None;
    let started = Instant::now();
    while full_seen.is_none() && started.elapsed() < Duration::from_secs(120) {
        for (id, secret) in &agents {
            let seq = next[id];
            let reports: Vec<Report> = (seq..seq + 16).map(status).collect();
            let request = authed(
                SubmitRequest {
                    epoch: 0,
                    agent_id: id.clone(),
                    reports,
                },
                secret,
            );
            match client.submit(request).await {
                Ok(r) => {
                    let ack = r.into_inner().acked_seq;
                    acked.insert(id.clone(), ack);
                    next.insert(id.clone(), ack + 1);
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    full_seen = Some(status.message().to_owned());
                }
            }
        }
    }
    let message = full_seen.expect("the small filesystem filled up");
    assert_eq!(message, "store full", "agents are told why");

    let (code, body) = get_raw(collector.http, "/api/v1/health", None).expect("health");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("degraded"), "{body}");
    // Prometheus sees it too (a full store serves reads: /metrics still answers).
    let (code, metrics) =
        get_raw(collector.http, "/metrics", Some(&collector.api_token())).expect("metrics");
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l == "caretaker_degraded{component=\"store\",reason=\"full\"} 1"),
        "{metrics}"
    );

    // Still full: more refusals, and the log does not fill with errors.
    for _ in 0..50 {
        let (id, secret) = &agents[0];
        let request = authed(
            SubmitRequest {
                epoch: 0,
                agent_id: id.clone(),
                reports: vec![status(next[id])],
            },
            secret,
        );
        let refused = client.submit(request).await.expect_err("still full");
        assert_eq!(refused.code(), Code::Unavailable);
    }
    let errors = collector
        .log()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .count();
    assert!(
        errors <= 3,
        "one error, not one per request: {errors}\n{}",
        collector.log()
    );

    // Space comes back: the collector takes reports again without a restart.
    std::fs::remove_file(&filler).expect("free space");
    let (id, secret) = &agents[0];
    let recovered = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let request = authed(
                SubmitRequest {
                    epoch: 0,
                    agent_id: id.clone(),
                    reports: vec![status(next[id])],
                },
                secret,
            );
            if let Ok(r) = client.submit(request).await {
                return r.into_inner().acked_seq;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not recovered once space returned:\n{}", collector.log()));
    assert_eq!(recovered, next[id]);
    acked.insert(id.clone(), recovered);
    let (code, body) = get_raw(collector.http, "/api/v1/health", None).expect("health");
    assert_eq!(code, 200, "{body}");

    // Nothing acknowledged was lost.
    collector.stop();
    collector.restart();
    let assets = collector.assets();
    for (agent, last) in &acked {
        let asset = assets
            .iter()
            .find(|a| {
                a["agent_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| i == agent))
            })
            .expect("asset");
        let samples = collector.get(&format!(
            "/capacity?asset={}&limit=100000",
            asset["id"].as_str().expect("id")
        ));
        let seqs: std::collections::BTreeSet<u64> = samples["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .filter_map(|s| s["seq"].as_u64())
            .collect();
        let missing: Vec<u64> = (1..=*last).filter(|s| !seqs.contains(s)).collect();
        assert!(
            missing.is_empty(),
            "agent {agent} lost acknowledged {missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_past_the_bounds_is_refused_clearly_and_costs_nothing_lasting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let enrolled = grpc_client(&collector)
        .await
        .enroll(EnrollRequest {
            enroll_token: collector.enroll_token(),
            hostname: "HOSTILE".to_owned(),
            ..Default::default()
        })
        .await
        .expect("enrol")
        .into_inner();
    // 150,000 programs with short names: ≈ 3.5 MB, under the 4 MiB message limit.
    let inventory = |seq: u64, programs: usize| Report {
        seq,
        collected_at: Some(now_timestamp()),
        body: Some(report::Body::Inventory(v1::Inventory {
            system: Some(v1::System {
                hostname: "HOSTILE".to_owned(),
                ..Default::default()
            }),
            software: (0..programs)
                .map(|i| v1::Software {
                    name: format!("p{i}"),
                    version: format!("{seq}.{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut client = grpc_client(&collector).await;
    let refused = client
        .submit(authed(
            SubmitRequest {
                epoch: 0,
                agent_id: enrolled.agent_id.clone(),
                reports: vec![inventory(1, 150_000)],
            },
            &enrolled.agent_secret,
        ))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("150000 programs, at most 20000"),
        "{}",
        refused.message()
    );
    // The same agent, within the bounds, carries on; a total reinstall of 20,000 programs is
    // a bounded number of change records, not 20,000.
    for seq in 1..=2 {
        let ack = client
            .submit(authed(
                SubmitRequest {
                    epoch: 0,
                    agent_id: enrolled.agent_id.clone(),
                    reports: vec![inventory(seq, 20_000)],
                },
                &enrolled.agent_secret,
            ))
            .await
            .expect("within the bounds")
            .into_inner()
            .acked_seq;
        assert_eq!(ack, seq);
    }
    let changes = collector.get("/changes?limit=100000");
    let changes = changes.as_array().expect("changes");
    assert!(changes.len() <= 1001, "{} change records", changes.len());
    assert!(
        changes.iter().any(|c| c["field"] == "software:*"
            && c["after"]
                .as_str()
                .is_some_and(|a| a.contains("more changes"))),
        "one summary record for the rest"
    );
}

/// The one asset a test's single agent reports for.
fn only_asset(collector: &Collector) -> serde_json::Value {
    let assets = collector.assets();
    assert_eq!(assets.len(), 1, "{assets:#?}");
    assets[0].clone()
}

fn status_samples(collector: &Collector, asset: &serde_json::Value) -> usize {
    collector.get(&format!(
        "/capacity?asset={}",
        asset["id"].as_str().expect("id")
    ))["samples"]
        .as_array()
        .expect("samples")
        .len()
}

#[test]
fn lost_journal_bookkeeping_and_a_garbage_identity_lose_nothing_and_need_no_person() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"));
    let state = dir.path().join("agent");
    caretaker_tests::agent_once(&collector, &state, &[]);
    caretaker_tests::agent_once(&collector, &state, &[]);
    let asset = only_asset(&collector);
    let before = status_samples(&collector, &asset);
    assert!(before >= 2, "{before}");

    // journal.meta deleted: the agent's numbers restart; they must be stored, not taken for
    // retries of what the collector already holds.
    std::fs::remove_file(state.join("journal.meta")).expect("delete journal.meta");
    std::thread::sleep(Duration::from_millis(1100)); // samples are keyed by their time
    caretaker_tests::agent_once(&collector, &state, &[]);
    let after = status_samples(&collector, &asset);
    assert!(
        after > before,
        "the new report was stored: {before} -> {after}"
    );
    assert!(
        collector.log().contains("new report sequence"),
        "the collector says the sequence restarted"
    );

    // identity.json full of garbage: kept aside, enrolled again, still the same asset.
    std::fs::write(state.join("identity.json"), b"\x00garbage{{").expect("garbage");
    std::thread::sleep(Duration::from_millis(1100));
    caretaker_tests::agent_once(&collector, &state, &[]);
    let again = only_asset(&collector);
    assert_eq!(
        again["id"], asset["id"],
        "identity is scored on the hardware"
    );
    assert!(status_samples(&collector, &again) > after);
    let kept = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("identity.json.corrupt-")
        });
    assert!(kept, "the unreadable file is kept for a person to look at");
}

/// A Submit whose `reports` are bytes that are not reports: what a hostile or broken client
/// sends, built here from the field numbers of our own `.proto`.
#[derive(Clone, PartialEq, prost::Message)]
struct GarbledSubmit {
    #[prost(string, tag = "1")]
    agent_id: String,
    #[prost(bytes = "vec", repeated, tag = "2")]
    reports: Vec<Vec<u8>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_messages_are_invalid_argument_and_the_collector_keeps_going() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let channel = tonic::transport::Endpoint::from_shared(collector.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    for garbage in [
        vec![0xff; 64],
        vec![0x08, 0x96],
        b"\x0a\x05\xff\xff\xff\xff\xff".to_vec(),
    ] {
        grpc.ready().await.expect("ready");
        let request = tonic::Request::new(GarbledSubmit {
            agent_id: "whoever".to_owned(),
            reports: vec![garbage],
        });
        let codec: tonic_prost::ProstCodec<GarbledSubmit, v1::SubmitResponse> =
            tonic_prost::ProstCodec::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/caretaker.v1.AgentService/Submit",
        );
        let status = grpc
            .unary(request, path, codec)
            .await
            .expect_err("garbage is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    // Still serving.
    let (code, _) = get_raw(collector.http, "/api/v1/health", None).expect("health");
    assert_eq!(code, 200);
    grpc_client(&collector).await;
}

/// One raw HTTP/1.1 request; the status and body.
fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
fn every_api_error_is_json_with_the_documented_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    let token = collector.api_token();
    let auth = format!("Authorization: Bearer {token}\r\n");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // A method the route does not have.
        (
            format!("DELETE /api/v1/assets HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
                .into_bytes(),
            405,
        ),
        // A path that is not UTF-8 once decoded.
        (
            format!(
                "GET /api/v1/assets/%ff%fe HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
            )
            .into_bytes(),
            400,
        ),
        // JSON of the wrong shape: 400 as documented, not 422.
        (
            {
                let body = "{\"nonsense\":1}";
                format!(
                    "POST /api/v1/problems/x HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            },
            400,
        ),
        // A request target past the API's 8 KiB.
        (
            format!(
                "GET /api/v1/assets?x={} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n",
                "a".repeat(10 * 1024)
            )
            .into_bytes(),
            414,
        ),
        // Headers past the API's 32 KiB.
        (
            format!(
                "GET /api/v1/assets HTTP/1.1\r\nHost: x\r\n{auth}X-Big: {}\r\nConnection: close\r\n\r\n",
                "b".repeat(40 * 1024)
            )
            .into_bytes(),
            431,
        ),
        // A body past the limit.
        (
            {
                let body = "x".repeat(100 * 1024);
                format!(
                    "POST /api/v1/incidents/x/note HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            },
            413,
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = raw_http(collector.http, &request);
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        assert_eq!(status, expected, "{shown}: {body}");
        let value: serde_json::Value = serde_json::from_str(body.trim())
            .unwrap_or_else(|e| panic!("{shown}: not JSON ({e}): {body:?}"));
        assert!(value["error"].is_string(), "{shown}: {body}");
    }
}

/// Reads until the peer closes the connection: true when it did (end of file or reset),
/// false when our own generous read timeout ran out first (the collector kept it open).
fn closed_by_peer(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn silent_half_sent_and_idle_connections_are_closed_while_others_are_served() {
    use std::io::Write;
    use std::net::TcpStream;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = "header_timeout = \"1s\"\nidle_timeout = \"2s\"";
    let collector = Collector::start_with_sections(dir.path(), "", keys, keys);
    let connect = |addr| TcpStream::connect(addr).expect("connect");

    let mut hanging: Vec<(&str, TcpStream)> = Vec::new();
    hanging.push(("gRPC, nothing sent", connect(collector.grpc)));
    let mut half_preface = connect(collector.grpc);
    half_preface
        .write_all(b"PRI * HTTP/2.0\r\n")
        .expect("write");
    hanging.push(("gRPC, half the HTTP/2 preface", half_preface));
    hanging.push(("HTTP, nothing sent", connect(collector.http)));
    let mut half_header = connect(collector.http);
    half_header
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("write");
    hanging.push(("HTTP, half a header", half_header));
    let mut kept_alive = connect(collector.http);
    kept_alive
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    hanging.push(("HTTP, idle after one request", kept_alive));

    // While those hang, everyone else is served on both listeners.
    let (code, _) = get_raw(collector.http, "/api/v1/health", None).expect("health");
    assert_eq!(code, 200);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        grpc_client(&collector)
            .await
            .enroll(EnrollRequest {
                enroll_token: collector.enroll_token(),
                hostname: "PATIENT".to_owned(),
                ..Default::default()
            })
            .await
            .expect("enrol while others hang");
    });

    for (what, mut stream) in hanging {
        assert!(
            closed_by_peer(&mut stream),
            "{what}: the collector kept the connection open"
        );
    }
    // And still serving afterwards.
    let (code, _) = get_raw(collector.http, "/api/v1/health", None).expect("health");
    assert_eq!(code, 200);
}

#[test]
fn a_thousand_bad_api_tokens_are_a_few_log_lines_naming_the_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(dir.path());
    for i in 0..1000 {
        let token = if i % 2 == 0 { Some("wrong") } else { None };
        let (code, body) = get_raw(collector.http, "/api/v1/assets", token).expect("answered");
        assert_eq!(code, 401, "{body}");
    }
    // The right token still works, and is not logged as a failure.
    let (code, _) = get_raw(
        collector.http,
        "/api/v1/assets",
        Some(&collector.api_token()),
    )
    .expect("answered");
    assert_eq!(code, 200);
    let log = collector.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("wrong or missing credential"))
        .collect();
    assert!(
        !lines.is_empty(),
        "failed authentications leave a trace:\n{log}"
    );
    assert!(
        lines.len() <= 3,
        "{} lines for 1,000 failures:\n{log}",
        lines.len()
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("127.0.0.1") || l.contains("failures=")),
        "each line names the source or counts: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("peer=127.0.0.1")),
        "{lines:#?}"
    );
}
