//! Delivery to the collector over gRPC: enrolment (identity), submitting journalled reports in
//! seq-ordered batches (≤ 64 reports / 1 MiB) and acking the journal with what the collector
//! stored, and heartbeats. Tasks: [`sender_task`] (wakes on the journal's `Notify` or when
//! its backoff expires; on shutdown makes one final flush bounded by [`FINAL_FLUSH`]) and
//! [`heartbeat_task`] (fire-and-forget; an UNAUTHENTICATED answer is passed to the sender over
//! a 1-slot channel so it re-enrols). Both stop when their cancellation token fires.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use caretaker_proto::v1::agent_service_client::AgentServiceClient;
use caretaker_proto::v1::{EnrollRequest, HeartbeatRequest, RenewRequest, Report, SubmitRequest};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::backoff::Backoff;
use crate::config::{Defaults, Secret};
use crate::identity::{Identity, IdentityError, Mismatch};
use crate::inventory::{AGENT_VERSION, Fingerprint, timestamp};
use crate::journal::{Journal, JournalError};
use crate::schedule::{FollowingTick, Which};
use crate::tls::{self, Trust};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const BATCH_REPORTS: usize = 64;
pub const BATCH_BYTES: usize = 1024 * 1024;
/// How long the last flush at shutdown may take.
pub const FINAL_FLUSH: Duration = Duration::from_secs(3);

