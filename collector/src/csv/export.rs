//! The exporters: assets (identity, every register field, the revision: columns our own
//! importer reads back), incidents, changes and software. Every cell goes through
//! [`guard`](super::guard) so a spreadsheet never runs it as a formula; the `csv` crate
//! quotes what needs quoting.

use std::io::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::columns::ASSET_EXPORT;
use super::values::{format_cost, kind_text};
use crate::model::register::iso_date;
use crate::model::{Asset, Change, Incident};

fn writer<W: Write>(out: W) -> ::csv::Writer<W> {
    ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(out)
}

fn row<W: Write>(w: &mut ::csv::Writer<W>, cells: &[String]) -> ::csv::Result<()> {
    w.write_record(cells.iter().map(|c| super::guard(c).into_owned()))
}

fn time_text(at: Option<OffsetDateTime>) -> String {
    at.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

fn date_text(date: Option<time::Date>) -> String {
    date.map(iso_date::format).unwrap_or_default()
}

/// One row per asset, columns [`ASSET_EXPORT`].
pub fn write_assets<W: Write>(out: W, assets: &[Asset]) -> ::csv::Result<()> {
    let mut w = writer(out);
    w.write_record(ASSET_EXPORT)?;
    for asset in assets {
        let r = &asset.register;
        let sources: Vec<String> = asset
            .sources
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        let cells = [
            asset.id.clone(),
            r.asset_tag.clone(),
            asset.name.clone(),
            kind_text(asset.kind),
            asset.vendor.clone(),
            asset.model.clone(),
            asset.serial.clone(),
            asset.macs.join(" "),
            asset.hostname.clone(),
            asset.ips.join(" "),
            asset.os.clone(),
            sources.join(" "),
            time_text(Some(asset.first_seen)),
            r.site.clone(),
            r.building.clone(),
            r.room.clone(),
            r.assigned_user.clone(),
            r.department.clone(),
            date_text(r.purchase_date),
            r.supplier.clone(),
            r.order_ref.clone(),
            r.cost_pence.map(format_cost).unwrap_or_default(),
            date_text(r.warranty_end),
            r.funding.clone(),
            r.notes.clone(),
            r.lifecycle.as_str().to_owned(),
            r.disposal_ref.clone(),
            asset.register_rev.to_string(),
        ];
        debug_assert_eq!(cells.len(), ASSET_EXPORT.len());
        row(&mut w, &cells)?;
    }
    w.flush()?;
    Ok(())
}

pub const INCIDENT_EXPORT: &[&str] = &[
    "id",
    "number",
    "asset_id",
    "asset_name",
    "rule",
    "title",
    "priority",
    "impact",
    "urgency",
    "state",
    "assigned_to",
    "opened_at",
    "acknowledged_at",
    "resolved_at",
    "closed_at",
    "occurrences",
    "problem_id",
    "description",
];

pub fn write_incidents<W: Write>(out: W, incidents: &[Incident]) -> ::csv::Result<()> {
    let mut w = writer(out);
    w.write_record(INCIDENT_EXPORT)?;
    for i in incidents {
        let state = serde_json::to_value(i.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        row(
            &mut w,
            &[
                i.id.clone(),
                i.number.clone(),
                i.asset_id.clone(),
                i.asset_name.clone(),
                i.rule.clone(),
                i.title.clone(),
                i.priority.to_string(),
                i.impact.to_string(),
                i.urgency.to_string(),
                state,
                i.desk.assigned_to.clone().unwrap_or_default(),
                time_text(Some(i.opened_at)),
                time_text(i.acknowledged_at),
                time_text(i.resolved_at),
                time_text(i.closed_at),
                i.occurrences.to_string(),
                i.problem_id.clone().unwrap_or_default(),
                i.description.clone(),
            ],
        )?;
    }
    w.flush()?;
    Ok(())
}

pub const CHANGE_EXPORT: &[&str] = &[
    "id",
    "asset_id",
    "at",
    "kind",
    "field",
    "before",
    "after",
    "expected_by",
    "clock_suspect",
];

pub fn write_changes<W: Write>(out: W, changes: &[Change]) -> ::csv::Result<()> {
    let mut w = writer(out);
    w.write_record(CHANGE_EXPORT)?;
    for c in changes {
        row(
            &mut w,
            &[
                c.id.clone(),
                c.asset_id.clone(),
                time_text(Some(c.at)),
                c.kind.clone(),
                c.field.clone(),
                c.before.clone().unwrap_or_default(),
                c.after.clone().unwrap_or_default(),
                c.expected_by.clone().unwrap_or_default(),
                c.clock_suspect.to_string(),
            ],
        )?;
    }
    w.flush()?;
    Ok(())
}

/// One installed program on one asset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SoftwareRow {
    pub asset_id: String,
    pub asset_name: String,
    pub asset_tag: String,
    pub title: String,
    pub version: String,
    pub publisher: String,
}

pub const SOFTWARE_EXPORT: &[&str] = &[
    "asset_id",
    "asset_name",
    "asset_tag",
    "title",
    "version",
    "publisher",
];

pub fn write_software<W: Write>(out: W, rows: &[SoftwareRow]) -> ::csv::Result<()> {
    let mut w = writer(out);
    w.write_record(SOFTWARE_EXPORT)?;
    for s in rows {
        row(
            &mut w,
            &[
                s.asset_id.clone(),
                s.asset_name.clone(),
                s.asset_tag.clone(),
                s.title.clone(),
                s.version.clone(),
                s.publisher.clone(),
            ],
        )?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::register::EditTarget;
    use crate::model::{AssetKind, Lifecycle, RegisterFields, Source};

    fn asset() -> Asset {
        Asset {
            id: "a-1".into(),
            kind: AssetKind::Laptop,
            name: "HT-LAP-07".into(),
            hostname: "ht-lap-07".into(),
            ips: vec!["198.18.0.7".into()],
            macs: vec!["aa:bb:cc:00:11:22".into(), "aa:bb:cc:00:11:23".into()],
            vendor: "Dell".into(),
            model: "Latitude, 5440".into(),
            serial: "SN-7".into(),
            smbios_uuid: String::new(),
            machine_id: String::new(),
            os: "Windows 11".into(),
            sources: [Source::Agent, Source::Ping].into(),
            first_seen: OffsetDateTime::UNIX_EPOCH,
            agent_ids: vec![],
            identity_notes: vec![],
            partial: vec![],
            clock_suspect: false,
            classification: String::new(),
            register: RegisterFields {
                asset_tag: "HT-0007".into(),
                site: "Hilltop".into(),
                building: "Main".into(),
                room: "B12".into(),
                assigned_user: "Ms \"Jo\" Patel".into(),
                department: "Science".into(),
                purchase_date: Some(time::macros::date!(2024 - 09 - 01)),
                supplier: "Stone".into(),
                order_ref: "PO-991".into(),
                cost_pence: Some(123_450),
                warranty_end: Some(time::macros::date!(2027 - 09 - 01)),
                funding: "capital".into(),
                notes: "=HYPERLINK(\"http://x\")\nsecond line".into(),
                lifecycle: Lifecycle::InRepair,
                disposal_ref: String::new(),
            },
            register_rev: 3,
        }
    }

    #[test]
    fn asset_export_reads_back_through_the_importer() {
        let asset = asset();
        let mut out = Vec::new();
        write_assets(&mut out, std::slice::from_ref(&asset)).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains("\"'=HYPERLINK(\"\"http://x\"\")\nsecond line\""),
            "{text}"
        );
        assert!(text.contains("\"Latitude, 5440\""), "{text}");
        let rows = super::super::parse_assets(&out[..]).unwrap();
        assert_eq!(rows.len(), 1);
        let edit = &rows[0].edit;
        let EditTarget::Match {
            asset_tag,
            serial,
            macs,
            new,
        } = &edit.target
        else {
            panic!()
        };
        assert_eq!((asset_tag.as_str(), serial.as_str()), ("HT-0007", "SN-7"));
        assert_eq!(macs, &asset.macs);
        assert_eq!(
            (
                new.kind,
                new.name.as_str(),
                new.vendor.as_str(),
                new.model.as_str()
            ),
            (asset.kind, "HT-LAP-07", "Dell", "Latitude, 5440")
        );
        // Applying the patch to empty fields gives back every register field.
        let p = &edit.patch;
        let r = &asset.register;
        let back = RegisterFields {
            asset_tag: p.asset_tag.clone().unwrap(),
            site: p.site.clone().unwrap(),
            building: p.building.clone().unwrap(),
            room: p.room.clone().unwrap(),
            assigned_user: p.assigned_user.clone().unwrap(),
            department: p.department.clone().unwrap(),
            purchase_date: p.purchase_date.unwrap(),
            supplier: p.supplier.clone().unwrap(),
            order_ref: p.order_ref.clone().unwrap(),
            cost_pence: p.cost_pence.unwrap(),
            warranty_end: p.warranty_end.unwrap(),
            funding: p.funding.clone().unwrap(),
            notes: p.notes.clone().unwrap(),
            lifecycle: p.lifecycle.unwrap(),
            disposal_ref: p.disposal_ref.clone().unwrap(),
        };
        assert_eq!(&back, r);
    }

    #[test]
    fn other_exports_have_headers_and_guard_cells() {
        let change = Change {
            id: "c1".into(),
            asset_id: "a-1".into(),
            at: OffsetDateTime::UNIX_EPOCH,
            kind: "changed".into(),
            field: "register.room".into(),
            before: Some("B1".into()),
            after: Some("-B2".into()),
            clock_suspect: false,
            expected_by: None,
            author: None,
        };
        let mut out = Vec::new();
        write_changes(&mut out, &[change]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "id,asset_id,at,kind,field,before,after,expected_by,clock_suspect\r\n"
            )
        );
        assert!(text.contains(",B1,'-B2,"), "{text}");
        let mut out = Vec::new();
        write_software(
            &mut out,
            &[SoftwareRow {
                asset_id: "a-1".into(),
                asset_name: "PC".into(),
                asset_tag: String::new(),
                title: "Firefox".into(),
                version: "128.0".into(),
                publisher: "@Mozilla".into(),
            }],
        )
        .unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("a-1,PC,,Firefox,128.0,'@Mozilla\r\n")
        );
    }
}
