//! The register writer: the one thread that changes the asset register.
//!
//! **Owns**, in memory and without locks: the CMDB (assets and their identities, enrolled
//! agents and their acknowledged sequences, discovery marks), the rules' observations and the
//! incident detector. It is the only code that commits register data to the store (the
//! outbox sender and retention make their own narrow writes; see `ARCHITECTURE.md`).
//!
//! **Receives** [`Job`]s over one bounded channel (`JOB_QUEUE`): senders wait when it is full,
//! except heartbeats and rule ticks, which are dropped instead ([`Register::try_send`]).
//!
//! **Each batch**: up to `MAX_BATCH` queued jobs. Every job's logic lives in the module that
//! owns it (enrolment, reports and sweeps in `cmdb`, incident actions and problems in
//! `incidents`) and writes into a write set of its own: a job that fails is answered with its
//! error and its writes are dropped, the others carry on. Then `observe` absorbs what the batch
//! will store, the detector runs once if a sweep, watch or tick asked for it, everything is
//! committed with one fsync (group commit), and only then is each job answered. A failed
//! commit answers every job of the batch with the store error and rolls the in-memory state
//! back to what the store holds (retrying that on every later batch until it succeeds), so
//! nothing is ever acknowledged that is not durable.
//!
//! **Stops** when [`Writer::stop`] is called (the channel closes; what is already queued is
//! processed and committed) or when every [`Register`] handle is dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use caretaker_proto::v1::Report;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::agents::{Agents, IngestStats};
use crate::cmdb::agents::Refused;
use crate::cmdb::discovery::SweepSummary;
use crate::cmdb::{Cmdb, EnrolmentHints, Settings};
use crate::health::Health;
use crate::incidents::{Action, ActionError, Detection, Detector};
use crate::model::{AgentId, AgentRecord, Asset, AssetId, Incident, Problem, ReachSample};
use crate::observe::Observations;
use crate::scan::Sweep;
use crate::store::{Store, StoreError, WriteSet};

#[cfg(test)]
mod tests;

/// Jobs waiting for the writer; senders wait for room when it is full.
const JOB_QUEUE: usize = 8192;
/// Jobs the writer folds into one commit.
const MAX_BATCH: usize = 2048;
/// How long [`Register::ask`] waits for room in a full queue before giving up.
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// While commits keep failing, one reminder in the log this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegisterError {
    /// The store could not read or write; nothing of the job was acknowledged.
    #[error("store write failed: {0}")]
    Store(Arc<StoreError>),
    /// The writer has stopped (the collector is shutting down).
    #[error("the register writer has stopped")]
    WriterGone,
    /// The queue stayed full for `QUEUE_WAIT`; the job was not queued.
    #[error("the register writer is busy")]
    Busy,
}

impl From<StoreError> for RegisterError {
    fn from(error: StoreError) -> Self {
        Self::Store(Arc::new(error))
    }
}

/// Where a job's answer goes, once its writes are durable.
pub type Reply<T> = oneshot::Sender<Result<T, RegisterError>>;

