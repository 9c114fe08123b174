//! Stopping the collector: SIGTERM under ingest load ends within the shutdown deadline and loses
//! nothing that was acknowledged; a connection that never finishes its request cannot hold the
//! collector past the deadline; a second signal exits at once.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caretaker_tests::v1::{self, EnrollRequest, Report, SubmitRequest, report};
use caretaker_tests::{Collector, authed, grpc_client, now_timestamp, wait_for};

/// The collector's `app::SHUTDOWN_DEADLINE`.
const DEADLINE: Duration = Duration::from_secs(10);
/// Room for process start-up and teardown on a loaded machine; far below what a hang takes.
const SLACK: Duration = Duration::from_secs(10);

fn status(seq: u64) -> Report {
    Report {
        seq,
        collected_at: Some(now_timestamp()),
        body: Some(report::Body::Status(v1::Status {
            uptime_secs: seq,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Enrols `n` agents and starts each streaming status reports as fast as they are
/// acknowledged; returns the highest acknowledged sequence per agent as it grows.
async fn load(
    collector: &Collector,
    n: usize,
) -> (
    Arc<Mutex<HashMap<String, u64>>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..n {
        let enrolled = grpc_client(collector)
            .await
            .enroll(EnrollRequest {
                enroll_token: collector.enroll_token(),
                hostname: format!("LOAD-PC{i:02}"),
                macs: vec![format!("00:16:3e:00:02:{i:02x}")],
                ..Default::default()
            })
            .await
            .expect("enrol")
            .into_inner();
        let (id, secret, acked) = (enrolled.agent_id, enrolled.agent_secret, acked.clone());
        let url = collector.url();
        tasks.push(tokio::spawn(async move {
            let Ok(mut client) = v1::agent_service_client::AgentServiceClient::connect(url).await
            else {
                return;
            };
            for seq in 1.. {
                let request = authed(
                    SubmitRequest {
                        epoch: 0,
                        agent_id: id.clone(),
                        reports: vec![status(seq)],
                    },
                    &secret,
                );
                match client.submit(request).await {
                    Ok(response) => {
                        acked
                            .lock()
                            .expect("lock")
                            .insert(id.clone(), response.into_inner().acked_seq);
                    }
                    Err(_) => return, // stopping: refused or disconnected
                }
            }
        }));
    }
    (acked, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_ingest_load_ends_within_the_deadline_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut collector = Collector::start(dir.path());
    let (acked, tasks) = load(&collector, 24).await;
    wait_for(Duration::from_secs(60), "reports flowing", || {
        let total: u64 = acked.lock().expect("lock").values().sum();
        (total > 24 * 20).then_some(())
    });
    let asked = Instant::now();
    collector.signal("TERM");
    let exit = tokio::task::block_in_place(|| collector.wait_exit(DEADLINE + SLACK));
    let took = asked.elapsed();
    let exit = exit.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM under load"));
    assert!(exit.success(), "a drained stop exits 0, got {exit:?}");
    for task in tasks {
        task.await.expect("load task");
    }
    let log = collector.log();
    assert!(log.contains("Collector stopped"), "{log}");

    // Every report an agent saw acknowledged is in the store after a restart.
    let acked = acked.lock().expect("lock").clone();
    collector.restart();
    let assets = collector.assets();
    for (agent, last) in acked {
        let asset = assets
            .iter()
            .find(|a| {
                a["agent_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| *i == agent))
            })
            .unwrap_or_else(|| panic!("asset of agent {agent}"));
        let samples = collector.get(&format!(
            "/capacity?asset={}",
            asset["id"].as_str().expect("id")
        ));
        let stored = samples["samples"].as_array().expect("samples").len() as u64;
        assert!(
            stored >= last,
            "agent {agent}: {stored} stored, {last} acknowledged"
        );
    }
}

/// Opens an HTTP connection and sends half a request line, then keeps it open.
fn stuck_http_request(collector: &Collector) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(collector.http).expect("connect");
    stream.write_all(b"GET /api/v1/health HTT").expect("write");
    stream
}

#[test]
fn a_request_that_never_finishes_cannot_hold_the_collector_past_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut collector = Collector::start(dir.path());
    let _stuck = stuck_http_request(&collector);
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    collector.signal("TERM");
    let exit = collector.wait_exit(DEADLINE + SLACK);
    assert!(
        exit.is_some(),
        "still running {:?} after SIGTERM",
        asked.elapsed()
    );
}

#[test]
fn a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut collector = Collector::start(dir.path());
    // A half-sent request keeps the HTTP server draining, so the first signal alone would
    // wait for the deadline.
    let _stuck = stuck_http_request(&collector);
    std::thread::sleep(Duration::from_millis(200));
    collector.signal("INT");
    wait_for(
        Duration::from_secs(10),
        "the first signal to be seen",
        || collector.log().contains("Shutting down").then_some(()),
    );
    let asked = Instant::now();
    collector.signal("INT");
    let exit = collector
        .wait_exit(DEADLINE)
        .unwrap_or_else(|| panic!("still running {:?} after a second SIGINT", asked.elapsed()));
    assert_eq!(exit.code(), Some(130), "{exit:?}");
    assert!(collector.log().contains("Second stop signal"));
}
