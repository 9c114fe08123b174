//! The daemon's discovery loop: one scan of the configured ranges every `[scan] interval`,
//! each result handed to the register writer. A scan that overruns the interval delays the
//! next one (never two at once). Stops when its token is cancelled, mid-scan included.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CredentialMemory, ScanOptions, Scope, dns::ReverseDns};
use crate::register::{Job, Register};

pub async fn run(
    scope: Scope,
    options: ScanOptions,
    interval: Duration,
    register: Register,
    cancel: CancellationToken,
) {
    let memory = CredentialMemory::default();
    let dns = ReverseDns::from_system(Duration::from_secs(1));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let started = std::time::Instant::now();
        let sweep = match super::run(&scope, &options, &memory, &dns, &(), &cancel).await {
            Ok(sweep) => sweep,
            Err(error) => {
                tracing::error!(%error, "Network scan failed");
                continue;
            }
        };
        if cancel.is_cancelled() {
            return;
        }
        let probed = sweep.probed;
        let (reply, done) = tokio::sync::oneshot::channel();
        if register
            .send(Job::Discovery {
                sweep: Box::new(sweep),
                reply,
            })
            .await
            .is_err()
        {
            return;
        }
        match done.await {
            Ok(Ok(summary)) => tracing::info!(
                probed,
                live = summary.live,
                new = summary.new_assets,
                changes = summary.changes,
                down = summary.down,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Network scan merged into the register"
            ),
            Ok(Err(error)) => tracing::error!(%error, "Could not store a network scan"),
            Err(_) => return,
        }
    }
}
