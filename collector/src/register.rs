//! The register writer: the single owner of the asset register's in-memory state.
//!
//! Everything that changes the register — agent enrolments, reports and heartbeats, sweep
//! results and watch pings, rule ticks, technicians' incident and problem actions — arrives
//! as a [`Job`] over one bounded channel (`JOB_QUEUE`; senders wait when it is full). The
//! writer runs on its own OS thread: it drains up to `MAX_BATCH` jobs, turns them into one
//! [`WriteSet`] through the CMDB, feeds what it stores into the rules' [`Observations`],
//! runs the rules and the incident engine when a sweep, watch or tick asks for it, records
//! devices gone and back, commits with one fsync (group commit) and only then answers each
//! job. One writer means no locks around the CMDB or the incidents, and a single order of
//! events. It stops when every [`Register`] handle is dropped, after committing what it holds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use caretaker_proto::v1::{Report, report};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::cmdb::discovery::SweepSummary;
use crate::cmdb::{Cmdb, EnrolmentHints, InventoryReport};
use crate::config::AgentsConfig;
use crate::incidents::topology::{Parents, TopologyConfig};
use crate::incidents::{Action, ActionError, Engine, IncidentsConfig, Maintenance};
use crate::ingest::{Agents, IngestStats};
use crate::model::{AgentId, AgentRecord, StatusSample};
use crate::model::{Asset, AssetId, Incident, ReachSample};
use crate::observe::{Observations, status_point};
use crate::rules::{RulesConfig, Window};
use crate::scan::Sweep;
use crate::store::{Store, StoreError, WriteSet};

/// Jobs waiting for the writer; senders wait for room when it is full.
const JOB_QUEUE: usize = 8192;
/// Jobs the writer folds into one commit.
const MAX_BATCH: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the store rejected a write")]
    Store(#[from] StoreError),
    #[error("the register writer has stopped")]
    WriterGone,
}

/// A handle for sending jobs to the writer. Cheap to clone.
#[derive(Clone)]
pub struct Register {
    jobs: mpsc::Sender<Job>,
}

impl Register {
    /// Queues a job, waiting for room.
    pub async fn send(&self, job: Job) -> Result<(), RegisterError> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| RegisterError::WriterGone)
    }

    /// Queues a job if there is room; lossy jobs (heartbeats) use this.
    pub fn try_send(&self, job: Job) {
        let _ = self.jobs.try_send(job);
    }
}

/// Loads the register from `store` and starts the writer thread.
pub fn start(
    store: Arc<dyn Store>,
    config: AgentsConfig,
    tracking: Tracking,
    agents: Arc<Agents>,
    stats: Arc<IngestStats>,
) -> Result<(Register, Writer), StoreError> {
    let cmdb = Cmdb::load(store.as_ref())?;
    let (obs, topology_snmp) = crate::observe::load(store.as_ref(), cmdb.assets())?;
    let engine = Engine::load(
        store.as_ref(),
        tracking.incidents.clone(),
        tracking.maintenance.clone(),
    )?;
    let assets: Vec<Asset> = cmdb.assets().cloned().collect();
    let parents = Parents::build(&tracking.topology, &assets, &topology_snmp);
    let baseline = store
        .meta("scan.baseline")?
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t as i64).ok());
    let mut gone = HashMap::new();
    for asset in cmdb.assets() {
        if let Some(at) = store
            .meta(&format!("gone:{}", asset.id))?
            .filter(|t| *t > 0)
        {
            gone.insert(
                asset.id.clone(),
                OffsetDateTime::from_unix_timestamp(at as i64)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            );
        }
    }
    let state = WriterState {
        gone,
        baseline,
        obs,
        engine,
        parents,
        topology_snmp,
        tracking,
        cmdb,
        agents: store
            .agents()?
            .into_iter()
            .map(|r| (r.agent_id.clone(), r))
            .collect(),
        seqs: store.agent_seqs()?,
        store,
        config,
        stats,
        shared: agents,
    };
    let (jobs, rx) = mpsc::channel(JOB_QUEUE);
    let thread = std::thread::Builder::new()
        .name("register-writer".to_owned())
        .spawn(move || state.run(rx))
        .expect("spawning a thread");
    Ok((Register { jobs }, Writer { thread }))
}

