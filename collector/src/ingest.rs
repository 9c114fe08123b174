//! Agent ingest: the gRPC `AgentService` and the single writer that makes reports durable.
//!
//! Handlers check credentials and shape, then hand a [`Job`] to the writer over a bounded
//! channel (`JOB_QUEUE`; when it is full, handlers wait, which is the back-pressure agents
//! feel as latency). The writer runs on its own OS thread: it drains up to `MAX_BATCH` jobs,
//! turns them into one [`WriteSet`] (status samples, CMDB updates, sequence numbers), commits
//! it with one fsync (group commit) and only then answers each job. An agent's `acked_seq` is
//! therefore always durable, and a resent report at or below it is recognised and dropped.
//! The writer stops when every sender is gone (the server has shut down).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use caretaker_proto::v1::agent_service_server::AgentService;
use caretaker_proto::v1::{
    EnrollRequest, EnrollResponse, HeartbeatRequest, HeartbeatResponse, Report, SubmitRequest,
    SubmitResponse, report,
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use crate::cmdb::{Cmdb, EnrolmentHints, InventoryReport};
use crate::config::AgentsConfig;
use crate::model::{AgentId, AgentRecord, StatusSample};
use crate::store::{Store, StoreError, WriteSet};

/// Jobs waiting for the writer; handlers wait for room when it is full.
const JOB_QUEUE: usize = 8192;
/// Jobs the writer folds into one commit.
const MAX_BATCH: usize = 2048;
/// Reports one Submit may carry.
pub const MAX_REPORTS_PER_SUBMIT: usize = 256;
/// How long a handler waits for room in the queue before answering UNAVAILABLE.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the store rejected a write")]
    Store(#[from] StoreError),
    #[error("the ingest writer has stopped")]
    WriterGone,
}

/// The one place internal errors become gRPC statuses.
fn to_status(error: IngestError) -> Status {
    match error {
        IngestError::Store(e) => Status::unavailable(format!("store unavailable: {e}")),
        IngestError::WriterGone => Status::unavailable("collector is shutting down"),
    }
}

enum Job {
    Enroll {
        agent: AgentRecord,
        hints: EnrolmentHints,
        reply: oneshot::Sender<Result<(), IngestError>>,
    },
    Submit {
        agent_id: AgentId,
        reports: Vec<Report>,
        received_at: OffsetDateTime,
        reply: oneshot::Sender<Result<u64, IngestError>>,
    },
    Heartbeat {
        agent_id: AgentId,
        at: OffsetDateTime,
    },
}

/// Counters for logs and benchmarks.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub reports_stored: AtomicU64,
    pub reports_duplicate: AtomicU64,
    pub reports_clock_suspect: AtomicU64,
    pub commits: AtomicU64,
    pub rejected_unauthenticated: AtomicU64,
}

/// Secrets and liveness shared between handlers and the rest of the collector.
pub struct Agents {
    secrets: RwLock<HashMap<AgentId, [u8; 32]>>,
    last_heard: Mutex<HashMap<AgentId, OffsetDateTime>>,
}

impl Agents {
    /// When each agent was last heard from (reports or heartbeats) since the collector started.
    pub fn last_heard(&self) -> HashMap<AgentId, OffsetDateTime> {
        self.last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn heard(&self, agent_id: &str, at: OffsetDateTime) {
        self.last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.to_owned(), at);
    }
}

/// The gRPC service. Cheap to clone.
#[derive(Clone)]
pub struct IngestService {
    enroll_token: Arc<[u8; 32]>,
    agents: Arc<Agents>,
    jobs: mpsc::Sender<Job>,
    config: AgentsConfig,
    stats: Arc<IngestStats>,
    unauthenticated_sources: Arc<Mutex<HashSet<IpAddr>>>,
}

/// The writer thread's handle; join it after the service is dropped.
pub struct Writer {
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("The ingest writer panicked");
        }
    }
}

