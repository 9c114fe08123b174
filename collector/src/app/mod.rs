//! Wires the collector's tasks together: store, register writer, ingest (gRPC), API (HTTP),
//! discovery (`discovery`: sweeps and watch pings), rule ticks, retention and alerts.
//!
//! [`App::start`] binds the listeners, spawns every task on one [`TaskTracker`] under a child
//! of the caller's cancellation token, and returns the bound addresses and tokens (tests and
//! `demo` may listen on port 0; the addresses also go to [`Listening::FILE`] in the data
//! directory, for other processes). [`App::wait`] returns when the token is cancelled or a server
//! fails, after draining within one deadline ([`SHUTDOWN_DEADLINE`]): servers stop accepting
//! and finish in-flight requests, the tasks end, then the register writer is stopped and
//! joined (it commits what it holds). Whatever is still unfinished at the deadline was never
//! acknowledged, so stopping then loses nothing.

pub mod discovery;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use caretaker_proto::v1::agent_service_server::AgentServiceServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::agents::{Agents, IngestStats};
use crate::config::Config;
use crate::http::{self, ApiState};
use crate::ingest::IngestService;
use crate::register;
use crate::store::{Reopening, SledStore, Store, StoreError};

/// How long draining may take, from the signal to the writer's last commit.
pub const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot prepare {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or create the token file {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the collector's PKI: {0}")]
    Pki(#[source] crate::pki::PkiError),
    #[error("the {server} server failed: {message}")]
    Server {
        server: &'static str,
        message: String,
    },
}

impl AppError {
    /// The process exit code for this failure (see STYLE.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Store(_)
            | AppError::DataDir { .. }
            | AppError::Token { .. }
            | AppError::Pki(_) => 74,
            AppError::Bind { .. } => 69,
            AppError::Server { .. } => 1,
        }
    }
}

pub struct App {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub api_token: String,
    pub enroll_token: String,
    pub data_dir: PathBuf,
    pub store: Arc<dyn Store>,
    pub stats: Arc<IngestStats>,
    pub pki: Arc<crate::pki::Pki>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    failure: tokio::sync::mpsc::Receiver<AppError>,
    writer: register::Writer,
}

