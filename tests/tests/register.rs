//! The register a bursar can trust (issue 10), through the real collector's API with a real
//! agent's PC in it: register edits with their author, racing edits refused (409), manual
//! assets, bulk edits, and CSV export → import into an empty collector, a Snipe-IT-shaped
//! import with its dry run, an idempotent re-import, and bad files that import nothing.

use std::process::Command;

use caretaker_tests::{Collector, agent_once};
use serde_json::{Value, json};

/// One API call with the bearer token through real curl: (status, body).
fn call(
    collector: &Collector,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> (u16, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("body");
    std::fs::write(&file, body).expect("body file");
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", collector.api_token()))
        .arg("-H")
        .arg(format!("Content-Type: {ctype}"))
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{}/api/v1{path}", collector.http))
        .output()
        .expect("curl runs (is it installed?)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.trim().parse().expect("status"), body.to_owned())
}

fn json_call(collector: &Collector, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = call(
        collector,
        method,
        path,
        "application/json",
        body.to_string().as_bytes(),
    );
    let value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    (status, value)
}

fn export(collector: &Collector) -> String {
    let (status, text) = caretaker_tests::get_raw(
        collector.http,
        "/api/v1/export/assets.csv",
        Some(&collector.api_token()),
    )
    .expect("export");
    assert_eq!(status, 200, "{text}");
    text
}

fn import(collector: &Collector, csv: &[u8], dry_run: bool) -> (u16, Value) {
    let (status, text) = call(
        collector,
        "POST",
        &format!("/import/assets?dry_run={dry_run}"),
        "text/csv",
        csv,
    );
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("import: {e}: {text}")),
    )
}

/// Every asset's register fields, by asset tag (identity fields beside them).
fn register_by_tag(collector: &Collector) -> std::collections::BTreeMap<String, Value> {
    collector
        .assets()
        .into_iter()
        .filter_map(|a| {
            let tag = a["register"]["asset_tag"].as_str()?.to_owned();
            (!tag.is_empty()).then(|| {
                let identity = json!([a["kind"], a["name"], a["serial"], a["register"]]);
                (tag, identity)
            })
        })
        .collect()
}

