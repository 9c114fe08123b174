//! An in-process store for unit tests of the layers above; passes the same conformance suite.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use time::OffsetDateTime;

use super::codec;
use super::{ChangeQuery, Store, StoreError, WriteSet};
use crate::model::{
    AgentId, AgentRecord, Asset, AssetId, Change, Incident, IncidentEvent, InventoryRecord,
    OutboxEntry, Problem, ReachSample, Session, SnmpSnapshot, StatusSample, SupplyLevels, User,
    unix_millis,
};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    assets: BTreeMap<AssetId, Asset>,
    agents: BTreeMap<AgentId, AgentRecord>,
    agent_seq: HashMap<AgentId, u64>,
    last_seen: HashMap<AssetId, OffsetDateTime>,
    inventories: HashMap<AssetId, InventoryRecord>,
    changes: BTreeMap<Vec<u8>, Change>,
    samples: BTreeMap<Vec<u8>, StatusSample>,
    reach: BTreeMap<(AssetId, i64), ReachSample>,
    snmp: HashMap<AssetId, SnmpSnapshot>,
    incidents: BTreeMap<String, Incident>,
    incident_events: BTreeMap<u64, IncidentEvent>,
    problems: BTreeMap<String, Problem>,
    outbox: BTreeMap<String, OutboxEntry>,
    meta: HashMap<String, u64>,
    rollups: BTreeMap<(AssetId, i64), serde_json::Value>,
    levels: BTreeMap<(AssetId, i64), SupplyLevels>,
    users: BTreeMap<String, User>,
    sessions: BTreeMap<String, Session>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn write(&self, set: WriteSet) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for sample in set.samples {
            inner.samples.insert(codec::sample_key(&sample), sample);
        }
        for (asset, sample) in set.reach {
            inner.reach.insert((asset, unix_millis(sample.at)), sample);
        }
        inner.snmp.extend(set.snmp);
        for (asset, at, value) in set.levels {
            inner.levels.insert((asset, unix_millis(at)), value);
        }
        for i in set.incidents {
            inner.incidents.insert(i.id.clone(), i);
        }
        for e in set.incident_events {
            inner.incident_events.insert(e.seq, e);
        }
        for p in set.problems {
            inner.problems.insert(p.id.clone(), p);
        }
        for o in set.outbox {
            inner.outbox.insert(o.id.clone(), o);
        }
        inner.meta.extend(set.meta);
        for change in set.changes {
            inner.changes.insert(
                codec::change_key(unix_millis(change.at), &change.id),
                change,
            );
        }
        for (asset, record) in set.inventories {
            inner.inventories.insert(asset, record);
        }
        for asset in set.assets {
            inner.assets.insert(asset.id.clone(), asset);
        }
        for agent in set.agents {
            inner.agents.insert(agent.agent_id.clone(), agent);
        }
        inner.last_seen.extend(set.last_seen);
        inner.agent_seq.extend(set.agent_seqs);
        for user in set.users {
            inner.users.insert(user.name.clone(), user);
        }
        for (key, session) in set.sessions {
            match session {
                Some(session) => inner.sessions.insert(key, session),
                None => inner.sessions.remove(&key),
            };
        }
        Ok(())
    }

    fn asset(&self, id: &str) -> Result<Option<Asset>, StoreError> {
        Ok(self.lock().assets.get(id).cloned())
    }

    fn assets(&self) -> Result<Vec<Asset>, StoreError> {
        Ok(self.lock().assets.values().cloned().collect())
    }

    fn last_seen(&self) -> Result<HashMap<AssetId, OffsetDateTime>, StoreError> {
        Ok(self.lock().last_seen.clone())
    }

    fn inventory(&self, asset: &str) -> Result<Option<InventoryRecord>, StoreError> {
        Ok(self.lock().inventories.get(asset).cloned())
    }

    fn changes(&self, query: &ChangeQuery) -> Result<Vec<Change>, StoreError> {
        let since = query
            .since
            .unwrap_or(OffsetDateTime::UNIX_EPOCH - time::Duration::days(365 * 1000));
        Ok(self
            .lock()
            .changes
            .values()
            .rev()
            .filter(|c| c.at >= since)
            .filter(|c| query.asset.as_ref().is_none_or(|a| *a == c.asset_id))
            .take(query.limit)
            .cloned()
            .collect())
    }

    fn samples(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<StatusSample>, StoreError> {
        Ok(self
            .lock()
            .samples
            .values()
            .filter(|s| s.asset_id == asset && s.at >= from && s.at < to)
            .take(limit)
            .cloned()
            .collect())
    }

    fn reach(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ReachSample>, StoreError> {
        let range = (asset.to_owned(), unix_millis(from))..(asset.to_owned(), unix_millis(to));
        Ok(self
            .lock()
            .reach
            .range(range)
            .take(limit)
            .map(|(_, s)| *s)
            .collect())
    }

    fn latest_reach(&self, asset: &str) -> Result<Option<ReachSample>, StoreError> {
        let range = (asset.to_owned(), i64::MIN)..=(asset.to_owned(), i64::MAX);
        Ok(self.lock().reach.range(range).next_back().map(|(_, s)| *s))
    }

    fn snmp(&self, asset: &str) -> Result<Option<SnmpSnapshot>, StoreError> {
        Ok(self.lock().snmp.get(asset).cloned())
    }

    fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        Ok(self.lock().incidents.get(id).cloned())
    }

    fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let mut all: Vec<Incident> = self.lock().incidents.values().cloned().collect();
        all.sort_by(|a, b| {
            a.opened_at
                .cmp(&b.opened_at)
                .then_with(|| a.number.cmp(&b.number))
        });
        Ok(all)
    }

    fn incident_events(&self, after: u64, limit: usize) -> Result<Vec<IncidentEvent>, StoreError> {
        Ok(self
            .lock()
            .incident_events
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn problems(&self) -> Result<Vec<Problem>, StoreError> {
        Ok(self.lock().problems.values().cloned().collect())
    }

    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut all: Vec<OutboxEntry> = self.lock().outbox.values().cloned().collect();
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(all)
    }

    fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().meta.get(key).copied())
    }

    fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.lock().meta.insert(key.to_owned(), value);
        Ok(())
    }

    fn compact(
        &self,
        asset: &str,
        before: OffsetDateTime,
        rollups: Vec<(OffsetDateTime, serde_json::Value)>,
        reach_before: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        for (start, value) in rollups {
            inner
                .rollups
                .insert((asset.to_owned(), unix_millis(start)), value);
        }
        let samples = inner.samples.len();
        inner
            .samples
            .retain(|_, s| !(s.asset_id == asset && s.at < before));
        let reach = inner.reach.len();
        inner
            .reach
            .retain(|(a, _), r| !(a == asset && r.at < reach_before));
        Ok(samples - inner.samples.len() + reach - inner.reach.len())
    }

    fn prune_rollups(&self, asset: &str, before: OffsetDateTime) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let cutoff = unix_millis(before);
        let count = inner.rollups.len();
        inner
            .rollups
            .retain(|(a, start), _| !(a == asset && *start < cutoff));
        Ok(count - inner.rollups.len())
    }

    fn remove_outbox(&self, ids: &[String]) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        Ok(ids
            .iter()
            .filter(|id| inner.outbox.remove(*id).is_some())
            .count())
    }

    fn levels(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, SupplyLevels)>, StoreError> {
        let range = (asset.to_owned(), unix_millis(from))..(asset.to_owned(), unix_millis(to));
        Ok(self
            .lock()
            .levels
            .range(range)
            .map(|((_, t), v)| (crate::model::from_unix_millis(*t), v.clone()))
            .collect())
    }

    fn rollups(
        &self,
        asset: &str,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<(OffsetDateTime, serde_json::Value)>, StoreError> {
        let range = (asset.to_owned(), unix_millis(from))..(asset.to_owned(), unix_millis(to));
        Ok(self
            .lock()
            .rollups
            .range(range)
            .map(|((_, t), v)| (crate::model::from_unix_millis(*t), v.clone()))
            .collect())
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        Ok(self.lock().agents.values().cloned().collect())
    }

    fn agent_seqs(&self) -> Result<HashMap<AgentId, u64>, StoreError> {
        Ok(self.lock().agent_seq.clone())
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        Ok(self.lock().users.values().cloned().collect())
    }

    fn sessions(&self) -> Result<Vec<Session>, StoreError> {
        Ok(self.lock().sessions.values().cloned().collect())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_passes_the_conformance_suite() {
        super::super::conformance::run(|_| Box::new(super::MemoryStore::default()));
    }
}
