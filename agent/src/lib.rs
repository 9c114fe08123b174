pub mod backoff;
pub mod config;
pub mod inventory;
pub mod journal;
pub mod status;