#[test]
fn register_edits_conflicts_bulk_and_csv_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"));
    agent_once(&collector, &dir.path().join("agent"), &[]);
    let pc = collector
        .assets()
        .into_iter()
        .next()
        .expect("this machine's asset");
    let pc_id = pc["id"].as_str().expect("id").to_owned();
    let rev = pc["register_rev"].as_u64().expect("register_rev");

    // An edit with the revision we saw: applied, one change record per field, by "api".
    let (status, edited) = json_call(
        &collector,
        "PATCH",
        &format!("/assets/{pc_id}"),
        &json!({"expected_rev": rev, "asset_tag": "CT-0001", "room": "B12",
                "department": "Science", "cost_pence": 45_000, "warranty_end": "2027-08-31",
                "notes": "<script>alert(1)</script>"}),
    );
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["register"]["room"], "B12");
    assert_eq!(edited["register_rev"].as_u64(), Some(rev + 1));
    let changes = collector.get(&format!("/changes?asset={pc_id}"));
    let room_change = changes
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["field"] == "register.room")
        .unwrap_or_else(|| panic!("a change record for the room: {changes}"));
    assert_eq!(room_change["after"], "B12");
    assert_eq!(room_change["author"], "api");

    // A second editor who opened the asset before that edit: 409, nothing overwritten.
    let (status, conflict) = json_call(
        &collector,
        "PATCH",
        &format!("/assets/{pc_id}"),
        &json!({"expected_rev": rev, "room": "C3"}),
    );
    assert_eq!(status, 409, "{conflict}");
    let (_, now) = collector.get_status(&format!("/assets/{pc_id}"));
    assert_eq!(
        now["register"]["room"], "B12",
        "the later edit did not overwrite"
    );

    // Bad values are refused naming the field.
    for (body, field) in [
        (json!({"warranty_end": "31/08/2027"}), "warranty_end"),
        (json!({"cost_pence": -5}), "cost_pence"),
        (json!({"lifecycle": "lost"}), "lifecycle"),
    ] {
        let (status, answer) = json_call(&collector, "PATCH", &format!("/assets/{pc_id}"), &body);
        assert!((400..500).contains(&status), "{body} → {status} {answer}");
        assert_eq!(answer["field"], field, "{body} → {answer}");
    }
    let (status, _) = json_call(
        &collector,
        "PATCH",
        "/assets/no-such-asset",
        &json!({"room": "X"}),
    );
    assert_eq!(status, 404);

    // Manual assets for what never answers on the network, then a bulk move of all three.
    let mut manual = Vec::new();
    for (i, kind) in ["display", "visualiser", "trolley"].iter().enumerate() {
        let (status, made) = json_call(
            &collector,
            "POST",
            "/assets",
            &json!({"kind": kind, "name": format!("B7 {kind}"), "serial": format!("SER-{i}"),
                    "asset_tag": format!("CT-01{i:02}"), "room": "B7"}),
        );
        assert_eq!(status, 201, "{made}");
        manual.push(made["id"].as_str().expect("id").to_owned());
    }
    let (status, moved) = json_call(
        &collector,
        "POST",
        "/assets/bulk",
        &json!({"ids": manual, "patch": {"room": "B12", "building": "Science block"}}),
    );
    assert_eq!(status, 200, "{moved}");
    for id in &manual {
        let (_, asset) = collector.get_status(&format!("/assets/{id}"));
        assert_eq!(asset["register"]["room"], "B12", "{asset}");
        assert_eq!(asset["register"]["building"], "Science block");
    }
    // A duplicate asset tag is refused, and nothing of that edit is kept.
    let (status, dup) = json_call(
        &collector,
        "PATCH",
        &format!("/assets/{}", manual[0]),
        &json!({"asset_tag": "CT-0001", "room": "Z9"}),
    );
    assert_eq!(status, 409, "{dup}");
    let (_, first) = collector.get_status(&format!("/assets/{}", manual[0]));
    assert_eq!(first["register"]["room"], "B12");

    // Export → import into an empty collector → the same register.
    let csv = export(&collector);
    assert!(csv.contains("CT-0001"), "{csv}");
    assert!(
        !csv.contains("\n=") && !csv.contains(",="),
        "no formula cells"
    );
    let empty = Collector::start(&dir.path().join("empty"));
    let (status, dry) = import(&empty, csv.as_bytes(), true);
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["totals"]["created"], 4, "{dry}");
    assert!(empty.assets().is_empty(), "a dry run writes nothing");
    let (status, done) = import(&empty, csv.as_bytes(), false);
    assert_eq!(status, 200, "{done}");
    let mut expected = register_by_tag(&collector);
    let mut got = register_by_tag(&empty);
    // The PC's kind in the new register comes from the file, as a manual record until its
    // agent reports; compare what the file carries.
    for map in [&mut expected, &mut got] {
        for value in map.values_mut() {
            value[0] = Value::Null;
        }
    }
    assert_eq!(got, expected, "the register came through the round trip");
    let (_, again) = import(&empty, csv.as_bytes(), false);
    assert_eq!(
        again["totals"]["unchanged"], 4,
        "re-import is idempotent: {again}"
    );

    // A Snipe-IT export: matched by asset tag, serial or new, the dry run says exactly what.
    let snipe = "Asset Tag,Asset Name,Serial,Category,Status,Location,Purchase Date,\
                 Purchase Cost,Supplier,Order Number,Warranty Expires,Notes\n\
                 CT-0001,Ignored name,,Desktop,Ready to Deploy,B14,2023-09-01,\"£450.00\",XMA,PO-77,2027-08-31,moved\n\
                 CT-0500,Visualiser B2,SN-VIS-2,Visualiser,Ready to Deploy,B2,2024-01-15,\"£120.00\",XMA,PO-78,2026-01-15,café\n";
    let before = collector.assets();
    let (status, dry) = import(&collector, snipe.as_bytes(), true);
    assert_eq!(status, 200, "{dry}");
    let rows = dry["rows"].as_array().expect("rows");
    assert_eq!(rows[0]["matched_by"], "asset_tag", "{dry}");
    assert_eq!(rows[0]["asset_id"], pc_id.as_str());
    let room = rows[0]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["field"] == "room")
        .unwrap_or_else(|| panic!("room change in {dry}"));
    assert_eq!(
        (room["before"].as_str(), room["after"].as_str()),
        (Some("B12"), Some("B14"))
    );
    assert_eq!(rows[1]["action"], "created", "{dry}");
    assert_eq!(collector.assets(), before, "the dry run changed nothing");
    let (status, _) = import(&collector, snipe.as_bytes(), false);
    assert_eq!(status, 200);
    let (_, pc_now) = collector.get_status(&format!("/assets/{pc_id}"));
    assert_eq!(pc_now["register"]["room"], "B14");
    assert_eq!(pc_now["register"]["cost_pence"], 45_000);
    assert_eq!(pc_now["register"]["order_ref"], "PO-77");
    let (_, again) = import(&collector, snipe.as_bytes(), false);
    assert_eq!(again["totals"]["unchanged"], 2, "{again}");

    // Bad files: a clear error naming row and column, and nothing imported.
    let before = collector.assets();
    let mut legacy = b"Asset Tag,Room,Notes\nCT-0600,B1,caf".to_vec();
    legacy.extend_from_slice(&[0xe9, b'\n']); // "é" in Windows-1252
    // 50 MB, as a whole school's spreadsheet never is.
    let big = format!("asset_tag,room\n{}", "CT-Y,B1\n".repeat(50_000_000 / 8));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad date",
            b"Asset Tag,Purchase Date\nCT-0700,2024-02-30\n".to_vec(),
            "row 2",
        ),
        (
            "unknown column",
            b"Asset Tag,Colour\nCT-0701,red\n".to_vec(),
            "Colour",
        ),
        (
            "duplicate tag",
            b"Asset Tag,Room\nCT-0702,A\nCT-0702,B\n".to_vec(),
            "row 3",
        ),
        ("Windows-1252", legacy, "UTF-8"),
        ("oversized", big.into_bytes(), ""),
    ];
    for (what, body, needle) in cases {
        let (status, answer) = call(
            &collector,
            "POST",
            "/import/assets?dry_run=false",
            "text/csv",
            &body,
        );
        assert!(
            status == 422 || status == 413,
            "{what}: {status} {}",
            &answer[..answer.len().min(400)]
        );
        assert!(answer.contains(needle), "{what}: {answer}");
        assert_eq!(collector.assets(), before, "{what}: nothing imported");
    }
}
