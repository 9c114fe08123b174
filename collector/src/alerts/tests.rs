//! The alerting task against a real SMTP server (aiosmtpd) and a real sled store.
//!
//! Incidents and events are committed to the store the way the incident engine does; the
//! task under test is the real [`run`]. Every wait is bounded; timings are printed, never
//! asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use caretaker_tests::smtp::{ReceivedMail, SmtpServer, make_certificate};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::config::SmtpConfig;
use super::{CURSOR_KEY, outbox_view, plan_pending, run, test_email};
use crate::model::{
    Asset, AssetKind, Incident, IncidentEvent, IncidentEventKind, IncidentState, OutboxEntry,
};
use crate::store::{SledStore, Store, WriteSet};

const WAIT: Duration = Duration::from_secs(30);

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    seq: u64,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(&dir.path().join("store")).expect("open store"));
        Self {
            _dir: dir,
            store,
            seq: 0,
        }
    }

    fn smtp_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("smtp")
    }

    /// Commits incidents and one event per incident, as the incident engine does.
    fn emit(&mut self, items: Vec<(Incident, IncidentEventKind)>) {
        let mut set = WriteSet::default();
        for (incident, kind) in items {
            self.seq += 1;
            set.incident_events.push(IncidentEvent {
                seq: self.seq,
                at: OffsetDateTime::now_utc(),
                incident_id: incident.id.clone(),
                kind,
            });
            if !set.assets.iter().any(|a: &Asset| a.id == incident.asset_id) {
                set.assets.push(asset(&incident));
            }
            set.incidents.push(incident);
        }
        self.store.commit(set).expect("commit incidents");
    }

    fn outbox(&self) -> Vec<OutboxEntry> {
        self.store.outbox().expect("outbox")
    }

    /// Waits until `check` holds for the outbox; bounded.
    async fn wait_outbox(&self, what: &str, check: impl Fn(&[OutboxEntry]) -> bool) {
        let start = Instant::now();
        loop {
            let outbox = self.outbox();
            if check(&outbox) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}: {}",
                outbox_view(&outbox, 50)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn config(port: u16, extra: &str) -> SmtpConfig {
    let config: SmtpConfig = toml::from_str(&format!(
        "server = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
         from = \"caretaker@school.example\"\nto = [\"ict@school.example\"]\n\
         time_zone = \"UTC\"\npoll_interval = \"50ms\"\nretry_initial = \"100ms\"\nretry_max = \"500ms\"\n\
         base_url = \"http://caretaker.school.example:8080\"\n{extra}"
    ))
    .expect("smtp config");
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    config
}

fn incident(n: u32, priority: u8) -> Incident {
    let now = OffsetDateTime::now_utc();
    Incident {
        id: format!("inc-{n}"),
        number: format!("INC{n:07}"),
        asset_id: format!("asset-{n}"),
        asset_name: format!("ICT-SW{n}"),
        rule: "host_down".to_owned(),
        title: format!("ICT-SW{n} down — 31 devices unreachable"),
        description: "The switch stopped answering ping.".to_owned(),
        impact: 1,
        urgency: 2,
        priority,
        state: IncidentState::New,
        opened_at: now,
        updated_at: now,
        acknowledged_at: None,
        resolved_at: None,
        closed_at: None,
        occurrences: 1,
        notes: Vec::new(),
        affected: Vec::new(),
        flapping: false,
        measured: serde_json::json!({"missed_sweeps": 3}),
        problem_id: None,
        clear_since: None,
        transitions: Vec::new(),
        desk: Default::default(),
    }
}

fn asset(incident: &Incident) -> Asset {
    Asset {
        id: incident.asset_id.clone(),
        kind: AssetKind::Switch,
        name: incident.asset_name.clone(),
        hostname: String::new(),
        ips: vec!["10.20.0.2".to_owned()],
        macs: Vec::new(),
        vendor: "HP".to_owned(),
        model: "ProCurve 2530".to_owned(),
        serial: String::new(),
        smbios_uuid: String::new(),
        machine_id: String::new(),
        os: String::new(),
        sources: Default::default(),
        first_seen: OffsetDateTime::now_utc(),
        agent_ids: Vec::new(),
        identity_notes: Vec::new(),
        partial: Vec::new(),
        clock_suspect: false,
        classification: String::new(),
        register: Default::default(),
        register_rev: 0,
    }
}

fn start(h: &Harness, config: SmtpConfig) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(
        Arc::clone(&h.store),
        config,
        Default::default(),
        cancel.clone(),
    ));
    (cancel, task)
}

