pub mod backoff;
pub mod config;
pub mod journal;
