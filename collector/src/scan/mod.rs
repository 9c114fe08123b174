//! Network discovery.
pub mod ping;
pub mod snmp;
pub mod targets;
