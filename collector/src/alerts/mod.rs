//! Email alerts: incident events become threaded, storm-controlled emails through a durable
//! outbox in the store.
//!
//! One task ([`run`], spawned by `app` through [`spawn`]) owns this module. Every
//! `poll_interval` it
//! 1. reads incident events after the `alerts.cursor` meta key, plans mail for them
//!    ([`plan::plan`]: pure) and commits the new outbox entries *with* the advanced cursor in one
//!    [`WriteSet`], so a crash neither loses nor duplicates an alert;
//! 2. every 30 s, plans escalations for open incidents left unacknowledged past their target;
//! 3. sends due entries: each is marked `sending` (attempts + 1, `due_at` = attempt time) in a
//!    commit before its SMTP transaction, then `sent` (with `sent_at` and the server's reply),
//!    `pending` again with a backoff (`retry_initial` doubling to `retry_max`) on a 4xx or an
//!    unreachable server, or `failed` on a 5xx.
//!
//! Delivery is at least once and at most once per entry as far as SMTP allows: an entry found
//! `sending` after a restart was perhaps accepted just before the crash; it is sent again
//! with the *same* Message-ID, and mail clients and most servers drop the duplicate by that
//! id. Permanent failures are logged once at ERROR; an outage is logged once at WARN and its
//! end at INFO. Store calls run in `spawn_blocking`. The task stops when its token is
//! cancelled, between two SMTP transactions.

pub mod config;
pub mod plan;
pub mod render;
pub mod send;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, warn};

use self::config::{Policy, SmtpConfig};
use self::plan::PlanInput;
use self::render::AssetContext;
use self::send::{Mailer, retry_delay};
use crate::model::{Incident, OutboxEntry};
use crate::store::{ChangeQuery, Store, StoreError, WriteSet, blocking};

pub use self::send::test_email;

/// The meta key holding the last incident event seq that was planned.
pub const CURSOR_KEY: &str = "alerts.cursor";
/// Events planned per store round trip.
const EVENT_BATCH: usize = 500;
/// How often open incidents are checked against their response targets.
const ESCALATION_EVERY: Duration = Duration::from_secs(30);
/// Entries marked `sending` per commit: a crash resends at most this many (same Message-IDs).
const SEND_BATCH: usize = 16;
/// Change records shown as the asset's recent history.
const HISTORY: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{address:?} is not a usable email address: {reason}")]
    Address { address: String, reason: String },
    #[error("cannot get the SMTP password: {reason}")]
    Password { reason: String },
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {reason}")]
    Tls { reason: String },
    #[error(
        "sending through the mail server failed (connection, TLS or the server refused): {reason}"
    )]
    Send { reason: String },
    #[error("alert planning could not use the store: {0}")]
    Store(#[from] StoreError),
}

/// Spawns [`run`] on `tracker` in an `alerts` span.
pub fn spawn(
    tracker: &TaskTracker,
    store: Arc<dyn Store>,
    config: SmtpConfig,
    sla: Arc<crate::sla::Settings>,
    cancel: CancellationToken,
) {
    tracker.spawn(run(store, config, sla, cancel).instrument(tracing::info_span!("alerts")));
}

