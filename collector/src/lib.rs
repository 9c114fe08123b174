//! The Caretaker collector.
//!
//! ```text
//! agents ──gRPC──▶ ingest ──(bounded jobs)──▶ writer thread ──▶ cmdb (identity, diff)
//!                                                  │
//!                                                  ▼
//!                                      store (sled: assets, agents, inventories,
//!                                             changes, status samples)
//!                                                  ▲
//! technician ──HTTP──▶ http (JSON API, bearer token) ┘
//! ```
//!
//! `app` wires the tasks under one cancellation token; `config` validates the TOML file;
//! `store` is the only code that names sled. Discovery (`scan`), availability and capacity
//! (`track`), rules, incidents and email alerts come in later issues.

pub mod alerts;
pub mod app;
pub mod cmdb;
pub mod config;
pub mod http;
pub mod incidents;
pub mod ingest;
pub mod model;
pub mod observe;
pub mod register;
pub mod retention;
pub mod rules;
pub mod scan;
pub mod store;
pub mod track;