pub enum Job {
    Enroll {
        agent: AgentRecord,
        hints: EnrolmentHints,
        /// The other agents bound to the same asset (a PC enrolled again).
        reply: Reply<Vec<AgentId>>,
    },
    Submit {
        agent_id: AgentId,
        /// The agent's sequence epoch (0 when it sends none).
        epoch: u64,
        reports: Vec<Report>,
        received_at: OffsetDateTime,
        /// The highest sequence the register holds for the agent, or why the submit was
        /// refused as a whole.
        reply: Reply<Result<u64, Refused>>,
    },
    Heartbeat {
        agent_id: AgentId,
        at: OffsetDateTime,
    },
    /// A finished network sweep to merge into the register.
    Discovery {
        sweep: Box<Sweep>,
        reply: Reply<SweepSummary>,
    },
    /// Quick re-checks of known devices between sweeps: `(asset, answered, rtt µs)`.
    Watch {
        at: OffsetDateTime,
        results: Vec<(AssetId, bool, u32)>,
    },
    /// Time to run the rules.
    Tick { at: OffsetDateTime },
    /// Certificate lifetimes from the PKI, by agent (the writer maps agents to assets).
    Certificates {
        agents: Vec<(AgentId, OffsetDateTime)>,
        cas: Vec<(String, OffsetDateTime)>,
        warn_before: time::Duration,
    },
    /// A technician's action on an incident.
    Act {
        id: String,
        action: Action,
        reply: Reply<Result<Incident, ActionError>>,
    },
    /// A member of staff's report from `/report`: a new incident.
    Report {
        report: crate::incidents::StaffReport,
        reply: Reply<Incident>,
    },
    /// Dashboard records the web layer decided on (users, sessions, a change marked
    /// expected): committed as they are, in order with everything else.
    Records {
        set: Box<WebRecords>,
        reply: Reply<()>,
    },
    /// New rule, incident, maintenance, change-window and topology settings (live reload):
    /// the detector is rebuilt with them from the store once the batch is committed.
    Reconfigure {
        detection: Box<Detection>,
        reply: Reply<()>,
    },
    /// Run `work` between commits (see [`Exclusive`]).
    Exclusive { work: Exclusive },
    /// Register edits (dashboard, `PATCH /api/v1/assets/{id}`, bulk edit, CSV import): all
    /// of them or none (`cmdb::register`); a dry run answers what would happen and writes
    /// nothing.
    EditRegister {
        edits: Vec<crate::model::register::RegisterEdit>,
        author: String,
        dry_run: bool,
        reply: Reply<
            Result<Vec<crate::model::register::EditOutcome>, crate::model::register::EditError>,
        >,
    },
    /// A technician's update to a problem.
    Problem {
        id: String,
        root_cause: Option<String>,
        known_error: Option<bool>,
        reply: Reply<Result<Problem, ActionError>>,
    },
}

/// What a [`Job::Records`] writes.
#[derive(Debug, Default)]
pub struct WebRecords {
    pub users: Vec<crate::model::User>,
    pub sessions: Vec<(String, Option<crate::model::Session>)>,
    pub changes: Vec<crate::model::Change>,
}

/// What recent commits touched, for the read side's caches (the dashboard's catalog): the
/// writer adds after each durable commit, one reader drains.
#[derive(Debug, Default)]
pub struct Touched {
    generation: std::sync::atomic::AtomicU64,
    sets: std::sync::Mutex<TouchedSets>,
}

#[derive(Debug, Default)]
pub struct TouchedSets {
    pub assets: std::collections::HashSet<AssetId>,
    /// Assets whose inventory or SNMP snapshot was written (a subset of `assets`).
    pub inventories: std::collections::HashSet<AssetId>,
    pub incidents: std::collections::HashSet<String>,
}

