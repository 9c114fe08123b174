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
    EnrollRequest, EnrollResponse, HeartbeatRequest, HeartbeatResponse, RenewRequest,
    RenewResponse, SubmitRequest, SubmitResponse,
};
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::agents::{Agents, IngestStats};
use crate::cmdb::EnrolmentHints;
use crate::config::AgentsConfig;
use crate::errors::Failure;
use crate::model::AgentRecord;
use crate::pki::listener::PeerInfo;
use crate::pki::{Pki, TokenError};
use crate::register::{Job, Register};
use crate::secret;

use crate::wire::refusal;
pub use crate::wire::{
    MAX_ENTRIES, MAX_REPORTS_PER_SUBMIT, MAX_SOFTWARE, MAX_SOFTWARE_ENTRY_BYTES, check_reports,
};

/// The gRPC service. Cheap to clone.
#[derive(Clone)]
pub struct IngestService {
    pki: Arc<Pki>,
    agents: Arc<Agents>,
    register: Register,
    config: AgentsConfig,
    stats: Arc<IngestStats>,
    unauthenticated: Arc<crate::authlog::FailedAuth>,
    /// (source, reason) pairs already logged; cleared past 10,000.
    unauthenticated_sources:
        Arc<std::sync::Mutex<std::collections::HashSet<(std::net::IpAddr, String)>>>,
}

/// The refusal key of a wrong or missing credential (see `log_refusal`).
const WRONG_OR_MISSING: &str = "wrong or missing";

impl IngestService {
    pub fn new(
        register: Register,
        agents: Arc<Agents>,
        pki: Arc<Pki>,
        config: AgentsConfig,
        stats: Arc<IngestStats>,
    ) -> Self {
        Self {
            pki,
            agents,
            register,
            config,
            stats,
            unauthenticated: Arc::default(),
            unauthenticated_sources: Arc::default(),
        }
    }
}

impl IngestService {
    fn peer<T>(request: &Request<T>) -> Option<SocketAddr> {
        request
            .extensions()
            .get::<PeerInfo>()
            .map(|p| p.addr)
            .or_else(|| request.remote_addr())
    }

