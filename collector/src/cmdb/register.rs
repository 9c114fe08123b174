//! Register edits (FITS Configuration Management): what technicians record about a device
//! that the network cannot tell (asset tag, room, user, cost, warranty, lifecycle), from the
//! dashboard, `PATCH /api/v1/assets/{id}`, bulk edits and CSV imports alike.
//!
//! [`Cmdb::edit_register`] runs one `Job::EditRegister` on the writer thread: every edit of
//! the job is resolved (a known asset, a new manual asset, or an imported row matched by
//! asset tag, then serial, then canonical MAC), checked and applied to a private copy first;
//! only when all of them pass is anything written (all or nothing). Each changed field
//! becomes a `changed` change record (`register.room`, before, after) naming its author, and
//! each edited asset's `register_rev` goes up by one. An edit that changes nothing writes
//! nothing (a repeated import is idempotent); a dry run answers the same outcomes and writes
//! nothing at all.

use std::collections::{BTreeSet, HashMap};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Cmdb, blank_asset, identity};
use crate::model::register::{
    EditError, EditOutcome, EditTarget, NewAsset, RegisterEdit, RegisterPatch, iso_date,
};
use crate::model::{Asset, AssetId, Change, Lifecycle, RegisterFields, Source};
use crate::store::WriteSet;

/// Longest asset tag (Snipe-IT allows 255; labels print far fewer).
pub const MAX_TAG: usize = 64;
/// Longest one-line field (room, supplier, user, …).
pub const MAX_LINE: usize = 200;
/// Longest note.
pub const MAX_NOTES: usize = 4000;
/// Highest cost accepted, in pence (£10 million: a typing slip beyond that).
pub const MAX_COST_PENCE: i64 = 1_000_000_000;
/// Dates outside these years are typing slips.
const YEARS: std::ops::RangeInclusive<i32> = 1980..=2100;

/// Every register field by name, in the order pages and exports show them.
pub const FIELDS: [&str; 15] = [
    "asset_tag",
    "site",
    "building",
    "room",
    "assigned_user",
    "department",
    "purchase_date",
    "supplier",
    "order_ref",
    "cost_pence",
    "warranty_end",
    "funding",
    "notes",
    "lifecycle",
    "disposal_ref",
];

/// One register field as text (what change records and pages show): dates ISO, cost in
/// pence, lifecycle in the contract's spelling; empty when not recorded.
pub fn field_text(fields: &RegisterFields, name: &str) -> String {
    match name {
        "asset_tag" => fields.asset_tag.clone(),
        "site" => fields.site.clone(),
        "building" => fields.building.clone(),
        "room" => fields.room.clone(),
        "assigned_user" => fields.assigned_user.clone(),
        "department" => fields.department.clone(),
        "purchase_date" => fields
            .purchase_date
            .map(iso_date::format)
            .unwrap_or_default(),
        "supplier" => fields.supplier.clone(),
        "order_ref" => fields.order_ref.clone(),
        "cost_pence" => fields.cost_pence.map(|c| c.to_string()).unwrap_or_default(),
        "warranty_end" => fields
            .warranty_end
            .map(iso_date::format)
            .unwrap_or_default(),
        "funding" => fields.funding.clone(),
        "notes" => fields.notes.clone(),
        "lifecycle" => fields.lifecycle.as_str().to_owned(),
        "disposal_ref" => fields.disposal_ref.clone(),
        _ => String::new(),
    }
}

/// The key asset tags are compared by (unique across the register, case and spaces aside).
fn tag_key(tag: &str) -> String {
    tag.trim().to_lowercase()
}

