//! Caretaker agent: collects this PC's inventory and status, journals every report on disk
//! first, and delivers the journal to the collector over gRPC.
//!
//! ```text
//! collection task ──append──▶ journal (state dir) ──notify──▶ sender task ──Submit──▶ collector
//!   inventory every inventory_interval (sent when changed, or daily)      ◀──acked_seq──
//!   status every status_interval                   heartbeat task ──Heartbeat──▶ collector
//! ```
//!
//! The status and heartbeat intervals are the collector's (sent at enrolment, kept in
//! `identity.json`) unless the config sets them explicitly; see [`schedule`].
//!
//! [`run`] owns the tasks: it spawns the collection, sender and heartbeat tasks on one
//! `TaskTracker`, each in its own span with a child of the `shutdown` token. Collection never
//! waits on the network: it only appends to the journal. When `shutdown` fires, collection
//! stops, the sender makes one final flush bounded by a few seconds and fsyncs the journal,
//! and `run` returns. With `once`, nothing is spawned: one inventory and one status are
//! journalled, everything pending is delivered (with a bounded retry), and `run` returns.

pub mod backoff;
pub mod config;
pub mod identity;
pub mod inventory;
pub mod journal;
pub mod json;
pub mod logfile;
pub mod platform;
pub mod report;
pub mod schedule;
pub use caretaker_proto::sdnotify;
#[cfg(windows)]
pub mod service;
pub mod status;
pub mod tls;
#[cfg(windows)]
pub mod win32;

use std::sync::{Arc, Mutex};

use caretaker_proto::v1::Report;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::config::{Config, Defaults};
use crate::identity::Identity;
use crate::inventory::CollectOptions;
use crate::journal::{Journal, JournalError};
use crate::report::{Client, DeliveryError, SharedJournal};
use crate::schedule::{FollowingTick, Which};
use crate::status::StatusCollector;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot prepare the state directory {path}")]
    StateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the journal")]
    Journal(#[from] JournalError),
    /// The collector could not be reached in time (`--once`); the journal keeps everything.
    #[error("collector unavailable; {pending} reports kept in the journal")]
    Unavailable {
        pending: usize,
        #[source]
        source: Option<DeliveryError>,
    },
    #[error("delivery failed")]
    Delivery(#[from] DeliveryError),
}

/// Whether this process was started by the Windows service manager (always false elsewhere).
pub fn running_as_service() -> bool {
    #[cfg(windows)]
    return service::running_as_service();
    #[cfg(not(windows))]
    false
}

/// Runs the agent until `shutdown` fires (or, with `config.once`, until one round is done).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    platform::prepare_state_dir(&config.state_dir).map_err(|source| RunError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let journal = Journal::open(&config.state_dir, config.journal_max_bytes)?;
    tracing::info!(
        state_dir = %config.state_dir.display(),
        collector = %config.collector,
        pending = journal.len(),
        dropped_total = journal.dropped_total(),
        "Agent starting"
    );
    let journal: SharedJournal = Arc::new(Mutex::new(journal));
    let fingerprint = tokio::task::spawn_blocking(inventory::fingerprint)
        .await
        .unwrap_or_default();
    let client = Client::new(
        &config.collector,
        config.state_dir.clone(),
        config.enroll_token.clone(),
        fingerprint,
    )?;
    if config.once {
        return run_once(&config, client, journal, shutdown).await;
    }

    let notify = Arc::new(Notify::new());
    // Heartbeat → sender: "the collector rejected this agent id". One slot is enough.
    let (rejected_tx, rejected_rx) = tokio::sync::mpsc::channel(1);
    let tracker = TaskTracker::new();
    tracker.spawn(
        collection_task(
            config.clone(),
            client.identity_watch(),
            journal.clone(),
            notify.clone(),
            shutdown.child_token(),
        )
        .instrument(tracing::info_span!("collect")),
    );
    tracker.spawn(
        report::heartbeat_task(
            client.grpc(),
            client.renew_flag(),
            client.identity_watch(),
            rejected_tx,
            journal.clone(),
            config.heartbeat_interval,
            shutdown.child_token(),
        )
        .instrument(tracing::info_span!("heartbeat")),
    );
    tracker.spawn(
        report::sender_task(
            client,
            journal.clone(),
            notify,
            rejected_rx,
            shutdown.child_token(),
        )
        .instrument(tracing::info_span!("send")),
    );
    tracker.close();
    // systemd (Type=notify): running once the tasks are.
    sdnotify::notify("READY=1");
    shutdown.cancelled().await;
    sdnotify::notify("STOPPING=1");
    tracing::info!("Shutting down");
    tracker.wait().await;
    let j = lock(&journal);
    tracing::info!(pending = j.len(), "Agent stopped");
    Ok(())
}