impl App {
    pub async fn start(config: Config, parent: &CancellationToken) -> Result<Self, AppError> {
        let data_dir = config.data_dir.clone();
        create_private_dir(&data_dir)?;
        let api_token = load_or_create_token(
            config.http.api_token_file.as_deref(),
            &data_dir.join("api-token"),
        )?;
        let store_dir = data_dir.join("store");
        let store: Arc<dyn Store> = Arc::new(
            tokio::task::spawn_blocking(move || {
                Reopening::new(move || Ok(Arc::new(SledStore::open(&store_dir)?) as Arc<dyn Store>))
            })
            .await
            .expect("store open task")?,
        );
        let agents = Agents::load(store.as_ref())?;
        let stats = Arc::new(IngestStats::default());
        let health = Arc::new(crate::health::Health::default());
        let options = register_options(&config);
        let (register, writer) = {
            let (store, agents, stats, health) =
                (store.clone(), agents.clone(), stats.clone(), health.clone());
            tokio::task::spawn_blocking(move || {
                register::start(store, options, agents, stats, health)
            })
            .await
            .expect("register start task")?
        };
        let grpc_listener = tokio::net::TcpListener::bind(config.grpc.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.grpc.listen,
                source,
            })?;
        let pki = {
            let (dir, tls, port) = (
                data_dir.clone(),
                config.tls.clone(),
                grpc_listener.local_addr().map(|a| a.port()).unwrap_or(0),
            );
            let configured = config.grpc.enroll_token_file.clone();
            tokio::task::spawn_blocking(move || {
                let pki = crate::pki::Pki::open(&dir, tls, port)?;
                let token = pki.file_token(configured.as_deref(), &dir.join("enroll-token"))?;
                Ok::<_, crate::pki::PkiError>((Arc::new(pki), token))
            })
            .await
            .expect("pki open task")
        };
        let (pki, enroll_token) = pki.map_err(AppError::Pki)?;
        if config.tls.plaintext {
            tracing::warn!(
                "[tls] plaintext = true: the gRPC port also accepts PLAINTEXT connections; \
                 enrolment tokens, agent secrets and reports can then cross the network \
                 unencrypted and unauthenticated by certificate. Use this only to move old \
                 agents over."
            );
        }
        let service = IngestService::new(
            register.clone(),
            agents.clone(),
            pki.clone(),
            config.agents.clone(),
            stats.clone(),
        );
        let http_listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.http.listen,
                source,
            })?;
        let grpc_addr = grpc_listener
            .local_addr()
            .expect("bound socket has an address");
        let http_addr = http_listener
            .local_addr()
            .expect("bound socket has an address");

        let shutdown = parent.child_token();
        let tracker = TaskTracker::new();
        let (fail_tx, failure) = tokio::sync::mpsc::channel(2);

        let grpc_connections = crate::conn::Connections::new(config.grpc.limits().timeouts);
        let grpc = crate::conn::grpc_server(&config.grpc.limits())
            .layer(grpc_connections.layer(crate::conn::grpc_peer))
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                config.grpc.max_concurrent_requests,
            ))
            .layer(crate::ingest::status_codes_layer())
            .add_service(
                AgentServiceServer::new(service)
                    .max_decoding_message_size(config.grpc.max_message_bytes),
            );
        {
            let token = shutdown.clone();
            let fail = fail_tx.clone();
            let pki = pki.clone();
            tracker.spawn(
                async move {
                    let incoming = crate::pki::listener::incoming(
                        grpc_listener,
                        pki,
                        grpc_connections,
                        token.clone(),
                    );
                    if let Err(error) = grpc
                        .serve_with_incoming_shutdown(incoming, token.cancelled())
                        .await
                    {
                        let _ = fail
                            .send(AppError::Server {
                                server: "gRPC",
                                message: error.to_string(),
                            })
                            .await;
                    }
                }
                .instrument(tracing::info_span!("grpc", addr = %grpc_addr)),
            );
        }
        let snapshots = Arc::new(crate::backup::Snapshots {
            data_dir: data_dir.clone(),
            skip: config.backup.iter().map(|b| b.dir(&data_dir)).collect(),
            register: register.clone(),
        });
        // Sweeps and alerts run under tokens of their own, so a reload can restart them.
        let spawn_scan: crate::reload::Spawn = {
            let (tracker, store, register) = (tracker.clone(), store.clone(), register.clone());
            Box::new(move |config: &Config, token: CancellationToken| {
                if config.scan.scope.ranges().is_empty() {
                    tracing::info!("No [scan] ranges: nothing is swept");
                    return;
                }
                let scope = config.scan.scope.clone();
                let options = scan_options(config);
                tracker.spawn(
                    discovery::watch(
                        scope.clone(),
                        options.sweep.clone(),
                        config.scan.watch_interval,
                        store.clone(),
                        register.clone(),
                        token.clone(),
                    )
                    .instrument(tracing::info_span!("watch")),
                );
                tracker.spawn(
                    discovery::run(
                        scope,
                        options,
                        config.scan.interval,
                        register.clone(),
                        token,
                    )
                    .instrument(tracing::info_span!("scan")),
                );
            })
        };
        let spawn_alerts: crate::reload::Spawn = {
            let (tracker, store) = (tracker.clone(), store.clone());
            Box::new(
                move |config: &Config, token: CancellationToken| match &config.smtp {
                    Some(smtp) => crate::alerts::spawn(
                        &tracker,
                        store.clone(),
                        smtp.clone(),
                        Arc::new(crate::sla::Settings::from_config(config)),
                        token,
                    ),
                    None => {
                        tracing::warn!(
                            "No [smtp] section: incidents are opened but nobody is emailed"
                        );
                    }
                },
            )
        };
        let school_hours = Arc::new(std::sync::RwLock::new(Arc::new(config.hours.clone())));
        let reloader = crate::reload::Reloader::start(
            config.clone(),
            register.clone(),
            school_hours.clone(),
            spawn_scan,
            spawn_alerts,
            shutdown.clone(),
        );
        #[cfg(unix)]
        {
            let (reloader, token) = (reloader.clone(), shutdown.clone());
            tracker.spawn(
                async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let Ok(mut hup) = signal(SignalKind::hangup()) else {
                        tracing::warn!(
                            "Cannot listen for SIGHUP; use `caretaker-collector reload`"
                        );
                        return;
                    };
                    loop {
                        tokio::select! {
                            () = token.cancelled() => return,
                            _ = hup.recv() => {}
                        }
                        if let Err(error) = reloader.reload().await {
                            tracing::error!(%error, "SIGHUP: config not reloaded");
                        }
                    }
                }
                .instrument(tracing::info_span!("reload")),
            );
        }
        let ops = Arc::new(crate::ops::Ops {
            reloader,
            school_hours,
            snapshots: snapshots.clone(),
            metrics: config.metrics.clone(),
        });
        if let Some(backup) = &config.backup {
            tracker.spawn(
                crate::backup::run_daily(snapshots.clone(), backup.clone(), shutdown.clone())
                    .instrument(tracing::info_span!("backup")),
            );
        }
        {
            let web = crate::web::Web::new(&config, store.clone(), register.clone(), http_addr)?;
            let state = ApiState {
                ops: ops.clone(),
                store: store.clone(),
                agents,
                stats: stats.clone(),
                health: health.clone(),
                api_token: api_token.clone().into(),
                stale_after: config.agents.stale_after,
                reach_stale_after: config.agents.stale_after.max(config.scan.interval * 3),
                register: register.clone(),
                school_hours: Arc::new(config.hours.clone()),
                web,
                pki: pki.clone(),
            };
            let token = shutdown.clone();
            let limits = config.http.limits();
            let https = if config.tls.https {
                Some(pki.https_config().map_err(AppError::Pki)?)
            } else {
                None
            };
            if let Some(redirect) = config.tls.http_redirect_listen.filter(|_| https.is_some()) {
                let listener = tokio::net::TcpListener::bind(redirect)
                    .await
                    .map_err(|source| AppError::Bind {
                        addr: redirect,
                        source,
                    })?;
                let token = shutdown.clone();
                let port = http_addr.port();
                tracker.spawn(
                    async move {
                        if let Err(error) = http::tls::redirect(listener, port, token).await {
                            tracing::error!(%error, "The HTTP-to-HTTPS redirect stopped");
                        }
                    }
                    .instrument(tracing::info_span!("redirect", addr = %redirect)),
                );
            }
            tracker.spawn(
                async move {
                    let served = match https {
                        Some(tls) => {
                            http::tls::serve(http_listener, state, tls, limits, token).await
                        }
                        None => http::serve(http_listener, state, limits, token).await,
                    };
                    if let Err(error) = served {
                        let _ = fail_tx
                            .send(AppError::Server {
                                server: "HTTP",
                                message: error.to_string(),
                            })
                            .await;
                    }
                }
                .instrument(tracing::info_span!("http", addr = %http_addr)),
            );
        }
        {
            // The rules run on a timer too, so conditions that only time reveals (an agent
            // gone silent, a hold-down ending) are noticed without new data.
            let token = shutdown.clone();
            let register = register.clone();
            let every = config.incidents.evaluate_every;
            tracker.spawn(
                async move {
                    let mut ticker = tokio::time::interval(every);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            () = token.cancelled() => return,
                            _ = ticker.tick() => {}
                        }
                        register.try_send(register::Job::Tick {
                            at: time::OffsetDateTime::now_utc(),
                        });
                    }
                }
                .instrument(tracing::info_span!("rules")),
            );
        }
        {
            // Certificate lifetimes for the expiry rule: at start, hourly, and whenever the
            // PKI issues, revokes or rotates.
            let (token, register, pki) = (shutdown.clone(), register.clone(), pki.clone());
            let warn_before = time::Duration::try_from(config.tls.warn_before)
                .unwrap_or(time::Duration::days(30));
            tracker.spawn(
                async move {
                    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(3600));
                    loop {
                        tokio::select! {
                            () = token.cancelled() => return,
                            _ = ticker.tick() => {}
                            () = pki.changed.notified() => {}
                        }
                        let (agents, cas) = pki.expiries();
                        register.try_send(register::Job::Certificates {
                            agents,
                            cas,
                            warn_before,
                        });
                    }
                }
                .instrument(tracing::info_span!("certificates")),
            );
        }
        tracker.spawn(
            crate::retention::run(store.clone(), config.retention.clone(), shutdown.clone())
                .instrument(tracing::info_span!("retention")),
        );
        let register_for_watchdog = register.clone();
        drop(register);
        tracker.close();
        Listening {
            pid: std::process::id(),
            grpc: grpc_addr,
            http: http_addr,
        }
        .write(&data_dir)?;
        tracing::info!(grpc = %grpc_addr, http = %http_addr, data_dir = %data_dir.display(),
            "Collector ready");
        crate::sdnotify::notify(&format!(
            "READY=1\nSTATUS=Agents on {grpc_addr}, API on {http_addr}"
        ));
        if let Some(every) = crate::sdnotify::watchdog_interval() {
            let (register, token) = (register_for_watchdog, shutdown.clone());
            tracker.spawn(
                watchdog(register, every, token, |m| {
                    crate::sdnotify::notify(m);
                })
                .instrument(tracing::info_span!("watchdog")),
            );
        }
        Ok(Self {
            grpc_addr,
            http_addr,
            api_token,
            enroll_token,
            data_dir,
            store,
            stats,
            pki,
            shutdown,
            tracker,
            failure,
            writer,
        })
    }

    /// Runs until the parent token is cancelled or a server fails, then drains (see the
    /// module comment).
    pub async fn wait(mut self) -> Result<(), AppError> {
        let failed = tokio::select! {
            () = self.shutdown.cancelled() => None,
            failure = self.failure.recv() => failure,
        };
        crate::sdnotify::notify("STOPPING=1");
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                deadline_secs = SHUTDOWN_DEADLINE.as_secs(),
                "Some tasks did not finish before the shutdown deadline; stopping anyway"
            );
        }
        if self.writer.stop(deadline).await {
            tracing::info!("Collector stopped");
        } else {
            tracing::warn!(
                "The register writer did not finish before the shutdown deadline; \
                 what it still held was never acknowledged and will be sent again"
            );
        }
        failed.map_or(Ok(()), Err)
    }
}

