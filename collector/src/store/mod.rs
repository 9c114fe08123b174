//! Persistence: the typed [`Store`] trait and its implementations.
//!
//! Only `store::sled` names sled types; everything else sees `Arc<dyn Store>`. Writes go
//! through [`Store::commit`], which applies a [`WriteSet`] in a fixed order and returns only
//! once it is durable, so ingest can acknowledge what `commit` returned for. The order matters
//! for crash safety: records that carry an acknowledgement (`agent_seqs`) are written last,
//! and every other key is deterministic, so a batch replayed after a crash overwrites itself.
//! `memory` is an in-process store for unit tests; `conformance` is the suite both must pass.

mod codec;
#[cfg(test)]
pub mod conformance;
#[cfg(test)]
pub mod faulty;
pub mod format;
pub mod memory;
pub mod reopen;
pub mod sled;

use std::collections::HashMap;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::model::{
    AgentId, AgentRecord, Asset, AssetId, Change, Incident, IncidentEvent, InventoryRecord,
    OutboxEntry, Problem, ReachSample, Session, SnmpSnapshot, StatusSample, SupplyLevels, User,
};

pub use self::sled::SledStore;
pub use memory::MemoryStore;
pub use reopen::Reopening;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: ::sled::Error,
    },
    #[error("store {operation} failed: {source}")]
    Io {
        operation: &'static str,
        #[source]
        source: ::sled::Error,
    },
    #[error(
        "the store at {path} has format {found}, newer than this release reads (up to {supported}): \
         it was written by a later Caretaker; install that release (or newer) again, or restore a \
         backup made with this one into a new data directory"
    )]
    TooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("cannot write the store's records out: {0}")]
    Export(#[source] std::io::Error),
    #[error("store unavailable: {0}")]
    Unavailable(&'static str),
    #[error("a store task failed: {0}")]
    TaskFailed(String),
    #[error("store record {key} in {tree} is corrupt: {reason}")]
    Corrupt {
        tree: &'static str,
        key: String,
        reason: String,
    },
}

impl StoreError {
    /// Whether the filesystem under the store is full (ENOSPC, or a quota exceeded).
    pub fn is_full(&self) -> bool {
        let io = match self {
            StoreError::Open { source, .. } | StoreError::Io { source, .. } => match source {
                ::sled::Error::Io(io) => Some(io),
                _ => None,
            },
            StoreError::Unavailable(_)
            | StoreError::TaskFailed(_)
            | StoreError::Corrupt { .. }
            | StoreError::TooNew { .. } => None,
            StoreError::Export(io) => Some(io),
        };
        io.is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) || e.raw_os_error() == Some(28)
        })
    }
}

/// Everything one ingest batch writes, applied by [`Store::commit`] in field order.
#[derive(Debug, Default)]
pub struct WriteSet {
    pub samples: Vec<StatusSample>,
    /// Ping verdicts per asset, one per sweep.
    pub reach: Vec<(AssetId, ReachSample)>,
    /// Printer supply levels per asset and time.
    pub levels: Vec<(AssetId, OffsetDateTime, SupplyLevels)>,
    /// The latest SNMP description of an asset.
    pub snmp: Vec<(AssetId, SnmpSnapshot)>,
    pub changes: Vec<Change>,
    pub inventories: Vec<(AssetId, InventoryRecord)>,
    pub assets: Vec<Asset>,
    pub agents: Vec<AgentRecord>,
    pub last_seen: Vec<(AssetId, OffsetDateTime)>,
    pub incidents: Vec<Incident>,
    /// Appended to the event log under their own `seq`.
    pub incident_events: Vec<IncidentEvent>,
    pub problems: Vec<Problem>,
    pub outbox: Vec<OutboxEntry>,
    /// Small named values (cursors, counters), committed with the records they describe.
    pub meta: Vec<(String, u64)>,
    /// Highest durable report sequence per agent: written last, it is the acknowledgement.
    pub agent_seqs: Vec<(AgentId, u64)>,
    /// Dashboard users (by name).
    pub users: Vec<User>,
    /// Dashboard sessions by token hash; `None` removes one.
    pub sessions: Vec<(String, Option<Session>)>,
}

impl WriteSet {
    /// Appends `other`'s records after this set's (applied in that order).
    pub fn extend(&mut self, other: WriteSet) {
        let WriteSet {
            samples,
            reach,
            levels,
            snmp,
            changes,
            inventories,
            assets,
            agents,
            last_seen,
            incidents,
            incident_events,
            problems,
            outbox,
            meta,
            agent_seqs,
            users,
            sessions,
        } = other;
        self.samples.extend(samples);
        self.reach.extend(reach);
        self.levels.extend(levels);
        self.snmp.extend(snmp);
        self.changes.extend(changes);
        self.inventories.extend(inventories);
        self.assets.extend(assets);
        self.agents.extend(agents);
        self.last_seen.extend(last_seen);
        self.incidents.extend(incidents);
        self.incident_events.extend(incident_events);
        self.problems.extend(problems);
        self.outbox.extend(outbox);
        self.meta.extend(meta);
        self.agent_seqs.extend(agent_seqs);
        self.users.extend(users);
        self.sessions.extend(sessions);
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
            && self.reach.is_empty()
            && self.snmp.is_empty()
            && self.levels.is_empty()
            && self.changes.is_empty()
            && self.inventories.is_empty()
            && self.assets.is_empty()
            && self.agents.is_empty()
            && self.last_seen.is_empty()
            && self.agent_seqs.is_empty()
            && self.incidents.is_empty()
            && self.incident_events.is_empty()
            && self.problems.is_empty()
            && self.outbox.is_empty()
            && self.meta.is_empty()
            && self.users.is_empty()
            && self.sessions.is_empty()
    }
}

