//! Agents in the register: enrolment binds an agent identity to an asset; a submit applies an
//! agent's reports in sequence order.
//!
//! The register keeps every enrolled agent's record and the highest report sequence made
//! durable for it. A report at or below that sequence is a retry and is dropped; a report
//! whose clock is implausible is stored flagged, at the time it arrived. Inventories go
//! through identity and diff (`apply_inventory`), status reports become samples.

use caretaker_proto::v1::{Report, report};
use time::OffsetDateTime;

use super::{Cmdb, EnrolmentHints, InventoryReport, SECTIONS};
use crate::model::{AgentId, AgentRecord, AssetId, StatusSample};
use crate::store::{StoreError, WriteSet};

/// How far a report's clock may be from ours before it is flagged `clock_suspect`.
#[derive(Debug, Clone, Copy)]
pub struct ClockBounds {
    /// Reports collected further in the future than this are flagged.
    pub max_ahead: time::Duration,
    /// Reports older than this when they arrive are flagged.
    pub max_age: time::Duration,
}

impl Default for ClockBounds {
    fn default() -> Self {
        Self {
            max_ahead: time::Duration::minutes(5),
            max_age: time::Duration::days(60),
        }
    }
}

/// A report sequence this far past the acknowledged one is not a gap (a journal that dropped
/// reports while offline) but corruption or a hostile client.
pub const MAX_SEQ_JUMP: u64 = 10_000_000;

/// Why a submit was refused as a whole (nothing of it is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The sequence jumps implausibly far: the agent should start a new epoch.
    #[error("report sequence jumps from {acked} to {seq}; start a new epoch")]
    SequenceJump { acked: u64, seq: u64 },
}

/// What one submit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Submitted {
    /// The highest sequence the register holds for the agent once this batch commits.
    pub acked: u64,
    /// The asset the agent reports for, if it is bound to one.
    pub asset: Option<AssetId>,
    /// Reports stored (status samples and inventories).
    pub stored: u64,
    /// Reports at or below the acknowledged sequence, dropped.
    pub duplicates: u64,
    /// Reports stored at arrival time because their clock was implausible.
    pub clock_suspect: u64,
}

impl Cmdb {
    /// Registers a newly enrolled agent, bound to the asset its hardware hints match or to a
    /// new asset (the first inventory fills in the rest).
    /// Returns the other agents bound to the same asset (a PC enrolled again, e.g. after a
    /// reimage: their certificates are to be revoked).
    pub fn enrol(
        &mut self,
        mut agent: AgentRecord,
        hints: EnrolmentHints,
        out: &mut WriteSet,
    ) -> Vec<AgentId> {
        self.bind_enrolling(&mut agent, hints, out);
        let others = match &agent.asset_id {
            Some(asset) => self
                .agents
                .values()
                .filter(|a| a.asset_id.as_ref() == Some(asset) && a.agent_id != agent.agent_id)
                .map(|a| a.agent_id.clone())
                .collect(),
            None => Vec::new(),
        };
        out.agents.push(agent.clone());
        self.agents.insert(agent.agent_id.clone(), agent);
        others
    }

    /// Whether `agent_id` is enrolled.
    pub fn agent(&self, agent_id: &str) -> Option<&AgentRecord> {
        self.agents.get(agent_id)
    }

    /// The highest durable report sequence of `agent_id` (0 before its first report).
    pub fn acked_seq(&self, agent_id: &str) -> u64 {
        self.seqs.get(agent_id).copied().unwrap_or(0)
    }