/// The alerting task; returns when `cancel` fires (or at once when SMTP cannot be set up).
/// Beside incident mail it plans the service-level warnings and the monthly report
/// (`sla::mail`), on the escalation check's schedule.
pub async fn run(
    store: Arc<dyn Store>,
    config: SmtpConfig,
    sla: Arc<crate::sla::Settings>,
    cancel: CancellationToken,
) {
    let policy = Arc::new(config.policy());
    let password = match config.password(|k| std::env::var(k).ok()) {
        Ok(p) => p,
        Err(reason) => {
            error!(%reason, "Email alerts are off: the SMTP password cannot be read");
            return;
        }
    };
    let mailer = match Mailer::new(&config, password) {
        Ok(m) => m,
        Err(error) => {
            error!(%error, "Email alerts are off: the SMTP client cannot be set up");
            return;
        }
    };
    let mut sender = Sender::new(&config);
    let mut tick = tokio::time::interval(config.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_escalation = tokio::time::Instant::now();
    let sla_events = Arc::new(std::sync::Mutex::new(
        crate::sla::mail::EventCache::default(),
    ));
    info!(server = %config.server, port = config.port, "Email alerts running");
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(error) = plan_pending(&store, &policy, OffsetDateTime::now_utc()).await {
            warn!(%error, "Alert planning failed; retrying");
        }
        if tokio::time::Instant::now() >= next_escalation {
            next_escalation = tokio::time::Instant::now() + ESCALATION_EVERY;
            if let Err(error) =
                plan_escalation_mail(&store, &policy, OffsetDateTime::now_utc()).await
            {
                warn!(%error, "Escalation check failed; retrying");
            }
            if let Err(error) = plan_service_levels(&store, &sla, &policy, &sla_events).await {
                warn!(%error, "Service-level check failed; retrying");
            }
        }
        if let Err(error) = sender.send_due(&store, &mailer, &cancel).await {
            warn!(%error, "Alert sending could not use the store; retrying");
        }
    }
    info!("Email alerts stopped");
}

/// The asset context of each incident's asset.
fn asset_contexts<'a>(
    store: &dyn Store,
    incidents: impl Iterator<Item = &'a Incident>,
) -> Result<HashMap<String, AssetContext>, StoreError> {
    let mut out = HashMap::new();
    for incident in incidents {
        if out.contains_key(&incident.asset_id) {
            continue;
        }
        let asset = store.asset(&incident.asset_id)?;
        let recent = store.changes(&ChangeQuery {
            asset: Some(incident.asset_id.clone()),
            since: None,
            limit: HISTORY,
        })?;
        let location = store
            .snmp(&incident.asset_id)?
            .map(|snmp| snmp.system.location)
            .filter(|l| !l.trim().is_empty());
        out.insert(
            incident.asset_id.clone(),
            AssetContext {
                asset,
                recent,
                location,
            },
        );
    }
    Ok(out)
}

/// Plans mail for every event after the cursor; returns how many entries were committed.
pub async fn plan_pending(
    store: &Arc<dyn Store>,
    policy: &Arc<Policy>,
    now: OffsetDateTime,
) -> Result<usize, AlertError> {
    let store = Arc::clone(store);
    let policy = Arc::clone(policy);
    blocking(move || {
        let mut written = 0;
        loop {
            let cursor = store.meta(CURSOR_KEY)?.unwrap_or(0);
            let events = store.incident_events(cursor, EVENT_BATCH)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(written);
            };
            let mut incidents = HashMap::new();
            for event in &events {
                if !incidents.contains_key(&event.incident_id)
                    && let Some(incident) = store.incident(&event.incident_id)?
                {
                    incidents.insert(incident.id.clone(), incident);
                }
            }
            let outbox = store.outbox()?;
            // Incidents listed in digests that are still collecting are re-rendered too.
            for entry in outbox.iter().filter(|e| e.status == "pending") {
                for id in &entry.incident_ids {
                    if !incidents.contains_key(id)
                        && let Some(incident) = store.incident(id)?
                    {
                        incidents.insert(incident.id.clone(), incident);
                    }
                }
            }
            let assets = asset_contexts(store.as_ref(), incidents.values())?;
            let entries = plan::plan(
                &policy,
                &PlanInput {
                    now,
                    events: &events,
                    incidents: &incidents,
                    assets: &assets,
                    outbox: &outbox,
                },
            );
            written += entries.len();
            store.commit(WriteSet {
                outbox: entries,
                meta: vec![(CURSOR_KEY.to_owned(), last)],
                ..WriteSet::default()
            })?;
            if events.len() < EVENT_BATCH {
                return Ok(written);
            }
        }
    })
    .await
}

