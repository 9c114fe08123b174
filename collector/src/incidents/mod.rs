//! Incident management: turns rule conditions into incidents that open, update, resolve,
//! reopen and group into problems by themselves, and applies technicians' actions.
//!
//! [`Engine`] lives in the register writer (one thread, no locks). Every evaluation is one
//! [`Engine::step`]: maintenance windows drop conditions, topology folds a down switch's
//! children into the switch's incident, then each `(rule, asset)` condition either updates its
//! open incident, reopens a recently resolved one, or opens a new one; open incidents whose
//! condition has been clear for the hold-down are resolved. Flapping incidents (many
//! transitions in the flap window) stay open until stable for four hold-downs. Every change
//! goes out as records plus [`IncidentEvent`]s in the caller's `WriteSet`; alerting reads the
//! events. `detect` runs the rules and the engine as one step; `topology` finds parents;
//! `problems` proposes problems.

pub mod detect;
pub mod problems;
pub mod topology;

pub use detect::{Detection, Detector};
pub use problems::ProblemUpdate;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::model::{
    Asset, AssetId, Incident, IncidentEvent, IncidentEventKind, IncidentState, Note, Problem,
};
use crate::rules::{Condition, Window};
use crate::store::{Store, StoreError, WriteSet};

/// `[incidents]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// How often the rules run (also after every sweep).
    #[serde(with = "humantime_serde")]
    pub evaluate_every: Duration,
    /// A condition must stay clear this long before its incident resolves itself.
    #[serde(with = "humantime_serde")]
    pub hold_down: Duration,
    /// A condition returning within this of resolution reopens the incident.
    #[serde(with = "humantime_serde")]
    pub reopen_within: Duration,
    /// Open/clear transitions within `flap_window` that make an incident flapping.
    pub flap_transitions: usize,
    #[serde(with = "humantime_serde")]
    pub flap_window: Duration,
    /// Resolved incidents close after this.
    #[serde(with = "humantime_serde")]
    pub close_after: Duration,
    /// Repeats of one rule on one asset within `problem_window` that propose a problem.
    pub problem_repeats: usize,
    #[serde(with = "humantime_serde")]
    pub problem_window: Duration,
    /// Assets one rule fires on within `widespread_window` that propose a problem.
    pub widespread_assets: usize,
    #[serde(with = "humantime_serde")]
    pub widespread_window: Duration,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            evaluate_every: Duration::from_secs(5),
            hold_down: Duration::from_secs(60),
            reopen_within: Duration::from_secs(3600),
            flap_transitions: 6,
            flap_window: Duration::from_secs(3600),
            close_after: Duration::from_secs(7 * 86_400),
            problem_repeats: 3,
            problem_window: Duration::from_secs(7 * 86_400),
            widespread_assets: 5,
            widespread_window: Duration::from_secs(3600),
        }
    }
}

/// `[[maintenance]]`: rules suppressed for some assets during a window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Asset ids, names, IPs, or `kind:printer`; empty = every asset.
    #[serde(default)]
    pub assets: Vec<String>,
    /// Rules suppressed; empty = all.
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub note: String,
}

impl Maintenance {
    fn covers(&self, now: OffsetDateTime, asset: &Asset, rule: &str) -> bool {
        self.start <= now
            && now < self.end
            && (self.rules.is_empty() || self.rules.iter().any(|r| r == rule))
            && (self.assets.is_empty() || self.assets.iter().any(|a| selector_matches(a, asset)))
    }
}

