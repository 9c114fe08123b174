//! The daemon's discovery loops, above the `scan` library: one scan of the configured ranges
//! every `[scan] interval`, each result handed to the register writer, and quick watch pings
//! of known devices between sweeps. A scan that overruns the interval delays the
//! next one (never two at once). Stops when its token is cancelled, mid-scan included.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::register::{Job, Register};
use crate::scan::{CredentialMemory, ScanOptions, Scope, SweepOptions, dns::ReverseDns};

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
        let sweep = match crate::scan::run(&scope, &options, &memory, &dns, &(), &cancel).await {
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

/// Re-pings the devices the register knows answer ping, every `every`, between full sweeps,
/// so a device going down is noticed in `every × misses` rather than a sweep interval.
pub async fn watch(
    scope: Scope,
    options: SweepOptions,
    every: Duration,
    store: std::sync::Arc<dyn crate::store::Store>,
    register: Register,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; the first full sweep covers that moment.
    ticker.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let store = store.clone();
        let known = tokio::task::spawn_blocking(move || store.assets()).await;
        let assets = match known {
            Ok(Ok(assets)) => assets,
            Ok(Err(error)) => {
                tracing::warn!(%error, "Cannot read the register for watch pings");
                continue;
            }
            Err(_) => return,
        };
        let mut by_ip: std::collections::HashMap<std::net::Ipv4Addr, String> =
            std::collections::HashMap::new();
        for asset in assets
            .iter()
            .filter(|a| a.sources.contains(&crate::model::Source::Ping))
        {
            for ip in scope.addresses_of(asset) {
                by_ip.insert(ip, asset.id.clone());
            }
        }
        if by_ip.is_empty() {
            continue;
        }
        let mut targets: Vec<_> = by_ip.keys().copied().collect();
        rand::seq::SliceRandom::shuffle(targets.as_mut_slice(), &mut rand::rng());
        // One attempt, no retries: a miss only counts towards `misses`.
        let quick = SweepOptions {
            retries: 0,
            ..options.clone()
        };
        let at = time::OffsetDateTime::now_utc();
        let alive = match crate::scan::ping::sweep(&scope, targets, &quick, &(), &cancel).await {
            Ok(alive) => alive,
            Err(error) => {
                tracing::error!(%error, "Watch pings failed");
                continue;
            }
        };
        if cancel.is_cancelled() {
            return;
        }
        let answered: std::collections::HashMap<_, _> =
            alive.iter().map(|a| (a.ip, a.rtt)).collect();
        // An asset with several addresses is up when any of them answers.
        let mut per_asset: std::collections::HashMap<String, (bool, u32)> =
            std::collections::HashMap::new();
        for (ip, asset) in &by_ip {
            let entry = per_asset.entry(asset.clone()).or_insert((false, 0));
            if let Some(rtt) = answered.get(ip) {
                *entry = (true, rtt.as_micros().min(u128::from(u32::MAX)) as u32);
            }
        }
        let results = per_asset
            .into_iter()
            .map(|(asset, (up, rtt))| (asset, up, rtt))
            .collect();
        if register.send(Job::Watch { at, results }).await.is_err() {
            return;
        }
    }
}