fn invalid(index: usize, field: &str, message: impl Into<String>) -> EditError {
    EditError::Invalid {
        index,
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A one-line text field: trimmed, bounded, no control characters.
fn line(index: usize, field: &str, value: &str, max: usize) -> Result<String, EditError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(invalid(
            index,
            field,
            format!(
                "at most {max} characters (this is {})",
                value.chars().count()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            index,
            field,
            "must be one line without control characters",
        ));
    }
    Ok(value.to_owned())
}

fn date(index: usize, field: &str, value: Option<time::Date>) -> Result<(), EditError> {
    match value {
        Some(d) if !YEARS.contains(&d.year()) => Err(invalid(
            index,
            field,
            format!(
                "the year must be between {} and {}",
                YEARS.start(),
                YEARS.end()
            ),
        )),
        _ => Ok(()),
    }
}

/// `fields` with `patch` applied and checked.
pub fn apply_patch(
    index: usize,
    fields: &RegisterFields,
    patch: &RegisterPatch,
) -> Result<RegisterFields, EditError> {
    let mut f = fields.clone();
    let text = |field: &str, value: &Option<String>, target: &mut String| {
        if let Some(value) = value {
            *target = line(index, field, value, MAX_LINE)?;
        }
        Ok::<(), EditError>(())
    };
    if let Some(tag) = &patch.asset_tag {
        f.asset_tag = line(index, "asset_tag", tag, MAX_TAG)?;
    }
    text("site", &patch.site, &mut f.site)?;
    text("building", &patch.building, &mut f.building)?;
    text("room", &patch.room, &mut f.room)?;
    text("assigned_user", &patch.assigned_user, &mut f.assigned_user)?;
    text("department", &patch.department, &mut f.department)?;
    text("supplier", &patch.supplier, &mut f.supplier)?;
    text("order_ref", &patch.order_ref, &mut f.order_ref)?;
    text("funding", &patch.funding, &mut f.funding)?;
    text("disposal_ref", &patch.disposal_ref, &mut f.disposal_ref)?;
    if let Some(notes) = &patch.notes {
        let notes = notes.trim();
        if notes.chars().count() > MAX_NOTES {
            return Err(invalid(
                index,
                "notes",
                format!("at most {MAX_NOTES} characters"),
            ));
        }
        if notes
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
        {
            return Err(invalid(
                index,
                "notes",
                "must not contain control characters",
            ));
        }
        f.notes = notes.replace("\r\n", "\n");
    }
    if let Some(date) = patch.purchase_date {
        f.purchase_date = date;
    }
    if let Some(date) = patch.warranty_end {
        f.warranty_end = date;
    }
    if let Some(cost) = patch.cost_pence {
        f.cost_pence = cost;
    }
    if let Some(lifecycle) = patch.lifecycle {
        f.lifecycle = lifecycle;
    }
    date(index, "purchase_date", f.purchase_date)?;
    date(index, "warranty_end", f.warranty_end)?;
    if let (Some(bought), Some(ends)) = (f.purchase_date, f.warranty_end)
        && ends < bought
    {
        return Err(invalid(
            index,
            "warranty_end",
            format!(
                "the warranty cannot end ({}) before the purchase ({})",
                iso_date::format(ends),
                iso_date::format(bought)
            ),
        ));
    }
    match f.cost_pence {
        Some(cost) if cost < 0 => return Err(invalid(index, "cost_pence", "must not be negative")),
        Some(cost) if cost > MAX_COST_PENCE => {
            return Err(invalid(
                index,
                "cost_pence",
                format!("at most {MAX_COST_PENCE} pence"),
            ));
        }
        _ => {}
    }
    if f.lifecycle == Lifecycle::Disposed && f.disposal_ref.is_empty() {
        return Err(invalid(
            index,
            "disposal_ref",
            "a disposed asset needs its disposal reference (certificate or WEEE number)",
        ));
    }
    if f.lifecycle != Lifecycle::Disposed && !f.disposal_ref.is_empty() {
        return Err(invalid(
            index,
            "disposal_ref",
            "a disposal reference is only recorded for disposed assets: clear it or set the lifecycle to disposed",
        ));
    }
    Ok(f)
}

/// `(field, before, after)` for every field that differs.
pub fn differences(
    before: &RegisterFields,
    after: &RegisterFields,
) -> Vec<(String, String, String)> {
    FIELDS
        .iter()
        .filter_map(|name| {
            let (b, a) = (field_text(before, name), field_text(after, name));
            (b != a).then(|| ((*name).to_owned(), b, a))
        })
        .collect()
}

/// A new manual asset's checked description: `(name, serial, canonical MACs)`.
fn check_new(index: usize, new: &NewAsset) -> Result<(String, String, Vec<String>), EditError> {
    let name = line(index, "name", &new.name, MAX_LINE)?;
    if name.is_empty() {
        return Err(invalid(index, "name", "a new asset needs a name"));
    }
    line(index, "vendor", &new.vendor, MAX_LINE)?;
    line(index, "model", &new.model, MAX_LINE)?;
    let serial = line(index, "serial", &new.serial, MAX_LINE)?;
    let mut macs = Vec::new();
    for raw in new.macs.iter().filter(|m| !m.trim().is_empty()) {
        let mac = crate::model::mac::normalise_mac(raw)
            .ok_or_else(|| invalid(index, "macs", format!("{raw:?} is not a MAC address")))?;
        if !macs.contains(&mac) {
            macs.push(mac);
        }
    }
    Ok((name, serial, macs))
}

/// The id a new manual asset gets: a hash of what describes it, so a job replayed after a
/// crash (or a re-run import) names the same asset; a counter keeps look-alikes apart.
fn manual_id(new: &NewAsset, tag: &str, taken: impl Fn(&str) -> bool) -> AssetId {
    for n in 0u64.. {
        let digest = Sha256::new()
            .chain_update(b"manual\0")
            .chain_update(serde_json::to_vec(new).unwrap_or_default())
            .chain_update(tag_key(tag).as_bytes())
            .chain_update(n.to_be_bytes())
            .finalize();
        let id = format!("m{}", &hex::encode(&digest[..8])[1..]);
        if !taken(&id) {
            return id;
        }
    }
    unreachable!("u64 counter exhausted")
}

fn change_id(asset_id: &str, rev: u64, index: usize, field: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"register\0")
        .chain_update(asset_id.as_bytes())
        .chain_update(rev.to_be_bytes())
        .chain_update((index as u64).to_be_bytes())
        .chain_update(field.as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

/// One edit's result: `(asset, created, matched_by, (field, before, after))`.
type Done = (AssetId, bool, &'static str, Vec<(String, String, String)>);

/// What one job has done so far, before anything is kept.
struct Working<'a> {
    cmdb: &'a Cmdb,
    /// Assets this job edited or created, as they are now.
    assets: HashMap<AssetId, Asset>,
    /// Register revision of each edited asset before the job (0 for new ones).
    revs: HashMap<AssetId, u64>,
    created: BTreeSet<AssetId>,
    /// Asset tag key → asset, for the whole register as this job leaves it.
    tags: HashMap<String, AssetId>,
    /// Serial and MAC → asset, built on the first `Match`.
    serials: Option<HashMap<String, AssetId>>,
    macs: Option<HashMap<String, AssetId>>,
}

impl<'a> Working<'a> {
    fn new(cmdb: &'a Cmdb) -> Self {
        let mut tags = HashMap::new();
        for asset in cmdb.assets.values() {
            let key = tag_key(&asset.register.asset_tag);
            if !key.is_empty() {
                tags.insert(key, asset.id.clone());
            }
        }
        Self {
            cmdb,
            assets: HashMap::new(),
            revs: HashMap::new(),
            created: BTreeSet::new(),
            tags,
            serials: None,
            macs: None,
        }
    }

    fn get(&self, id: &str) -> Option<&Asset> {
        self.assets.get(id).or_else(|| self.cmdb.assets.get(id))
    }

    fn taken(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// The asset with this serial or MAC (indexes built once per job, kept current).
    fn by_serial(&mut self, serial: &str) -> Option<AssetId> {
        let key = identity::normalise_serial(serial)?.to_lowercase();
        let cmdb = self.cmdb;
        self.serials
            .get_or_insert_with(|| {
                cmdb.assets
                    .values()
                    .filter_map(|a| {
                        identity::normalise_serial(&a.serial)
                            .map(|s| (s.to_lowercase(), a.id.clone()))
                    })
                    .collect()
            })
            .get(&key)
            .cloned()
    }

    fn by_mac(&mut self, mac: &str) -> Option<AssetId> {
        let key = crate::model::mac::normalise_mac(mac)?;
        let cmdb = self.cmdb;
        self.macs
            .get_or_insert_with(|| {
                let mut index = HashMap::new();
                for asset in cmdb.assets.values() {
                    for mac in &asset.macs {
                        if let Some(m) = crate::model::mac::normalise_mac(mac) {
                            index.entry(m).or_insert_with(|| asset.id.clone());
                        }
                    }
                }
                index
            })
            .get(&key)
            .cloned()
    }

    fn create(
        &mut self,
        index: usize,
        new: &NewAsset,
        tag: &str,
        now: OffsetDateTime,
    ) -> Result<Asset, EditError> {
        let (name, serial, macs) = check_new(index, new)?;
        let id = manual_id(new, tag, |id| self.taken(id));
        let mut asset = blank_asset(id.clone(), now);
        asset.kind = new.kind;
        asset.name = name;
        asset.vendor = new.vendor.trim().to_owned();
        asset.model = new.model.trim().to_owned();
        asset.serial = serial;
        asset.macs = macs;
        asset.sources.insert(Source::Manual);
        if let Some(serials) = &mut self.serials
            && let Some(s) = identity::normalise_serial(&asset.serial)
        {
            serials.insert(s.to_lowercase(), id.clone());
        }
        if let Some(index) = &mut self.macs {
            for mac in &asset.macs {
                index.entry(mac.clone()).or_insert_with(|| id.clone());
            }
        }
        self.created.insert(id.clone());
        self.revs.insert(id, 0);
        Ok(asset)
    }

    /// Which asset `target` names: `(asset as it is now, created, matched_by)`.
    fn resolve(
        &mut self,
        index: usize,
        target: &EditTarget,
        patch: &RegisterPatch,
        now: OffsetDateTime,
    ) -> Result<(Asset, bool, &'static str), EditError> {
        match target {
            EditTarget::Asset {
                asset_id,
                expected_rev,
            } => {
                let asset = self
                    .get(asset_id)
                    .cloned()
                    .ok_or_else(|| EditError::NotFound {
                        index,
                        asset_id: asset_id.clone(),
                    })?;
                // Racing editors compare with the revision before this job.
                let current = self
                    .revs
                    .get(asset_id)
                    .copied()
                    .unwrap_or(asset.register_rev);
                if let Some(expected) = *expected_rev
                    && expected != current
                {
                    return Err(EditError::Conflict {
                        index,
                        asset_id: asset_id.clone(),
                        expected,
                        current,
                    });
                }
                Ok((asset, false, "asset_id"))
            }
            EditTarget::New(new) => {
                let tag = patch.asset_tag.as_deref().unwrap_or_default();
                Ok((self.create(index, new, tag, now)?, true, "created"))
            }
            EditTarget::Match {
                asset_tag,
                serial,
                macs,
                new,
            } => {
                let found = Some(tag_key(asset_tag))
                    .filter(|k| !k.is_empty())
                    .and_then(|k| self.tags.get(&k).cloned())
                    .map(|id| (id, "asset_tag"))
                    .or_else(|| self.by_serial(serial).map(|id| (id, "serial")))
                    .or_else(|| {
                        macs.iter()
                            .find_map(|m| self.by_mac(m))
                            .map(|id| (id, "mac"))
                    });
                match found {
                    Some((id, how)) => {
                        let asset = self.get(&id).cloned().expect("indexed assets exist");
                        Ok((asset, false, how))
                    }
                    None => {
                        let tag = patch.asset_tag.as_deref().unwrap_or(asset_tag);
                        let mut new = new.clone();
                        if new.serial.trim().is_empty() {
                            new.serial.clone_from(serial);
                        }
                        if new.macs.is_empty() {
                            new.macs.clone_from(macs);
                        }
                        Ok((self.create(index, &new, tag, now)?, true, "created"))
                    }
                }
            }
        }
    }
}

impl Cmdb {
    /// Applies one register job: every edit or none (see the module comment). Writes into
    /// `out` and the in-memory register only when the job succeeds and is not a dry run.
    pub fn edit_register(
        &mut self,
        edits: &[RegisterEdit],
        author: &str,
        dry_run: bool,
        now: OffsetDateTime,
        out: &mut WriteSet,
    ) -> Result<Vec<EditOutcome>, EditError> {
        let mut work = Working::new(self);
        // Per edit: (asset, created, matched_by, changes).
        let mut done: Vec<Done> = Vec::with_capacity(edits.len());
        for (index, edit) in edits.iter().enumerate() {
            let (mut asset, created, matched_by) =
                work.resolve(index, &edit.target, &edit.patch, now)?;
            let fields = apply_patch(index, &asset.register, &edit.patch)?;
            let old_key = tag_key(&asset.register.asset_tag);
            let new_key = tag_key(&fields.asset_tag);
            if !new_key.is_empty()
                && let Some(other) = work.tags.get(&new_key)
                && *other != asset.id
            {
                return Err(EditError::DuplicateTag {
                    index,
                    asset_tag: fields.asset_tag.clone(),
                    other: other.clone(),
                });
            }
            if old_key != new_key {
                if !old_key.is_empty() && work.tags.get(&old_key) == Some(&asset.id) {
                    work.tags.remove(&old_key);
                }
                if !new_key.is_empty() {
                    work.tags.insert(new_key, asset.id.clone());
                }
            }
            let changes = differences(&asset.register, &fields);
            if !changes.is_empty() || created {
                work.revs
                    .entry(asset.id.clone())
                    .or_insert(asset.register_rev);
                asset.register = fields;
                work.assets.insert(asset.id.clone(), asset.clone());
            }
            done.push((asset.id, created, matched_by, changes));
        }
        let Working {
            assets,
            revs,
            created,
            ..
        } = work;
        // One revision per edited asset, however many edits of the job touched it.
        let changed: HashMap<AssetId, u64> = assets
            .keys()
            .map(|id| {
                let before = revs.get(id).copied().unwrap_or_default();
                (id.clone(), before + 1)
            })
            .collect();
        let rev_of = |id: &str| {
            changed
                .get(id)
                .copied()
                .or_else(|| self.assets.get(id).map(|a| a.register_rev))
                .unwrap_or_default()
        };
        let outcomes: Vec<EditOutcome> = done
            .iter()
            .map(|(id, created, how, changes)| EditOutcome {
                asset_id: id.clone(),
                created: *created,
                matched_by: (*how).to_owned(),
                changes: changes.clone(),
                register_rev: rev_of(id),
            })
            .collect();
        if dry_run {
            return Ok(outcomes);
        }
        let author = Some(author.to_owned()).filter(|a| !a.is_empty());
        for (index, (id, was_created, _, changes)) in done.iter().enumerate() {
            let rev = rev_of(id);
            let record = |kind: &str, field: String, before: String, after: String| Change {
                id: change_id(id, rev, index, &field),
                asset_id: id.clone(),
                at: now,
                kind: kind.to_owned(),
                field,
                before: Some(before).filter(|b| !b.is_empty()),
                after: Some(after).filter(|a| !a.is_empty()),
                clock_suspect: false,
                expected_by: None,
                author: author.clone(),
            };
            if *was_created {
                let name = assets.get(id).map(|a| a.name.clone()).unwrap_or_default();
                out.changes
                    .push(record("created", "asset".to_owned(), String::new(), name));
            }
            for (field, before, after) in changes {
                out.changes.push(record(
                    "changed",
                    format!("register.{field}"),
                    before.clone(),
                    after.clone(),
                ));
            }
        }
        let mut assets: Vec<Asset> = assets.into_values().collect();
        assets.sort_by(|a, b| a.id.cmp(&b.id));
        for mut asset in assets {
            asset.register_rev = changed[&asset.id];
            out.assets.push(asset.clone());
            self.index(asset);
        }
        debug_assert!(created.iter().all(|id| self.assets.contains_key(id)));
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AssetKind;
    use crate::store::MemoryStore;
    use time::macros::{date, datetime};

    const NOW: OffsetDateTime = datetime!(2026-12-02 10:00 UTC);

    fn cmdb_with(assets: &[Asset]) -> Cmdb {
        let store = MemoryStore::default();
        let set = WriteSet {
            assets: assets.to_vec(),
            ..Default::default()
        };
        crate::store::Store::commit(&store, set).expect("commit");
        Cmdb::load(&store, super::super::Settings::default()).expect("load")
    }

    fn pc(id: &str, serial: &str, mac: &str) -> Asset {
        let mut asset = blank_asset(id.to_owned(), NOW);
        asset.kind = AssetKind::Pc;
        asset.name = id.to_uppercase();
        asset.serial = serial.to_owned();
        asset.macs = vec![mac.to_owned()];
        asset.sources.insert(Source::Agent);
        asset
    }

    fn edit(id: &str, rev: Option<u64>, patch: RegisterPatch) -> RegisterEdit {
        RegisterEdit {
            target: EditTarget::Asset {
                asset_id: id.to_owned(),
                expected_rev: rev,
            },
            patch,
        }
    }

    fn room(room: &str) -> RegisterPatch {
        RegisterPatch {
            room: Some(room.to_owned()),
            ..Default::default()
        }
    }

    fn whiteboard(name: &str) -> NewAsset {
        NewAsset {
            kind: AssetKind::Display,
            name: name.to_owned(),
            vendor: "Promethean".to_owned(),
            model: "ActivPanel".to_owned(),
            serial: String::new(),
            macs: Vec::new(),
        }
    }

    fn two_pcs() -> Cmdb {
        let mut a = pc("a", "SN-A", "00:16:3e:00:00:0a");
        a.register.asset_tag = "CT-0001".to_owned();
        let b = pc("b", "SN-B", "00:16:3e:00:00:0b");
        cmdb_with(&[a, b])
    }

    #[test]
    fn an_edit_records_each_changed_field_with_its_author_and_bumps_the_revision_once() {
        let mut cmdb = two_pcs();
        let mut out = WriteSet::default();
        let patch = RegisterPatch {
            room: Some(" B12 ".to_owned()),
            warranty_end: Some(Some(date!(2029 - 08 - 31))),
            department: Some("Science".to_owned()),
            ..Default::default()
        };
        let outcomes = cmdb
            .edit_register(&[edit("b", Some(0), patch)], "tech", false, NOW, &mut out)
            .expect("edit");
        assert_eq!(outcomes[0].register_rev, 1);
        assert_eq!(outcomes[0].changes.len(), 3);
        assert_eq!(out.assets.len(), 1);
        assert_eq!(out.assets[0].register.room, "B12", "trimmed");
        assert_eq!(out.assets[0].register_rev, 1);
        let mut fields: Vec<(&str, Option<&str>)> = out
            .changes
            .iter()
            .map(|c| (c.field.as_str(), c.after.as_deref()))
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                ("register.department", Some("Science")),
                ("register.room", Some("B12")),
                ("register.warranty_end", Some("2029-08-31")),
            ]
        );
        assert!(out.changes.iter().all(|c| c.kind == "changed"
            && c.author.as_deref() == Some("tech")
            && c.before.is_none()));
        // The in-memory register moved on: the same edit again changes nothing.
        let mut again = WriteSet::default();
        let outcomes = cmdb
            .edit_register(
                &[edit("b", Some(1), room("B12"))],
                "tech",
                false,
                NOW,
                &mut again,
            )
            .expect("edit");
        assert!(outcomes[0].changes.is_empty());
        assert_eq!(
            outcomes[0].register_rev, 1,
            "nothing changed, no new revision"
        );
        assert!(
            again.is_empty(),
            "an edit that changes nothing writes nothing"
        );
    }

    #[test]
    fn a_stale_revision_is_a_conflict_and_writes_nothing() {
        let mut cmdb = two_pcs();
        let mut out = WriteSet::default();
        cmdb.edit_register(
            &[edit("b", Some(0), room("B12"))],
            "ann",
            false,
            NOW,
            &mut out,
        )
        .expect("first");
        let mut second = WriteSet::default();
        let error = cmdb
            .edit_register(
                &[edit("b", Some(0), room("C3"))],
                "bob",
                false,
                NOW,
                &mut second,
            )
            .expect_err("second editor saw revision 0");
        assert_eq!(
            error,
            EditError::Conflict {
                index: 0,
                asset_id: "b".to_owned(),
                expected: 0,
                current: 1
            }
        );
        assert!(second.is_empty());
        assert_eq!(cmdb.assets["b"].register.room, "B12");
        let error = cmdb
            .edit_register(
                &[edit("zz", None, room("C3"))],
                "bob",
                false,
                NOW,
                &mut second,
            )
            .expect_err("unknown");
        assert!(matches!(error, EditError::NotFound { index: 0, .. }));
    }

    #[test]
    fn a_job_is_all_or_nothing() {
        let mut cmdb = two_pcs();
        let mut out = WriteSet::default();
        let bad = RegisterPatch {
            cost_pence: Some(Some(-5)),
            ..Default::default()
        };
        let error = cmdb
            .edit_register(
                &[edit("a", None, room("B12")), edit("b", None, bad)],
                "tech",
                false,
                NOW,
                &mut out,
            )
            .expect_err("negative cost");
        assert_eq!(
            error,
            EditError::Invalid {
                index: 1,
                field: "cost_pence".to_owned(),
                message: "must not be negative".to_owned()
            }
        );
        assert!(out.is_empty());
        assert_eq!(
            cmdb.assets["a"].register.room, "",
            "the first edit was not kept"
        );
    }

    #[test]
    fn asset_tags_are_unique_in_the_register_and_in_the_job() {
        let mut cmdb = two_pcs();
        let mut out = WriteSet::default();
        let tag = |t: &str| RegisterPatch {
            asset_tag: Some(t.to_owned()),
            ..Default::default()
        };
        let error = cmdb
            .edit_register(
                &[edit("b", None, tag("ct-0001"))],
                "t",
                false,
                NOW,
                &mut out,
            )
            .expect_err("a's tag");
        assert_eq!(
            error,
            EditError::DuplicateTag {
                index: 0,
                asset_tag: "ct-0001".to_owned(),
                other: "a".to_owned()
            }
        );
        let new = |name: &str| RegisterEdit {
            target: EditTarget::New(whiteboard(name)),
            patch: tag("WB-1"),
        };
        let error = cmdb
            .edit_register(&[new("one"), new("two")], "t", false, NOW, &mut out)
            .expect_err("twice in the job");
        assert!(matches!(error, EditError::DuplicateTag { index: 1, .. }));
        assert!(out.is_empty());
        // Moving a tag from one asset to another inside one job is fine.
        cmdb.edit_register(
            &[edit("a", None, tag("")), edit("b", None, tag("CT-0001"))],
            "t",
            false,
            NOW,
            &mut out,
        )
        .expect("moved");
        assert_eq!(cmdb.assets["b"].register.asset_tag, "CT-0001");
        let long = "x".repeat(MAX_TAG + 1);
        let error = cmdb
            .edit_register(&[edit("a", None, tag(&long))], "t", false, NOW, &mut out)
            .expect_err("long");
        assert!(matches!(error, EditError::Invalid { ref field, .. } if field == "asset_tag"));
    }

    #[test]
    fn validation_names_the_field() {
        let fields = RegisterFields::default();
        let check = |patch: RegisterPatch| match apply_patch(3, &fields, &patch) {
            Err(EditError::Invalid { index, field, .. }) => {
                assert_eq!(index, 3);
                field
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            check(RegisterPatch {
                lifecycle: Some(Lifecycle::Disposed),
                ..Default::default()
            }),
            "disposal_ref"
        );
        assert_eq!(
            check(RegisterPatch {
                disposal_ref: Some("WEEE-1".into()),
                ..Default::default()
            }),
            "disposal_ref"
        );
        assert_eq!(
            check(RegisterPatch {
                purchase_date: Some(Some(date!(2026 - 01 - 01))),
                warranty_end: Some(Some(date!(2025 - 01 - 01))),
                ..Default::default()
            }),
            "warranty_end"
        );
        assert_eq!(
            check(RegisterPatch {
                purchase_date: Some(Some(date!(1900 - 01 - 01))),
                ..Default::default()
            }),
            "purchase_date"
        );
        assert_eq!(check(room(&"r".repeat(MAX_LINE + 1))), "room");
        assert_eq!(check(room("B12\nB13")), "room");
        assert_eq!(
            check(RegisterPatch {
                cost_pence: Some(Some(MAX_COST_PENCE + 1)),
                ..Default::default()
            }),
            "cost_pence"
        );
        let disposed = apply_patch(
            0,
            &fields,
            &RegisterPatch {
                lifecycle: Some(Lifecycle::Disposed),
                disposal_ref: Some("WEEE-2026-17".into()),
                notes: Some("Line one\r\nline <b>two</b>".into()),
                ..Default::default()
            },
        )
        .expect("valid");
        assert_eq!(disposed.notes, "Line one\nline <b>two</b>");
        // Clearing works: Some(None) and empty strings.
        let cleared = apply_patch(
            0,
            &disposed,
            &RegisterPatch {
                lifecycle: Some(Lifecycle::Retired),
                disposal_ref: Some(String::new()),
                cost_pence: Some(None),
                ..Default::default()
            },
        )
        .expect("valid");
        assert_eq!(cleared.disposal_ref, "");
    }

    #[test]
    fn matching_goes_by_tag_then_serial_then_mac_else_creates_a_manual_asset() {
        let mut cmdb = two_pcs();
        let row = |tag: &str, serial: &str, mac: &str, name: &str| RegisterEdit {
            target: EditTarget::Match {
                asset_tag: tag.to_owned(),
                serial: serial.to_owned(),
                macs: if mac.is_empty() {
                    Vec::new()
                } else {
                    vec![mac.to_owned()]
                },
                new: whiteboard(name),
            },
            patch: RegisterPatch {
                asset_tag: Some(tag.to_owned()).filter(|t| !t.is_empty()),
                room: Some("B12".to_owned()),
                ..Default::default()
            },
        };
        let edits = [
            row("CT-0001", "SN-B", "", "x"),       // tag wins over serial: a
            row("", "sn-b", "", "x"),              // serial (any case): b
            row("", "", "00-16-3E-00-00-0B", "x"), // canonical MAC: b
            row("WB-7", "", "", "Whiteboard R7"),  // nothing: created
        ];
        let mut out = WriteSet::default();
        let dry = cmdb
            .edit_register(&edits, "importer", true, NOW, &mut out)
            .expect("dry run");
        assert!(out.is_empty(), "a dry run writes nothing");
        let how: Vec<(&str, bool)> = dry
            .iter()
            .map(|o| (o.matched_by.as_str(), o.created))
            .collect();
        assert_eq!(
            how,
            [
                ("asset_tag", false),
                ("serial", false),
                ("mac", false),
                ("created", true)
            ]
        );
        assert_eq!(dry[0].asset_id, "a");
        assert_eq!(dry[1].asset_id, "b");
        assert_eq!(dry[2].asset_id, "b");
        assert!(dry[2].changes.is_empty(), "b's room was set by row 1");
        assert_eq!(dry[1].register_rev, 1, "b edited twice, one revision");
        let real = cmdb
            .edit_register(&edits, "importer", false, NOW, &mut out)
            .expect("import");
        assert_eq!(real, dry, "the dry run said exactly what happened");
        let created = &cmdb.assets[&real[3].asset_id];
        assert!(created.sources.contains(&Source::Manual));
        assert_eq!(created.kind, AssetKind::Display);
        assert_eq!(created.register.asset_tag, "WB-7");
        assert_eq!(created.register_rev, 1);
        assert!(
            out.changes
                .iter()
                .any(|c| c.kind == "created" && c.asset_id == created.id)
        );
        // Importing the same rows again matches everything and writes nothing.
        let mut again = WriteSet::default();
        let second = cmdb
            .edit_register(&edits, "importer", false, NOW, &mut again)
            .expect("again");
        assert!(again.is_empty(), "idempotent");
        assert_eq!(second[3].asset_id, real[3].asset_id);
        assert_eq!(second[3].matched_by, "asset_tag");
    }

    #[test]
    fn manual_ids_are_deterministic_and_distinct() {
        let new = whiteboard("Board");
        let mut cmdb = cmdb_with(&[]);
        let job = [
            RegisterEdit {
                target: EditTarget::New(new.clone()),
                patch: RegisterPatch::default(),
            },
            RegisterEdit {
                target: EditTarget::New(new.clone()),
                patch: RegisterPatch::default(),
            },
        ];
        let mut out = WriteSet::default();
        let first = cmdb
            .edit_register(&job, "t", true, NOW, &mut out)
            .expect("dry");
        let mut fresh = cmdb_with(&[]);
        let second = fresh
            .edit_register(&job, "t", false, NOW, &mut out)
            .expect("real");
        assert_eq!(first, second, "same job, same ids");
        assert_ne!(second[0].asset_id, second[1].asset_id);
        let bad = RegisterEdit {
            target: EditTarget::New(NewAsset {
                macs: vec!["not a mac".to_owned()],
                ..new
            }),
            patch: RegisterPatch::default(),
        };
        let error = fresh
            .edit_register(&[bad], "t", false, NOW, &mut WriteSet::default())
            .expect_err("bad mac");
        assert!(matches!(error, EditError::Invalid { ref field, .. } if field == "macs"));
    }
}