fn from_timestamp(ts: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos.clamp(0, 999_999_999));
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

pub enum Job {
    Enroll {
        agent: AgentRecord,
        hints: EnrolmentHints,
        reply: oneshot::Sender<Result<(), RegisterError>>,
    },
    Submit {
        agent_id: AgentId,
        reports: Vec<Report>,
        received_at: OffsetDateTime,
        reply: oneshot::Sender<Result<u64, RegisterError>>,
    },
    Heartbeat {
        agent_id: AgentId,
        at: OffsetDateTime,
    },
    /// A finished network sweep to merge into the register.
    Discovery {
        sweep: Box<Sweep>,
        reply: oneshot::Sender<Result<SweepSummary, RegisterError>>,
    },
    /// Quick re-checks of known devices between sweeps: `(asset, answered, rtt µs)`.
    Watch {
        at: OffsetDateTime,
        results: Vec<(AssetId, bool, u32)>,
    },
    /// Time to run the rules.
    Tick { at: OffsetDateTime },
    /// A technician's action on an incident.
    Act {
        id: String,
        action: Action,
        reply: oneshot::Sender<Result<Result<Incident, ActionError>, RegisterError>>,
    },
    /// A technician's update to a problem.
    Problem {
        id: String,
        root_cause: Option<String>,
        known_error: Option<bool>,
        reply: oneshot::Sender<Result<Result<crate::model::Problem, ActionError>, RegisterError>>,
    },
}