/// `WATCHDOG=1` to systemd twice per interval, but only while the register writer answers
/// (a no-op job between commits within the interval), or while long exclusive work (a
/// backup holding the writer) is visibly advancing: a wedged writer gets the collector
/// restarted, a big backup does not.
async fn watchdog(
    register: register::Register,
    every: std::time::Duration,
    token: CancellationToken,
    notify: fn(&str),
) {
    let mut tick = tokio::time::interval(every / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let progress = register.progress();
    let mut seen = progress.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work: register::Exclusive = Box::new(move |_| {
            let _ = tx.send(());
        });
        let alive = tokio::time::timeout(every / 2, async {
            register
                .send(register::Job::Exclusive { work })
                .await
                .is_ok()
                && rx.await.is_ok()
        })
        .await
        .unwrap_or(false);
        let now = progress.load(std::sync::atomic::Ordering::Relaxed);
        let busy = now != seen;
        seen = now;
        if alive || busy {
            notify("WATCHDOG=1");
        } else {
            tracing::warn!(
                "The register writer did not answer in time; withholding the systemd watchdog"
            );
        }
    }
}

/// The register writer's settings from the config.
pub fn register_options(config: &Config) -> register::Options {
    let duration =
        |d: std::time::Duration| time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
    register::Options {
        cmdb: crate::cmdb::Settings {
            clock: crate::cmdb::agents::ClockBounds {
                max_ahead: duration(config.agents.max_clock_ahead),
                max_age: duration(config.agents.max_report_age),
            },
            gone_after: duration(config.scan.gone_after),
            address_misses: config.rules.host_down.misses,
        },
        detection: crate::reload::detection(config),
        reach_refresh: time::Duration::minutes(15),
        recover_every: std::time::Duration::from_secs(1),
    }
}

