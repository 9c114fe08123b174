//! A store that fails on demand, for unit tests of what happens when writes or reads fail.
//! Wraps a [`MemoryStore`]; every operation is passed through unless a fault is armed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use time::OffsetDateTime;

use super::{ChangeQuery, MemoryStore, Store, StoreError, WriteSet};
use crate::model::{
    AgentId, AgentRecord, Asset, AssetId, Change, Incident, IncidentEvent, InventoryRecord,
    OutboxEntry, Problem, ReachSample, SnmpSnapshot, StatusSample, SupplyLevels,
};

#[derive(Default)]
pub struct FaultyStore {
    pub inner: MemoryStore,
    /// The next this many commits fail (nothing of them is written).
    pub failing_commits: AtomicU32,
    /// Every read fails while set.
    pub failing_reads: AtomicBool,
    /// Reading this asset's inventory fails (a corrupt record).
    pub corrupt_inventory: Mutex<Option<AssetId>>,
    /// Commits that went through.
    pub commits: AtomicU32,
}

fn broken() -> StoreError {
    StoreError::Unavailable("fault injected by the test")
}

impl FaultyStore {
    fn read(&self) -> Result<(), StoreError> {
        if self.failing_reads.load(Ordering::SeqCst) {
            Err(broken())
        } else {
            Ok(())
        }
    }
}

impl Store for FaultyStore {
    fn commit(&self, set: WriteSet) -> Result<(), StoreError> {
        let armed = self
            .failing_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if armed {
            return Err(broken());
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(set)
    }
    fn write(&self, set: WriteSet) -> Result<(), StoreError> {
        self.inner.write(set)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn asset(&self, id: &str) -> Result<Option<Asset>, StoreError> {
        self.read()?;
        self.inner.asset(id)
    }
    fn assets(&self) -> Result<Vec<Asset>, StoreError> {
        self.read()?;
        self.inner.assets()
    }
    fn last_seen(&self) -> Result<HashMap<AssetId, OffsetDateTime>, StoreError> {
        self.read()?;
        self.inner.last_seen()
    }
    fn inventory(&self, asset: &str) -> Result<Option<InventoryRecord>, StoreError> {
        self.read()?;
        let corrupt = self
            .corrupt_inventory
            .lock()
            .expect("lock")
            .as_deref()
            .is_some_and(|a| a == asset);
        if corrupt {
            return Err(StoreError::Corrupt {
                tree: "inventories",
                key: asset.to_owned(),
                reason: "fault injected by the test".to_owned(),
            });
        }
        self.inner.inventory(asset)
    }
    fn changes(&self, query: &ChangeQuery) -> Result<Vec<Change>, StoreError> {
        self.read()?;
        self.inner.changes(query)
    }
    fn samples(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<StatusSample>, StoreError> {
        self.read()?;
        self.inner.samples(asset, from, to, limit)
    }
    fn reach(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ReachSample>, StoreError> {
        self.read()?;
        self.inner.reach(asset, from, to, limit)
    }
    fn latest_reach(&self, asset: &str) -> Result<Option<ReachSample>, StoreError> {
        self.read()?;
        self.inner.latest_reach(asset)
    }
    fn snmp(&self, asset: &str) -> Result<Option<SnmpSnapshot>, StoreError> {
        self.read()?;
        self.inner.snmp(asset)
    }
    fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.read()?;
        self.inner.incident(id)
    }
    fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.read()?;
        self.inner.incidents()
    }
    fn incident_events(&self, after: u64, limit: usize) -> Result<Vec<IncidentEvent>, StoreError> {
        self.read()?;
        self.inner.incident_events(after, limit)
    }
    fn problems(&self) -> Result<Vec<Problem>, StoreError> {
        self.read()?;
        self.inner.problems()
    }
    fn changes_of_kind(
        &self,
        kind: &str,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        self.read()?;
        self.inner.changes_of_kind(kind, since, limit)
    }
    fn users(&self) -> Result<Vec<crate::model::User>, StoreError> {
        self.read()?;
        self.inner.users()
    }
    fn sessions(&self) -> Result<Vec<crate::model::Session>, StoreError> {
        self.read()?;
        self.inner.sessions()
    }
    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read()?;
        self.inner.outbox()
    }
    fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.read()?;
        self.inner.meta(key)
    }
    fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.inner.set_meta(key, value)
    }
    fn compact(
        &self,
        asset: &str,
        before: OffsetDateTime,
        rollups: Vec<(OffsetDateTime, serde_json::Value)>,
        reach_before: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        self.inner.compact(asset, before, rollups, reach_before)
    }
    fn prune_rollups(&self, asset: &str, before: OffsetDateTime) -> Result<usize, StoreError> {
        self.inner.prune_rollups(asset, before)
    }
    fn remove_outbox(&self, ids: &[String]) -> Result<usize, StoreError> {
        self.inner.remove_outbox(ids)
    }
    fn levels(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, SupplyLevels)>, StoreError> {
        self.read()?;
        self.inner.levels(asset, from, to)
    }
    fn rollups(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, serde_json::Value)>, StoreError> {
        self.read()?;
        self.inner.rollups(asset, from, to)
    }
    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.read()?;
        self.inner.agents()
    }
    fn agent_seqs(&self) -> Result<HashMap<AgentId, u64>, StoreError> {
        self.read()?;
        self.inner.agent_seqs()
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }
}