/// Builds the service and starts the writer thread over `store`.
pub fn start(
    store: Arc<dyn Store>,
    enroll_token: &str,
    config: AgentsConfig,
) -> Result<(IngestService, Writer, Arc<Agents>, Arc<IngestStats>), StoreError> {
    let records = store.agents()?;
    let seqs = store.agent_seqs()?;
    let cmdb = Cmdb::load(store.as_ref())?;
    let agents = Arc::new(Agents {
        secrets: RwLock::new(
            records
                .iter()
                .filter_map(|r| Some((r.agent_id.clone(), decode_hash(&r.secret_sha256)?)))
                .collect(),
        ),
        last_heard: Mutex::new(HashMap::new()),
    });
    let stats = Arc::new(IngestStats::default());
    let (jobs, rx) = mpsc::channel(JOB_QUEUE);
    let state = WriterState {
        store,
        cmdb,
        agents: records
            .into_iter()
            .map(|r| (r.agent_id.clone(), r))
            .collect(),
        seqs,
        config: config.clone(),
        stats: stats.clone(),
        shared: agents.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("ingest-writer".to_owned())
        .spawn(move || state.run(rx))
        .expect("spawning a thread");
    let service = IngestService {
        enroll_token: Arc::new(sha256(enroll_token.as_bytes())),
        agents: agents.clone(),
        jobs,
        config,
        stats: stats.clone(),
        unauthenticated_sources: Arc::default(),
    };
    Ok((service, Writer { thread }, agents, stats))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn decode_hash(hex_hash: &str) -> Option<[u8; 32]> {
    hex::decode(hex_hash).ok()?.try_into().ok()
}

/// Compares without an early exit, so timing does not leak how much of a secret matched.
fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

impl IngestService {
    fn peer<T>(request: &Request<T>) -> Option<SocketAddr> {
        request.remote_addr()
    }

    /// Logs a rejected credential once per source address, then only counts.
    fn reject<T>(&self, request: &Request<T>, what: &str) -> Status {
        self.stats
            .rejected_unauthenticated
            .fetch_add(1, Ordering::Relaxed);
        let ip = Self::peer(request).map(|p| p.ip());
        if let Some(ip) = ip {
            let first = self
                .unauthenticated_sources
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ip);
            if first {
                tracing::warn!(peer = %ip, what, "Rejected an agent request with a wrong or missing credential (logged once per source)");
            }
        }
        Status::unauthenticated(format!("{what} is wrong or missing"))
    }

    /// Checks `authorization: Bearer <secret>` against the agent's stored hash.
    fn authenticate<T>(&self, request: &Request<T>, agent_id: &str) -> Result<(), Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|s| sha256(s.trim().as_bytes()));
        let known = self
            .agents
            .secrets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent_id)
            .copied();
        match (presented, known) {
            (Some(p), Some(k)) if same_hash(&p, &k) => Ok(()),
            _ => Err(self.reject(request, "agent credential")),
        }
    }

    async fn send(&self, job: Job) -> Result<(), Status> {
        match tokio::time::timeout(QUEUE_WAIT, self.jobs.send(job)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(to_status(IngestError::WriterGone)),
            Err(_) => Err(Status::unavailable("collector is overloaded; retry later")),
        }
    }
}

fn check_reports(reports: &[Report]) -> Result<(), Status> {
    if reports.is_empty() {
        return Err(Status::invalid_argument(
            "a submit needs at least one report",
        ));
    }
    if reports.len() > MAX_REPORTS_PER_SUBMIT {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_REPORTS_PER_SUBMIT} reports per submit"
        )));
    }
    let mut previous = 0;
    for report in reports {
        if report.seq == 0 {
            return Err(Status::invalid_argument("report seq must start at 1"));
        }
        if report.seq <= previous {
            return Err(Status::invalid_argument(
                "reports must be in increasing seq order",
            ));
        }
        previous = report.seq;
        if report.collected_at.is_none() {
            return Err(Status::invalid_argument(format!(
                "report {} has no collected_at",
                report.seq
            )));
        }
        if report.body.is_none() {
            return Err(Status::invalid_argument(format!(
                "report {} has no body",
                report.seq
            )));
        }
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        Err(Status::invalid_argument(format!(
            "{field} is longer than {max} bytes"
        )))
    } else {
        Ok(())
    }
}