/// Plans and commits escalations due at `now`; returns how many entries were committed.
pub async fn plan_escalation_mail(
    store: &Arc<dyn Store>,
    policy: &Arc<Policy>,
    now: OffsetDateTime,
) -> Result<usize, AlertError> {
    let store = Arc::clone(store);
    let policy = Arc::clone(policy);
    blocking(move || {
        let incidents: HashMap<String, Incident> = store
            .incidents()?
            .into_iter()
            .filter(|i| i.state.is_open() && i.acknowledged_at.is_none())
            .map(|i| (i.id.clone(), i))
            .collect();
        if incidents.is_empty() {
            return Ok(0);
        }
        let outbox = store.outbox()?;
        // Only incidents that are due get their asset context read.
        let due: HashMap<String, Incident> = incidents
            .into_iter()
            .filter(|(_, i)| {
                usize::from(i.priority)
                    .checked_sub(1)
                    .and_then(|p| policy.escalate_after.get(p).copied().flatten())
                    .is_some_and(|after| now >= i.opened_at + after)
            })
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let assets = asset_contexts(store.as_ref(), due.values())?;
        let entries = plan::plan_escalations(&policy, now, &due, &assets, &outbox);
        let n = entries.len();
        if n > 0 {
            store.commit(WriteSet {
                outbox: entries,
                ..WriteSet::default()
            })?;
        }
        Ok(n)
    })
    .await
}

/// Plans the SLA warnings and the monthly report due now (`sla::mail`).
async fn plan_service_levels(
    store: &Arc<dyn Store>,
    sla: &Arc<crate::sla::Settings>,
    policy: &Arc<Policy>,
    cache: &Arc<std::sync::Mutex<crate::sla::mail::EventCache>>,
) -> Result<(), AlertError> {
    let (store, sla, policy, cache) = (
        Arc::clone(store),
        Arc::clone(sla),
        Arc::clone(policy),
        Arc::clone(cache),
    );
    blocking(move || {
        let now = OffsetDateTime::now_utc();
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        let warned =
            crate::sla::mail::plan_warnings(store.as_ref(), &sla, &policy, &mut cache, now)?;
        if warned > 0 {
            info!(warnings = warned, "Service-level warnings planned");
        }
        if let Some(month) = crate::sla::mail::plan_monthly(store.as_ref(), &sla, now)? {
            info!(%month, "Monthly service-level report planned");
        }
        Ok::<(), AlertError>(())
    })
    .await
}

/// The sending half: outage state lives here, everything else in the outbox.
struct Sender {
    retry_initial: Duration,
    retry_max: Duration,
    /// Consecutive failed attempts to reach the server; 0 when it is reachable.
    outage: u32,
    paused_until: Option<tokio::time::Instant>,
}

impl Sender {
    fn new(config: &SmtpConfig) -> Self {
        Self {
            retry_initial: config.retry_initial,
            retry_max: config.retry_max,
            outage: 0,
            paused_until: None,
        }
    }

    async fn commit_entries(
        store: &Arc<dyn Store>,
        entries: Vec<OutboxEntry>,
    ) -> Result<(), AlertError> {
        let store = Arc::clone(store);
        blocking(move || {
            store.commit(WriteSet {
                outbox: entries,
                ..WriteSet::default()
            })
        })
        .await?;
        Ok(())
    }

