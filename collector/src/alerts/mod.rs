//! Email alerts: incident events become threaded, rate-limited emails through a durable outbox.
pub mod config;