#[tonic::async_trait]
impl AgentService for IngestService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let presented = sha256(request.get_ref().enroll_token.trim().as_bytes());
        if !same_hash(&presented, &self.enroll_token) {
            return Err(self.reject(&request, "enrolment token"));
        }
        let peer = Self::peer(&request)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let body = request.into_inner();
        check_text("hostname", &body.hostname, 255)?;
        if body.macs.len() > 256 {
            return Err(Status::invalid_argument("too many MACs"));
        }
        let agent_id = random_hex(8);
        let secret = random_hex(32);
        let agent = AgentRecord {
            agent_id: agent_id.clone(),
            secret_sha256: hex::encode(sha256(secret.as_bytes())),
            enrolled_at: OffsetDateTime::now_utc(),
            hostname: body.hostname,
            smbios_uuid: body.smbios_uuid.clone(),
            macs: body.macs,
            peer,
            asset_id: None,
        };
        let hints = EnrolmentHints {
            smbios_uuid: body.smbios_uuid,
            serial: body.serial,
            machine_id: body.machine_id,
        };
        let (reply, done) = oneshot::channel();
        self.send(Job::Enroll {
            agent,
            hints,
            reply,
        })
        .await?;
        done.await
            .map_err(|_| to_status(IngestError::WriterGone))?
            .map_err(to_status)?;
        self.agents
            .secrets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.clone(), sha256(secret.as_bytes()));
        tracing::info!(%agent_id, "Agent enrolled");
        Ok(Response::new(EnrollResponse {
            agent_id,
            agent_secret: secret,
            status_interval_secs: self.config.status_interval.as_secs() as u32,
            heartbeat_interval_secs: self.config.heartbeat_interval.as_secs() as u32,
        }))
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let agent_id = request.get_ref().agent_id.clone();
        self.authenticate(&request, &agent_id)?;
        let body = request.into_inner();
        check_reports(&body.reports)?;
        let (reply, done) = oneshot::channel();
        self.send(Job::Submit {
            agent_id,
            reports: body.reports,
            received_at: OffsetDateTime::now_utc(),
            reply,
        })
        .await?;
        let acked_seq = done
            .await
            .map_err(|_| to_status(IngestError::WriterGone))?
            .map_err(to_status)?;
        Ok(Response::new(SubmitResponse { acked_seq }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let agent_id = request.get_ref().agent_id.clone();
        self.authenticate(&request, &agent_id)?;
        let now = OffsetDateTime::now_utc();
        self.agents.heard(&agent_id, now);
        // Heartbeats are lossy by design: if the writer is busy, this one is simply skipped.
        let _ = self.jobs.try_send(Job::Heartbeat { agent_id, at: now });
        Ok(Response::new(HeartbeatResponse {
            server_time: Some(to_timestamp(now)),
        }))
    }
}

pub fn to_timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    }
}

fn from_timestamp(ts: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos.clamp(0, 999_999_999));
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

struct WriterState {
    store: Arc<dyn Store>,
    cmdb: Cmdb,
    agents: HashMap<AgentId, AgentRecord>,
    seqs: HashMap<AgentId, u64>,
    config: AgentsConfig,
    stats: Arc<IngestStats>,
    shared: Arc<Agents>,
}

enum Reply {
    Enroll(oneshot::Sender<Result<(), IngestError>>),
    Submit(oneshot::Sender<Result<u64, IngestError>>, u64),
}