/// Whether `selector` (id, name, hostname, IP or `kind:KIND`) names `asset`.
pub fn selector_matches(selector: &str, asset: &Asset) -> bool {
    if let Some(kind) = selector.strip_prefix("kind:") {
        return serde_json::to_value(asset.kind)
            .ok()
            .and_then(|v| v.as_str().map(|k| k == kind))
            .unwrap_or(false);
    }
    selector == asset.id
        || selector.eq_ignore_ascii_case(&asset.name)
        || (!asset.hostname.is_empty() && selector.eq_ignore_ascii_case(&asset.hostname))
        || asset.ips.iter().any(|ip| ip == selector)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionError {
    #[error("incident {0} not found")]
    NotFound(String),
    #[error("incident {number} is {state}; it cannot be {action}")]
    Conflict {
        number: String,
        state: String,
        action: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A technician's action on an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Acknowledge {
        by: String,
    },
    Note {
        by: String,
        text: String,
    },
    Resolve {
        by: String,
        text: Option<String>,
    },
    /// Give the incident to a technician (empty `to`: unassign).
    Assign {
        by: String,
        to: String,
    },
    /// Put it on hold (waiting for a part, a supplier, the user), with the reason.
    Hold {
        by: String,
        reason: String,
    },
    /// Take an incident off hold (back in progress), with an optional note.
    Resume {
        by: String,
        text: Option<String>,
    },
    /// Open a resolved incident again.
    Reopen {
        by: String,
        text: Option<String>,
    },
}

/// A member of staff's report from `/report`: becomes an incident of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffReport {
    pub name: String,
    pub email: String,
    pub room: String,
    pub text: String,
    /// The device it is about, when the reporter picked one.
    pub asset_id: Option<AssetId>,
}

pub struct Engine {
    config: IncidentsConfig,
    maintenance: Vec<Maintenance>,
    /// Every incident not closed, by id.
    live: HashMap<String, Incident>,
    /// Open incident per (rule, asset).
    open: HashMap<(String, AssetId), String>,
    /// Latest resolved incident per (rule, asset), for reopening.
    resolved: HashMap<(String, AssetId), String>,
    /// Resolved by hand while the condition still held: do not reopen until it clears once.
    held_resolved: HashSet<(String, AssetId)>,
    next_number: u64,
    next_event: u64,
    pub(crate) problems: problems::Problems,
}

