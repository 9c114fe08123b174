//! Delivery against a real gRPC server on 127.0.0.1 (a small fake collector with the real
//! generated stubs): enrolment, batching, acks, `--once`, offline journalling, re-enrolment
//! after the collector forgets the agent, a rejected token, and the daemon's shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caretaker_agent::config::{self, Config, Overrides, Secret};
use caretaker_agent::identity::Identity;
use caretaker_agent::{RunError, report::DeliveryError};
use caretaker_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use caretaker_proto::v1::{
    EnrollRequest, EnrollResponse, HeartbeatRequest, HeartbeatResponse, RenewRequest,
    RenewResponse, SubmitRequest, SubmitResponse, report::Body,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

const TOKEN: &str = "good-token";

#[derive(Default)]
struct State {
    next_id: u32,
    secrets: HashMap<String, String>,
    /// agent id → (seq, kind) in arrival order
    reports: HashMap<String, Vec<(u64, &'static str)>>,
    enrolments: Vec<EnrollRequest>,
    heartbeats: usize,
    max_batch: usize,
    /// (status, heartbeat) seconds sent in EnrollResponse; 0 = "keep your own".
    intervals: (u32, u32),
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    fn check(&self, req_meta: &tonic::metadata::MetadataMap, agent_id: &str) -> Result<(), Status> {
        let auth = req_meta
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match self.st().secrets.get(agent_id) {
            Some(secret) if auth == format!("Bearer {secret}") => Ok(()),
            _ => Err(Status::unauthenticated("unknown agent")),
        }
    }
}

#[tonic::async_trait]
impl AgentService for Fake {
    async fn enroll(
        &self,
        req: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let req = req.into_inner();
        if req.enroll_token != TOKEN {
            return Err(Status::unauthenticated("bad token"));
        }
        let mut st = self.st();
        st.next_id += 1;
        let id = format!("agent-{}", st.next_id);
        let secret = format!("secret-{}", st.next_id);
        st.secrets.insert(id.clone(), secret.clone());
        st.enrolments.push(req);
        Ok(Response::new(EnrollResponse {
            agent_id: id,
            agent_secret: secret,
            status_interval_secs: st.intervals.0,
            heartbeat_interval_secs: st.intervals.1,
            ..Default::default()
        }))
    }

    async fn submit(
        &self,
        req: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let agent_id = req.get_ref().agent_id.clone();
        self.check(req.metadata(), &agent_id)?;
        let req = req.into_inner();
        let req_epoch = req.epoch;
        let mut st = self.st();
        st.max_batch = st.max_batch.max(req.reports.len());
        let list = st.reports.entry(agent_id).or_default();
        for r in req.reports {
            let kind = match r.body {
                Some(Body::Inventory(_)) => "inventory",
                _ => "status",
            };
            // Idempotent: drop what we already hold.
            if list.last().is_none_or(|(s, _)| r.seq > *s) {
                list.push((r.seq, kind));
            }
        }
        let acked = list.last().map_or(0, |(s, _)| *s);
        Ok(Response::new(SubmitResponse {
            acked_seq: acked,
            epoch: req_epoch,
            renew_certificate: false,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let agent_id = req.get_ref().agent_id.clone();
        self.check(req.metadata(), &agent_id)?;
        self.st().heartbeats += 1;
        Ok(Response::new(HeartbeatResponse {
            server_time: None,
            renew_certificate: false,
        }))
    }

    /// The fake speaks plaintext only: there is no certificate to renew.
    async fn renew(&self, _req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        Err(Status::unimplemented("the fake collector has no CA"))
    }
}

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

async fn serve(fake: Fake, addr: SocketAddr) -> Server {
    serve_on(fake, tokio::net::TcpListener::bind(addr).await.unwrap()).await
}

async fn serve_on(fake: Fake, listener: tokio::net::TcpListener) -> Server {
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let addr = incoming.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let handle = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(fake))
            .serve_with_incoming_shutdown(incoming, s.cancelled_owned())
            .await
            .unwrap();
    });
    Server { addr, stop, handle }
}

impl Server {
    async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

fn config(addr: SocketAddr, state: &Path, token: &str, once: bool) -> Config {
    let file = config::parse_str(
        Path::new("test.toml"),
        &format!(
            "collector = \"http://{addr}\"\nstate_dir = {:?}\ncollect_timeout = \"60s\"\n",
            state.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut c = config::resolve(
        file,
        Overrides {
            enroll_token: Some(Secret::new(token)),
            once,
            ..Overrides::default()
        },
    )
    .unwrap();
    c.once_deadline = Duration::from_secs(3);
    c
}

/// A local port that is bound but not listening: connections to it are refused, and no other
/// process can take it before the test listens on it (`socket.listen`).
fn reserved_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

#[tokio::test]
async fn once_enrols_delivers_and_reuses_identity() {
    let fake = Fake::default();
    let server = serve(fake.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(server.addr, dir.path(), TOKEN, true);

    caretaker_agent::run(cfg.clone(), CancellationToken::new())
        .await
        .unwrap();
    let id = Identity::load(dir.path())
        .unwrap()
        .expect("identity stored");
    assert_eq!(
        fake.st().reports[&id.agent_id],
        vec![(1, "inventory"), (2, "status")]
    );
    {
        let st = fake.st();
        let enrol = &st.enrolments[0];
        assert!(!enrol.hostname.is_empty());
        assert_eq!(enrol.agent_version, env!("CARGO_PKG_VERSION"));
    }

    caretaker_agent::run(cfg, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(fake.st().enrolments.len(), 1, "no second enrolment");
    let seqs: Vec<u64> = fake.st().reports[&id.agent_id]
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    server.shutdown().await;
}

#[tokio::test]
async fn offline_reports_are_kept_and_delivered_later() {
    let dir = tempfile::tempdir().unwrap();
    let (reserved, addr) = reserved_port();
    let cfg = config(addr, dir.path(), TOKEN, true);

    let started = std::time::Instant::now();
    let err = caretaker_agent::run(cfg.clone(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::Unavailable { pending: 2, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = caretaker_agent::run(cfg.clone(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::Unavailable { pending: 4, .. }),
        "{err:?}"
    );

    // The collector comes up on that address: everything from both offline rounds arrives.
    let fake = Fake::default();
    let server = serve_on(fake.clone(), reserved.listen(128).unwrap()).await;
    caretaker_agent::run(cfg, CancellationToken::new())
        .await
        .unwrap();
    let id = Identity::load(dir.path()).unwrap().unwrap();
    let seqs: Vec<u64> = fake.st().reports[&id.agent_id]
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    server.shutdown().await;
}

#[tokio::test]
async fn forgotten_agent_re_enrols_and_continues() {
    let fake = Fake::default();
    let server = serve(fake.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(server.addr, dir.path(), TOKEN, true);
    caretaker_agent::run(cfg.clone(), CancellationToken::new())
        .await
        .unwrap();
    let first = Identity::load(dir.path()).unwrap().unwrap();

    // Collector rebuilt: it no longer knows the agent's secret.
    fake.st().secrets.clear();
    caretaker_agent::run(cfg, CancellationToken::new())
        .await
        .unwrap();
    let second = Identity::load(dir.path()).unwrap().unwrap();
    assert_ne!(first.agent_id, second.agent_id);
    let seqs: Vec<u64> = fake.st().reports[&second.agent_id]
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(seqs, vec![3, 4], "seq continues across re-enrolment");
    server.shutdown().await;
}

#[tokio::test]
async fn copied_state_dir_enrols_afresh() {
    let fake = Fake::default();
    let server = serve(fake.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    // An identity made on another machine (different UUID and MACs).
    Identity {
        agent_id: "agent-from-elsewhere".into(),
        agent_secret: "s".into(),
        collector: format!("http://{}", server.addr),
        smbios_uuid: "11111111-2222-3333-4444-555555555555".into(),
        macs: vec!["de:ad:be:ef:00:01".into()],
        status_interval_secs: 0,
        heartbeat_interval_secs: 0,
        ..Default::default()
    }
    .save(dir.path())
    .unwrap();
    let here = caretaker_agent::inventory::fingerprint();
    if here.smbios_uuid.is_empty() && here.macs.is_empty() {
        panic!("this machine has neither a readable UUID nor a MAC; cannot test clone detection");
    }
    caretaker_agent::run(
        config(server.addr, dir.path(), TOKEN, true),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let id = Identity::load(dir.path()).unwrap().unwrap();
    assert_eq!(id.agent_id, "agent-1");
    assert_eq!(fake.st().enrolments.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_token_is_reported_not_retried_forever() {
    let fake = Fake::default();
    let server = serve(fake.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let err = caretaker_agent::run(
        config(server.addr, dir.path(), "wrong", true),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RunError::Delivery(DeliveryError::EnrollRejected(_))),
        "{err:?}"
    );
    assert!(Identity::load(dir.path()).unwrap().is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn daemon_collects_delivers_and_stops_promptly() {
    let fake = Fake::default();
    let server = serve(fake.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(server.addr, dir.path(), TOKEN, false);
    cfg.status_interval = Some(Duration::from_millis(300));
    cfg.heartbeat_interval = Some(Duration::from_millis(200));
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(caretaker_agent::run(cfg, shutdown.clone()));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = fake.st().reports.values().map(Vec::len).sum::<usize>();
        if n >= 4 && fake.st().heartbeats >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reports did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = tokio::time::Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("agent stops within the shutdown budget")
        .unwrap()
        .unwrap();
    assert!(stop.elapsed() < Duration::from_secs(5));
    let (reports, max_batch) = {
        let st = fake.st();
        (st.reports.values().next().unwrap().clone(), st.max_batch)
    };
    // Exactly one inventory (unchanged machine), statuses after it, seqs strictly increasing.
    assert_eq!(reports[0], (1, "inventory"));
    assert_eq!(reports.iter().filter(|r| r.1 == "inventory").count(), 1);
    assert!(reports.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(max_batch <= 64);
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeat_rejection_triggers_re_enrolment() {
    let fake = Fake::default();
    let server = serve(fake.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(server.addr, dir.path(), TOKEN, false);
    cfg.heartbeat_interval = Some(Duration::from_millis(100));
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(caretaker_agent::run(cfg, shutdown.clone()));

    let wait = |what: &'static str, f: Box<dyn Fn(&State) -> bool + Send>| {
        let fake = fake.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !f(&fake.st()) {
                assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait("first heartbeat", Box::new(|s| s.heartbeats >= 1)).await;
    // Collector rebuilt while the agent idles (status interval is 5 minutes).
    fake.st().secrets.clear();
    wait("re-enrolment", Box::new(|s| s.enrolments.len() == 2)).await;
    let beats = fake.st().heartbeats;
    wait("heartbeats resume", Box::new(move |s| s.heartbeats > beats)).await;
    shutdown.cancel();
    agent.await.unwrap().unwrap();
    assert_eq!(
        Identity::load(dir.path()).unwrap().unwrap().agent_id,
        "agent-2"
    );
    server.shutdown().await;
}

async fn wait_for(fake: &Fake, what: &str, f: impl Fn(&State) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f(&fake.st()) {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn statuses(st: &State) -> usize {
    st.reports
        .values()
        .flatten()
        .filter(|r| r.1 == "status")
        .count()
}

#[tokio::test]
async fn collector_intervals_apply_and_survive_a_restart() {
    let fake = Fake::default();
    fake.st().intervals = (1, 1);
    let server = serve(fake.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    // No interval in the agent's config: the collector's 1 s beats the 5 min / 60 s defaults.
    let cfg = config(server.addr, dir.path(), TOKEN, false);
    assert_eq!((cfg.status_interval, cfg.heartbeat_interval), (None, None));
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(caretaker_agent::run(cfg.clone(), shutdown.clone()));
    wait_for(&fake, "statuses at the collector's interval", |s| {
        statuses(s) >= 3 && s.heartbeats >= 2
    })
    .await;
    shutdown.cancel();
    agent.await.unwrap().unwrap();
    let id = Identity::load(dir.path()).unwrap().unwrap();
    assert_eq!(
        (id.status_interval_secs, id.heartbeat_interval_secs),
        (1, 1)
    );

    // Restarted (no enrolment this time): the stored intervals still apply.
    let before = statuses(&fake.st());
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(caretaker_agent::run(cfg, shutdown.clone()));
    wait_for(&fake, "statuses after the restart", |s| {
        statuses(s) >= before + 3
    })
    .await;
    shutdown.cancel();
    agent.await.unwrap().unwrap();
    assert_eq!(fake.st().enrolments.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn explicit_interval_overrides_the_collector() {
    let fake = Fake::default();
    fake.st().intervals = (1, 1);
    let server = serve(fake.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(server.addr, dir.path(), TOKEN, false);
    cfg.status_interval = Some(Duration::from_secs(3600));
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(caretaker_agent::run(cfg, shutdown.clone()));
    // Heartbeats follow the collector (1 s); statuses keep the configured hour: only the
    // start-up one arrives while four heartbeats do.
    wait_for(&fake, "heartbeats", |s| s.heartbeats >= 4).await;
    shutdown.cancel();
    agent.await.unwrap().unwrap();
    assert_eq!(statuses(&fake.st()), 1);
    server.shutdown().await;
}