fn lock(journal: &SharedJournal) -> std::sync::MutexGuard<'_, Journal> {
    journal.lock().unwrap_or_else(|e| e.into_inner())
}

fn append(journal: &SharedJournal, mut report: Report, notify: Option<&Notify>) {
    let kind = if matches!(
        report.body,
        Some(caretaker_proto::v1::report::Body::Inventory(_))
    ) {
        "inventory"
    } else {
        "status"
    };
    within_limits(&mut report);
    match lock(journal).append(report) {
        Ok(seq) => {
            tracing::debug!(seq, kind, "Report journalled");
            if let Some(n) = notify {
                n.notify_one();
            }
        }
        Err(error) => {
            tracing::error!(%error, kind, "Cannot journal a report; it is lost");
        }
    }
}

/// Keeps a report inside the bounds the collector enforces, so it is never refused: past
/// them, the lists are cut (and the agent's log says so) rather than the whole report lost.
/// Not marked `missing`: that would make the collector keep an older list instead.
fn within_limits(report: &mut Report) {
    use caretaker_proto::limits::{MAX_ENTRIES, MAX_SOFTWARE, MAX_SOFTWARE_ENTRY_BYTES};
    use caretaker_proto::v1::report::Body;
    let mut cut = Vec::new();
    match &mut report.body {
        Some(Body::Inventory(inventory)) => {
            let before = inventory.software.len();
            inventory
                .software
                .retain(|s| prost::Message::encoded_len(s) <= MAX_SOFTWARE_ENTRY_BYTES);
            if inventory.software.len() > MAX_SOFTWARE || inventory.software.len() < before {
                inventory.software.truncate(MAX_SOFTWARE);
                cut.push(("software", before));
            }
            for (name, n) in [
                ("disks", inventory.disks.len()),
                ("volumes", inventory.volumes.len()),
                ("interfaces", inventory.interfaces.len()),
            ] {
                if n > MAX_ENTRIES {
                    cut.push((name, n));
                }
            }
            inventory.disks.truncate(MAX_ENTRIES);
            inventory.volumes.truncate(MAX_ENTRIES);
            inventory.interfaces.truncate(MAX_ENTRIES);
            for nic in &mut inventory.interfaces {
                nic.ipv4.truncate(MAX_ENTRIES);
                nic.ipv6
                    .truncate(MAX_ENTRIES - nic.ipv4.len().min(MAX_ENTRIES));
            }
        }
        Some(Body::Status(status)) => {
            status.volumes.truncate(MAX_ENTRIES);
            status.logged_on_users.truncate(MAX_ENTRIES);
        }
        None => {}
    }
    for (section, found) in cut {
        tracing::warn!(
            section,
            found,
            "Past what one report may carry; sending the first part"
        );
    }
}

fn collect_options(config: &Config) -> CollectOptions {
    CollectOptions {
        timeout: config.collect_timeout,
        wmi_timeout: config.wmi_timeout,
        dpkg_admindir: config.dpkg_admindir.clone(),
    }
}

