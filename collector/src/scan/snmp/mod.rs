//! SNMP discovery: credential probing and the inventory of one device (work in progress).

#[cfg(test)]
mod fake_agent;
pub mod value;
