//! What is wrong with the collector right now, as `/health` reports it: each component that
//! can fail on its own (today the store) says so here when it fails and when it recovers.

use std::sync::RwLock;

use time::OffsetDateTime;

/// Shared by the component that notices (the register writer) and the API that reports.
#[derive(Debug, Default)]
pub struct Health {
    store: RwLock<Option<(OffsetDateTime, String)>>,
}

impl Health {
    /// The store cannot be written: `why` in a few words ("full", "write failed").
    pub fn store_failing(&self, why: &str) {
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        match &mut *store {
            Some((_, reason)) => why.clone_into(reason),
            None => *store = Some((OffsetDateTime::now_utc(), why.to_owned())),
        }
    }

    pub fn store_ok(&self) {
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Every current problem: `(component, since, reason)`; empty when all is well.
    pub fn problems(&self) -> Vec<(&'static str, OffsetDateTime, String)> {
        self.store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(since, why)| ("store", *since, why.clone()))
            .collect()
    }
}
