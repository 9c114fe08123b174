//! A store that can be closed and opened again underneath everyone holding it.
//!
//! sled stays broken after a failed write (a full disk): every later operation fails even
//! once space is back. [`Reopening`] keeps the open store behind a lock; [`Store::recover`]
//! drops it (after in-flight calls finish) and opens it again from its files, which hold
//! everything that was ever acknowledged. While it is closed every call fails with
//! `StoreError::Unavailable`, so callers retry as for any store error.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::{ChangeQuery, Store, StoreError, WriteSet};
use crate::model::{
    AgentId, AgentRecord, Asset, AssetId, Change, Incident, IncidentEvent, InventoryRecord,
    OutboxEntry, Problem, ReachSample, SnmpSnapshot, StatusSample, SupplyLevels,
};

type Opener = Box<dyn Fn() -> Result<Arc<dyn Store>, StoreError> + Send + Sync>;

pub struct Reopening {
    open: Opener,
    current: RwLock<Option<Arc<dyn Store>>>,
}

impl Reopening {
    /// Opens the store with `open`, and again with it on every [`Store::recover`].
    pub fn new(
        open: impl Fn() -> Result<Arc<dyn Store>, StoreError> + Send + Sync + 'static,
    ) -> Result<Self, StoreError> {
        let store = open()?;
        Ok(Self {
            open: Box::new(open),
            current: RwLock::new(Some(store)),
        })
    }

    fn get(&self) -> Result<Arc<dyn Store>, StoreError> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Unavailable("the store is being reopened"))
    }
}

impl Store for Reopening {
    fn recover(&self) -> Result<(), StoreError> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = current.take() {
            // New calls wait on the lock; let the ones in flight finish, so the old files
            // are closed before they are opened again.
            let waited = Instant::now();
            while Arc::strong_count(&store) > 1 && waited.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(store);
        }
        let store = (self.open)()?;
        *current = Some(store);
        tracing::info!("The store was reopened");
        Ok(())
    }
    fn commit(&self, set: WriteSet) -> Result<(), StoreError> {
        self.get()?.commit(set)
    }
    fn write(&self, set: WriteSet) -> Result<(), StoreError> {
        self.get()?.write(set)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.get()?.flush()
    }
    fn asset(&self, id: &str) -> Result<Option<Asset>, StoreError> {
        self.get()?.asset(id)
    }
    fn assets(&self) -> Result<Vec<Asset>, StoreError> {
        self.get()?.assets()
    }
    fn last_seen(&self) -> Result<HashMap<AssetId, OffsetDateTime>, StoreError> {
        self.get()?.last_seen()
    }
    fn inventory(&self, asset: &str) -> Result<Option<InventoryRecord>, StoreError> {
        self.get()?.inventory(asset)
    }
    fn changes(&self, query: &ChangeQuery) -> Result<Vec<Change>, StoreError> {
        self.get()?.changes(query)
    }
    fn samples(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<StatusSample>, StoreError> {
        self.get()?.samples(asset, from, to, limit)
    }
    fn reach(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ReachSample>, StoreError> {
        self.get()?.reach(asset, from, to, limit)
    }
    fn latest_reach(&self, asset: &str) -> Result<Option<ReachSample>, StoreError> {
        self.get()?.latest_reach(asset)
    }
    fn snmp(&self, asset: &str) -> Result<Option<SnmpSnapshot>, StoreError> {
        self.get()?.snmp(asset)
    }
    fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.get()?.incident(id)
    }
    fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.get()?.incidents()
    }
    fn incident_events(&self, after: u64, limit: usize) -> Result<Vec<IncidentEvent>, StoreError> {
        self.get()?.incident_events(after, limit)
    }
    fn problems(&self) -> Result<Vec<Problem>, StoreError> {
        self.get()?.problems()
    }
    fn changes_of_kind(
        &self,
        kind: &str,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        self.get()?.changes_of_kind(kind, since, limit)
    }
    fn users(&self) -> Result<Vec<crate::model::User>, StoreError> {
        self.get()?.users()
    }
    fn sessions(&self) -> Result<Vec<crate::model::Session>, StoreError> {
        self.get()?.sessions()
    }
    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.get()?.outbox()
    }
    fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.get()?.meta(key)
    }
    fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.get()?.set_meta(key, value)
    }
    fn compact(
        &self,
        asset: &str,
        before: OffsetDateTime,
        rollups: Vec<(OffsetDateTime, serde_json::Value)>,
        reach_before: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        self.get()?.compact(asset, before, rollups, reach_before)
    }
    fn prune_rollups(&self, asset: &str, before: OffsetDateTime) -> Result<usize, StoreError> {
        self.get()?.prune_rollups(asset, before)
    }
    fn remove_outbox(&self, ids: &[String]) -> Result<usize, StoreError> {
        self.get()?.remove_outbox(ids)
    }
    fn levels(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, SupplyLevels)>, StoreError> {
        self.get()?.levels(asset, from, to)
    }
    fn rollups(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, serde_json::Value)>, StoreError> {
        self.get()?.rollups(asset, from, to)
    }
    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.get()?.agents()
    }
    fn agent_seqs(&self) -> Result<HashMap<AgentId, u64>, StoreError> {
        self.get()?.agent_seqs()
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.get()?.size_on_disk()
    }
    fn dump(
        &self,
        visit: &mut dyn FnMut(super::Dump<'_>) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        self.get()?.dump(visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_sled_store_passes_the_conformance_suite_and_keeps_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::super::conformance::run(|n| {
            let path = dir.path().join(format!("s{n}"));
            let store = Reopening::new(move || {
                Ok(Arc::new(super::super::SledStore::open(&path)?) as Arc<dyn Store>)
            })
            .expect("open");
            store.recover().expect("reopen before use");
            Box::new(store)
        });
        let path = dir.path().join("again");
        super::super::conformance::survives_reopen(|| {
            let path = path.clone();
            let store = Reopening::new(move || {
                Ok(Arc::new(super::super::SledStore::open(&path)?) as Arc<dyn Store>)
            })
            .expect("open");
            store.recover().expect("reopen");
            Box::new(store)
        });
    }
}