/// Scan behaviour from the config (shared by the daemon and the `scan` command).
pub fn scan_options(config: &Config) -> crate::scan::ScanOptions {
    let mut options = crate::scan::ScanOptions::default();
    options.sweep.rate = config.scan.rate;
    options.sweep.on_link_rate = config.scan.on_link_rate;
    options.sweep.timeout = config.scan.timeout;
    options.sweep.retries = config.scan.retries;
    options.sweep.max_in_flight = config.scan.max_in_flight;
    options.tcp_ports.clone_from(&config.scan.tcp_ports);
    options.reverse_dns = config.scan.reverse_dns;
    options
        .snmp_credentials
        .clone_from(&config.snmp.credentials);
    options.snmp_limits.timeout = config.snmp.timeout;
    options.snmp_limits.retries = config.snmp.retries;
    options.snmp_sessions = config.snmp.sessions;
    options.snmp_port = config.snmp.port;
    options
}

fn create_private_dir(path: &Path) -> Result<(), AppError> {
    let err = |source| AppError::DataDir {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Reads the configured token file, or reads/creates `default` (mode 0600) with a fresh token.
fn load_or_create_token(configured: Option<&Path>, default: &Path) -> Result<String, AppError> {
    let path = configured.unwrap_or(default);
    let err = |source| AppError::Token {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the token file is empty",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && configured.is_none() => {}
        Err(e) => return Err(err(e)),
    }
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let token = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(token)
}

/// Where a running collector listens, as `<data_dir>/listen.json` (`{"pid", "grpc", "http"}`),
/// written atomically once the listeners are bound and the tasks spawned. With port 0 in the
/// config (tests, `demo --http 127.0.0.1:0`) this is the only place the real ports appear
/// besides the "Collector ready" log line; the CLI reads it to find the API.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Listening {
    pub pid: u32,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Listening {
    pub const FILE: &'static str = "listen.json";

    fn write(&self, data_dir: &Path) -> Result<(), AppError> {
        let path = data_dir.join(Self::FILE);
        let partial = data_dir.join(".listen.json.partial");
        let err = |source| AppError::DataDir {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string(self).expect("plain struct serialises");
        std::fs::write(&partial, text + "\n").map_err(err)?;
        std::fs::rename(&partial, &path).map_err(err)
    }

    /// What the last collector on `data_dir` wrote, if it wrote anything readable.
    pub fn read(data_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(data_dir.join(Self::FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use crate::register;
    use crate::store::{MemoryStore, Store};

    static PINGS: AtomicUsize = AtomicUsize::new(0);

    fn count(message: &str) {
        assert_eq!(message, "WATCHDOG=1");
        PINGS.fetch_add(1, Ordering::SeqCst);
    }

    /// Holds the writer for `hold`, advancing the progress counter every 20 ms when `advance`.
    async fn hold_writer(register: &register::Register, hold: Duration, advance: bool) {
        let progress: Arc<AtomicU64> = register.progress();
        let (done, finished) = tokio::sync::oneshot::channel();
        let work: register::Exclusive = Box::new(move |_| {
            let until = std::time::Instant::now() + hold;
            while std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
                if advance {
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = done.send(());
        });
        register
            .send(register::Job::Exclusive { work })
            .await
            .expect("queued");
        finished.await.expect("held");
    }

    /// A backup that holds the writer but advances keeps the watchdog fed; a writer held
    /// without progress (wedged) does not get fed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watchdog_tells_a_busy_writer_from_a_stuck_one() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let agents = crate::agents::Agents::load(store.as_ref()).expect("agents");
        let config = crate::config::Config::default();
        let (register, writer) = register::start(
            store,
            super::register_options(&config),
            agents,
            Arc::default(),
            Arc::default(),
        )
        .expect("register");
        let token = CancellationToken::new();
        let every = Duration::from_millis(200);
        let task = tokio::spawn(super::watchdog(
            register.clone(),
            every,
            token.clone(),
            count,
        ));

        let before = PINGS.load(Ordering::SeqCst);
        hold_writer(&register, Duration::from_millis(1_500), true).await;
        let busy = PINGS.load(Ordering::SeqCst) - before;
        // Fed roughly every 100 ms while the held writer advanced (15 chances).
        assert!(
            busy >= 4,
            "a busy writer fed the watchdog only {busy} times"
        );

        // Let the queued probes drain, then hold without progress.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = PINGS.load(Ordering::SeqCst);
        hold_writer(&register, Duration::from_millis(1_500), false).await;
        let stuck = PINGS.load(Ordering::SeqCst) - before;
        // At most the probe that was already answered as the hold began.
        assert!(stuck <= 2, "a stuck writer fed the watchdog {stuck} times");

        token.cancel();
        task.await.expect("watchdog ends");
        writer
            .stop(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
    }
}