/// Runs blocking store work (sled scans, commits) off the async threads.
pub async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) => Err(StoreError::TaskFailed(error.to_string()).into()),
    }
}

/// One item of [`Store::dump`].
#[derive(Debug, Clone, Copy)]
pub enum Dump<'a> {
    Tree(&'a [u8]),
    Entry(&'a [u8], &'a [u8]),
}

/// Which change records to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ChangeQuery {
    pub asset: Option<AssetId>,
    pub since: Option<OffsetDateTime>,
    pub limit: usize,
}

/// The collector's persistent state, as typed operations.
pub trait Store: Send + Sync + 'static {
    /// Applies `set` in field order and returns once it survives a crash.
    fn commit(&self, set: WriteSet) -> Result<(), StoreError> {
        self.write(set)?;
        self.flush()
    }

    /// Applies `set` in field order; durable only after the next [`Store::flush`] returns.
    fn write(&self, set: WriteSet) -> Result<(), StoreError>;

    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// After a write failed: gets the store usable again if it can (reopening it where the
    /// engine stays broken after an I/O error). Stores that need nothing return `Ok`.
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn asset(&self, id: &str) -> Result<Option<Asset>, StoreError>;
    fn assets(&self) -> Result<Vec<Asset>, StoreError>;
    fn last_seen(&self) -> Result<HashMap<AssetId, OffsetDateTime>, StoreError>;
    fn inventory(&self, asset: &str) -> Result<Option<InventoryRecord>, StoreError>;
    /// Change records matching `query`, newest first, at most `query.limit`.
    fn changes(&self, query: &ChangeQuery) -> Result<Vec<Change>, StoreError>;
    /// Change records of one kind (`added`, `upgraded`, ...) since `since`, newest first, at
    /// most `limit`. Stores with an index by kind answer without scanning the others.
    fn changes_of_kind(
        &self,
        kind: &str,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let mut all = self.changes(&ChangeQuery {
            asset: None,
            since,
            limit: usize::MAX,
        })?;
        all.retain(|c| c.kind == kind);
        all.truncate(limit);
        Ok(all)
    }
    /// Status samples of one asset in `[from, to)`, oldest first, at most `limit`.
    fn samples(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<StatusSample>, StoreError>;

    /// Ping verdicts of one asset in `[from, to)`, oldest first, at most `limit`.
    fn reach(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ReachSample>, StoreError>;
    /// The newest ping verdict of one asset.
    fn latest_reach(&self, asset: &str) -> Result<Option<ReachSample>, StoreError>;
    /// The latest SNMP description of an asset.
    fn snmp(&self, asset: &str) -> Result<Option<SnmpSnapshot>, StoreError>;

    fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError>;
    /// Every incident, oldest first.
    fn incidents(&self) -> Result<Vec<Incident>, StoreError>;
    /// Events with `seq > after`, oldest first, at most `limit`.
    fn incident_events(&self, after: u64, limit: usize) -> Result<Vec<IncidentEvent>, StoreError>;
    fn problems(&self) -> Result<Vec<Problem>, StoreError>;
    /// Outbox entries, oldest first.
    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError>;
    /// A small named value (cursors, counters), e.g. the alerting side's event cursor.
    fn meta(&self, key: &str) -> Result<Option<u64>, StoreError>;
    fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError>;

    /// Replaces an asset's raw status samples before `before` with `rollups` (hourly
    /// summaries, JSON keyed by bucket start) and drops its ping verdicts before
    /// `reach_before`. Returns how many raw records were removed.
    fn compact(
        &self,
        asset: &str,
        before: OffsetDateTime,
        rollups: Vec<(OffsetDateTime, serde_json::Value)>,
        reach_before: OffsetDateTime,
    ) -> Result<usize, StoreError>;
    /// Drops an asset's hourly summaries before `before`; returns how many.
    fn prune_rollups(&self, asset: &str, before: OffsetDateTime) -> Result<usize, StoreError>;
    /// Removes these outbox entries (finished ones past retention); returns how many were there.
    fn remove_outbox(&self, ids: &[String]) -> Result<usize, StoreError>;
    /// Supply levels of one asset in `[from, to)`, oldest first.
    fn levels(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, SupplyLevels)>, StoreError>;
    /// Hourly summaries of one asset in `[from, to)`, oldest first.
    fn rollups(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, serde_json::Value)>, StoreError>;

    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError>;
    fn agent_seqs(&self) -> Result<HashMap<AgentId, u64>, StoreError>;

    /// Dashboard users, by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;
    /// Dashboard sessions (expired ones included; the web layer drops them).
    fn sessions(&self) -> Result<Vec<Session>, StoreError>;
    /// Every record of every tree, for backups (`backup`): `visit(Dump::Tree(name))` starts a
    /// tree, then `visit(Dump::Entry(key, value))` for each record in key order. Generic over
    /// trees, so a tree another module adds is backed up without changes here. Stores that
    /// cannot do this say so.
    fn dump(
        &self,
        visit: &mut dyn FnMut(Dump<'_>) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let _ = visit;
        Err(StoreError::Unavailable("this store cannot be backed up"))
    }

    /// Bytes the store occupies on disk (0 for in-memory stores).
    fn size_on_disk(&self) -> Result<u64, StoreError>;
}
