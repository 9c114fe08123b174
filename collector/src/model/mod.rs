//! The collector's records: what the store keeps and the API shows.
//!
//! Plain data with serde; no behaviour beyond small helpers. The store persists these, the
//! CMDB produces them, the HTTP layer renders them. Times are UTC and serialise as RFC 3339.

pub mod mac;
pub mod register;
pub mod snmp;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use register::{Lifecycle, RegisterFields};
pub use snmp::{SnmpSnapshot, SupplyLevels};

pub type AssetId = String;
pub type AgentId = String;

/// What kind of device an asset is (the contract's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetKind {
    Pc,
    Server,
    Laptop,
    Printer,
    Switch,
    Router,
    AccessPoint,
    Ups,
    Nas,
    Projector,
    Phone,
    /// Interactive whiteboards and classroom panels (manual assets).
    Display,
    /// Document cameras.
    Visualiser,
    /// Laptop and tablet charging trolleys.
    Trolley,
    /// Anything else a technician records by hand.
    Other,
    Unknown,
}

/// Where we learned about an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Agent,
    Ping,
    Snmp,
    /// Entered by a technician (dashboard, API or CSV import): things that never answer on
    /// the network, such as whiteboards, visualisers and laptop trolleys.
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Up,
    Down,
    Unknown,
}

/// One device in the register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub id: AssetId,
    pub kind: AssetKind,
    pub name: String,
    pub hostname: String,
    pub ips: Vec<String>,
    pub macs: Vec<String>,
    pub vendor: String,
    pub model: String,
    pub serial: String,
    #[serde(default)]
    pub smbios_uuid: String,
    /// OS installation id reported by the agent (a weak identity signal).
    #[serde(default)]
    pub machine_id: String,
    pub os: String,
    pub sources: BTreeSet<Source>,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// Every agent identity that has reported for this device (reimaged or wiped agents).
    #[serde(default)]
    pub agent_ids: Vec<AgentId>,
    /// Why records were joined to this asset, newest last.
    #[serde(default)]
    pub identity_notes: Vec<IdentityNote>,
    /// Inventory parts the latest report could not collect (kept from earlier reports).
    #[serde(default)]
    pub partial: Vec<String>,
    /// The latest report's clock disagreed with ours by more than the configured bound.
    #[serde(default)]
    pub clock_suspect: bool,
    /// Why discovery gave the asset its kind, e.g. "router: enterprise 9 Cisco, sysServices
    /// layer 3, port 23" (empty when nothing told, or the kind came from an agent).
    #[serde(default)]
    pub classification: String,
    /// What the school records about the device (tag, room, cost, warranty, lifecycle).
    #[serde(default)]
    pub register: RegisterFields,
    /// Bumped by every register edit; an edit naming an older revision is refused (409).
    #[serde(default)]
    pub register_rev: u64,
}

/// Why an agent identity was joined to an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityNote {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub agent_id: AgentId,
    pub score: i32,
    pub reasons: Vec<String>,
}

/// An enrolled agent identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: AgentId,
    /// Hex SHA-256 of the agent's secret; the secret itself is never stored.
    pub secret_sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
    pub hostname: String,
    pub smbios_uuid: String,
    pub macs: Vec<String>,
    pub peer: String,
    pub asset_id: Option<AssetId>,
    /// The agent's current sequence epoch (0: an agent that does not send one).
    #[serde(default)]
    pub epoch: u64,
}

/// One difference between successive inventories of an asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub asset_id: AssetId,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `created`, `added`, `removed`, `changed`, `upgraded`, `downgraded`.
    pub kind: String,
    /// What changed, e.g. `software:firefox-esr`, `hardware.ram_bytes`, `nic:aa:bb:..`.
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
    /// The report's clock was not trusted; `at` is when we received it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clock_suspect: bool,
    /// Who marked the change as expected (planned), from the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_by: Option<String>,
    /// Who made the change (register edits: the dashboard user, `api` or the importer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// The latest merged inventory of an asset, as the agent sent it (protobuf), with provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRecord {
    pub meta: InventoryMeta,
    pub inventory: caretaker_proto::v1::Inventory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryMeta {
    pub agent_id: AgentId,
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub collected_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// Parts missing from the *latest* report; their values here are from earlier reports.
    pub partial: Vec<String>,
}

/// One periodic status report, keyed by asset and collection time.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSample {
    pub asset_id: AssetId,
    pub at: OffsetDateTime,
    pub seq: u64,
    pub clock_suspect: bool,
    pub status: caretaker_proto::v1::Status,
}

/// One sweep's verdict on one asset: did it answer ping, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReachSample {
    pub at: OffsetDateTime,
    pub up: bool,
    /// Round-trip time in microseconds (0 when down).
    pub rtt_us: u32,
}

/// Milliseconds since the Unix epoch, the store's time key.
pub fn unix_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub fn from_unix_millis(millis: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// ITIL incident states (ServiceNow / GLPI style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    New,
    InProgress,
    OnHold,
    Resolved,
    Closed,
}

impl IncidentState {
    pub fn is_open(self) -> bool {
        matches!(self, Self::New | Self::InProgress | Self::OnHold)
    }
}

/// A note on an incident, by a technician or by Caretaker itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub author: String,
    pub text: String,
}