/// What the rules and incidents need besides the register.
pub struct Tracking {
    pub rules: RulesConfig,
    pub incidents: IncidentsConfig,
    pub maintenance: Vec<Maintenance>,
    pub topology: TopologyConfig,
    pub change_windows: Vec<Window>,
    /// An unchanged ping verdict is stored again after this (availability resolution).
    pub reach_refresh: time::Duration,
    /// A device silent this long is recorded as gone (a change record).
    pub gone_after: time::Duration,
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

struct WriterState {
    store: Arc<dyn Store>,
    cmdb: Cmdb,
    obs: Observations,
    engine: Engine,
    tracking: Tracking,
    parents: Parents,
    /// Devices recorded as gone, and since when.
    gone: HashMap<AssetId, OffsetDateTime>,
    /// When the first sweep finished (devices seen later are new).
    baseline: Option<OffsetDateTime>,
    /// SNMP snapshots with forwarding tables or LLDP neighbours, for topology.
    topology_snmp: HashMap<AssetId, serde_json::Value>,
    agents: HashMap<AgentId, AgentRecord>,
    seqs: HashMap<AgentId, u64>,
    config: AgentsConfig,
    stats: Arc<IngestStats>,
    shared: Arc<Agents>,
}

enum Reply {
    Act(
        oneshot::Sender<Result<Result<Incident, ActionError>, RegisterError>>,
        Result<Incident, ActionError>,
    ),
    Problem(
        oneshot::Sender<Result<Result<crate::model::Problem, ActionError>, RegisterError>>,
        Result<crate::model::Problem, ActionError>,
    ),
    Enroll(oneshot::Sender<Result<(), RegisterError>>),
    Submit(oneshot::Sender<Result<u64, RegisterError>>, u64),
    Discovery(
        oneshot::Sender<Result<SweepSummary, RegisterError>>,
        SweepSummary,
    ),
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
        let mut evaluate = None;
        let mut swept = false;
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
                        self.obs.agent(&asset, at);
                        seen.insert(asset, at);
                    }
                }
                Job::Discovery { sweep, reply } => {
                    let first_reach = set.reach.len();
                    match self.cmdb.apply_sweep(self.store.as_ref(), &sweep, &mut set) {
                        Ok(summary) => {
                            // Keep only transitions and periodic refreshes of ping verdicts.
                            let fresh: Vec<_> = set.reach.drain(first_reach..).collect();
                            for (asset, sample) in fresh {
                                if self.obs.ping(
                                    &asset,
                                    sample.at,
                                    sample.up,
                                    self.tracking.reach_refresh,
                                ) {
                                    set.reach.push((asset, sample));
                                }
                            }
                            swept = true;
                            evaluate = Some(sweep.finished_at);
                            self.gone_or_back(&sweep, &mut set);
                            if self.baseline.is_none() {
                                self.baseline = Some(sweep.finished_at);
                                set.meta.push((
                                    "scan.baseline".to_owned(),
                                    sweep.finished_at.unix_timestamp() as u64,
                                ));
                            }
                            replies.push(Reply::Discovery(reply, summary));
                        }
                        Err(error) => {
                            tracing::error!(%error, "Could not merge a sweep into the register");
                            failed = Some(error.to_string());
                            replies.push(Reply::Discovery(reply, SweepSummary::default()));
                        }
                    }
                }
                Job::Watch { at, results } => {
                    for (asset, up, rtt_us) in results {
                        if self.obs.ping(&asset, at, up, self.tracking.reach_refresh) {
                            set.reach
                                .push((asset.clone(), ReachSample { at, up, rtt_us }));
                        }
                        if up {
                            set.last_seen.push((asset, at));
                        }
                    }
                    evaluate = Some(evaluate.map_or(at, |e: OffsetDateTime| e.max(at)));
                }
                Job::Tick { at } => {
                    evaluate = Some(evaluate.map_or(at, |e: OffsetDateTime| e.max(at)));
                }
                Job::Act { id, action, reply } => {
                    let now = OffsetDateTime::now_utc();
                    match self
                        .engine
                        .act(self.store.as_ref(), now, &id, action, &mut set)
                    {
                        Ok(outcome) => replies.push(Reply::Act(reply, outcome)),
                        Err(error) => {
                            failed = Some(error.to_string());
                            replies.push(Reply::Act(
                                reply,
                                Err(ActionError::Invalid(error.to_string())),
                            ));
                        }
                    }
                }
                Job::Problem {
                    id,
                    root_cause,
                    known_error,
                    reply,
                } => {
                    let now = OffsetDateTime::now_utc();
                    let outcome =
                        self.engine
                            .update_problem(now, &id, root_cause, known_error, &mut set);
                    replies.push(Reply::Problem(reply, outcome));
                }
            }
        }
        if let Some(at) = evaluate {
            self.observe(&mut set, swept);
            self.evaluate(at, &mut set);
        } else {
            self.observe(&mut set, swept);
        }
        set.last_seen.extend(seen);
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
                Reply::Act(tx, outcome) => {
                    let _ = tx.send(
                        result
                            .map(|()| outcome)
                            .map_err(|()| RegisterError::WriterGone),
                    );
                }
                Reply::Problem(tx, outcome) => {
                    let _ = tx.send(
                        result
                            .map(|()| outcome)
                            .map_err(|()| RegisterError::WriterGone),
                    );
                }
                Reply::Enroll(tx) => {
                    let _ = tx.send(result.map_err(|()| RegisterError::WriterGone));
                }
                Reply::Submit(tx, acked) => {
                    let _ = tx.send(
                        result
                            .map(|()| acked)
                            .map_err(|()| RegisterError::WriterGone),
                    );
                }
                Reply::Discovery(tx, summary) => {
                    let _ = tx.send(
                        result
                            .map(|()| summary)
                            .map_err(|()| RegisterError::WriterGone),
                    );
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
            self.obs.agent(asset, received_at);
        }
        self.shared.heard(agent_id, received_at);
        self.seqs.insert(agent_id.to_owned(), last);
        self.agents.insert(agent_id.to_owned(), agent);
        Ok(last)
    }
}

