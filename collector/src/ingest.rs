//! Agent ingest: the gRPC `AgentService`.
//!
//! Handlers check credentials and the shape of each request, then hand a [`Job`] to the
//! register writer (see `register`) and answer only when it has made the job durable: an
//! agent's `acked_seq` is therefore always on disk, and a resent report at or below it is
//! recognised and dropped. When the writer's queue is full handlers wait (agents feel it as
//! latency), and after `QUEUE_WAIT` they answer `UNAVAILABLE` so the agent backs off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use caretaker_proto::v1::agent_service_server::AgentService;
use caretaker_proto::v1::{
    EnrollRequest, EnrollResponse, HeartbeatRequest, HeartbeatResponse, SubmitRequest,
    SubmitResponse,
};
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::agents::{Agents, IngestStats};
use crate::cmdb::EnrolmentHints;
use crate::config::AgentsConfig;
use crate::errors::Failure;
use crate::model::AgentRecord;
use crate::register::{Job, Register};
use crate::secret;

use crate::wire::refusal;
pub use crate::wire::{
    MAX_ENTRIES, MAX_REPORTS_PER_SUBMIT, MAX_SOFTWARE, MAX_SOFTWARE_ENTRY_BYTES, check_reports,
};

/// The gRPC service. Cheap to clone.
#[derive(Clone)]
pub struct IngestService {
    enroll_token: Arc<[u8; 32]>,
    agents: Arc<Agents>,
    register: Register,
    config: AgentsConfig,
    stats: Arc<IngestStats>,
    unauthenticated: Arc<crate::authlog::FailedAuth>,
}

impl IngestService {
    pub fn new(
        register: Register,
        agents: Arc<Agents>,
        enroll_token: &str,
        config: AgentsConfig,
        stats: Arc<IngestStats>,
    ) -> Self {
        Self {
            enroll_token: Arc::new(secret::sha256(enroll_token.as_bytes())),
            agents,
            register,
            config,
            stats,
            unauthenticated: Arc::default(),
        }
    }
}

impl IngestService {
    fn peer<T>(request: &Request<T>) -> Option<SocketAddr> {
        request.remote_addr()
    }

    /// Counts a rejected credential and logs it, rate-limited with its source (`authlog`).
    fn reject<T>(&self, request: &Request<T>, what: &str) -> Status {
        self.stats
            .rejected_unauthenticated
            .fetch_add(1, Ordering::Relaxed);
        self.unauthenticated
            .log(Self::peer(request).map(|p| p.ip()), what);
        Status::unauthenticated(format!("{what} is wrong or missing"))
    }

    /// Checks `authorization: Bearer <secret>` against the agent's stored hash.
    fn authenticate<T>(&self, request: &Request<T>, agent_id: &str) -> Result<(), Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(secret) if self.agents.verify(agent_id, secret) => Ok(()),
            _ => Err(self.reject(request, "agent credential")),
        }
    }
}

/// Rewrites the statuses tonic produces itself, before our handlers run, to the ones our
/// error table promises: a request too large for `max_message_bytes` is RESOURCE_EXHAUSTED
/// (tonic says OUT_OF_RANGE), one that does not decode is INVALID_ARGUMENT (tonic says
/// INTERNAL). Our handlers answer neither code, so the rewrite touches only tonic's own.
pub fn status_codes_layer() -> tower::util::MapResponseLayer<
    fn(
        tonic::codegen::http::Response<tonic::body::Body>,
    ) -> tonic::codegen::http::Response<tonic::body::Body>,
> {
    tower::util::MapResponseLayer::new(rewrite_status)
}

fn rewrite_status(
    mut response: tonic::codegen::http::Response<tonic::body::Body>,
) -> tonic::codegen::http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32);
    let replacement = match code {
        Some(tonic::Code::OutOfRange) => Some(tonic::Code::ResourceExhausted),
        Some(tonic::Code::Internal) => Some(tonic::Code::InvalidArgument),
        _ => None,
    };
    if let Some(code) = replacement
        && let Ok(value) = (code as i32).to_string().parse()
    {
        headers.insert("grpc-status", value);
    }
    response
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
        let presented = secret::sha256(request.get_ref().enroll_token.trim().as_bytes());
        if !secret::same(&presented, self.enroll_token.as_ref()) {
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
        let agent_id = secret::random_hex(8);
        let agent_secret = secret::random_hex(32);
        let secret_hash = secret::sha256(agent_secret.as_bytes());
        let agent = AgentRecord {
            agent_id: agent_id.clone(),
            secret_sha256: hex::encode(secret_hash),
            enrolled_at: OffsetDateTime::now_utc(),
            hostname: body.hostname,
            smbios_uuid: body.smbios_uuid.clone(),
            macs: body.macs,
            peer,
            asset_id: None,
            epoch: 0,
        };
        let hints = EnrolmentHints {
            smbios_uuid: body.smbios_uuid,
            serial: body.serial,
            machine_id: body.machine_id,
        };
        self.register
            .ask(|reply| Job::Enroll {
                agent,
                hints,
                reply,
            })
            .await
            .map_err(|e| Failure::from(e).grpc())?;
        self.agents.admit(&agent_id, secret_hash);
        tracing::info!(%agent_id, "Agent enrolled");
        Ok(Response::new(EnrollResponse {
            agent_id,
            agent_secret,
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
        let epoch = body.epoch;
        let outcome = self
            .register
            .ask(|reply| Job::Submit {
                agent_id: agent_id.clone(),
                epoch,
                reports: body.reports,
                received_at: OffsetDateTime::now_utc(),
                reply,
            })
            .await
            .map_err(|e| Failure::from(e).grpc())?;
        match outcome {
            Ok(acked_seq) => Ok(Response::new(SubmitResponse { acked_seq, epoch })),
            Err(refused) => {
                tracing::warn!(%agent_id, %refused, "Refused an agent's reports");
                Err(refusal(refused.to_string(), "sequence", None))
            }
        }
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
        self.register.try_send(Job::Heartbeat { agent_id, at: now });
        Ok(Response::new(HeartbeatResponse {
            server_time: Some(to_timestamp(now)),
        }))
    }
}

pub(crate) fn to_timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    }
}
