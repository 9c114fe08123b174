//! One evaluation step: rules over the observations, then the incident engine.
//!
//! [`Detector`] holds what the step needs besides the register: the rules' settings, the
//! approved change windows, and the topology (who depends on whom), rebuilt after each sweep
//! from the config and the switches' forwarding tables. The register writer calls
//! [`Detector::evaluate`] once per batch that asks for it (a sweep, watch pings, a timer tick).

use std::collections::HashMap;

use time::OffsetDateTime;

use super::topology::{Parents, TopologyConfig};
use super::{Action, ActionError, Engine, IncidentsConfig, Maintenance};
use crate::model::{Asset, AssetId, Incident, Problem};
use crate::observe::Observations;
use crate::rules::{RulesConfig, Window};
use crate::store::{Store, StoreError, WriteSet};

/// Everything detection is configured with.
#[derive(Debug, Clone, Default)]
pub struct Detection {
    pub rules: RulesConfig,
    pub incidents: IncidentsConfig,
    pub maintenance: Vec<Maintenance>,
    pub topology: TopologyConfig,
    pub change_windows: Vec<Window>,
}

pub struct Detector {
    engine: Engine,
    rules: RulesConfig,
    change_windows: Vec<Window>,
    topology: TopologyConfig,
    parents: Parents,
}

impl Detector {
    /// Loads the incident engine and builds the topology for `assets`.
    pub fn load(
        store: &dyn Store,
        detection: Detection,
        assets: &[Asset],
        obs: &Observations,
    ) -> Result<Self, StoreError> {
        let engine = Engine::load(store, detection.incidents, detection.maintenance)?;
        let parents = Parents::build(&detection.topology, assets, &obs.topology, &[]);
        Ok(Self {
            engine,
            rules: detection.rules,
            change_windows: detection.change_windows,
            topology: detection.topology,
            parents,
        })
    }

    /// Relearns who depends on whom (after a sweep brought new forwarding tables and the
    /// paths to the routed ranges).
    pub fn rebuild_topology(
        &mut self,
        assets: &[Asset],
        obs: &Observations,
        paths: &[crate::scan::paths::RoutedPath],
    ) {
        self.parents = Parents::build(&self.topology, assets, &obs.topology, paths);
    }

    /// Runs the rules as of `now` and feeds their conditions to the incident engine.
    pub fn evaluate(
        &mut self,
        now: OffsetDateTime,
        assets: &[Asset],
        obs: &Observations,
        baseline: Option<OffsetDateTime>,
        out: &mut WriteSet,
    ) {
        let context = crate::rules::Context {
            now,
            assets,
            obs,
            change_windows: &self.change_windows,
            baseline,
        };
        let conditions = crate::rules::evaluate(&self.rules, &context);
        let by_id: HashMap<AssetId, &Asset> = assets.iter().map(|a| (a.id.clone(), a)).collect();
        self.engine
            .step(now, conditions, &by_id, &self.parents, out);
    }

    /// A technician's action on an incident (id or `INC…` number).
    pub fn act(
        &mut self,
        store: &dyn Store,
        now: OffsetDateTime,
        id: &str,
        action: Action,
        out: &mut WriteSet,
    ) -> Result<Result<Incident, ActionError>, StoreError> {
        self.engine.act(store, now, id, action, out)
    }

    /// A member of staff's report: a new incident.
    pub fn report(
        &mut self,
        now: OffsetDateTime,
        report: super::StaffReport,
        asset_name: String,
        out: &mut WriteSet,
    ) -> Incident {
        self.engine.report(now, report, asset_name, out)
    }

    /// A technician's update of a problem's root cause, workaround or known-error flag.
    pub fn update_problem(
        &mut self,
        now: OffsetDateTime,
        id: &str,
        update: super::ProblemUpdate,
        out: &mut WriteSet,
    ) -> Result<Problem, ActionError> {
        self.engine.update_problem(now, id, update, out)
    }
}
