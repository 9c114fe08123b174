//! What the school knows about a device that the network cannot tell: where it is, who has
//! it, what it cost, when its warranty ends (FITS Configuration and Financial Management).
//!
//! Plain data. Edits come from technicians (dashboard, `PATCH /api/v1/assets/{id}`, bulk edit,
//! CSV import); each bumps the asset's `register_rev` so racing edits can be refused (409)
//! and each becomes a change record naming its author.

use serde::{Deserialize, Serialize};
use time::Date;

/// The register fields of one asset. Empty strings and `None` mean "not recorded".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisterFields {
    pub asset_tag: String,
    pub site: String,
    pub building: String,
    pub room: String,
    pub assigned_user: String,
    pub department: String,
    #[serde(with = "iso_date")]
    pub purchase_date: Option<Date>,
    pub supplier: String,
    pub order_ref: String,
    /// Purchase cost in pence (minor units of the school's currency).
    pub cost_pence: Option<i64>,
    #[serde(with = "iso_date")]
    pub warranty_end: Option<Date>,
    /// Who paid: "capital", "devolved", "PTA", a grant's name.
    pub funding: String,
    pub notes: String,
    pub lifecycle: Lifecycle,
    /// The disposal certificate / WEEE reference (lifecycle `disposed`).
    pub disposal_ref: String,
}

/// Where a device is in its life (ITIL asset lifecycle).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    InStock,
    #[default]
    Deployed,
    InRepair,
    Retired,
    Disposed,
}

impl Lifecycle {
    pub const ALL: [Lifecycle; 5] = [
        Lifecycle::InStock,
        Lifecycle::Deployed,
        Lifecycle::InRepair,
        Lifecycle::Retired,
        Lifecycle::Disposed,
    ];

    /// The contract's spelling (`in-stock`, `deployed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::InStock => "in-stock",
            Lifecycle::Deployed => "deployed",
            Lifecycle::InRepair => "in-repair",
            Lifecycle::Retired => "retired",
            Lifecycle::Disposed => "disposed",
        }
    }

    pub fn parse(text: &str) -> Option<Lifecycle> {
        let wanted = text.trim().to_ascii_lowercase().replace([' ', '_'], "-");
        Lifecycle::ALL.into_iter().find(|l| l.as_str() == wanted)
    }
}

/// A change to some register fields: `None` leaves a field as it is, `Some` sets it (an empty
/// string or `Some(None)` clears it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterPatch {
    pub asset_tag: Option<String>,
    pub site: Option<String>,
    pub building: Option<String>,
    pub room: Option<String>,
    pub assigned_user: Option<String>,
    pub department: Option<String>,
    #[serde(with = "patch_date")]
    pub purchase_date: Option<Option<Date>>,
    pub supplier: Option<String>,
    pub order_ref: Option<String>,
    pub cost_pence: Option<Option<i64>>,
    #[serde(with = "patch_date")]
    pub warranty_end: Option<Option<Date>>,
    pub funding: Option<String>,
    pub notes: Option<String>,
    pub lifecycle: Option<Lifecycle>,
    pub disposal_ref: Option<String>,
}

/// What a manual asset (or an imported row that matched nothing) is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAsset {
    pub kind: super::AssetKind,
    pub name: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub serial: String,
    #[serde(default)]
    pub macs: Vec<String>,
}

/// Which asset an edit is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EditTarget {
    /// A known asset; `expected_rev` (the `register_rev` the editor saw) makes a racing edit
    /// fail with [`EditError::Conflict`] instead of overwriting silently.
    Asset {
        asset_id: String,
        expected_rev: Option<u64>,
    },
    /// A new manual asset.
    New(NewAsset),
    /// An imported row: the asset with this asset tag, else this serial, else one of these
    /// MACs (compared in canonical form); when none matches, `new` is created.
    Match {
        asset_tag: String,
        serial: String,
        macs: Vec<String>,
        new: NewAsset,
    },
}

/// One edit in a register job. A job's edits are applied all together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterEdit {
    pub target: EditTarget,
    pub patch: RegisterPatch,
}

/// What one edit did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditOutcome {
    pub asset_id: String,
    pub created: bool,
    /// How an `EditTarget::Match` found its asset: `asset_tag`, `serial`, `mac` or `created`.
    pub matched_by: String,
    /// `(field, before, after)` for every field the edit changes; empty when nothing changes
    /// (an idempotent re-import).
    pub changes: Vec<(String, String, String)>,
    pub register_rev: u64,
}

/// Why a register job was refused as a whole; nothing of it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum EditError {
    /// Someone else edited the asset since `expected` was read (HTTP 409).
    Conflict {
        index: usize,
        asset_id: String,
        expected: u64,
        current: u64,
    },
    NotFound {
        index: usize,
        asset_id: String,
    },
    /// The asset tag is already another asset's, or given twice in the job.
    DuplicateTag {
        index: usize,
        asset_tag: String,
        other: String,
    },
    Invalid {
        index: usize,
        field: String,
        message: String,
    },
}

/// `Option<Date>` as `"YYYY-MM-DD"` or null.
pub mod iso_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::{Date, macros::format_description};

    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]");

    pub fn format(date: Date) -> String {
        date.format(FORMAT).expect("a date formats")
    }

    pub fn parse(text: &str) -> Result<Date, time::error::Parse> {
        Date::parse(text.trim(), FORMAT)
    }

    pub fn serialize<S: Serializer>(date: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(date) => s.serialize_str(&format(*date)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) if text.trim().is_empty() => Ok(None),
            Some(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// `Option<Option<Date>>` for patches: absent leaves the date, null or "" clears it.
mod patch_date {
    use serde::{Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(date: &Option<Option<Date>>, s: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(Some(date)) => s.serialize_str(&super::iso_date::format(*date)),
            _ => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Date>>, D::Error> {
        super::iso_date::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso_text_and_old_records_default() {
        let fields = RegisterFields {
            asset_tag: "CT-0042".into(),
            warranty_end: Some(time::macros::date!(2027 - 08 - 31)),
            lifecycle: Lifecycle::InRepair,
            ..RegisterFields::default()
        };
        let json = serde_json::to_string(&fields).unwrap();
        assert!(json.contains(r#""warranty_end":"2027-08-31""#), "{json}");
        assert!(json.contains(r#""lifecycle":"in-repair""#), "{json}");
        assert_eq!(
            serde_json::from_str::<RegisterFields>(&json).unwrap(),
            fields
        );
        let old: RegisterFields = serde_json::from_str("{}").unwrap();
        assert_eq!(old, RegisterFields::default());
        assert!(
            serde_json::from_str::<RegisterFields>(r#"{"purchase_date":"31/08/2027"}"#).is_err()
        );
        assert_eq!(Lifecycle::parse("In Stock"), Some(Lifecycle::InStock));
        assert_eq!(Lifecycle::parse("lost"), None);
    }
}
