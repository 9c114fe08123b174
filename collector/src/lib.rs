//! The Caretaker collector.
//!
//! ```text
//! agents ──gRPC──▶ ingest ─┐
//! scan: sweep ▶ SNMP ──────┼─(bounded jobs)─▶ register writer (one thread)
//! watch pings, rule ticks ─┤                    │ cmdb: identity, diff, discovery merge
//! API actions ─────────────┘                    │ observe ▶ rules ▶ incidents/problems
//!                                               ▼
//!                              store (sled: assets, history, samples, incidents, outbox)
//!                                  ▲                      │ incident events
//! technician ──HTTP──▶ http ───────┘                      ▼
//!                                           alerts (outbox ▶ SMTP)   retention (roll-ups)
//! ```
//!
//! `app` wires the tasks under one cancellation token; `config` validates the TOML file;
//! `store` is the only code that names sled; `track` is pure availability and forecasting
//! maths.

pub mod agents;
pub mod alerts;
pub mod app;
pub mod authlog;
pub mod backup;
pub mod cmdb;
pub mod config;
pub mod conn;
pub mod csv;
pub mod errors;
pub mod finance;
pub mod fuzzing;
pub mod health;
pub mod http;
pub mod incidents;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod ops;
pub mod pki;
pub mod register;
pub mod release;
pub mod reload;
pub mod retention;
pub mod rules;
pub mod scan;
pub use caretaker_proto::sdnotify;
pub mod secret;
pub mod sla;
pub mod store;
pub mod track;
pub mod web;
pub mod wire;
