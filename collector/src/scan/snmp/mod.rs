//! SNMP discovery: which credential a device answers, and what the device is.
//!
//! [`probe`] tries credential sets in order with one GET of the system group; [`inventory`]
//! then reads, with the credential that worked, the system group, IF-MIB, ENTITY-MIB,
//! HOST-RESOURCES, Printer-MIB, BRIDGE / Q-BRIDGE, LLDP, UPS-MIB and APC PowerNet, and
//! classifies the device.
//!
//! Layers: `session` (timeouts, retries, bounded walks over snmp2), `value` (the only
//! conversion from SNMP values), `tables` (pure assembly of walked columns into records),
//! `classify` (pure: kind, vendor, model). No tasks are spawned; everything runs inside the
//! caller's future, one request in flight per device, and stops when the caller drops it or
//! when `Limits::device_deadline` passes. Partial results are kept and explained in
//! [`SnmpSnapshot::gaps`] and `notes`; nothing is made up.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod burst;
pub mod classify;
#[cfg(test)]
mod fake_agent;
mod inventory;
#[cfg(test)]
mod recordings_tests;
mod session;
pub mod tables;
pub mod value;

pub use crate::model::snmp::{
    Entity, FdbEntry, GapReason, Interface, LldpNeighbor, SnmpGap, SnmpSection, SnmpSnapshot,
    Storage, Supply, SupplyState, SystemInfo, Ups,
};
pub use inventory::{inventory, probe};

/// SNMPv3 authentication protocols (all that snmp2 implements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProtocol {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// SNMPv3 privacy protocols (all that snmp2 implements). AES-192/256 with MD5 or SHA-1 need
/// key extension; we use the Blumenthal method (net-snmp's), not Reeder (Cisco's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivProtocol {
    Des,
    Aes128,
    Aes192,
    Aes256,
}

/// One credential set. `Debug` prints `***` for communities and passphrases.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    V1 {
        community: String,
    },
    V2c {
        community: String,
    },
    V3 {
        user: String,
        auth: Option<(AuthProtocol, String)>,
        privacy: Option<(PrivProtocol, String)>,
        context: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::V1 { .. } => f.debug_struct("V1").field("community", &"***").finish(),
            Credential::V2c { .. } => f.debug_struct("V2c").field("community", &"***").finish(),
            Credential::V3 {
                user,
                auth,
                privacy,
                context,
            } => f
                .debug_struct("V3")
                .field("user", user)
                .field("auth", &auth.as_ref().map(|(p, _)| (p, "***")))
                .field("privacy", &privacy.as_ref().map(|(p, _)| (p, "***")))
                .field("context", context)
                .finish(),
        }
    }
}

/// Bounds on what one device may cost us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Per request.
    pub timeout: Duration,
    /// Extra attempts after a timeout.
    pub retries: u32,
    /// GETBULK max-repetitions per column.
    pub max_repetitions: u32,
    /// Per table walk.
    pub walk_deadline: Duration,
    /// The whole inventory of one device.
    pub device_deadline: Duration,
    /// Rows per table walk.
    pub max_rows: usize,
    /// Approximate bytes of copied values per table walk.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            retries: 1,
            max_repetitions: 25,
            walk_deadline: Duration::from_secs(10),
            device_deadline: Duration::from_secs(30),
            max_rows: 20_000,
            max_bytes: 4 << 20,
        }
    }
}

/// Why an SNMP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("no SNMP answer within the timeout")]
    Timeout,
    #[error("no credential got an SNMP answer")]
    NoCredential,
    #[error("SNMP protocol error: {0}")]
    Protocol(String),
    #[error("SNMP socket error")]
    Io(#[source] std::io::Error),
    #[error("unusable SNMP credential: {0}")]
    InvalidCredential(String),
}

/// snmp2's USM settings for a v3 credential.
fn v3_security(credential: &Credential) -> Result<snmp2::v3::Security, SnmpError> {
    use snmp2::v3;
    let Credential::V3 {
        user,
        auth,
        privacy,
        context,
    } = credential
    else {
        return Err(SnmpError::InvalidCredential(
            "not an SNMPv3 credential".into(),
        ));
    };
    let (auth_protocol, auth_pass) = match auth {
        Some((p, pass)) => (Some(*p), pass.as_bytes()),
        None => (None, &b""[..]),
    };
    let mut security = v3::Security::new(user.as_bytes(), auth_pass).with_context_name(context);
    match (auth_protocol, privacy) {
        (None, None) => security = security.with_auth(v3::Auth::NoAuthNoPriv),
        (None, Some(_)) => {
            return Err(SnmpError::InvalidCredential(
                "SNMPv3 privacy needs authentication too".into(),
            ));
        }
        (Some(p), privacy) => {
            let protocol = match p {
                AuthProtocol::Md5 => v3::AuthProtocol::Md5,
                AuthProtocol::Sha1 => v3::AuthProtocol::Sha1,
                AuthProtocol::Sha224 => v3::AuthProtocol::Sha224,
                AuthProtocol::Sha256 => v3::AuthProtocol::Sha256,
                AuthProtocol::Sha384 => v3::AuthProtocol::Sha384,
                AuthProtocol::Sha512 => v3::AuthProtocol::Sha512,
            };
            security = security.with_auth_protocol(protocol);
            security = match privacy {
                None => security.with_auth(v3::Auth::AuthNoPriv),
                Some((cipher, pass)) => {
                    let cipher = match cipher {
                        PrivProtocol::Des => v3::Cipher::Des,
                        PrivProtocol::Aes128 => v3::Cipher::Aes128,
                        PrivProtocol::Aes192 => v3::Cipher::Aes192,
                        PrivProtocol::Aes256 => v3::Cipher::Aes256,
                    };
                    let needs_extension = cipher.priv_key_needs_extension(&protocol);
                    let mut s = security.with_auth(v3::Auth::AuthPriv {
                        cipher,
                        privacy_password: pass.as_bytes().to_vec(),
                    });
                    if needs_extension {
                        s = s.with_key_extension_method(v3::KeyExtension::Blumenthal);
                    }
                    s
                }
            };
        }
    }
    Ok(security)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let creds = [
            Credential::V2c {
                community: "s3cret-community".into(),
            },
            Credential::V1 {
                community: "s3cret-community".into(),
            },
            Credential::V3 {
                user: "simulator".into(),
                auth: Some((AuthProtocol::Sha256, "s3cret-auth".into())),
                privacy: Some((PrivProtocol::Aes128, "s3cret-priv".into())),
                context: String::new(),
            },
        ];
        for c in creds {
            let shown = format!("{c:?}");
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn privacy_without_auth_is_refused() {
        let c = Credential::V3 {
            user: "u".into(),
            auth: None,
            privacy: Some((PrivProtocol::Des, "x".into())),
            context: String::new(),
        };
        assert!(matches!(
            v3_security(&c),
            Err(SnmpError::InvalidCredential(_))
        ));
    }
}
