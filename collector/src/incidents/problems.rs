//! Problem management: propose a problem when one rule fires on one asset again and again
//! (`problem_repeats` times within `problem_window`) or on many assets at once
//! (`widespread_assets` within `widespread_window`), linking the incidents. Technicians add
//! the root cause and the workaround and set the known-error flag.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use super::{ActionError, IncidentsConfig};
use crate::model::{Incident, Problem};
use crate::store::WriteSet;

/// A technician's change to a problem: each field given is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProblemUpdate {
    pub root_cause: Option<String>,
    pub workaround: Option<String>,
    pub known_error: Option<bool>,
}

#[derive(Debug, Default)]
pub struct Problems {
    all: BTreeMap<String, Problem>,
    next_number: u64,
}

impl Problems {
    pub fn load(problems: Vec<Problem>) -> Self {
        let next_number = problems
            .iter()
            .filter_map(|p| p.number.trim_start_matches("PRB").parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        Self {
            all: problems.into_iter().map(|p| (p.id.clone(), p)).collect(),
            next_number,
        }
    }

    /// Proposes new problems (and links new incidents to existing ones). Returns the problem
    /// id each linked incident should carry.
    pub fn propose<'a>(
        &mut self,
        now: OffsetDateTime,
        config: &IncidentsConfig,
        incidents: impl Iterator<Item = &'a Incident>,
        out: &mut WriteSet,
    ) -> Vec<(String, Vec<String>)> {
        let incidents: Vec<&Incident> = incidents.collect();
        let repeat_window =
            time::Duration::try_from(config.problem_window).unwrap_or(time::Duration::MAX);
        let wide_window =
            time::Duration::try_from(config.widespread_window).unwrap_or(time::Duration::MAX);
        let mut linked = Vec::new();

        // One rule on one asset, again and again: count every (re)opening in the window.
        let mut repeats: BTreeMap<(&str, &str), (usize, Vec<String>)> = BTreeMap::new();
        for incident in &incidents {
            let openings = incident
                .transitions
                .iter()
                .step_by(2)
                .filter(|t| now.unix_timestamp() - **t <= repeat_window.whole_seconds())
                .count();
            let entry = repeats
                .entry((incident.rule.as_str(), incident.asset_id.as_str()))
                .or_default();
            entry.0 += openings;
            entry.1.push(incident.id.clone());
        }
        for ((rule, asset), (count, ids)) in repeats {
            if count < config.problem_repeats {
                continue;
            }
            let existing = self
                .all
                .values()
                .find(|p| {
                    p.pattern == "repeat" && p.rule == rule && p.asset_ids == [asset.to_owned()]
                })
                .map(|p| p.id.clone());
            let title = incidents
                .iter()
                .find(|i| i.asset_id == asset)
                .map(|i| i.asset_name.clone())
                .unwrap_or_default();
            let id = match existing {
                Some(id) => id,
                None => self.create(
                    now,
                    rule,
                    "repeat",
                    format!("{rule} keeps recurring on {title} ({count} times)"),
                    vec![asset.to_owned()],
                    out,
                ),
            };
            self.link(now, &id, &ids, out);
            linked.push((id, ids));
        }

        // One rule on many assets at once.
        let mut wide: BTreeMap<&str, (BTreeSet<String>, Vec<String>)> = BTreeMap::new();
        for incident in &incidents {
            if now - incident.opened_at <= wide_window && incident.problem_id.is_none() {
                let entry = wide.entry(incident.rule.as_str()).or_default();
                entry.0.insert(incident.asset_id.clone());
                entry.1.push(incident.id.clone());
            }
        }
        for (rule, (assets, ids)) in wide {
            if assets.len() < config.widespread_assets {
                continue;
            }
            let existing = self
                .all
                .values()
                .find(|p| {
                    p.pattern == "widespread" && p.rule == rule && now - p.created_at <= wide_window
                })
                .map(|p| p.id.clone());
            let id = match existing {
                Some(id) => id,
                None => self.create(
                    now,
                    rule,
                    "widespread",
                    format!("{rule} on {} devices at once", assets.len()),
                    assets.iter().cloned().collect(),
                    out,
                ),
            };
            self.link(now, &id, &ids, out);
            linked.push((id, ids));
        }
        linked
    }

    fn create(
        &mut self,
        now: OffsetDateTime,
        rule: &str,
        pattern: &str,
        title: String,
        assets: Vec<String>,
        out: &mut WriteSet,
    ) -> String {
        let id = format!("{:016x}", rand::random::<u64>());
        let problem = Problem {
            id: id.clone(),
            number: format!("PRB{:07}", self.next_number),
            rule: rule.to_owned(),
            title,
            pattern: pattern.to_owned(),
            asset_ids: assets,
            incident_ids: Vec::new(),
            created_at: now,
            updated_at: now,
            root_cause: String::new(),
            workaround: String::new(),
            known_error: false,
        };
        self.next_number += 1;
        tracing::info!(number = %problem.number, rule, pattern, "Problem proposed");
        out.problems.push(problem.clone());
        self.all.insert(id.clone(), problem);
        id
    }

    fn link(&mut self, now: OffsetDateTime, id: &str, incidents: &[String], out: &mut WriteSet) {
        let Some(problem) = self.all.get_mut(id) else {
            return;
        };
        let before = problem.incident_ids.len();
        for incident in incidents {
            if !problem.incident_ids.contains(incident) {
                problem.incident_ids.push(incident.clone());
            }
        }
        if problem.incident_ids.len() != before {
            problem.updated_at = now;
            out.problems.retain(|p| p.id != id);
            out.problems.push(problem.clone());
        }
    }

    pub fn update(
        &mut self,
        now: OffsetDateTime,
        id: &str,
        update: ProblemUpdate,
        out: &mut WriteSet,
    ) -> Result<Problem, ActionError> {
        let ProblemUpdate {
            root_cause,
            workaround,
            known_error,
        } = update;
        for (text, what) in [(&root_cause, "a root cause"), (&workaround, "a workaround")] {
            if text.as_ref().is_some_and(|t| t.len() > 10_000) {
                return Err(ActionError::Invalid(format!(
                    "{what} is limited to 10,000 bytes"
                )));
            }
        }
        let problem = self
            .all
            .values_mut()
            .find(|p| p.id == id || p.number.eq_ignore_ascii_case(id))
            .ok_or_else(|| ActionError::NotFound(id.to_owned()))?;
        if let Some(cause) = root_cause {
            problem.root_cause = cause;
        }
        if let Some(workaround) = workaround {
            problem.workaround = workaround;
        }
        if let Some(flag) = known_error {
            problem.known_error = flag;
        }
        problem.updated_at = now;
        out.problems.retain(|p| p.id != problem.id);
        out.problems.push(problem.clone());
        Ok(problem.clone())
    }
}