async fn wait_mail(server: &SmtpServer, n: usize) -> Vec<ReceivedMail> {
    let server_messages = || server.messages();
    let start = Instant::now();
    loop {
        let got = server_messages();
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < WAIT,
            "expected {n} messages, got {}: {:?}",
            got.len(),
            got.iter().map(ReceivedMail::subject).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Nothing more arrives for a while (bounded; used to check "exactly once").
async fn settle(server: &SmtpServer, n: usize) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = server.messages();
    assert_eq!(
        got.len(),
        n,
        "{:?}",
        got.iter().map(ReceivedMail::subject).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_mails_once_and_its_recovery_replies_in_the_thread() {
    let mut h = Harness::new();
    let server = SmtpServer::start(&h.smtp_dir());
    let (cancel, task) = start(&h, config(server.port, ""));

    let mut inc = incident(42, 2);
    let committed = Instant::now();
    h.emit(vec![(inc.clone(), IncidentEventKind::Opened)]);
    let got = wait_mail(&server, 1).await;
    println!(
        "measure: event committed -> SMTP server accepted: {:?}",
        committed.elapsed()
    );
    let open = &got[0];
    assert_eq!(
        open.subject(),
        "[P2] ICT-SW42 down — 31 devices unreachable"
    );
    assert_eq!(open.rcpt_tos, vec!["ict@school.example"]);
    assert!(
        open.message_id().starts_with("<INC0000042."),
        "{}",
        open.message_id()
    );
    assert!(open.header("In-Reply-To").is_none());
    assert!(
        open.text
            .contains("caretaker-collector incident ack INC0000042")
    );
    assert!(
        open.text.contains("/assets/") && open.text.contains("/incidents/"),
        "links to the dashboard's pages: {}",
        open.text
    );
    assert!(open.text.contains("Kind: switch"));
    assert!(open.text.contains("Address: 10.20.0.2"));
    assert!(open.text.contains("missed_sweeps: 3"));
    assert!(open.html.contains("/assets/"));
    settle(&server, 1).await;

    inc.state = IncidentState::Resolved;
    inc.resolved_at = Some(OffsetDateTime::now_utc());
    h.emit(vec![(inc, IncidentEventKind::Resolved { automatic: true })]);
    let got = wait_mail(&server, 2).await;
    let recovery = &got[1];
    assert_eq!(
        recovery.subject(),
        "[RESOLVED] [P2] ICT-SW42 down — 31 devices unreachable"
    );
    assert_eq!(recovery.header("In-Reply-To"), Some(open.message_id()));
    assert_eq!(recovery.header("References"), Some(open.message_id()));
    settle(&server, 2).await;

    let sent = h.outbox();
    assert!(sent.iter().all(|e| e.status == "sent" && e.attempts == 1));
    assert!(
        sent[0].server_reply.starts_with("250"),
        "{}",
        sent[0].server_reply
    );
    assert_eq!(h.store.meta(CURSOR_KEY).expect("meta"), Some(2));
    cancel.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_opened_while_the_server_is_down_arrives_once_after_it_returns() {
    let mut h = Harness::new();
    let mut server = SmtpServer::start(&h.smtp_dir());
    server.stop();
    let (cancel, task) = start(&h, config(server.port, ""));
    for n in 1..=3 {
        h.emit(vec![(incident(n, 2), IncidentEventKind::Opened)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.wait_outbox("failed attempts while down", |o| {
        o.len() == 3 && o.iter().any(|e| e.attempts > 0 && !e.last_error.is_empty())
    })
    .await;
    assert!(
        h.outbox()
            .iter()
            .all(|e| e.status == "pending" || e.status == "sending")
    );
    server.restart();
    let got = wait_mail(&server, 3).await;
    let mut subjects: Vec<&str> = got.iter().map(ReceivedMail::subject).collect();
    subjects.sort_unstable();
    assert_eq!(
        subjects,
        vec![
            "[P2] ICT-SW1 down — 31 devices unreachable",
            "[P2] ICT-SW2 down — 31 devices unreachable",
            "[P2] ICT-SW3 down — 31 devices unreachable",
        ]
    );
    settle(&server, 3).await;
    h.wait_outbox("all sent", |o| o.iter().all(|e| e.status == "sent"))
        .await;
    cancel.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_committed_by_a_killed_task_is_sent_once_by_the_next() {
    let mut h = Harness::new();
    let server = SmtpServer::start(&h.smtp_dir());
    let config = config(server.port, "");
    h.emit(vec![(incident(1, 2), IncidentEventKind::Opened)]);
    // The first task plans and commits, then dies before sending.
    let policy = Arc::new(config.policy());
    let planned = plan_pending(&h.store, &policy, OffsetDateTime::now_utc())
        .await
        .expect("plan");
    assert_eq!(planned, 1);
    // A second entry was mid-transaction when the process died.
    let mut in_flight = h.outbox()[0].clone();
    in_flight.id = "open-000000000099-ict@school.example".to_owned();
    in_flight.message_id = "<INC0000099.abc@caretaker>".to_owned();
    in_flight.status = "sending".to_owned();
    in_flight.attempts = 1;
    in_flight.due_at = OffsetDateTime::now_utc() + time::Duration::hours(1);
    h.store
        .commit(WriteSet {
            outbox: vec![in_flight],
            ..WriteSet::default()
        })
        .expect("commit");
    assert!(server.messages().is_empty());

    let (cancel, task) = start(&h, config);
    let got = wait_mail(&server, 2).await;
    settle(&server, 2).await;
    let ids: Vec<&str> = got.iter().map(ReceivedMail::message_id).collect();
    assert!(ids.contains(&"<INC0000099.abc@caretaker>"), "{ids:?}");
    let outbox = h.outbox();
    assert!(outbox.iter().all(|e| e.status == "sent"));
    assert_eq!(
        outbox
            .iter()
            .find(|e| e.id.contains("099"))
            .map(|e| e.attempts),
        Some(2)
    );
    // Restarting again re-plans nothing: the cursor moved with the outbox entry.
    cancel.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("task");
    let (cancel, task) = start(&h, self::config(server.port, ""));
    settle(&server, 2).await;
    cancel.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_incidents_is_one_digest() {
    let mut h = Harness::new();
    let server = SmtpServer::start(&h.smtp_dir());
    let (cancel, task) = start(&h, config(server.port, ""));
    h.emit(
        (1..=10)
            .map(|n| (incident(n, 3), IncidentEventKind::Opened))
            .collect(),
    );
    let got = wait_mail(&server, 1).await;
    settle(&server, 1).await;
    assert!(
        got[0]
            .subject()
            .starts_with("[Caretaker] 10 incidents opened at "),
        "{}",
        got[0].subject()
    );
    for n in 1..=10 {
        assert!(
            got[0].text.contains(&format!("INC{n:07}")),
            "{}",
            got[0].text
        );
    }
    cancel.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_the_school_ca() {
    let mut h = Harness::new();
    let certs = h._dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    let cert = make_certificate(&certs);
    let server = SmtpServer::start_tls(&h.smtp_dir(), &cert);
    let mut tls = config(server.port, "");
    tls.security = super::config::SmtpSecurity::Starttls;
    tls.ca_file = Some(cert.ca_pem.clone());

    // test-email reports what the server said.
    let reply = test_email(&tls, Some("tech@school.example"))
        .await
        .expect("test email");
    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "{reply}");

    let (cancel, task) = start(&h, tls.clone());
    h.emit(vec![(incident(1, 1), IncidentEventKind::Opened)]);
    let got = wait_mail(&server, 2).await;
    assert!(got.iter().all(|m| m.tls), "every message over TLS");
    assert_eq!(
        got[1].subject(),
        "[P1] ICT-SW1 down — 31 devices unreachable"
    );
    cancel.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("task");

    // Without the school CA the name/chain check fails: a clear error, nothing sent.
    let mut untrusted = tls;
    untrusted.ca_file = None;
    let error = test_email(&untrusted, None).await.expect_err("untrusted");
    println!("untrusted certificate: {error}");
    assert!(
        error.to_string().contains("tls") || error.to_string().contains("certificate"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_fails_its_entry_and_the_task_keeps_going() {
    let mut h = Harness::new();
    let server = SmtpServer::start(&h.smtp_dir());
    let config = config(
        server.port,
        "[[routes]]\nto = [\"refuse-me@school.example\"]\npriorities = [3]\n",
    );
    let (cancel, task) = start(&h, config);
    h.emit(vec![(incident(1, 3), IncidentEventKind::Opened)]);
    h.wait_outbox("a failed entry", |o| o.iter().any(|e| e.status == "failed"))
        .await;
    let failed = h
        .outbox()
        .into_iter()
        .find(|e| e.status == "failed")
        .expect("failed");
    assert!(failed.last_error.contains("550"), "{}", failed.last_error);
    assert!(
        failed.last_error.contains("User unknown"),
        "{}",
        failed.last_error
    );
    assert_eq!(failed.attempts, 1);
    let view = outbox_view(&h.outbox(), 10);
    assert_eq!(view["counts"]["failed"], 1);
    assert!(
        view["entries"][0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("550")
    );
    // Still running: the next incident (default route) arrives.
    h.emit(vec![(incident(2, 2), IncidentEventKind::Opened)]);
    let got = wait_mail(&server, 1).await;
    assert_eq!(
        got[0].subject(),
        "[P2] ICT-SW2 down — 31 devices unreachable"
    );
    cancel.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_draining_a_backlog_of_1000_mails() {
    let mut h = Harness::new();
    let server = SmtpServer::start(&h.smtp_dir());
    // Unlimited rate, no digests: 1,000 single mails.
    let config = config(
        server.port,
        "rate_limit_per_hour = 0\ndigest_threshold = 100000\n",
    );
    h.emit(
        (1..=1000)
            .map(|n| (incident(n, 2), IncidentEventKind::Opened))
            .collect(),
    );
    let policy = Arc::new(config.policy());
    let planning = Instant::now();
    let planned = plan_pending(&h.store, &policy, OffsetDateTime::now_utc())
        .await
        .expect("plan");
    assert_eq!(planned, 1000);
    println!("measure: planning 1000 events: {:?}", planning.elapsed());
    let started = Instant::now();
    let (cancel, task) = start(&h, config);
    let start = Instant::now();
    loop {
        if server.messages().len() >= 1000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "backlog not drained"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    println!(
        "measure: drained 1000 mails in {took:?} ({:.0} mails/s)",
        1000.0 / took.as_secs_f64()
    );
    settle(&server, 1000).await;
    cancel.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("task");
}
