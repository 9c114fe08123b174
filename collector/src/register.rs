//! The register writer: the single owner of the asset register's in-memory state.
//!
//! Everything that changes the register — agent enrolments, agent reports, heartbeats and
//! (with discovery) sweep results — arrives as a [`Job`] over one bounded channel
//! (`JOB_QUEUE`; senders wait when it is full). The writer runs on its own OS thread: it
//! drains up to `MAX_BATCH` jobs, turns them into one [`WriteSet`] through the CMDB, commits
//! it with one fsync (group commit) and only then answers each job. One writer means no locks
//! around the CMDB and a single order of events. It stops when every [`Register`] handle is
//! dropped, after committing what it holds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use caretaker_proto::v1::{Report, report};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::cmdb::discovery::SweepSummary;
use crate::cmdb::{Cmdb, EnrolmentHints, InventoryReport};
use crate::config::AgentsConfig;
use crate::ingest::{Agents, IngestStats};
use crate::model::{AgentId, AgentRecord, StatusSample};
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
    agents: Arc<Agents>,
    stats: Arc<IngestStats>,
) -> Result<(Register, Writer), StoreError> {
    let state = WriterState {
        cmdb: Cmdb::load(store.as_ref())?,
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
    agents: HashMap<AgentId, AgentRecord>,
    seqs: HashMap<AgentId, u64>,
    config: AgentsConfig,
    stats: Arc<IngestStats>,
    shared: Arc<Agents>,
}

enum Reply {
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
                        seen.insert(asset, at);
                    }
                }
                Job::Discovery { sweep, reply } => {
                    match self.cmdb.apply_sweep(self.store.as_ref(), &sweep, &mut set) {
                        Ok(summary) => replies.push(Reply::Discovery(reply, summary)),
                        Err(error) => {
                            tracing::error!(%error, "Could not merge a sweep into the register");
                            failed = Some(error.to_string());
                            replies.push(Reply::Discovery(reply, SweepSummary::default()));
                        }
                    }
                }
            }
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
        }
        self.shared.heard(agent_id, received_at);
        self.seqs.insert(agent_id.to_owned(), last);
        self.agents.insert(agent_id.to_owned(), agent);
        Ok(last)
    }
}