impl Engine {
    /// Loads open and recently resolved incidents and the counters from the store.
    pub fn load(
        store: &dyn Store,
        config: IncidentsConfig,
        maintenance: Vec<Maintenance>,
    ) -> Result<Self, StoreError> {
        let incidents = store.incidents()?;
        let next_number = incidents
            .iter()
            .filter_map(|i| i.number.trim_start_matches("INC").parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let next_event = store.meta("incidents.next_event")?.unwrap_or(1);
        let mut engine = Self {
            config,
            maintenance,
            live: HashMap::new(),
            open: HashMap::new(),
            resolved: HashMap::new(),
            held_resolved: HashSet::new(),
            next_number,
            next_event,
            problems: problems::Problems::load(store.problems()?),
        };
        for incident in incidents {
            if incident.state == IncidentState::Closed {
                continue;
            }
            engine.index(incident);
        }
        Ok(engine)
    }

    fn index(&mut self, incident: Incident) {
        if incident.rule == crate::model::STAFF_RULE {
            // Staff reports are no rule's condition: nothing resolves or reopens them by
            // itself, so they live outside the (rule, asset) maps.
            self.live.insert(incident.id.clone(), incident);
            return;
        }
        let key = (incident.rule.clone(), incident.asset_id.clone());
        if incident.state.is_open() {
            self.open.insert(key, incident.id.clone());
        } else {
            let newer = self
                .resolved
                .get(&key)
                .and_then(|id| self.live.get(id))
                .is_none_or(|old| old.resolved_at <= incident.resolved_at);
            if newer {
                self.resolved.insert(key, incident.id.clone());
            }
        }
        self.live.insert(incident.id.clone(), incident);
    }

    fn event(
        &mut self,
        at: OffsetDateTime,
        incident: &str,
        kind: IncidentEventKind,
        out: &mut WriteSet,
    ) {
        out.incident_events.push(IncidentEvent {
            seq: self.next_event,
            at,
            incident_id: incident.to_owned(),
            kind,
        });
        self.next_event += 1;
        out.meta.retain(|(k, _)| k != "incidents.next_event");
        out.meta
            .push(("incidents.next_event".to_owned(), self.next_event));
    }

    fn save(&mut self, incident: Incident, out: &mut WriteSet) {
        out.incidents.retain(|i| i.id != incident.id);
        out.incidents.push(incident.clone());
        self.index(incident);
    }

    /// One evaluation: conditions in, incident records and events out.
    pub fn step(
        &mut self,
        now: OffsetDateTime,
        conditions: Vec<Condition>,
        assets: &HashMap<AssetId, &Asset>,
        parents: &topology::Parents,
        out: &mut WriteSet,
    ) {
        let conditions: Vec<Condition> = conditions
            .into_iter()
            .filter(|c| {
                assets
                    .get(&c.asset_id)
                    .is_none_or(|a| !self.maintenance.iter().any(|m| m.covers(now, a, c.rule)))
            })
            .collect();
        let conditions = topology::fold(conditions, parents, assets);
        let mut active: HashSet<(String, AssetId)> = HashSet::new();
        for condition in conditions {
            let key = (condition.rule.to_owned(), condition.asset_id.clone());
            active.insert(key.clone());
            if self.held_resolved.contains(&key) {
                continue;
            }
            let asset_name = assets
                .get(&condition.asset_id)
                .map(|a| a.name.clone())
                .unwrap_or_default();
            if let Some(id) = self.open.get(&key).cloned() {
                self.update(now, &id, condition, out);
            } else if let Some(id) = self.reopenable(now, &key) {
                self.reopen(now, &id, condition, out);
            } else {
                self.open_new(now, condition, asset_name, out);
            }
        }
        self.held_resolved.retain(|key| active.contains(key));
        let hold = time::Duration::try_from(self.config.hold_down).unwrap_or(time::Duration::MAX);
        let cleared: Vec<String> = self
            .open
            .iter()
            .filter(|(key, _)| !active.contains(*key))
            .map(|(_, id)| id.clone())
            .collect();
        for id in cleared {
            let mut incident = self.live[&id].clone();
            if incident.clear_since.is_none() {
                push_transition(&mut incident, now);
            }
            let since = *incident.clear_since.get_or_insert(now);
            let needed = if incident.flapping { hold * 4 } else { hold };
            if now - since >= needed {
                incident.state = IncidentState::Resolved;
                incident.resolved_at = Some(now);
                incident.updated_at = now;
                incident.clear_since = None;
                push_transition(&mut incident, now);
                incident.notes.push(Note {
                    at: now,
                    author: "caretaker".to_owned(),
                    text: format!(
                        "Resolved automatically: the condition has been clear for {}.",
                        crate::rules::human(now - since)
                    ),
                });
                self.open
                    .remove(&(incident.rule.clone(), incident.asset_id.clone()));
                self.event(
                    now,
                    &id,
                    IncidentEventKind::Resolved { automatic: true },
                    out,
                );
                self.save(incident, out);
            } else if incident.clear_since == Some(now) {
                incident.updated_at = now;
                self.save(incident, out);
            }
        }
        self.close_old(now, out);
        let new_problems = self
            .problems
            .propose(now, &self.config, self.live.values(), out);
        for (problem, incident_ids) in new_problems {
            for id in incident_ids {
                if let Some(mut incident) = self.live.get(&id).cloned()
                    && incident.problem_id.is_none()
                {
                    incident.problem_id = Some(problem.clone());
                    self.save(incident, out);
                }
            }
        }
    }

    fn reopenable(&self, now: OffsetDateTime, key: &(String, AssetId)) -> Option<String> {
        let id = self.resolved.get(key)?;
        let incident = self.live.get(id)?;
        let within =
            time::Duration::try_from(self.config.reopen_within).unwrap_or(time::Duration::MAX);
        (incident.state == IncidentState::Resolved
            && incident.resolved_at.is_some_and(|r| now - r <= within))
        .then(|| id.clone())
    }

    fn update(&mut self, now: OffsetDateTime, id: &str, condition: Condition, out: &mut WriteSet) {
        let mut incident = self.live[id].clone();
        let before = incident.clone();
        let priority = priority(condition.impact, condition.urgency);
        if incident.clear_since.take().is_some() {
            push_transition(&mut incident, now);
            self.check_flapping(&mut incident, now);
        }
        incident.title = condition.title;
        incident.description = condition.description;
        incident.measured = condition.measured;
        incident.affected = affected_of(&incident.measured);
        if priority != incident.priority {
            let from = incident.priority;
            incident.impact = condition.impact;
            incident.urgency = condition.urgency;
            incident.priority = priority;
            self.event(
                now,
                id,
                IncidentEventKind::PriorityChanged { from, to: priority },
                out,
            );
        }
        if incident != before {
            incident.updated_at = now;
            self.save(incident, out);
        }
    }

    fn reopen(&mut self, now: OffsetDateTime, id: &str, condition: Condition, out: &mut WriteSet) {
        let mut incident = self.live[id].clone();
        let key = (incident.rule.clone(), incident.asset_id.clone());
        incident.state = if incident.acknowledged_at.is_some() {
            IncidentState::InProgress
        } else {
            IncidentState::New
        };
        incident.resolved_at = None;
        incident.clear_since = None;
        incident.occurrences += 1;
        incident.updated_at = now;
        incident.title = condition.title;
        incident.description = condition.description;
        incident.measured = condition.measured;
        incident.affected = affected_of(&incident.measured);
        incident.impact = condition.impact;
        incident.urgency = condition.urgency;
        incident.priority = priority(condition.impact, condition.urgency);
        push_transition(&mut incident, now);
        self.check_flapping(&mut incident, now);
        incident.notes.push(Note {
            at: now,
            author: "caretaker".to_owned(),
            text: "Reopened: the condition came back.".to_owned(),
        });
        self.resolved.remove(&key);
        self.open.insert(key, id.to_owned());
        self.event(now, id, IncidentEventKind::Reopened, out);
        self.save(incident, out);
    }

    /// Marks an incident flapping when its condition changed too often within the window.
    fn check_flapping(&self, incident: &mut Incident, now: OffsetDateTime) {
        let window =
            time::Duration::try_from(self.config.flap_window).unwrap_or(time::Duration::MAX);
        let recent = incident
            .transitions
            .iter()
            .filter(|t| now.unix_timestamp() - **t <= window.whole_seconds())
            .count();
        if recent >= self.config.flap_transitions && !incident.flapping {
            incident.flapping = true;
            incident.notes.push(Note {
                at: now,
                author: "caretaker".to_owned(),
                text: format!(
                    "Flapping: {recent} changes within {}; kept open until stable.",
                    crate::rules::human(window)
                ),
            });
        }
    }

    fn open_new(
        &mut self,
        now: OffsetDateTime,
        condition: Condition,
        asset_name: String,
        out: &mut WriteSet,
    ) {
        let number = format!("INC{:07}", self.next_number);
        self.next_number += 1;
        let id = format!("{:016x}", rand::random::<u64>());
        let affected = affected_of(&condition.measured);
        let incident = Incident {
            id: id.clone(),
            number,
            asset_id: condition.asset_id.clone(),
            asset_name,
            rule: condition.rule.to_owned(),
            title: condition.title,
            description: condition.description,
            impact: condition.impact,
            urgency: condition.urgency,
            priority: priority(condition.impact, condition.urgency),
            state: IncidentState::New,
            opened_at: now,
            updated_at: now,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            occurrences: 1,
            notes: Vec::new(),
            affected,
            flapping: false,
            measured: condition.measured,
            problem_id: None,
            clear_since: None,
            transitions: vec![now.unix_timestamp()],
            desk: Default::default(),
        };
        self.resolved
            .remove(&(incident.rule.clone(), incident.asset_id.clone()));
        self.open.insert(
            (incident.rule.clone(), incident.asset_id.clone()),
            id.clone(),
        );
        self.event(now, &id, IncidentEventKind::Opened, out);
        self.save(incident, out);
    }

    fn close_old(&mut self, now: OffsetDateTime, out: &mut WriteSet) {
        let after =
            time::Duration::try_from(self.config.close_after).unwrap_or(time::Duration::MAX);
        let due: Vec<String> = self
            .live
            .values()
            .filter(|i| {
                i.state == IncidentState::Resolved
                    && i.resolved_at.is_some_and(|r| now - r >= after)
            })
            .map(|i| i.id.clone())
            .collect();
        for id in due {
            let mut incident = self.live.remove(&id).expect("listed above");
            let key = (incident.rule.clone(), incident.asset_id.clone());
            if self.resolved.get(&key) == Some(&id) {
                self.resolved.remove(&key);
            }
            incident.state = IncidentState::Closed;
            incident.closed_at = Some(now);
            incident.updated_at = now;
            self.event(now, &id, IncidentEventKind::Closed, out);
            out.incidents.retain(|i| i.id != id);
            out.incidents.push(incident);
        }
    }

    /// Applies a technician's action; `id` may be the id or the `INC…` number.
    pub fn act(
        &mut self,
        store: &dyn Store,
        now: OffsetDateTime,
        id: &str,
        action: Action,
        out: &mut WriteSet,
    ) -> Result<Result<Incident, ActionError>, StoreError> {
        let found = self
            .live
            .values()
            .find(|i| i.id == id || i.number.eq_ignore_ascii_case(id))
            .cloned();
        let mut incident = match found {
            Some(i) => i,
            None => match store
                .incidents()?
                .into_iter()
                .find(|i| i.id == id || i.number.eq_ignore_ascii_case(id))
            {
                Some(closed) => {
                    return Ok(Err(ActionError::Conflict {
                        number: closed.number,
                        state: "closed".to_owned(),
                        action: action_name(&action),
                    }));
                }
                None => return Ok(Err(ActionError::NotFound(id.to_owned()))),
            },
        };
        let state = serde_json::to_value(incident.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let conflict = |incident: &Incident, action: &'static str| ActionError::Conflict {
            number: incident.number.clone(),
            state: state.clone(),
            action,
        };
        match action {
            Action::Acknowledge { by } => {
                if !incident.state.is_open() {
                    return Ok(Err(conflict(&incident, "acknowledged")));
                }
                if incident.acknowledged_at.is_none() {
                    incident.acknowledged_at = Some(now);
                }
                incident.state = IncidentState::InProgress;
                incident.notes.push(Note {
                    at: now,
                    author: by.clone(),
                    text: "Acknowledged.".to_owned(),
                });
                self.event(
                    now,
                    &incident.id,
                    IncidentEventKind::Acknowledged { by },
                    out,
                );
            }
            Action::Note { by, text } => {
                if text.trim().is_empty() {
                    return Ok(Err(ActionError::Invalid("a note needs text".to_owned())));
                }
                if text.len() > 10_000 {
                    return Ok(Err(ActionError::Invalid(
                        "a note is limited to 10,000 bytes".to_owned(),
                    )));
                }
                incident.notes.push(Note {
                    at: now,
                    author: by.clone(),
                    text,
                });
                self.event(now, &incident.id, IncidentEventKind::Noted { by }, out);
            }
            Action::Resolve { by, text } => {
                if !incident.state.is_open() {
                    return Ok(Err(conflict(&incident, "resolved")));
                }
                let key = (incident.rule.clone(), incident.asset_id.clone());
                incident.state = IncidentState::Resolved;
                incident.resolved_at = Some(now);
                incident.clear_since = None;
                push_transition(&mut incident, now);
                incident.notes.push(Note {
                    at: now,
                    author: by,
                    text: text.unwrap_or_else(|| "Resolved by hand.".to_owned()),
                });
                self.open.remove(&key);
                // Until the condition clears once, it must not reopen what a person resolved.
                if incident.rule != crate::model::STAFF_RULE {
                    self.held_resolved.insert(key);
                }
                self.event(
                    now,
                    &incident.id,
                    IncidentEventKind::Resolved { automatic: false },
                    out,
                );
            }
            Action::Assign { by, to } => {
                if !incident.state.is_open() {
                    return Ok(Err(conflict(&incident, "assigned")));
                }
                let to = to.trim().to_owned();
                if to.len() > 200 {
                    return Ok(Err(ActionError::Invalid(
                        "an assignee's name is limited to 200 bytes".to_owned(),
                    )));
                }
                incident.desk.assigned_to = (!to.is_empty()).then(|| to.clone());
                if incident.state == IncidentState::New && !to.is_empty() {
                    incident.state = IncidentState::InProgress;
                }
                incident.notes.push(Note {
                    at: now,
                    author: by.clone(),
                    text: if to.is_empty() {
                        "Unassigned.".to_owned()
                    } else {
                        format!("Assigned to {to}.")
                    },
                });
                self.event(
                    now,
                    &incident.id,
                    IncidentEventKind::Assigned { by, to },
                    out,
                );
            }
            Action::Hold { by, reason } => {
                if !incident.state.is_open() {
                    return Ok(Err(conflict(&incident, "put on hold")));
                }
                let reason = reason.trim().to_owned();
                if reason.is_empty() {
                    return Ok(Err(ActionError::Invalid(
                        "putting an incident on hold needs a reason".to_owned(),
                    )));
                }
                if reason.len() > 10_000 {
                    return Ok(Err(ActionError::Invalid(
                        "a reason is limited to 10,000 bytes".to_owned(),
                    )));
                }
                incident.state = IncidentState::OnHold;
                incident.desk.hold_reason = Some(reason.clone());
                incident.notes.push(Note {
                    at: now,
                    author: by.clone(),
                    text: format!("On hold: {reason}"),
                });
                self.event(now, &incident.id, IncidentEventKind::Held { by }, out);
            }
            Action::Resume { by, text } => {
                if incident.state != IncidentState::OnHold {
                    return Ok(Err(conflict(&incident, "taken off hold")));
                }
                if text.as_ref().is_some_and(|t| t.len() > 10_000) {
                    return Ok(Err(ActionError::Invalid(
                        "a note is limited to 10,000 bytes".to_owned(),
                    )));
                }
                incident.state = IncidentState::InProgress;
                incident.desk.hold_reason = None;
                incident.notes.push(Note {
                    at: now,
                    author: by.clone(),
                    text: match text {
                        Some(t) => format!("Taken off hold: {t}"),
                        None => "Taken off hold.".to_owned(),
                    },
                });
                self.event(now, &incident.id, IncidentEventKind::Resumed { by }, out);
            }
            Action::Reopen { by, text } => {
                if incident.state != IncidentState::Resolved {
                    return Ok(Err(conflict(&incident, "reopened")));
                }
                let key = (incident.rule.clone(), incident.asset_id.clone());
                if incident.rule != crate::model::STAFF_RULE && self.open.contains_key(&key) {
                    return Ok(Err(ActionError::Invalid(format!(
                        "{} cannot be reopened: a newer incident is open for the same condition",
                        incident.number
                    ))));
                }
                incident.state = IncidentState::InProgress;
                incident.resolved_at = None;
                incident.desk.hold_reason = None;
                push_transition(&mut incident, now);
                incident.notes.push(Note {
                    at: now,
                    author: by,
                    text: text.unwrap_or_else(|| "Reopened by hand.".to_owned()),
                });
                if incident.rule != crate::model::STAFF_RULE {
                    self.held_resolved.remove(&key);
                    if self.resolved.get(&key) == Some(&incident.id) {
                        self.resolved.remove(&key);
                    }
                    self.open.insert(key, incident.id.clone());
                }
                self.event(now, &incident.id, IncidentEventKind::Reopened, out);
            }
        }
        incident.updated_at = now;
        self.save(incident.clone(), out);
        Ok(Ok(incident))
    }

    /// Opens an incident for a member of staff's report; its number is the reference they see.
    pub fn report(
        &mut self,
        now: OffsetDateTime,
        report: StaffReport,
        asset_name: String,
        out: &mut WriteSet,
    ) -> Incident {
        let number = format!("INC{:07}", self.next_number);
        self.next_number += 1;
        let id = format!("{:016x}", rand::random::<u64>());
        let first_line = report.text.lines().next().unwrap_or_default();
        let mut title: String = first_line.chars().take(80).collect();
        if title.len() < first_line.len() {
            title.push('…');
        }
        let incident = Incident {
            id: id.clone(),
            number,
            asset_id: report.asset_id.clone().unwrap_or_default(),
            asset_name,
            rule: crate::model::STAFF_RULE.to_owned(),
            title: format!("Reported by {}: {title}", report.name),
            description: report.text,
            impact: 3,
            urgency: 2,
            priority: priority(3, 2),
            state: IncidentState::New,
            opened_at: now,
            updated_at: now,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            occurrences: 1,
            notes: Vec::new(),
            affected: Vec::new(),
            flapping: false,
            measured: serde_json::json!({"room": report.room}),
            problem_id: None,
            clear_since: None,
            transitions: vec![now.unix_timestamp()],
            desk: crate::model::Desk {
                reporter: Some(crate::model::Reporter {
                    name: report.name,
                    email: report.email,
                    room: report.room,
                }),
                ..Default::default()
            },
        };
        self.event(now, &id, IncidentEventKind::Opened, out);
        self.save(incident.clone(), out);
        incident
    }

    /// Sets a problem's root cause / known-error flag.
    pub fn update_problem(
        &mut self,
        now: OffsetDateTime,
        id: &str,
        update: ProblemUpdate,
        out: &mut WriteSet,
    ) -> Result<Problem, ActionError> {
        self.problems.update(now, id, update, out)
    }
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Acknowledge { .. } => "acknowledged",
        Action::Note { .. } => "noted",
        Action::Resolve { .. } => "resolved",
        Action::Assign { .. } => "assigned",
        Action::Hold { .. } => "put on hold",
        Action::Resume { .. } => "taken off hold",
        Action::Reopen { .. } => "reopened",
    }
}

/// ITIL: impact + urgency − 1, from P1 (critical) to P5 (planning).
pub fn priority(impact: u8, urgency: u8) -> u8 {
    (impact.clamp(1, 3) + urgency.clamp(1, 3)).saturating_sub(1)
}

fn push_transition(incident: &mut Incident, now: OffsetDateTime) {
    incident.transitions.push(now.unix_timestamp());
    if incident.transitions.len() > 64 {
        let excess = incident.transitions.len() - 64;
        incident.transitions.drain(..excess);
    }
}

fn affected_of(measured: &serde_json::Value) -> Vec<AssetId> {
    measured["affected"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Change windows must not overlap (the config reports it with exit 78).
pub fn overlapping(windows: &[Window]) -> Option<(usize, usize)> {
    for (i, a) in windows.iter().enumerate() {
        if a.end <= a.start {
            return Some((i, i));
        }
        for (j, b) in windows.iter().enumerate().skip(i + 1) {
            if a.start < b.end && b.start < a.end {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
