//! What the collector's request handlers share about enrolled agents: each agent's secret hash
//! (checked on every RPC) and when it was last heard from, plus the ingest counters.
//!
//! Below `ingest`, `register` and `http`, so all three can hold an `Arc<Agents>` without
//! importing each other. The register writer adds an agent's secret once its enrolment is
//! durable and marks agents heard as their reports commit; handlers only read.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use time::OffsetDateTime;

use crate::model::AgentId;
use crate::secret;
use crate::store::{Store, StoreError};

/// Secrets and liveness shared between handlers and the rest of the collector.
pub struct Agents {
    secrets: RwLock<HashMap<AgentId, [u8; 32]>>,
    last_heard: Mutex<HashMap<AgentId, OffsetDateTime>>,
}

impl Agents {
    /// Every enrolled agent's secret hash, from the store.
    pub fn load(store: &dyn Store) -> Result<Arc<Self>, StoreError> {
        Ok(Arc::new(Self {
            secrets: RwLock::new(
                store
                    .agents()?
                    .iter()
                    .filter_map(|r| Some((r.agent_id.clone(), decode_hash(&r.secret_sha256)?)))
                    .collect(),
            ),
            last_heard: Mutex::new(HashMap::new()),
        }))
    }

    /// Whether `secret` is the secret of `agent_id` (compared in constant time).
    pub fn verify(&self, agent_id: &str, secret: &str) -> bool {
        let presented = secret::sha256(secret.as_bytes());
        let known = self
            .secrets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent_id)
            .copied();
        known.is_some_and(|k| secret::same(&presented, &k))
    }

    /// Whether `agent_id` is enrolled.
    pub fn knows(&self, agent_id: &str) -> bool {
        self.secrets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(agent_id)
    }

    /// Accepts `secret_sha256` for `agent_id` from now on.
    pub fn admit(&self, agent_id: &str, secret_sha256: [u8; 32]) {
        self.secrets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.to_owned(), secret_sha256);
    }

    /// When each agent was last heard from (reports or heartbeats) since the collector started.
    pub fn last_heard(&self) -> HashMap<AgentId, OffsetDateTime> {
        self.last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn heard(&self, agent_id: &str, at: OffsetDateTime) {
        let mut heard = self.last_heard.lock().unwrap_or_else(|p| p.into_inner());
        match heard.get_mut(agent_id) {
            Some(last) => *last = (*last).max(at),
            None => {
                heard.insert(agent_id.to_owned(), at);
            }
        }
    }
}

fn decode_hash(hex_hash: &str) -> Option<[u8; 32]> {
    hex::decode(hex_hash).ok()?.try_into().ok()
}

/// Ingest counters since start; `GET /api/v1/health` reports them.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Reports made durable (status and inventory).
    pub reports_stored: AtomicU64,
    /// Reports at or below the agent's acknowledged sequence (retries), dropped.
    pub reports_duplicate: AtomicU64,
    /// Reports stored at arrival time because their clock was implausible.
    pub reports_clock_suspect: AtomicU64,
    /// Group commits of the register writer.
    pub commits: AtomicU64,
    /// Commits that failed (nothing of those batches was acknowledged).
    pub commits_failed: AtomicU64,
    /// Requests refused for a wrong or missing credential.
    pub rejected_unauthenticated: AtomicU64,
    /// Commit latency, reports by kind and the last sweep, for `/metrics`.
    pub writer: crate::metrics::WriterMetrics,
}

impl IngestStats {
    /// The counters as `(name, value)`, for reports.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        vec![
            ("reports_stored", self.reports_stored.load(Relaxed)),
            ("reports_duplicate", self.reports_duplicate.load(Relaxed)),
            (
                "reports_clock_suspect",
                self.reports_clock_suspect.load(Relaxed),
            ),
            ("commits", self.commits.load(Relaxed)),
            ("commits_failed", self.commits_failed.load(Relaxed)),
            (
                "rejected_unauthenticated",
                self.rejected_unauthenticated.load(Relaxed),
            ),
        ]
    }
}