impl WriterState {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while let Some(job) = rx.blocking_recv() {
            jobs.push(job);
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.process(jobs.drain(..));
        }
        tracing::debug!("Ingest writer stopped");
    }

    fn process(&mut self, jobs: impl Iterator<Item = Job>) {
        let mut set = WriteSet::default();
        let mut replies = Vec::new();
        let mut failed = None;
        let mut touched_seqs = HashSet::new();
        let mut seen = HashMap::new();
        for job in jobs {
            match job {
                Job::Enroll {
                    mut agent,
                    hints,
                    reply,
                } => {
                    self.cmdb.enrol(&mut agent, hints, &mut set);
                    set.agents.push(agent.clone());
                    self.agents.insert(agent.agent_id.clone(), agent);
                    replies.push(Reply::Enroll(reply));
                }
                Job::Submit {
                    agent_id,
                    reports,
                    received_at,
                    reply,
                } => match self.submit(&agent_id, reports, received_at, &mut set, &mut seen) {
                    Ok(acked) => {
                        touched_seqs.insert(agent_id);
                        replies.push(Reply::Submit(reply, acked));
                    }
                    Err(error) => {
                        tracing::error!(%error, %agent_id, "Could not apply a report batch");
                        failed = Some(error.to_string());
                        replies.push(Reply::Submit(reply, 0));
                    }
                },
                Job::Heartbeat { agent_id, at } => {
                    if let Some(asset) = self.agents.get(&agent_id).and_then(|a| a.asset_id.clone())
                    {
                        seen.insert(asset, at);
                    }
                }
            }
        }
        set.last_seen = seen.into_iter().collect();
        set.agent_seqs = touched_seqs
            .into_iter()
            .map(|a| {
                let seq = self.seqs.get(&a).copied().unwrap_or(0);
                (a, seq)
            })
            .collect();
        let stored = set.samples.len() as u64;
        let result = if failed.is_some() {
            Err(())
        } else {
            self.store.commit(set).map_err(|error| {
                tracing::error!(%error, "Could not commit ingested reports; agents will retry");
            })
        };
        if result.is_err() {
            // Nothing of this batch is acknowledged; reload what the store really holds so the
            // retries are judged against durable state.
            self.reload();
        } else {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.stats
                .reports_stored
                .fetch_add(stored, Ordering::Relaxed);
        }
        for reply in replies {
            match reply {
                Reply::Enroll(tx) => {
                    let _ = tx.send(result.map_err(|()| IngestError::WriterGone));
                }
                Reply::Submit(tx, acked) => {
                    let _ = tx.send(result.map(|()| acked).map_err(|()| IngestError::WriterGone));
                }
            }
        }
    }

    fn reload(&mut self) {
        let reloaded = (|| -> Result<(), StoreError> {
            self.cmdb = Cmdb::load(self.store.as_ref())?;
            self.seqs = self.store.agent_seqs()?;
            self.agents = self
                .store
                .agents()?
                .into_iter()
                .map(|r| (r.agent_id.clone(), r))
                .collect();
            Ok(())
        })();
        if let Err(error) = reloaded {
            tracing::error!(%error, "Could not reload ingest state from the store");
        }
    }

    fn submit(
        &mut self,
        agent_id: &str,
        reports: Vec<Report>,
        received_at: OffsetDateTime,
        set: &mut WriteSet,
        seen: &mut HashMap<String, OffsetDateTime>,
    ) -> Result<u64, StoreError> {
        let Some(mut agent) = self.agents.get(agent_id).cloned() else {
            return Ok(0);
        };
        let mut last = self.seqs.get(agent_id).copied().unwrap_or(0);
        let ahead =
            time::Duration::try_from(self.config.max_clock_ahead).unwrap_or(time::Duration::MAX);
        let age =
            time::Duration::try_from(self.config.max_report_age).unwrap_or(time::Duration::MAX);
        for report in reports {
            if report.seq <= last {
                self.stats.reports_duplicate.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let collected = report.collected_at.as_ref().and_then(from_timestamp);
            let clock_suspect = match collected {
                Some(at) => at > received_at + ahead || at < received_at - age,
                None => true,
            };
            if clock_suspect {
                self.stats
                    .reports_clock_suspect
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%agent_id, seq = report.seq, collected_at = ?collected,
                    "Report time is implausible; storing it flagged, at the time it arrived");
            }
            let at = if clock_suspect {
                received_at
            } else {
                collected.unwrap_or(received_at)
            };
            match report.body {
                Some(report::Body::Inventory(inventory)) => {
                    let missing = report
                        .missing
                        .into_iter()
                        .filter(|m| crate::cmdb::SECTIONS.contains(&m.as_str()))
                        .collect();
                    self.cmdb.apply_inventory(
                        self.store.as_ref(),
                        &mut agent,
                        InventoryReport {
                            agent_id: agent_id.to_owned(),
                            seq: report.seq,
                            collected_at: at,
                            received_at,
                            clock_suspect,
                            missing,
                            inventory,
                        },
                        set,
                    )?;
                    set.agents.push(agent.clone());
                }
                Some(report::Body::Status(status)) => {
                    if let Some(asset_id) = &agent.asset_id {
                        set.samples.push(StatusSample {
                            asset_id: asset_id.clone(),
                            at,
                            seq: report.seq,
                            clock_suspect,
                            status,
                        });
                    }
                }
                None => {}
            }
            last = report.seq;
        }
        if let Some(asset) = &agent.asset_id {
            let heard = seen.entry(asset.clone()).or_insert(received_at);
            *heard = (*heard).max(received_at);
        }
        self.shared.heard(agent_id, received_at);
        self.seqs.insert(agent_id.to_owned(), last);
        self.agents.insert(agent_id.to_owned(), agent);
        Ok(last)
    }
}