pub type SharedJournal = Arc<Mutex<Journal>>;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Handshake(String),
    #[error("this PC was revoked by the collector: {}", .0.message())]
    Revoked(#[source] Status),
    #[error("collector unavailable: {}", .0.message())]
    Unavailable(#[source] Status),
    #[error("collector rejected the enrolment token: {}", .0.message())]
    EnrollRejected(#[source] Status),
    #[error("agent must enrol but no enrolment token is configured")]
    NoToken,
    #[error("collector refused the request: {}", .0.message())]
    Rejected(#[source] Status),
    #[error("collector acknowledged seq {acked} after being sent up to {sent}")]
    NoProgress { sent: u64, acked: u64 },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl DeliveryError {
    /// Worth retrying soon: the collector (or the network) is away.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What a refused submit asks of the agent (`x-caretaker-refused` metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Drop this one report: it can never be stored.
    Report(u64),
    /// Start a new sequence epoch and send again.
    Sequence,
}

fn refusal(status: &Status) -> Option<Refusal> {
    let metadata = status.metadata();
    match metadata.get("x-caretaker-refused")?.to_str().ok()? {
        "report" => Some(Refusal::Report(
            metadata
                .get("x-caretaker-seq")?
                .to_str()
                .ok()?
                .parse()
                .ok()?,
        )),
        "sequence" => Some(Refusal::Sequence),
        _ => None,
    }
}

/// One table from gRPC status to what the agent does about it.
fn classify(status: Status) -> DeliveryError {
    if let Some(reason) = tls::explain(&status) {
        return DeliveryError::Handshake(reason);
    }
    if status.metadata().get("x-caretaker-revoked").is_some() {
        return DeliveryError::Revoked(status);
    }
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal => DeliveryError::Unavailable(status),
        _ => DeliveryError::Rejected(status),
    }
}

fn lock(journal: &SharedJournal) -> std::sync::MutexGuard<'_, Journal> {
    // A panic while holding the lock leaves the journal consistent on disk; keep going.
    journal.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds `authorization: Bearer <secret>`.
fn authed<T>(msg: T, secret: &str) -> Request<T> {
    let mut req = Request::new(msg);
    if let Ok(v) = format!("Bearer {secret}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

/// The gRPC client plus the agent's identity.
pub struct Client {
    grpc: AgentServiceClient<Channel>,
    grpc_tx: watch::Sender<AgentServiceClient<Channel>>,
    /// Set when the collector asks for a new certificate (CA rotation).
    renew: Arc<AtomicBool>,
    state_dir: PathBuf,
    collector: String,
    token: Option<Secret>,
    fingerprint: Fingerprint,
    identity: Option<Identity>,
    identity_tx: watch::Sender<Option<Identity>>,
}

impl Client {
    /// Builds a lazily connecting client and loads (and checks) the stored identity.
    pub fn new(
        collector: &str,
        state_dir: PathBuf,
        token: Option<Secret>,
        fingerprint: Fingerprint,
    ) -> Result<Self, DeliveryError> {
        let mut identity = Identity::load(&state_dir)?;
        if let Some(id) = &identity {
            match id.check(&fingerprint, collector) {
                Ok(()) => {}
                Err(Mismatch::OtherMachine) => {
                    tracing::warn!(
                        agent_id = %id.agent_id,
                        stored_uuid = %id.smbios_uuid,
                        uuid = %fingerprint.smbios_uuid,
                        "State directory belongs to another machine (cloned image?); enrolling afresh"
                    );
                    identity = None;
                }
                Err(Mismatch::OtherCollector) => {
                    tracing::info!(
                        agent_id = %id.agent_id,
                        old = %id.collector,
                        new = %collector,
                        "Identity was issued by another collector; enrolling afresh"
                    );
                    identity = None;
                }
            }
        }
        let (identity_tx, _) = watch::channel(identity.clone());
        let grpc = Self::client_for(collector, token.as_ref(), identity.as_ref())?;
        let (grpc_tx, _) = watch::channel(grpc.clone());
        Ok(Self {
            grpc,
            grpc_tx,
            renew: Arc::default(),
            state_dir,
            collector: collector.to_owned(),
            token,
            fingerprint,
            identity,
            identity_tx,
        })
    }

    /// Follows identity changes (for the heartbeat task).
    pub fn identity_watch(&self) -> watch::Receiver<Option<Identity>> {
        self.identity_tx.subscribe()
    }

    /// The client in use, following enrolment and renewal (for the heartbeat task).
    pub fn grpc(&self) -> watch::Receiver<AgentServiceClient<Channel>> {
        self.grpc_tx.subscribe()
    }

    pub fn renew_flag(&self) -> Arc<AtomicBool> {
        self.renew.clone()
    }

    fn client_for(
        collector: &str,
        token: Option<&Secret>,
        identity: Option<&Identity>,
    ) -> Result<AgentServiceClient<Channel>, DeliveryError> {
        let trust = Trust::for_identity(identity, token.map(Secret::expose));
        if matches!(trust, Trust::Plaintext) {
            tracing::warn!(
                "The enrolment token pins no CA (an old-style token): talking to the collector \
                 in PLAINTEXT; make a new token with `caretaker-collector token create`"
            );
        }
        let channel = tls::channel(
            collector,
            &trust,
            identity,
            CONNECT_TIMEOUT,
            REQUEST_TIMEOUT,
        )?;
        Ok(AgentServiceClient::new(channel))
    }

    /// Sets the identity in use and a client that presents its certificate.
    fn adopt(&mut self, identity: Option<Identity>) -> Result<(), DeliveryError> {
        self.grpc = Self::client_for(&self.collector, self.token.as_ref(), identity.as_ref())?;
        self.grpc_tx.send_replace(self.grpc.clone());
        self.identity.clone_from(&identity);
        self.identity_tx.send_replace(identity);
        Ok(())
    }

    /// Renews the client certificate at two thirds of its life, or when the collector asked.
    async fn maybe_renew(&mut self) -> Result<(), DeliveryError> {
        let Some(id) = self.identity.clone() else {
            return Ok(());
        };
        if id.certificate_pem.is_empty() {
            return Ok(());
        }
        let now = unix_now();
        let life = id.certificate_not_after - id.certificate_issued_at;
        let due = now >= id.certificate_issued_at + life * 2 / 3;
        let asked = self.renew.load(Ordering::Relaxed);
        if !due && !asked {
            return Ok(());
        }
        let (key_pem, csr_pem) = tls::new_key_and_csr()?;
        let req = authed(
            RenewRequest {
                agent_id: id.agent_id.clone(),
                csr_pem,
            },
            &id.agent_secret,
        );
        let resp = self.grpc.renew(req).await.map_err(classify)?.into_inner();
        let mut renewed = id.clone();
        renewed.certificate_pem = resp.certificate_pem;
        renewed.key_pem = key_pem;
        if !resp.ca_pem.is_empty() {
            renewed.ca_pem = resp.ca_pem;
        }
        renewed.certificate_issued_at = now;
        renewed.certificate_not_after = resp.certificate_not_after.map_or(now, |t| t.seconds);
        renewed.save(&self.state_dir)?;
        self.renew.store(false, Ordering::Relaxed);
        tracing::info!(agent_id = %renewed.agent_id, asked, "Renewed the client certificate");
        self.adopt(Some(renewed))
    }

    /// Enrols with the token and stores the new identity.
    pub async fn enroll(&mut self) -> Result<Identity, DeliveryError> {
        let token = self.token.clone().ok_or(DeliveryError::NoToken)?;
        let tls = !matches!(
            Trust::for_identity(None, Some(token.expose())),
            Trust::Plaintext
        );
        // Enrolment presents no certificate: use a client without one.
        self.adopt(None)?;
        let (key_pem, csr_pem) = if tls {
            tls::new_key_and_csr()?
        } else {
            (String::new(), String::new())
        };
        let fp = &self.fingerprint;
        let req = EnrollRequest {
            csr_pem,
            enroll_token: token.expose().to_owned(),
            hostname: fp.hostname.clone(),
            smbios_uuid: fp.smbios_uuid.clone(),
            macs: fp.macs.clone(),
            agent_version: AGENT_VERSION.to_owned(),
            machine_id: fp.machine_id.clone(),
            serial: fp.serial.clone(),
        };
        let resp = match self.grpc.enroll(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::Unauthenticated || s.code() == Code::PermissionDenied => {
                return Err(DeliveryError::EnrollRejected(s));
            }
            Err(s) => return Err(classify(s)),
        };
        let identity = Identity {
            agent_id: resp.agent_id,
            agent_secret: resp.agent_secret,
            collector: self.collector.clone(),
            smbios_uuid: fp.smbios_uuid.clone(),
            macs: fp.macs.clone(),
            status_interval_secs: resp.status_interval_secs,
            heartbeat_interval_secs: resp.heartbeat_interval_secs,
            certificate_issued_at: unix_now(),
            certificate_not_after: resp.certificate_not_after.map_or(0, |t| t.seconds),
            certificate_pem: resp.certificate_pem,
            key_pem: if tls { key_pem } else { String::new() },
            ca_pem: resp.ca_pem,
        };
        if tls && identity.certificate_pem.is_empty() {
            return Err(DeliveryError::Handshake(
                "the collector sent no client certificate at enrolment".to_owned(),
            ));
        }
        identity.save(&self.state_dir)?;
        tracing::info!(
            agent_id = %identity.agent_id,
            status_interval_secs = identity.status_interval_secs,
            heartbeat_interval_secs = identity.heartbeat_interval_secs,
            "Enrolled with the collector"
        );
        self.adopt(Some(identity.clone()))?;
        Ok(identity)
    }

    /// Drops the identity if it is still `agent_id`, so the next flush enrols again.
    pub fn forget(&mut self, agent_id: &str) {
        if self
            .identity
            .as_ref()
            .is_some_and(|i| i.agent_id == agent_id)
        {
            tracing::warn!(%agent_id, "Collector no longer knows this agent; enrolling again");
            self.identity = None;
        }
    }

    async fn identity(&mut self) -> Result<Identity, DeliveryError> {
        match &self.identity {
            Some(id) => Ok(id.clone()),
            None => self.enroll().await,
        }
    }

    /// Submits one batch, re-enrolling once if the collector no longer knows us.
    async fn submit(&mut self, reports: Vec<Report>, epoch: u64) -> Result<u64, DeliveryError> {
        let mut reenrolled = false;
        loop {
            let id = self.identity().await?;
            let req = authed(
                SubmitRequest {
                    agent_id: id.agent_id.clone(),
                    reports: reports.clone(),
                    epoch,
                },
                &id.agent_secret,
            );
            match self.grpc.submit(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.renew_certificate {
                        self.renew.store(true, Ordering::Relaxed);
                    }
                    return Ok(r.acked_seq);
                }
                Err(s) if s.metadata().get("x-caretaker-revoked").is_some() => {
                    return Err(DeliveryError::Revoked(s));
                }
                Err(s)
                    if !reenrolled
                        && tls::explain(&s).is_some_and(|r| r.contains("client certificate")) =>
                {
                    tracing::warn!(agent_id = %id.agent_id, reason = %tls::explain(&s).unwrap_or_default(),
                        "The collector refused this PC's certificate; enrolling again");
                    self.identity = None;
                    reenrolled = true;
                }
                Err(s) if s.code() == Code::Unauthenticated && !reenrolled => {
                    tracing::warn!(agent_id = %id.agent_id, "Collector no longer knows this agent; enrolling again");
                    self.identity = None;
                    reenrolled = true;
                }
                Err(s) => return Err(classify(s)),
            }
        }
    }

    /// Delivers everything pending in the journal; returns how many reports were acked.
    pub async fn flush(&mut self, journal: &SharedJournal) -> Result<usize, DeliveryError> {
        // Enrol even with nothing pending, so heartbeats can start.
        self.identity().await?;
        match self.maybe_renew().await {
            Ok(()) => {}
            Err(DeliveryError::Handshake(reason)) if reason.contains("client certificate") => {
                tracing::warn!(%reason, "The collector refused this PC's certificate; enrolling again");
                self.identity = None;
                self.identity().await?;
            }
            Err(error) => {
                tracing::warn!(%error, "Could not renew the client certificate; keeping the current one");
            }
        }
        let mut delivered = 0;
        let mut restarted = false;
        loop {
            let (batch, epoch) = {
                let mut j = lock(journal);
                (j.pending(BATCH_REPORTS, BATCH_BYTES)?, j.epoch())
            };
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                if self.renew.load(Ordering::Relaxed)
                    && let Err(error) = self.maybe_renew().await
                {
                    tracing::warn!(%error, "Could not renew the client certificate; keeping the current one");
                }
                return Ok(delivered);
            };
            let (first, last, n) = (first.seq, last.seq, batch.len());
            let acked = match self.submit(batch, epoch).await {
                Err(DeliveryError::Rejected(status)) => {
                    // The collector says what to do about a refusal (see the proto).
                    match refusal(&status) {
                        Some(Refusal::Report(seq)) if lock(journal).discard(seq)? => {
                            tracing::error!(
                                seq,
                                reason = status.message(),
                                "The collector can never store this report; dropped it from the journal"
                            );
                            continue;
                        }
                        Some(Refusal::Sequence) if !restarted => {
                            restarted = true;
                            lock(journal).new_epoch()?;
                            continue;
                        }
                        _ => return Err(DeliveryError::Rejected(status)),
                    }
                }
                other => other?,
            };
            let mut j = lock(journal);
            let before = j.len();
            j.ack(acked)?;
            let after = j.len();
            drop(j);
            tracing::debug!(first, last, acked, "Submitted a batch");
            delivered += before - after;
            if acked < first {
                // Nothing of this batch was stored: retrying now would loop.
                return Err(DeliveryError::NoProgress { sent: last, acked });
            }
            if after == before && n > 0 {
                return Err(DeliveryError::NoProgress { sent: last, acked });
            }
        }
    }
}

/// Delivers the journal whenever it grows; backs off with jitter while the collector is away.
pub async fn sender_task(
    mut client: Client,
    journal: SharedJournal,
    notify: Arc<Notify>,
    mut rejected: mpsc::Receiver<String>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    let mut down = false;
    let mut token_rejected = false;
    loop {
        let result = tokio::select! {
            r = client.flush(&journal) => r,
            () = shutdown.cancelled() => break,
        };
        let pending = lock(&journal).len();
        match result {
            Ok(delivered) => {
                if down {
                    tracing::info!(delivered, pending, "Collector reachable again");
                } else if delivered > 0 {
                    tracing::debug!(delivered, "Reports delivered");
                }
                down = false;
                token_rejected = false;
                backoff.reset();
                tokio::select! {
                    () = notify.notified() => {}
                    Some(agent_id) = rejected.recv() => client.forget(&agent_id),
                    () = shutdown.cancelled() => break,
                }
            }
            Err(error) => {
                let delay = backoff.next_delay();
                match &error {
                    DeliveryError::EnrollRejected(_)
                    | DeliveryError::NoToken
                    | DeliveryError::Revoked(_)
                    | DeliveryError::Handshake(_) => {
                        if !token_rejected {
                            tracing::error!(%error, pending, "Cannot enrol; reports stay in the journal");
                            token_rejected = true;
                        }
                    }
                    _ if !down => {
                        tracing::warn!(%error, pending, "Collector unreachable; reports stay in the journal");
                    }
                    _ => {
                        tracing::debug!(%error, pending, retry_in = ?delay, "Delivery failed again");
                    }
                }
                down = true;
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }
    match tokio::time::timeout(FINAL_FLUSH, client.flush(&journal)).await {
        Ok(Ok(n)) => tracing::debug!(delivered = n, "Final flush done"),
        Ok(Err(error)) => {
            tracing::debug!(%error, "Final flush failed; reports stay in the journal")
        }
        Err(_) => tracing::debug!("Final flush ran out of time; reports stay in the journal"),
    }
    if let Err(error) = lock(&journal).sync() {
        tracing::error!(%error, "Cannot sync the journal at shutdown");
    }
}

/// Sends a liveness heartbeat once the agent has an identity, every `heartbeat_interval`
/// (explicit setting, else the collector's wish, else the default; see [`FollowingTick`]).
pub async fn heartbeat_task(
    grpc: watch::Receiver<AgentServiceClient<Channel>>,
    renew: Arc<AtomicBool>,
    identity: watch::Receiver<Option<Identity>>,
    rejected: mpsc::Sender<String>,
    journal: SharedJournal,
    explicit: Option<Duration>,
    shutdown: CancellationToken,
) {
    let mut tick = FollowingTick::new(
        Which::Heartbeat,
        explicit,
        Defaults::HEARTBEAT_INTERVAL,
        identity.clone(),
        false,
    );
    loop {
        tokio::select! {
            () = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let Some(id) = identity.borrow().clone() else {
            continue;
        };
        let req = authed(
            HeartbeatRequest {
                agent_id: id.agent_id.clone(),
                sent_at: Some(timestamp(SystemTime::now())),
                uptime_secs: sysinfo::System::uptime().unwrap_or(0),
                journal_pending: lock(&journal).len() as u64,
            },
            &id.agent_secret,
        );
        let mut client = grpc.borrow().clone();
        tokio::select! {
            r = client.heartbeat(req) => match r {
                Ok(r) => {
                    if r.into_inner().renew_certificate {
                        renew.store(true, Ordering::Relaxed);
                    }
                    tracing::trace!(agent_id = %id.agent_id, "Heartbeat sent");
                }
                Err(status) if status.metadata().get("x-caretaker-revoked").is_some() => {
                    tracing::debug!(agent_id = %id.agent_id, "Heartbeat refused: revoked");
                }
                Err(status) if status.code() == Code::Unauthenticated => {
                    // Full means a re-enrolment is already requested: dropping is fine.
                    let _ = rejected.try_send(id.agent_id.clone());
                }
                Err(status) => tracing::debug!(error = %status.message(), code = ?status.code(), agent_id = %id.agent_id, "Heartbeat failed"),
            },
            () = shutdown.cancelled() => return,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