    /// Sends every due entry (and entries left `sending` by a crash), oldest first.
    async fn send_due(
        &mut self,
        store: &Arc<dyn Store>,
        mailer: &Mailer,
        cancel: &CancellationToken,
    ) -> Result<(), AlertError> {
        if self
            .paused_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
        {
            return Ok(());
        }
        let all = {
            let store = Arc::clone(store);
            blocking(move || store.outbox()).await?
        };
        let mut candidates: Vec<OutboxEntry> = all
            .into_iter()
            .filter(|e| e.status == "pending" || e.status == "sending")
            .collect();
        candidates.sort_by(|a, b| {
            (a.status != "sending")
                .cmp(&(b.status != "sending"))
                .then(a.due_at.cmp(&b.due_at))
                .then_with(|| a.created_at.cmp(&b.created_at))
        });
        let mut recovered = false;
        let mut queue = candidates;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let now = OffsetDateTime::now_utc();
            // After an outage ends, mail waiting out its backoff goes at once.
            let is_due = |e: &OutboxEntry| {
                e.status == "sending"
                    || e.due_at <= now
                    || (recovered && e.attempts > 0 && !e.last_error.is_empty())
            };
            // A batch goes out concurrently, so it holds at most one mail per incident:
            // an opening and its recovery still arrive in order.
            let mut originals: Vec<OutboxEntry> = Vec::new();
            let mut rest = Vec::with_capacity(queue.len());
            for entry in queue {
                let clash = originals.iter().any(|o| {
                    o.to == entry.to
                        && o.incident_ids
                            .iter()
                            .any(|i| entry.incident_ids.contains(i))
                });
                if originals.len() < SEND_BATCH && !clash && is_due(&entry) {
                    originals.push(entry);
                } else {
                    rest.push(entry);
                }
            }
            queue = rest;
            if originals.is_empty() {
                break;
            }
            // Marked `sending` in one commit before any of them is handed to the server.
            let mut batch = originals.clone();
            for entry in &mut batch {
                entry.status = "sending".to_owned();
                entry.attempts += 1;
                entry.due_at = now;
            }
            Self::commit_entries(store, batch.clone()).await?;
            let outcomes =
                futures_util::future::join_all(batch.iter().map(|e| mailer.send(e))).await;
            let mut results = Vec::with_capacity(batch.len());
            let mut stop = false;
            for (mut entry, outcome) in batch.into_iter().zip(outcomes) {
                match outcome {
                    Ok(reply) => {
                        if self.outage > 0 || !entry.last_error.is_empty() {
                            info!(entry_id = %entry.id, "Mail server accepts alert email again");
                            recovered = true;
                        }
                        self.outage = 0;
                        self.paused_until = None;
                        entry.status = "sent".to_owned();
                        entry.sent_at = Some(OffsetDateTime::now_utc());
                        entry.server_reply = reply;
                        entry.last_error.clear();
                    }
                    Err(failure) if failure.permanent => {
                        error!(
                            entry_id = %entry.id,
                            to = %entry.to.join(", "),
                            reason = %failure.reason,
                            "Mail server refused an alert email permanently; it will not be retried"
                        );
                        entry.status = "failed".to_owned();
                        entry.server_reply.clone_from(&failure.reason);
                        entry.last_error = failure.reason;
                    }
                    Err(failure) => {
                        if self.outage == 0 {
                            warn!(
                                entry_id = %entry.id,
                                reason = %failure.reason,
                                "Alert email could not be sent; retrying with backoff"
                            );
                        }
                        let delay = retry_delay(entry.attempts, self.retry_initial, self.retry_max);
                        entry.status = "pending".to_owned();
                        entry.due_at = OffsetDateTime::now_utc() + delay;
                        entry.last_error = failure.reason;
                        if failure.unreachable {
                            self.outage += 1;
                            let pause =
                                retry_delay(self.outage, self.retry_initial, self.retry_max);
                            self.paused_until = Some(tokio::time::Instant::now() + pause);
                            stop = true;
                        }
                    }
                }
                results.push(entry);
            }
            Self::commit_entries(store, results).await?;
            if stop {
                break;
            }
        }
        Ok(())
    }
}

/// The outbox for `GET /api/v1/outbox`: counts by status and the newest `limit` entries
/// (without bodies), each with its attempts, last error and the server's reply.
pub fn outbox_view(entries: &[OutboxEntry], limit: usize) -> serde_json::Value {
    let mut counts = serde_json::Map::new();
    for status in ["pending", "sending", "sent", "failed"] {
        let n = entries.iter().filter(|e| e.status == status).count();
        counts.insert(status.to_owned(), n.into());
    }
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let list: Vec<serde_json::Value> = entries
        .iter()
        .rev()
        .take(limit)
        .map(|e| {
            serde_json::json!({
                "id": e.id,
                "status": e.status,
                "to": e.to,
                "subject": e.subject,
                "created_at": rfc(e.created_at),
                "due_at": rfc(e.due_at),
                "sent_at": e.sent_at.map(rfc),
                "attempts": e.attempts,
                "last_error": e.last_error,
                "server_reply": e.server_reply,
                "message_id": e.message_id,
                "in_reply_to": e.in_reply_to,
                "incident_ids": e.incident_ids,
            })
        })
        .collect();
    serde_json::json!({ "counts": counts, "entries": list })
}

#[cfg(test)]
mod tests;