    /// The client certificate of a TLS connection (`Ok(None)` on an allowed plaintext one);
    /// a plaintext connection the config does not allow is refused with what to do.
    fn transport<'r, T>(
        &self,
        request: &'r Request<T>,
    ) -> Result<Option<&'r tokio_rustls::rustls::pki_types::CertificateDer<'static>>, Status> {
        match request.extensions().get::<PeerInfo>() {
            Some(peer) if peer.tls => Ok(peer.cert.as_deref()),
            Some(_) if !self.pki.settings().plaintext => Err(Status::unauthenticated(
                "this collector accepts only TLS connections: give the agent an enrolment token \
                 from `caretaker-collector token create` (it pins the collector's CA)",
            )),
            _ => Ok(None),
        }
    }

    /// Counts a rejected credential and logs it, rate-limited with its source (`authlog`).
    fn reject<T>(&self, request: &Request<T>, what: &str) -> Status {
        self.log_refusal(
            request,
            what,
            WRONG_OR_MISSING,
            format!("{what} is wrong or missing"),
        )
    }

    /// Refuses with `message`, logged once per source and message.
    fn refuse<T>(&self, request: &Request<T>, what: &str, message: String) -> Status {
        let key = message.clone();
        self.log_refusal(request, what, &key, message)
    }

    /// Counts a refusal and logs it the first time `key` comes from its source.
    fn log_refusal<T>(
        &self,
        request: &Request<T>,
        what: &str,
        key: &str,
        message: String,
    ) -> Status {
        self.stats
            .rejected_unauthenticated
            .fetch_add(1, Ordering::Relaxed);
        let ip = Self::peer(request).map(|p| p.ip());
        if key == WRONG_OR_MISSING {
            // A wrong credential: rate-limited per source (`authlog`).
            self.unauthenticated.log(ip, what);
        } else if let Some(ip) = ip {
            let first = {
                let mut seen = self
                    .unauthenticated_sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if seen.len() > 10_000 {
                    seen.clear();
                }
                seen.insert((ip, key.to_owned()))
            };
            if first {
                tracing::warn!(peer = %ip, what, reason = %message, "Rejected an agent request (logged once per source and reason)");
            }
        }
        Status::unauthenticated(message)
    }

    /// Checks `authorization: Bearer <secret>` against the agent's stored hash and, over TLS,
    /// that the client certificate names `agent_id` and is not revoked (on every call).
    /// Returns whether the agent should renew its certificate now.
    fn authenticate<T>(&self, request: &Request<T>, agent_id: &str) -> Result<bool, Status> {
        let renew = match request.extensions().get::<PeerInfo>() {
            Some(peer) if peer.tls => {
                match self.pki.check_info(peer.cert_info.as_deref(), agent_id) {
                    Ok(renew) => renew,
                    Err(refusal) => {
                        let mut status =
                            self.refuse(request, "client certificate", refusal.to_string());
                        if matches!(
                            refusal,
                            crate::pki::CertRefusal::AgentRevoked(..)
                                | crate::pki::CertRefusal::CertRevoked(..)
                        ) {
                            // The agent must not enrol itself again with its token.
                            status.metadata_mut().insert(
                                "x-caretaker-revoked",
                                tonic::metadata::MetadataValue::from_static("1"),
                            );
                        }
                        return Err(status);
                    }
                }
            }
            _ => {
                self.transport(request)?;
                if let Some(at) = self.pki.agent_revoked(agent_id) {
                    let mut status = self.refuse(
                        request,
                        "agent credential",
                        crate::pki::CertRefusal::AgentRevoked(agent_id.to_owned(), at).to_string(),
                    );
                    status.metadata_mut().insert(
                        "x-caretaker-revoked",
                        tonic::metadata::MetadataValue::from_static("1"),
                    );
                    return Err(status);
                }
                false
            }
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(secret) if self.agents.verify(agent_id, secret) => Ok(renew),
            _ => Err(self.reject(request, "agent credential")),
        }
    }
}