impl Touched {
    /// Increases with every commit that touched something.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What was touched since the last call.
    pub fn take(&self) -> TouchedSets {
        std::mem::take(&mut *self.sets.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records what a durable commit of `set` touched.
    pub fn add(&self, set: &WriteSet) {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        let assets = set
            .assets
            .iter()
            .map(|a| &a.id)
            .chain(set.inventories.iter().map(|(a, _)| a))
            .chain(set.snmp.iter().map(|(a, _)| a))
            .chain(set.reach.iter().map(|(a, _)| a))
            .chain(set.last_seen.iter().map(|(a, _)| a))
            .chain(set.samples.iter().map(|s| &s.asset_id))
            .chain(set.levels.iter().map(|(a, _, _)| a));
        for asset in assets {
            if !sets.assets.contains(asset) {
                sets.assets.insert(asset.clone());
            }
        }
        for (asset, _) in &set.inventories {
            sets.inventories.insert(asset.clone());
        }
        for (asset, _) in &set.snmp {
            sets.inventories.insert(asset.clone());
        }
        for incident in &set.incidents {
            sets.incidents.insert(incident.id.clone());
        }
        drop(sets);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
/// Work that must see the store between two commits (a backup's snapshot), run on the
/// writer thread after the batch it arrived in is committed, so nothing the writer does
/// interleaves with it. It gets the store error instead if that batch's commit failed.
pub type Exclusive = Box<dyn FnOnce(Result<&dyn Store, RegisterError>) + Send>;

/// What travels on the writer's channel.
enum Message {
    Job(Box<Job>),
    /// Close the channel, finish what is queued, and stop.
    Stop,
}

/// A handle for sending jobs to the writer. Cheap to clone.
#[derive(Clone)]
pub struct Register {
    jobs: mpsc::Sender<Message>,
    touched: Arc<Touched>,
}

impl Register {
    /// What the writer's commits touched (for read-side caches).
    pub fn touched(&self) -> Arc<Touched> {
        self.touched.clone()
    }

    /// Queues a job, waiting for room.
    pub async fn send(&self, job: Job) -> Result<(), RegisterError> {
        self.jobs
            .send(Message::Job(Box::new(job)))
            .await
            .map_err(|_| RegisterError::WriterGone)
    }

    /// Jobs waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Queues a job if there is room, else drops it (heartbeats, rule ticks).
    pub fn try_send(&self, job: Job) {
        let _ = self.jobs.try_send(Message::Job(Box::new(job)));
    }

    /// Queues a job (waiting up to `QUEUE_WAIT` for room) and waits for its answer, which
    /// comes once the job's writes are durable.
    pub async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, RegisterError> {
        let (reply, answer) = oneshot::channel();
        tokio::time::timeout(QUEUE_WAIT, self.send(job(reply)))
            .await
            .map_err(|_| RegisterError::Busy)??;
        answer.await.map_err(|_| RegisterError::WriterGone)?
    }
}

/// The writer thread's handle.
pub struct Writer {
    thread: std::thread::JoinHandle<()>,
    control: mpsc::Sender<Message>,
}

impl Writer {
    /// Asks the writer to finish what is queued and stop, and waits for it until `deadline`.
    /// Returns whether it stopped in time (if not, nothing it still held was acknowledged).
    pub async fn stop(self, deadline: tokio::time::Instant) -> bool {
        // A closed channel means the writer already stopped; join it all the same.
        let asked = tokio::time::timeout_at(deadline, self.control.send(Message::Stop)).await;
        if asked.is_err() {
            return false;
        }
        let thread = self.thread;
        match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(move || thread.join()))
            .await
        {
            Ok(Ok(Ok(()))) => true,
            Ok(_) => {
                tracing::error!("The register writer panicked");
                true
            }
            Err(_) => false,
        }
    }
}

/// How the writer is set up.
pub struct Options {
    pub cmdb: Settings,
    pub detection: Detection,
    /// An unchanged ping verdict is stored again after this (availability resolution).
    pub reach_refresh: time::Duration,
    /// While the store is broken, how often the writer tries to recover it.
    pub recover_every: Duration,
}

/// Loads the register from `store` and starts the writer thread.
pub fn start(
    store: Arc<dyn Store>,
    options: Options,
    agents: Arc<Agents>,
    stats: Arc<IngestStats>,
    health: Arc<Health>,
) -> Result<(Register, Writer), StoreError> {
    let mut state = State::load(store, options, agents, stats)?;
    state.health = health;
    let touched = state.touched.clone();
    let (jobs, rx) = mpsc::channel(JOB_QUEUE);
    let thread = std::thread::Builder::new()
        .name("register-writer".to_owned())
        .spawn(move || state.run(rx))
        .expect("spawning a thread");
    Ok((
        Register {
            jobs: jobs.clone(),
            touched,
        },
        Writer {
            thread,
            control: jobs,
        },
    ))
}

struct State {
    store: Arc<dyn Store>,
    cmdb: Cmdb,
    obs: Observations,
    detector: Detector,
    options: Options,
    shared: Arc<Agents>,
    stats: Arc<IngestStats>,
    health: Arc<Health>,
    touched: Arc<Touched>,
    /// The error of the commit that failed last, while the state is stale.
    last_failure: Option<Arc<StoreError>>,
    /// The last commit failed and the in-memory state could not yet be reloaded from the
    /// store: jobs are refused until it can.
    stale: bool,
    /// When recovery was last tried, and whether its failing was logged.
    last_recover: Option<Instant>,
    recover_warned: bool,
    /// When commits started failing and when that was last logged.
    failing: Option<(Instant, Instant, u64)>,
}

/// An answer waiting for the batch's commit.
type Pending = Box<dyn FnOnce(Result<(), RegisterError>) + Send>;

/// One batch being assembled.
#[derive(Default)]
struct Batch {
    set: WriteSet,
    /// Answers to send once the batch is durable.
    pending: Vec<Pending>,
    /// Run the rules as of this time.
    evaluate: Option<OffsetDateTime>,
    /// A sweep was merged (topology may have changed).
    swept: bool,
    /// The acknowledged sequence of every agent this batch touched, before it did.
    seqs_before: Vec<(AgentId, u64)>,
    stored: u64,
    duplicates: u64,
    clock_suspect: u64,
    /// A job failed part-way: reload the in-memory state from the store after the commit.
    reload: bool,
    /// Run after the commit, in order.
    exclusive: Vec<Exclusive>,
    /// Rebuild the detector with `options.detection` after the commit.
    reconfigure: bool,
}

impl Batch {
    /// Keeps a job's writes and answers it with `value` once they are durable.
    fn accept<T: Send + 'static>(&mut self, set: WriteSet, reply: Reply<T>, value: T) {
        self.set.extend(set);
        self.pending.push(Box::new(move |committed| {
            let _ = reply.send(committed.map(|()| value));
        }));
    }

    /// Answers a job that failed at once; its writes were dropped.
    fn refuse<T>(&mut self, reply: Reply<T>, error: StoreError) {
        tracing::error!(%error, "A register job failed; the others in its batch go on");
        let _ = reply.send(Err(error.into()));
        self.reload = true;
    }

    fn evaluate_at(&mut self, at: OffsetDateTime) {
        self.evaluate = Some(self.evaluate.map_or(at, |e| e.max(at)));
    }
}

impl State {
    fn load(
        store: Arc<dyn Store>,
        options: Options,
        shared: Arc<Agents>,
        stats: Arc<IngestStats>,
    ) -> Result<Self, StoreError> {
        let cmdb = Cmdb::load(store.as_ref(), options.cmdb)?;
        let assets: Vec<Asset> = cmdb.assets().cloned().collect();
        let obs = crate::observe::load(store.as_ref(), assets.iter())?;
        let detector = Detector::load(store.as_ref(), options.detection.clone(), &assets, &obs)?;
        Ok(Self {
            store,
            cmdb,
            obs,
            detector,
            options,
            shared,
            stats,
            health: Arc::default(),
            touched: Arc::default(),
            last_failure: None,
            stale: false,
            last_recover: None,
            recover_warned: false,
            failing: None,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while let Some(message) = rx.blocking_recv() {
            let mut stopping = false;
            let mut next = Some(message);
            while let Some(message) = next.take() {
                match message {
                    Message::Job(job) => jobs.push(*job),
                    Message::Stop => stopping = true,
                }
                if jobs.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if stopping {
                // No new jobs from here on; what is queued still gets processed below.
                rx.close();
            }
            self.process(jobs.drain(..));
        }
        tracing::debug!("Register writer stopped");
    }

    fn process(&mut self, jobs: impl Iterator<Item = Job>) {
        if self.stale && !self.recover() {
            let error = self.last_failure.clone().unwrap_or_else(|| {
                Arc::new(StoreError::Unavailable(
                    "the store could not be read back after a failed write",
                ))
            });
            for job in jobs {
                refuse(job, &RegisterError::Store(error.clone()));
            }
            return;
        }
        let mut batch = Batch::default();
        for job in jobs {
            self.run_job(job, &mut batch);
        }
        self.obs.absorb(&mut batch.set, self.options.reach_refresh);
        if batch.swept || batch.evaluate.is_some() {
            let assets: Vec<Asset> = self.cmdb.assets().cloned().collect();
            if batch.swept {
                self.detector
                    .rebuild_topology(&assets, &self.obs, self.cmdb.paths());
            }
            if let Some(at) = batch.evaluate {
                self.detector.evaluate(
                    at,
                    &assets,
                    &self.obs,
                    self.cmdb.baseline(),
                    &mut batch.set,
                );
            }
        }
        // Taken before the commit consumes the set; recorded only once it is durable.
        let written = Touched::default();
        written.add(&batch.set);
        let result = if batch.set.is_empty() {
            Ok(())
        } else {
            let started = Instant::now();
            let result = self.store.commit(std::mem::take(&mut batch.set));
            self.stats
                .writer
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            result
        };
        match result {
            Ok(()) => {
                let sets = written.take();
                let mut shared = self.touched.sets.lock().unwrap_or_else(|p| p.into_inner());
                shared.assets.extend(sets.assets);
                shared.inventories.extend(sets.inventories);
                shared.incidents.extend(sets.incidents);
                drop(shared);
                self.touched.generation.fetch_add(1, Ordering::AcqRel);
                self.committed(&batch);
                for answer in batch.pending {
                    answer(Ok(()));
                }
                if batch.reload {
                    self.reload();
                }
                if batch.reconfigure {
                    self.rebuild_detector();
                }
                for work in batch.exclusive {
                    work(Ok(self.store.as_ref()));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                self.commit_failed(&error);
                self.cmdb.restore_seqs(batch.seqs_before);
                for answer in batch.pending {
                    answer(Err(RegisterError::Store(error.clone())));
                }
                for work in batch.exclusive {
                    work(Err(RegisterError::Store(error.clone())));
                }
                self.last_failure = Some(error);
                self.stale = true;
                self.recover();
            }
        }
    }

    fn run_job(&mut self, job: Job, batch: &mut Batch) {
        let store = self.store.as_ref();
        let mut set = WriteSet::default();
        match job {
            Job::Enroll {
                agent,
                hints,
                reply,
            } => {
                let others = self.cmdb.enrol(agent, hints, &mut set);
                batch.accept(set, reply, others);
            }
            Job::Submit {
                agent_id,
                epoch,
                reports,
                received_at,
                reply,
            } => {
                let before = self.cmdb.acked_seq(&agent_id);
                let kinds = report_kinds(&reports);
                match self
                    .cmdb
                    .submit(store, &agent_id, epoch, reports, received_at, &mut set)
                {
                    Ok(Err(refused)) => {
                        let _ = reply.send(Ok(Err(refused)));
                    }
                    Ok(Ok(done)) => {
                        batch.seqs_before.push((agent_id.clone(), before));
                        if let Some(asset) = &done.asset {
                            self.obs.agent(asset, received_at);
                        }
                        self.shared.heard(&agent_id, received_at);
                        batch.stored += done.stored;
                        batch.duplicates += done.duplicates;
                        batch.clock_suspect += done.clock_suspect;
                        let writer = &self.stats.writer;
                        writer
                            .inventory_reports
                            .fetch_add(kinds.0, Ordering::Relaxed);
                        writer.status_reports.fetch_add(kinds.1, Ordering::Relaxed);
                        writer.other_reports.fetch_add(kinds.2, Ordering::Relaxed);
                        batch.accept(set, reply, Ok(done.acked));
                    }
                    Err(error) => batch.refuse(reply, error),
                }
            }
            Job::Heartbeat { agent_id, at } => {
                if let Some(asset) = self.cmdb.asset_of_agent(&agent_id) {
                    self.obs.agent(&asset, at);
                    batch.set.last_seen.push((asset, at));
                }
            }
            Job::Discovery { sweep, reply } => {
                let obs = &self.obs;
                let last_up = |id: &str| obs.assets.get(id).and_then(|o| o.ping.last_up_at);
                match self.cmdb.apply_sweep(store, &sweep, &last_up, &mut set) {
                    Ok(summary) => {
                        self.stats.writer.sweep(&sweep);
                        batch.swept = true;
                        batch.evaluate_at(sweep.finished_at);
                        batch.accept(set, reply, summary);
                    }
                    Err(error) => batch.refuse(reply, error),
                }
            }
            Job::Watch { at, results } => {
                for (asset, up, rtt_us) in results {
                    if up {
                        batch.set.last_seen.push((asset.clone(), at));
                    }
                    batch
                        .set
                        .reach
                        .push((asset, ReachSample { at, up, rtt_us }));
                }
                batch.evaluate_at(at);
            }
            Job::Tick { at } => batch.evaluate_at(at),
            Job::Exclusive { work } => batch.exclusive.push(work),
            Job::Reconfigure { detection, reply } => {
                self.options.detection = *detection;
                batch.reconfigure = true;
                batch.accept(set, reply, ());
            }
            Job::Certificates {
                agents,
                cas,
                warn_before,
            } => {
                let agents = agents
                    .into_iter()
                    .filter_map(|(agent, not_after)| {
                        let asset = self.cmdb.agent(&agent)?.asset_id.clone()?;
                        Some((asset, (agent, not_after)))
                    })
                    .collect();
                self.obs.certificates = crate::observe::Certificates {
                    agents,
                    cas,
                    warn_before,
                };
                batch.evaluate_at(OffsetDateTime::now_utc());
            }
            Job::Act { id, action, reply } => {
                let now = OffsetDateTime::now_utc();
                match self.detector.act(store, now, &id, action, &mut set) {
                    Ok(outcome) => batch.accept(set, reply, outcome),
                    Err(error) => batch.refuse(reply, error),
                }
            }
            Job::Report { report, reply } => {
                let now = OffsetDateTime::now_utc();
                let asset_name = report
                    .asset_id
                    .as_deref()
                    .and_then(|id| self.cmdb.assets().find(|a| a.id == id))
                    .map(|a| a.name.clone())
                    .unwrap_or_default();
                let incident = self.detector.report(now, report, asset_name, &mut set);
                batch.accept(set, reply, incident);
            }
            Job::Records {
                set: records,
                reply,
            } => {
                let WebRecords {
                    users,
                    sessions,
                    changes,
                } = *records;
                set.users = users;
                set.sessions = sessions;
                set.changes = changes;
                batch.accept(set, reply, ());
            }
            Job::EditRegister {
                edits,
                author,
                dry_run,
                reply,
            } => {
                let now = OffsetDateTime::now_utc();
                let outcome = self
                    .cmdb
                    .edit_register(&edits, &author, dry_run, now, &mut set);
                batch.accept(set, reply, outcome);
            }
            Job::Problem {
                id,
                root_cause,
                known_error,
                reply,
            } => {
                let now = OffsetDateTime::now_utc();
                let outcome =
                    self.detector
                        .update_problem(now, &id, root_cause, known_error, &mut set);
                batch.accept(set, reply, outcome);
            }
        }
    }

    fn committed(&mut self, batch: &Batch) {
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .reports_stored
            .fetch_add(batch.stored, Ordering::Relaxed);
        self.stats
            .reports_duplicate
            .fetch_add(batch.duplicates, Ordering::Relaxed);
        self.stats
            .reports_clock_suspect
            .fetch_add(batch.clock_suspect, Ordering::Relaxed);
        self.health.store_ok();
        if let Some((since, _, failures)) = self.failing.take() {
            tracing::info!(
                failures,
                after_secs = since.elapsed().as_secs(),
                "Store commits succeed again"
            );
        }
    }

    /// Logs a failed commit: one ERROR when failures start, then a reminder a minute.
    fn commit_failed(&mut self, error: &StoreError) {
        self.stats.commits_failed.fetch_add(1, Ordering::Relaxed);
        self.health.store_failing(if error.is_full() {
            "full"
        } else {
            "write failed"
        });
        let now = Instant::now();
        match &mut self.failing {
            None => {
                tracing::error!(%error, "Could not commit to the store; agents will retry, nothing of this batch was acknowledged");
                self.failing = Some((now, now, 1));
            }
            Some((since, logged, failures)) => {
                *failures += 1;
                if now.duration_since(*logged) >= FAILURE_LOG_EVERY {
                    *logged = now;
                    tracing::warn!(%error, failures = *failures, for_secs = since.elapsed().as_secs(),
                        "Store commits are still failing");
                }
            }
        }
    }

    /// After a failed commit: lets the store repair itself (reopen) if it must, then rebuilds
    /// the in-memory register from what it holds. Returns whether that worked.
    fn recover(&mut self) -> bool {
        if self
            .last_recover
            .is_some_and(|at| at.elapsed() < self.options.recover_every)
        {
            return false;
        }
        self.last_recover = Some(Instant::now());
        if let Err(error) = self.store.recover() {
            // Said once per outage; the failures reminder covers the rest.
            if !self.recover_warned {
                self.recover_warned = true;
                tracing::warn!(%error, "The store could not be reopened yet; retrying every second");
            }
            return false;
        }
        self.recover_warned = false;
        self.reload()
    }

    /// Rebuilds the detector with the current detection settings (live reload), keeping the
    /// old one if the store cannot be read.
    fn rebuild_detector(&mut self) {
        let assets: Vec<Asset> = self.cmdb.assets().cloned().collect();
        match Detector::load(
            self.store.as_ref(),
            self.options.detection.clone(),
            &assets,
            &self.obs,
        ) {
            Ok(detector) => {
                self.detector = detector;
                tracing::info!("Rules, windows and incident settings reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "Could not apply the reloaded rules; the old ones stay");
            }
        }
    }

    /// Rebuilds the in-memory register from what the store holds. Returns whether it could.
    fn reload(&mut self) -> bool {
        let reloaded = (|| -> Result<(), StoreError> {
            let cmdb = Cmdb::load(self.store.as_ref(), self.options.cmdb)?;
            let assets: Vec<Asset> = cmdb.assets().cloned().collect();
            let detector = Detector::load(
                self.store.as_ref(),
                self.options.detection.clone(),
                &assets,
                &self.obs,
            )?;
            self.cmdb = cmdb;
            self.detector = detector;
            Ok(())
        })();
        match reloaded {
            Ok(()) => {
                self.stale = false;
                true
            }
            Err(error) => {
                if !self.stale {
                    tracing::error!(%error, "Could not reload the register from the store");
                }
                false
            }
        }
    }
}

/// `(inventory, status, other)` reports in a submit.
fn report_kinds(reports: &[Report]) -> (u64, u64, u64) {
    use caretaker_proto::v1::report::Body;
    let mut kinds = (0, 0, 0);
    for report in reports {
        match report.body {
            Some(Body::Inventory(_)) => kinds.0 += 1,
            Some(Body::Status(_)) => kinds.1 += 1,
            _ => kinds.2 += 1,
        }
    }
    kinds
}

/// Answers a job the writer cannot take while its state is not known to match the store.
fn refuse(job: Job, error: &RegisterError) {
    match job {
        Job::Enroll { reply, .. } => drop(reply.send(Err(error.clone()))),
        Job::Submit { reply, .. } => drop(reply.send(Err(error.clone()))),
        Job::Discovery { reply, .. } => drop(reply.send(Err(error.clone()))),
        Job::Act { reply, .. } => drop(reply.send(Err(error.clone()))),
        Job::Problem { reply, .. } => drop(reply.send(Err(error.clone()))),
        Job::EditRegister { reply, .. } => drop(reply.send(Err(error.clone()))),
        Job::Report { reply, .. } => drop(reply.send(Err(error.clone()))),
        Job::Records { reply, .. } => drop(reply.send(Err(error.clone()))),
        Job::Exclusive { work } => work(Err(error.clone())),
        Job::Reconfigure { reply, .. } => drop(reply.send(Err(error.clone()))),
        Job::Heartbeat { .. } | Job::Watch { .. } | Job::Tick { .. } | Job::Certificates { .. } => {
        }
    }
}