impl WriterState {
    /// Feeds what this batch stores into the rules' observations.
    fn observe(&mut self, set: &mut WriteSet, swept: bool) {
        for sample in &set.samples {
            self.obs
                .status(&sample.asset_id, status_point(sample.at, &sample.status));
        }
        for change in &set.changes {
            self.obs.change(change);
        }
        for (asset, record) in &set.inventories {
            if !record.meta.partial.iter().any(|p| p == "software") {
                self.obs.entry(asset).software = Some(
                    record
                        .inventory
                        .software
                        .iter()
                        .map(|s| s.name.clone())
                        .collect(),
                );
            }
        }
        let mut levels = Vec::new();
        for (asset, snapshot) in &set.snmp {
            let at = snapshot["collected_at"]
                .as_i64()
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                .unwrap_or_else(OffsetDateTime::now_utc);
            self.obs.snmp(asset, at, snapshot);
            // Supply levels as a time series: when they change, and hourly otherwise.
            let current: serde_json::Map<String, serde_json::Value> = snapshot["supplies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    Some((
                        s["description"].as_str()?.to_owned(),
                        s["percent"].as_f64()?.into(),
                    ))
                })
                .collect();
            if !current.is_empty() {
                let current = serde_json::Value::Object(current);
                let entry = self.obs.entry(asset);
                let due = entry.levels_stored.as_ref().is_none_or(|(when, last)| {
                    *last != current || at - *when >= time::Duration::hours(1)
                });
                if due {
                    entry.levels_stored = Some((at, current.clone()));
                    levels.push((asset.clone(), at, current));
                }
            }
            let topological = snapshot["fdb"].as_array().is_some_and(|a| !a.is_empty())
                || snapshot["lldp"].as_array().is_some_and(|a| !a.is_empty());
            if topological {
                self.topology_snmp
                    .insert(asset.clone(), crate::observe::slim_topology(snapshot));
            }
        }
        set.levels.extend(levels);
        if swept {
            let assets: Vec<Asset> = self.cmdb.assets().cloned().collect();
            self.parents = Parents::build(&self.tracking.topology, &assets, &self.topology_snmp);
        }
    }

    /// Runs the rules and the incident engine.
    fn evaluate(&mut self, now: OffsetDateTime, set: &mut WriteSet) {
        let assets: Vec<Asset> = self.cmdb.assets().cloned().collect();
        let context = crate::rules::Context {
            now,
            assets: &assets,
            obs: &self.obs,
            change_windows: &self.tracking.change_windows,
            baseline: self.baseline,
        };
        let conditions = crate::rules::evaluate(&self.tracking.rules, &context);
        let by_id: HashMap<AssetId, &Asset> = assets.iter().map(|a| (a.id.clone(), a)).collect();
        self.engine
            .step(now, conditions, &by_id, &self.parents, set);
    }
}

impl WriterState {
    /// Devices found only by the network that have not answered for `gone_after` get one
    /// "removed" change record; answering again gets a "returned" one.
    fn gone_or_back(&mut self, sweep: &Sweep, set: &mut WriteSet) {
        let at = sweep.finished_at;
        let answered: HashSet<String> = set.last_seen.iter().map(|(a, _)| a.clone()).collect();
        let mut records = Vec::new();
        for asset in self.cmdb.assets() {
            if asset.sources.contains(&crate::model::Source::Agent)
                || !asset.sources.contains(&crate::model::Source::Ping)
            {
                continue;
            }
            let in_scope = asset
                .ips
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .any(|ip| sweep.scope.contains(ip));
            if !in_scope {
                continue;
            }
            let was_gone = self.gone.contains_key(&asset.id);
            if answered.contains(&asset.id) {
                if was_gone {
                    self.gone.remove(&asset.id);
                    records.push((asset.id.clone(), "returned", 0));
                }
                continue;
            }
            let last_up = self
                .obs
                .assets
                .get(&asset.id)
                .and_then(|o| o.ping.last_up_at)
                .unwrap_or(asset.first_seen);
            if !was_gone && at - last_up >= self.tracking.gone_after {
                self.gone.insert(asset.id.clone(), at);
                records.push((asset.id.clone(), "removed", at.unix_timestamp() as u64));
            }
        }
        for (asset, kind, mark) in records {
            let name = self
                .cmdb
                .assets()
                .find(|a| a.id == asset)
                .map(|a| a.name.clone())
                .unwrap_or_default();
            set.changes.push(crate::model::Change {
                id: format!("{}-{kind}-{}", asset, at.unix_timestamp()),
                asset_id: asset.clone(),
                at,
                kind: kind.to_owned(),
                field: "asset".to_owned(),
                before: (kind == "removed").then(|| name.clone()),
                after: (kind == "returned").then_some(name),
                clock_suspect: false,
            });
            set.meta.push((format!("gone:{asset}"), mark));
        }
    }
}