impl IngestService {
    /// Enrolment once the token is taken: issues the certificate (over TLS), records the
    /// agent, revokes the certificates of agents the PC had before (same asset).
    async fn enroll_with(
        &self,
        request: Request<EnrollRequest>,
        tls: bool,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = Self::peer(&request)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let body = request.into_inner();
        check_text("hostname", &body.hostname, 255)?;
        check_text("csr_pem", &body.csr_pem, 16 * 1024)?;
        if body.macs.len() > 256 {
            return Err(Status::invalid_argument("too many MACs"));
        }
        if tls && body.csr_pem.trim().is_empty() {
            return Err(Status::invalid_argument(
                "enrolment over TLS needs a certificate signing request (csr_pem): upgrade the agent",
            ));
        }
        let agent_id = secret::random_hex(8);
        let issued = if tls {
            let (pki, id, csr) = (self.pki.clone(), agent_id.clone(), body.csr_pem.clone());
            let issued = tokio::task::spawn_blocking(move || pki.issue(&id, &csr))
                .await
                .map_err(|_| Status::internal("certificate issue failed"))?;
            Some(issued.map_err(|e| match e {
                crate::pki::PkiError::BadCsr(_) => Status::invalid_argument(e.to_string()),
                other => {
                    tracing::error!(error = %other, "Could not issue an agent certificate");
                    Status::unavailable("the collector could not issue a certificate")
                }
            })?)
        } else {
            None
        };
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
        let others = self
            .register
            .ask(|reply| Job::Enroll {
                agent,
                hints,
                reply,
            })
            .await
            .map_err(|e| Failure::from(e).grpc())?;
        self.agents.admit(&agent_id, secret_hash);
        // The agent is in the register now: let the expiry rule see its certificate.
        self.pki.changed.notify_one();
        if !others.is_empty() {
            let (pki, id) = (self.pki.clone(), agent_id.clone());
            let others_text = others.join(", ");
            let revoked = tokio::task::spawn_blocking(move || {
                others
                    .iter()
                    .map(|other| {
                        pki.revoke_certs_of(other, &format!("the PC enrolled again as agent {id}"))
                            .unwrap_or(0)
                    })
                    .sum::<usize>()
            })
            .await
            .unwrap_or(0);
            tracing::info!(%agent_id, previous = %others_text, certificates = revoked,
                "A PC enrolled again: same asset, the old agents' certificates revoked");
        }
        tracing::info!(%agent_id, tls, "Agent enrolled");
        Ok(Response::new(EnrollResponse {
            agent_id,
            agent_secret,
            status_interval_secs: self.config.status_interval.as_secs() as u32,
            heartbeat_interval_secs: self.config.heartbeat_interval.as_secs() as u32,
            certificate_not_after: issued.as_ref().map(|i| to_timestamp(i.not_after)),
            certificate_pem: issued
                .as_ref()
                .map(|i| i.certificate_pem.clone())
                .unwrap_or_default(),
            ca_pem: issued.map(|i| i.ca_pem).unwrap_or_default(),
        }))
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
        self.transport(&request)?;
        let tls = request
            .extensions()
            .get::<PeerInfo>()
            .is_some_and(|p| p.tls);
        let presented = request.get_ref().enroll_token.clone();
        let token_id = {
            let pki = self.pki.clone();
            tokio::task::spawn_blocking(move || pki.reserve(&presented))
                .await
                .map_err(|_| Status::internal("token check failed"))?
        };
        let token_id = match token_id {
            Ok(id) => id,
            Err(TokenError::Wrong) => return Err(self.reject(&request, "enrolment token")),
            Err(refused) => {
                return Err(self.refuse(&request, "enrolment token", refused.to_string()));
            }
        };
        let result = self.enroll_with(request, tls).await;
        if result.is_err() {
            let pki = self.pki.clone();
            let _ = tokio::task::spawn_blocking(move || pki.release(&token_id)).await;
        } else {
            tracing::info!(token = %token_id, "Enrolment token used");
        }
        result
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let agent_id = request.get_ref().agent_id.clone();
        let renew_certificate = self.authenticate(&request, &agent_id)?;
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
            Ok(acked_seq) => Ok(Response::new(SubmitResponse {
                acked_seq,
                epoch,
                renew_certificate,
            })),
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
        let renew_certificate = self.authenticate(&request, &agent_id)?;
        let now = OffsetDateTime::now_utc();
        self.agents.heard(&agent_id, now);
        // Heartbeats are lossy by design: if the writer is busy, this one is simply skipped.
        self.register.try_send(Job::Heartbeat { agent_id, at: now });
        Ok(Response::new(HeartbeatResponse {
            server_time: Some(to_timestamp(now)),
            renew_certificate,
        }))
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let agent_id = request.get_ref().agent_id.clone();
        if self.transport(&request)?.is_none() {
            return Err(Status::unauthenticated(
                "renewal needs the agent's current client certificate (mTLS)",
            ));
        }
        self.authenticate(&request, &agent_id)?;
        let csr = request.into_inner().csr_pem;
        check_text("csr_pem", &csr, 16 * 1024)?;
        let (pki, id) = (self.pki.clone(), agent_id.clone());
        let issued = tokio::task::spawn_blocking(move || pki.issue(&id, &csr))
            .await
            .map_err(|_| Status::internal("certificate issue failed"))?
            .map_err(|e| match e {
                crate::pki::PkiError::BadCsr(_) => Status::invalid_argument(e.to_string()),
                other => {
                    tracing::error!(error = %other, "Could not renew an agent certificate");
                    Status::unavailable("the collector could not issue a certificate")
                }
            })?;
        tracing::info!(%agent_id, serial = %issued.serial, "Agent certificate renewed");
        Ok(Response::new(RenewResponse {
            certificate_pem: issued.certificate_pem,
            ca_pem: issued.ca_pem,
            certificate_not_after: Some(to_timestamp(issued.not_after)),
        }))
    }
}

pub(crate) fn to_timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    }
}