/// One round: inventory + status into the journal, then deliver everything pending.
async fn run_once(
    config: &Config,
    mut client: Client,
    journal: SharedJournal,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let inv = inventory::collect(&collect_options(config)).await;
    append(&journal, inv, None);
    let dropped = lock(&journal).dropped_total();
    let status = StatusCollector::new(config.collect_timeout)
        .collect(dropped)
        .await;
    append(&journal, status, None);

    let deadline = Instant::now() + config.once_deadline;
    let mut backoff = Backoff::new();
    let mut last_error = None;
    loop {
        let attempt = tokio::select! {
            r = tokio::time::timeout_at(deadline, client.flush(&journal)) => r,
            () = shutdown.cancelled() => break,
        };
        match attempt {
            Ok(Ok(delivered)) => {
                tracing::info!(delivered, "All reports delivered");
                lock(&journal).sync()?;
                return Ok(());
            }
            Ok(Err(error)) if error.is_unavailable() => {
                tracing::debug!(%error, "Collector unavailable; retrying");
                last_error = Some(error);
            }
            Ok(Err(error)) => return Err(error.into()),
            Err(_elapsed) => break,
        }
        let wake = (Instant::now() + backoff.next_delay()).min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = shutdown.cancelled() => break,
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let mut j = lock(&journal);
    j.sync()?;
    Err(RunError::Unavailable {
        pending: j.len(),
        source: last_error,
    })
}

/// Collects inventory and status on their intervals and journals them.
async fn collection_task(
    config: Config,
    identity: watch::Receiver<Option<Identity>>,
    journal: SharedJournal,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let opts = collect_options(&config);
    let mut status = StatusCollector::new(config.collect_timeout);
    let mut inventory_tick = tokio::time::interval(config.inventory_interval);
    inventory_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status_tick = FollowingTick::new(
        Which::Status,
        config.status_interval,
        Defaults::STATUS_INTERVAL,
        identity,
        true,
    );
    let mut last: Option<([u8; 32], Instant)> = None;
    loop {
        tokio::select! {
            // Biased: at start-up the inventory goes into the journal before the first status.
            biased;
            () = shutdown.cancelled() => return,
            _ = inventory_tick.tick() => {
                let report = tokio::select! {
                    r = inventory::collect(&opts) => r,
                    () = shutdown.cancelled() => return,
                };
                let digest = inventory::change_digest(&report);
                let due = match last {
                    None => true,
                    Some((d, at)) => d != digest || at.elapsed() >= config.inventory_resend,
                };
                if due {
                    tracing::info!(missing = ?report.missing, "Inventory changed or due; journalling it");
                    append(&journal, report, Some(&notify));
                    last = Some((digest, Instant::now()));
                } else {
                    tracing::debug!("Inventory unchanged");
                }
            }
            () = status_tick.tick() => {
                let dropped = lock(&journal).dropped_total();
                let report = tokio::select! {
                    r = status.collect(dropped) => r,
                    () = shutdown.cancelled() => return,
                };
                append(&journal, report, Some(&notify));
            }
        }
    }
}

#[cfg(test)]
mod limits_tests {
    use caretaker_proto::v1::{Inventory, Report, Software, report::Body};

    #[test]
    fn an_inventory_past_the_bounds_is_cut_and_marked_not_refused() {
        let mut report = Report {
            body: Some(Body::Inventory(Inventory {
                software: (0..50_000)
                    .map(|i| Software {
                        name: format!("p{i}"),
                        ..Default::default()
                    })
                    .chain(std::iter::once(Software {
                        name: "x".repeat(10_000),
                        ..Default::default()
                    }))
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        };
        super::within_limits(&mut report);
        let Some(Body::Inventory(inventory)) = &report.body else {
            panic!("inventory");
        };
        assert_eq!(
            inventory.software.len(),
            caretaker_proto::limits::MAX_SOFTWARE
        );
        assert!(inventory.software.iter().all(|s| s.name.len() < 100));
        assert!(report.missing.is_empty());
    }
}