/// One incident: a rule's condition on an asset, from opening to resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    /// `INC0000042`.
    pub number: String,
    pub asset_id: AssetId,
    pub asset_name: String,
    pub rule: String,
    pub title: String,
    pub description: String,
    /// 1 (high) to 3 (low).
    pub impact: u8,
    /// 1 (high) to 3 (low).
    pub urgency: u8,
    /// impact + urgency − 1: 1 (P1, critical) to 5 (P5, planning).
    pub priority: u8,
    pub state: IncidentState,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    /// How many times the condition has (re)started under this incident.
    pub occurrences: u32,
    pub notes: Vec<Note>,
    /// Devices whose own incidents this one stands for (topology suppression).
    #[serde(default)]
    pub affected: Vec<AssetId>,
    /// Opened and cleared repeatedly within the flap window: kept open until stable.
    #[serde(default)]
    pub flapping: bool,
    /// What the rule measured when it last fired.
    #[serde(default)]
    pub measured: serde_json::Value,
    #[serde(default)]
    pub problem_id: Option<String>,
    /// When the condition was last seen clear while the incident was open (hold-down).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub clear_since: Option<OffsetDateTime>,
    /// Every open/close of the condition, newest last, bounded (flap detection).
    #[serde(default)]
    pub transitions: Vec<i64>,
    /// The service desk's fields: assignee, hold reason, who reported it.
    #[serde(default)]
    pub desk: Desk,
}

/// What the service desk adds to an incident.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_reason: Option<String>,
    /// A member of staff who reported it on `/report` (emailed when it is resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter: Option<Reporter>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reporter {
    pub name: String,
    pub email: String,
    pub room: String,
}

/// The rule name of incidents that staff reported on `/report`.
pub const STAFF_RULE: &str = "staff-report";

/// A dashboard user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    Technician,
    ReadOnly,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::ReadOnly => "read-only",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Role::Admin),
            "technician" => Some(Role::Technician),
            "read-only" => Some(Role::ReadOnly),
            _ => None,
        }
    }

    /// Whether the role may change anything (every POST but logging in and out).
    pub fn can_act(self) -> bool {
        !matches!(self, Role::ReadOnly)
    }
}

/// A dashboard user. Only the argon2id hash of the password is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// PHC string (`$argon2id$...`); empty while the user has no password yet.
    pub password_hash: String,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A logged-in browser. Keyed by the SHA-256 of the cookie's token (the token is never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub token_sha256: String,
    pub user: String,
    /// The form token every POST of this session must carry.
    pub csrf: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Something that happened to an incident; the alerting side reads these in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    /// Position in the event log (assigned by the writer, strictly increasing).
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub incident_id: String,
    pub kind: IncidentEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IncidentEventKind {
    Opened,
    Reopened,
    PriorityChanged {
        from: u8,
        to: u8,
    },
    Acknowledged {
        by: String,
    },
    Noted {
        by: String,
    },
    Assigned {
        by: String,
        to: String,
    },
    Held {
        by: String,
    },
    /// Taken off hold (the SLA clock runs again).
    Resumed {
        by: String,
    },
    Resolved {
        automatic: bool,
    },
    Closed,
}

/// A problem: the suspected common cause behind repeated incidents (FITS Problem Management).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub id: String,
    /// `PRB0000007`.
    pub number: String,
    pub rule: String,
    pub title: String,
    /// `repeat` (one asset, repeatedly) or `widespread` (many assets at once).
    pub pattern: String,
    pub asset_ids: Vec<AssetId>,
    pub incident_ids: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default)]
    pub root_cause: String,
    /// What staff or technicians can do until the root cause is fixed (shown on the linked
    /// incidents).
    #[serde(default)]
    pub workaround: String,
    #[serde(default)]
    pub known_error: bool,
}

/// One email waiting to be sent, or sent, or given up on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Not before this time (quiet hours, backoff).
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    #[serde(default)]
    pub html: String,
    pub message_id: String,
    #[serde(default)]
    pub in_reply_to: Option<String>,
    #[serde(default)]
    pub references: Vec<String>,
    pub incident_ids: Vec<String>,
    pub attempts: u32,
    /// `pending`, `sent`, `failed` (permanent).
    pub status: String,
    #[serde(default)]
    pub last_error: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    /// What the server said when it accepted or refused it.
    #[serde(default)]
    pub server_reply: String,
    /// Files sent with it (the monthly service-level report's PDF).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<MailAttachment>,
}

/// A file attached to an outbox email, kept in the entry so a retry sends the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailAttachment {
    pub filename: String,
    /// `application/pdf`.
    pub content_type: String,
    /// The file, base64 (standard alphabet).
    pub base64: String,
}

impl OutboxEntry {
    /// A new entry waiting to be sent, with nothing rendered yet.
    pub fn pending(
        id: String,
        created_at: OffsetDateTime,
        due_at: OffsetDateTime,
        to: Vec<String>,
    ) -> Self {
        Self {
            id,
            created_at,
            due_at,
            to,
            subject: String::new(),
            text: String::new(),
            html: String::new(),
            message_id: String::new(),
            in_reply_to: None,
            references: Vec::new(),
            incident_ids: Vec::new(),
            attempts: 0,
            status: "pending".to_owned(),
            last_error: String::new(),
            sent_at: None,
            server_reply: String::new(),
            attachments: Vec::new(),
        }
    }
}