    /// Applies an agent's reports (in increasing `seq`) received at `received_at`. The new
    /// acknowledged sequence goes into `out.agent_seqs`, so it is durable with the reports.
    /// A new `epoch` (non-zero, unlike the agent's last) restarts the agent's sequence: its
    /// reports are stored even though their numbers are low. An unknown agent gets
    /// `acked = 0` and nothing is written; an implausible sequence jump is refused whole.
    pub fn submit(
        &mut self,
        store: &dyn crate::store::Store,
        agent_id: &str,
        epoch: u64,
        reports: Vec<Report>,
        received_at: OffsetDateTime,
        out: &mut WriteSet,
    ) -> Result<Result<Submitted, Refused>, StoreError> {
        let Some(known) = self.agents.get(agent_id) else {
            return Ok(Ok(Submitted::default()));
        };
        let mut acked = self.acked_seq(agent_id);
        let new_epoch = epoch != 0 && epoch != known.epoch;
        // Status reports leave the agent's record as it is: it is copied (and written back)
        // only when an inventory or a new epoch changes it.
        let changes_record = new_epoch
            || reports
                .iter()
                .any(|r| matches!(r.body, Some(report::Body::Inventory(_))));
        let mut changed = changes_record.then(|| known.clone());
        let mut asset_id = known.asset_id.clone();
        let old_epoch = known.epoch;
        if new_epoch {
            acked = 0;
        }
        let mut previous = acked;
        for report in reports.iter().filter(|r| r.seq > acked) {
            if report.seq - previous > MAX_SEQ_JUMP {
                return Ok(Err(Refused::SequenceJump {
                    acked: previous,
                    seq: report.seq,
                }));
            }
            previous = report.seq;
        }
        if new_epoch {
            tracing::info!(%agent_id, old = old_epoch, new = epoch, acked_before = self.acked_seq(agent_id),
                "Agent started a new report sequence (epoch); its numbers count from here");
            let agent = changed.as_mut().expect("copied for a new epoch");
            agent.epoch = epoch;
            out.agents.push(agent.clone());
        }
        let mut done = Submitted {
            acked,
            ..Submitted::default()
        };
        for report in reports {
            if report.seq <= done.acked {
                done.duplicates += 1;
                continue;
            }
            let collected = report.collected_at.as_ref().and_then(from_timestamp);
            let clock_suspect = match collected {
                Some(at) => {
                    let ceiling = received_at.checked_add(self.clock.max_ahead);
                    let floor = received_at.checked_sub(self.clock.max_age);
                    ceiling.is_some_and(|c| at > c) || floor.is_some_and(|f| at < f)
                }
                None => true,
            };
            if clock_suspect {
                done.clock_suspect += 1;
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
                        .filter(|m| SECTIONS.contains(&m.as_str()))
                        .collect();
                    let agent = changed.as_mut().expect("copied for an inventory");
                    self.apply_inventory(
                        store,
                        agent,
                        InventoryReport {
                            agent_id: agent_id.to_owned(),
                            seq: report.seq,
                            collected_at: at,
                            received_at,
                            clock_suspect,
                            missing,
                            inventory,
                        },
                        out,
                    )?;
                    out.agents.push(agent.clone());
                    asset_id.clone_from(&agent.asset_id);
                    done.stored += 1;
                }
                Some(report::Body::Status(status)) => {
                    if let Some(asset_id) = &asset_id {
                        out.samples.push(StatusSample {
                            asset_id: asset_id.clone(),
                            at,
                            seq: report.seq,
                            clock_suspect,
                            status,
                        });
                        done.stored += 1;
                    }
                }
                None => {}
            }
            done.acked = report.seq;
        }
        if let Some(asset) = &asset_id {
            out.last_seen.push((asset.clone(), received_at));
        }
        done.asset = asset_id;
        out.agent_seqs.push((agent_id.to_owned(), done.acked));
        match self.seqs.get_mut(agent_id) {
            Some(seq) => *seq = done.acked,
            None => {
                self.seqs.insert(agent_id.to_owned(), done.acked);
            }
        }
        if let Some(agent) = changed {
            self.agents.insert(agent_id.to_owned(), agent);
        }
        Ok(Ok(done))
    }

    /// Puts acknowledged sequences back as they were before a batch whose commit failed
    /// (`before` in the order the batch touched them; the earliest value per agent wins).
    pub fn restore_seqs(&mut self, before: Vec<(AgentId, u64)>) {
        for (agent, seq) in before.into_iter().rev() {
            self.seqs.insert(agent, seq);
        }
    }

    /// The asset `agent_id` reports for.
    pub fn asset_of_agent(&self, agent_id: &AgentId) -> Option<AssetId> {
        self.agents.get(agent_id).and_then(|a| a.asset_id.clone())
    }
}

fn from_timestamp(ts: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos.clamp(0, 999_999_999));
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}
