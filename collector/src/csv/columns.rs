//! Header names: ours (what the exporter writes) and Snipe-IT's (its asset importer's field
//! names and its custom asset report's headers), compared without case, spaces or
//! punctuation (`Asset Tag`, `asset_tag` and `ASSET-TAG` are one column).

/// A column the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    AssetTag,
    Name,
    /// Our `kind` column: the contract's words only.
    Kind,
    /// Snipe-IT's `Category`: free text, mapped to a kind where it says one.
    Category,
    Vendor,
    Model,
    Serial,
    Macs,
    Site,
    Building,
    Room,
    AssignedUser,
    Department,
    PurchaseDate,
    Supplier,
    OrderRef,
    Cost,
    WarrantyEnd,
    /// Snipe-IT's `Warranty` (months after the purchase date).
    WarrantyMonths,
    Funding,
    Notes,
    Lifecycle,
    DisposalRef,
}

/// What a header means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Field(Field),
    /// Known, and deliberately not imported (see [`IGNORED`]).
    Ignored,
}

/// `Asset Tag` → `assettag`.
pub fn key(header: &str) -> String {
    header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Every accepted spelling (as a [`key`]) of every field.
pub const NAMES: &[(&str, Field)] = &[
    ("assettag", Field::AssetTag),
    ("tag", Field::AssetTag),
    ("name", Field::Name),
    ("assetname", Field::Name),
    ("itemname", Field::Name),
    ("kind", Field::Kind),
    ("category", Field::Category),
    ("vendor", Field::Vendor),
    ("manufacturer", Field::Vendor),
    ("model", Field::Model),
    ("modelname", Field::Model),
    ("serial", Field::Serial),
    ("serialnumber", Field::Serial),
    ("serialno", Field::Serial),
    ("macs", Field::Macs),
    ("mac", Field::Macs),
    ("macaddress", Field::Macs),
    ("macaddresses", Field::Macs),
    ("site", Field::Site),
    ("building", Field::Building),
    ("room", Field::Room),
    ("location", Field::Room),
    ("assigneduser", Field::AssignedUser),
    ("checkedoutto", Field::AssignedUser),
    ("assignedto", Field::AssignedUser),
    ("department", Field::Department),
    ("purchasedate", Field::PurchaseDate),
    ("supplier", Field::Supplier),
    ("orderref", Field::OrderRef),
    ("ordernumber", Field::OrderRef),
    ("cost", Field::Cost),
    ("purchasecost", Field::Cost),
    ("warrantyend", Field::WarrantyEnd),
    ("warrantyexpires", Field::WarrantyEnd),
    ("warrantyexpiry", Field::WarrantyEnd),
    ("warranty", Field::WarrantyMonths),
    ("warrantymonths", Field::WarrantyMonths),
    ("funding", Field::Funding),
    ("notes", Field::Notes),
    ("assetnotes", Field::Notes),
    ("lifecycle", Field::Lifecycle),
    ("status", Field::Lifecycle),
    ("statuslabel", Field::Lifecycle),
    ("disposalref", Field::DisposalRef),
];

/// Columns we know and deliberately do not import: our exporter's observed identity (the
/// network says these, not the file) and Snipe-IT columns with no register field (company,
/// model number, addresses, the checked-out user's details, depreciation, audit and
/// check-in dates, timestamps).
pub const IGNORED: &[&str] = &[
    // Ours: observed, not editable.
    "id",
    "hostname",
    "ips",
    "os",
    "sources",
    "firstseen",
    "lastseen",
    "registerrev",
    // Snipe-IT.
    "company",
    "modelno",
    "modelnumber",
    "eol",
    "eoldate",
    "assetenddate",
    "defaultlocation",
    "address",
    "city",
    "state",
    "country",
    "zip",
    "type",
    "checkouttype",
    "username",
    "email",
    "employeeno",
    "employeenumber",
    "manager",
    "title",
    "value",
    "currentvalue",
    "diff",
    "fullydepreciated",
    "depreciation",
    "checkoutdate",
    "lastcheckout",
    "expectedcheckin",
    "lastcheckin",
    "createdat",
    "updatedat",
    "deleted",
    "lastaudit",
    "nextauditdate",
    "requestable",
    "byod",
    "image",
    "modelnotes",
    "checkouts",
    "checkins",
    "requests",
    "age",
];

/// What `header` means, or `None` for a column we do not know.
pub fn column(header: &str) -> Option<Column> {
    let key = key(header);
    if let Some((_, field)) = NAMES.iter().find(|(name, _)| *name == key) {
        return Some(Column::Field(*field));
    }
    IGNORED.contains(&key.as_str()).then_some(Column::Ignored)
}

/// The columns the asset exporter writes, in order: identity, then every register field,
/// then the revision. Every one is read back by [`column`].
pub const ASSET_EXPORT: &[&str] = &[
    "id",
    "asset_tag",
    "name",
    "kind",
    "vendor",
    "model",
    "serial",
    "macs",
    "hostname",
    "ips",
    "os",
    "sources",
    "first_seen",
    "site",
    "building",
    "room",
    "assigned_user",
    "department",
    "purchase_date",
    "supplier",
    "order_ref",
    "cost",
    "warranty_end",
    "funding",
    "notes",
    "lifecycle",
    "disposal_ref",
    "register_rev",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_export_and_snipe_it_headers_are_known() {
        for header in ASSET_EXPORT {
            assert!(column(header).is_some(), "{header}");
        }
        for header in [
            "Asset Tag",
            "Asset Name",
            "Serial",
            "Model",
            "Model No.",
            "Manufacturer",
            "Category",
            "Status",
            "Location",
            "Checked Out To",
            "Purchase Date",
            "Purchase Cost",
            "Supplier",
            "Order Number",
            "Warranty",
            "Warranty Expires",
            "Notes",
            "MAC Address",
            "Company",
            "Default Location",
            "Created At",
        ] {
            assert!(column(header).is_some(), "{header}");
        }
        assert_eq!(column(" ASSET-TAG "), Some(Column::Field(Field::AssetTag)));
        assert_eq!(
            column("Checked Out To"),
            Some(Column::Field(Field::AssignedUser))
        );
        assert_eq!(column("Model No."), Some(Column::Ignored));
        assert_eq!(column("Colour"), None);
        // No spelling is both imported and ignored.
        for (name, _) in NAMES {
            assert!(!IGNORED.contains(name), "{name}");
        }
    }
}
