//! The register in the dashboard (issue 10), in real headless Chromium against the real
//! collector on loopback, with a seeded service-level month (`seed-sla`) and a real agent's
//! PC in it: a technician edits an asset's register fields and finds the edit in its history
//! under their name; two technicians race on one asset and the second is shown the conflict
//! (409) with nothing overwritten; a manual asset is created; a filtered list is moved to
//! room B12 in one bulk edit; a Snipe-IT-shaped CSV is checked (dry-run table), confirmed and
//! found in the register, a CSV with a bad date is refused naming row and column with
//! nothing imported, and a dry run that went stale (an edit in between) imports nothing
//! until it is confirmed again; the releases, finance and service-level pages show real figures. Then
//! the import page's refusals over plain HTTP: read-only 403, a forged form token 403, a file
//! past 16 MiB 413. Screenshots of every step land in `target/screenshots/register-*.png`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use caretaker_tests::browser::{Browser, csrf_of, curl, curl_login, wait_text};
use caretaker_tests::{Collector, agent_once, bin};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// The seeded month's services (as in `tests/service_levels.rs`) and a policy for a title
/// this machine really has, with a minimum version no install reaches.
const CONFIG: &str = r#"
[school_hours]
timezone = "UTC"
weekly = { mon = "08:00-16:00", tue = "08:00-16:00", wed = "08:00-16:00", thu = "08:00-16:00", fri = "08:00-16:00" }
[[service]]
name = "Curriculum network"
kinds = ["switch", "access-point"]
availability_target = 99.0
[[service]]
name = "Printing"
tags = ["PR-0001"]
availability_target = 98.0
[sla]
clock = "24x7"
response = ["15m", "30m", "1h", "", ""]
resolution = ["4h", "4h", "8h", "", ""]
[[release.title]]
name = "dpkg"
minimum_version = "999"
licences = 5
[web]
school_name = "Lab School"
"#;

/// The seeded assets (`collector/src/sla/seed.rs`).
const SWITCH: &str = "5e1a000000000001";
const PRINTER: &str = "5e1a000000000003";

/// The HTTP status the browser got for the page it shows.
async fn page_status(c: &Client) -> Result<u64> {
    c.execute(
        "return performance.getEntriesByType('navigation')[0].responseStatus",
        vec![],
    )
    .await?
    .as_u64()
    .context("the navigation's responseStatus")
}

/// Every row of the table `css` as the user reads it: the cells' text.
async fn rows(c: &Client, css: &str) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for row in c.find_all(Locator::Css(&format!("{css} tbody tr"))).await? {
        let mut cells = Vec::new();
        for cell in row.find_all(Locator::Css("td")).await? {
            cells.push(cell.text().await?.trim().to_owned());
        }
        out.push(cells);
    }
    Ok(out)
}

/// Types `text` into the field `id`, replacing what it held.
async fn set(c: &Client, id: &str, text: &str) -> Result<()> {
    let field = c.find(Locator::Id(id)).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

async fn login(browser: &Browser, base: &str, user: &str) -> Result<()> {
    let c = &browser.client;
    c.goto(&format!("{base}/login")).await?;
    wait_text(browser, "Log in", Duration::from_secs(10)).await?;
    set(c, "username", user).await?;
    set(c, "password", PASSWORD).await?;
    c.find(Locator::Css("main form button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_text(browser, &format!("{user} ("), Duration::from_secs(20)).await?;
    Ok(())
}

/// Every asset's register fields by id, as the API has them.
fn registers(collector: &Collector) -> BTreeMap<String, Value> {
    collector
        .assets()
        .into_iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_owned(),
                a["register"].clone(),
            )
        })
        .collect()
}

fn asset(collector: &Collector, id: &str) -> Value {
    collector.get(&format!("/assets/{id}"))
}

/// Last month, `YYYY-MM` (the seeded month).
fn last_month() -> String {
    let today = time::OffsetDateTime::now_utc().date();
    let first = today.replace_day(1).expect("day 1");
    let last = first.previous_day().expect("a day before");
    format!("{}-{:02}", last.year(), u8::from(last.month()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_is_kept_in_a_real_browser() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let month = last_month();
    let collector_dir = dir.path().join("collector");
    let seeded = Command::new(bin("caretaker-collector"))
        .args(["seed-sla", "--month", &month, "--data-dir"])
        .arg(collector_dir.join("data"))
        .output()?;
    ensure!(
        seeded.status.success(),
        "seed-sla: {}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let collector = Collector::start_with(&collector_dir, CONFIG);
    // This machine, with its real packages, as a real agent reports it.
    agent_once(&collector, &dir.path().join("agent"), &[]);
    let hostname = caretaker_tests::hostname();
    let pc = collector
        .assets()
        .into_iter()
        .find(|a| a["hostname"] == hostname.as_str())
        .context("the agent's PC")?;
    let pc_name = pc["name"].as_str().context("name")?.to_owned();
    let dpkg = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "dpkg"])
        .output()?;
    let dpkg_version = String::from_utf8(dpkg.stdout)?.trim().to_owned();
    ensure!(
        !dpkg_version.is_empty(),
        "dpkg-query -W dpkg says no version"
    );

    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, format!("{PASSWORD}\n"))?;
    for (name, role) in [
        ("tech", "technician"),
        ("tech2", "technician"),
        ("viewer", "read-only"),
    ] {
        let out = Command::new(bin("caretaker-collector"))
            .args(["user", "add", name, "--role", role, "--password-file"])
            .arg(&pw_file)
            .arg("--config")
            .arg(&collector.config)
            .output()?;
        ensure!(
            out.status.success(),
            "user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let base = format!("http://{}", collector.http);
    let browser = Browser::start(1280, 1000).await?;
    let c = &browser.client;
    login(&browser, &base, "tech").await?;
    browser.screenshot("register-01-logged-in").await?;

    // (a) The printer's register fields, edited on its page: shown, and in its history
    // with the author.
    c.goto(&format!("{base}/assets/{PRINTER}")).await?;
    wait_text(
        &browser,
        "Edit the register fields",
        Duration::from_secs(10),
    )
    .await?;
    c.find(Locator::Css("#register details summary"))
        .await?
        .click()
        .await?;
    set(c, "reg-room", "Library").await?;
    set(c, "reg-assigned_user", "Mr Patel").await?;
    set(c, "reg-department", "Science").await?;
    set(c, "reg-cost", "349.99").await?;
    set(c, "reg-notes", "Toner <b>drawer</b> sticks").await?;
    browser.screenshot("register-02-edit-form").await?;
    c.find(Locator::Id("register-save")).await?.click().await?;
    wait_text(&browser, "Mr Patel</dd>", Duration::from_secs(20)).await?;
    let facts = c.find(Locator::Id("register-facts")).await?.text().await?;
    for want in [
        "Library",
        "Mr Patel",
        "Science",
        "£349.99",
        "Toner <b>drawer</b> sticks",
    ] {
        ensure!(
            facts.contains(want),
            "the register section shows {want:?}: {facts}"
        );
    }
    let source = c.source().await?;
    ensure!(
        !source.contains("<b>drawer</b>"),
        "notes are escaped on the page"
    );
    let history = rows(c, "#h-changes ~ div table").await?;
    for (field, before, after) in [
        ("room", "Office", "Library"),
        ("assigned_user", "", "Mr Patel"),
        ("cost_pence", "", "34999"),
    ] {
        ensure!(
            history.iter().any(|r| r.len() >= 6
                && r[2] == format!("register.{field}")
                && r[3] == before
                && r[4].contains(after)
                && r[5] == "tech"),
            "the history shows {field}: {before:?} → {after:?} by tech: {history:?}"
        );
    }
    browser
        .screenshot("register-03-edited-with-history")
        .await?;
    let printer = asset(&collector, PRINTER);
    ensure!(
        printer["register"]["room"] == "Library"
            && printer["register"]["cost_pence"] == 34_999
            && printer["register"]["department"] == "Science",
        "stored: {printer}"
    );

    // (b) Two technicians open the switch's form; the first saves, the second is shown
    // the conflict with the values saved now, and nothing of the first is overwritten.
    let second = Browser::start(1280, 1000).await?;
    login(&second, &base, "tech2").await?;
    let c2 = &second.client;
    for (b, client) in [(&browser, c), (&second, c2)] {
        client.goto(&format!("{base}/assets/{SWITCH}")).await?;
        wait_text(b, "Edit the register fields", Duration::from_secs(10)).await?;
        client
            .find(Locator::Css("#register details summary"))
            .await?
            .click()
            .await?;
    }
    set(c, "reg-room", "Server room 1").await?;
    c.find(Locator::Id("register-save")).await?.click().await?;
    wait_text(&browser, "Server room 1</dd>", Duration::from_secs(20)).await?;
    browser.screenshot("register-04-race-first-saved").await?;
    set(c2, "reg-room", "Staff room").await?;
    set(c2, "reg-notes", "tech2 was here").await?;
    c2.find(Locator::Id("register-save")).await?.click().await?;
    wait_text(&second, "changed by someone else", Duration::from_secs(20)).await?;
    ensure!(
        page_status(c2).await? == 409,
        "the racing edit is answered 409"
    );
    let current = c2
        .find(Locator::Id("register-current"))
        .await?
        .text()
        .await?;
    ensure!(
        current.contains("Server room 1"),
        "the conflict shows what tech saved: {current}"
    );
    let typed = c2
        .find(Locator::Id("reg-room"))
        .await?
        .prop("value")
        .await?;
    ensure!(
        typed.as_deref() == Some("Staff room"),
        "the second edit is kept in the form to review: {typed:?}"
    );
    second.screenshot("register-05-race-conflict").await?;
    let switch = asset(&collector, SWITCH);
    ensure!(
        switch["register"]["room"] == "Server room 1" && switch["register"]["notes"] == "",
        "nothing of the racing edit was stored: {switch}"
    );
    let changes = collector.get(&format!("/changes?asset={SWITCH}"));
    let by_tech2 = changes
        .as_array()
        .context("changes")?
        .iter()
        .filter(|ch| ch["author"] == "tech2")
        .count();
    ensure!(by_tech2 == 0, "no change by tech2 yet: {changes}");
    second.close().await;

    // (c) A manual asset for what never answers on the network.
    c.goto(&format!("{base}/assets")).await?;
    wait_text(&browser, "new-asset-link", Duration::from_secs(10)).await?;
    c.find(Locator::Id("new-asset-link")).await?.click().await?;
    wait_text(&browser, "New manual asset", Duration::from_secs(10)).await?;
    c.find(Locator::Css("#new-kind option[value=display]"))
        .await?
        .click()
        .await?;
    set(c, "new-name", "Interactive whiteboard B12").await?;
    set(c, "new-vendor", "Promethean").await?;
    set(c, "new-serial", "WB-SER-0012").await?;
    browser.screenshot("register-06-new-manual-asset").await?;
    c.find(Locator::Id("new-asset-save")).await?.click().await?;
    wait_text(&browser, "Register</h2>", Duration::from_secs(20)).await?;
    let heading = c.find(Locator::Css("main h1")).await?.text().await?;
    ensure!(
        heading.contains("Interactive whiteboard B12"),
        "the new asset's page: {heading}"
    );
    let whiteboard_id = c
        .current_url()
        .await?
        .path()
        .trim_start_matches("/assets/")
        .to_owned();
    let whiteboard = asset(&collector, &whiteboard_id);
    ensure!(
        whiteboard["kind"] == "display"
            && whiteboard["serial"] == "WB-SER-0012"
            && whiteboard["vendor"] == "Promethean"
            && whiteboard["sources"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s == "manual")),
        "stored: {whiteboard}"
    );
    browser.screenshot("register-07-manual-asset").await?;
    // A trolley known only by its MAC (set up through the API: the CSV below matches it).
    let (status, _) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {}", collector.api_token()),
        "-H",
        "Content-Type: application/json",
        "--data",
        &json!({"kind": "trolley", "name": "Laptop trolley 3", "macs": ["02:00:5e:10:00:33"]})
            .to_string(),
        &format!("{base}/api/v1/assets"),
    ])?;
    ensure!(status == 200 || status == 201, "the trolley: {status}");

    // (d) Bulk edit: the list filtered to manual assets, moved to room B12 in one action.
    let manual: Vec<Value> = collector
        .assets()
        .into_iter()
        .filter(|a| {
            a["sources"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s == "manual"))
        })
        .collect();
    ensure!(
        manual.len() == 3,
        "the seeded laptop, the whiteboard, the trolley: {manual:?}"
    );
    c.goto(&format!("{base}/assets")).await?;
    wait_text(&browser, "bulk-link", Duration::from_secs(10)).await?;
    c.find(Locator::Css("#source option[value=manual]"))
        .await?
        .click()
        .await?;
    let start = std::time::Instant::now();
    loop {
        let shown = rows(c, "#results table").await?;
        let link = c
            .find(Locator::Id("bulk-link"))
            .await?
            .attr("href")
            .await?
            .unwrap_or_default();
        if shown.len() == manual.len() && link.contains("source=manual") {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "filtering by source shows {} rows, bulk link {link}",
            shown.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("register-08-filtered-list").await?;
    c.find(Locator::Id("bulk-link")).await?.click().await?;
    wait_text(&browser, "Bulk edit", Duration::from_secs(10)).await?;
    let ticked = c
        .find_all(Locator::Css("#bulk-rows input[name=ids]:checked"))
        .await?;
    ensure!(
        ticked.len() == manual.len(),
        "the bulk page ticks the {} filtered assets, not {}",
        manual.len(),
        ticked.len()
    );
    set(c, "reg-room", "B12").await?;
    browser.screenshot("register-09-bulk-form").await?;
    c.find(Locator::Id("bulk-save")).await?.click().await?;
    let page = wait_text(&browser, "bulk-result", Duration::from_secs(20)).await?;
    let result = c.find(Locator::Id("bulk-result")).await?.text().await?;
    // The seeded laptop was in B12 already.
    ensure!(
        result.contains("Changed 2 of 3 selected assets"),
        "{result}\n{page}"
    );
    let rooms: Vec<String> = rows(c, "#bulk-rows")
        .await?
        .into_iter()
        .map(|r| r.get(3).cloned().unwrap_or_default())
        .collect();
    ensure!(
        rooms.iter().all(|r| r == "B12"),
        "the list shows B12: {rooms:?}"
    );
    browser.screenshot("register-10-bulk-done").await?;
    for a in &manual {
        let id = a["id"].as_str().context("id")?;
        let now = asset(&collector, id);
        ensure!(now["register"]["room"] == "B12", "moved: {now}");
    }
    ensure!(
        asset(&collector, PRINTER)["register"]["room"] == "Library",
        "assets outside the filter keep their room"
    );

    // (e) The import page: the four exports for the logged-in user, then a Snipe-IT export.
    c.find(Locator::LinkText("Import/export"))
        .await?
        .click()
        .await?;
    wait_text(&browser, "Import assets (CSV)", Duration::from_secs(10)).await?;
    let links = c.find_all(Locator::Css("#exports a")).await?;
    ensure!(links.len() == 4, "four export links");
    for (file, header) in [
        ("assets", "asset_tag"),
        ("incidents", "number"),
        ("changes", "asset_id"),
        ("software", "title"),
    ] {
        let got = c
            .execute(
                "return fetch(arguments[0]).then(r => r.text().then(t => \
                 [r.status, r.headers.get('content-type'), t]));",
                vec![json!(format!("/export/{file}.csv"))],
            )
            .await?;
        let text = got[2].as_str().unwrap_or_default();
        ensure!(
            got[0] == 200
                && got[1].as_str().is_some_and(|t| t.starts_with("text/csv"))
                && text.lines().next().is_some_and(|h| h.contains(header)),
            "/export/{file}.csv: {got}"
        );
        if file == "assets" {
            ensure!(
                text.contains("Interactive whiteboard B12") && text.contains("WB-SER-0012"),
                "the export has the whiteboard"
            );
        }
        if file == "software" {
            ensure!(text.contains("dpkg"), "the export has the PC's software");
        }
    }
    browser.screenshot("register-11-import-page").await?;

    let snipe = "Asset Tag,Asset Name,Serial,MAC Address,Category,Status,Location,Department,\
                 Purchase Date,Purchase Cost,Supplier,Order Number,Warranty Expires,Notes\n\
                 PR-0001,Ignored,,,Printer,Ready to Deploy,Library,Science,2023-09-01,\
                 \"£349.99\",XMA,PO-77,2027-01-15,Toner <b>drawer</b> sticks\n\
                 ,Whiteboard,WB-SER-0012,,Display,Ready to Deploy,B12,Maths,2024-02-01,\
                 \"£1,450.00\",Promethean,PO-80,2029-01-31,\n\
                 ,Trolley,,02:00:5E:10:00:33,Trolley,Ready to Deploy,B12,,,,,,,charges 30\n\
                 CT-0900,Visualiser B2,SN-VIS-2,,Visualiser,Ready to Deploy,B2,Science,\
                 2024-01-15,\"£120.00\",XMA,PO-78,2027-01-15,café <script>alert(1)</script>\n";
    let snipe_file = dir.path().join("snipe-it-assets.csv");
    std::fs::write(&snipe_file, snipe)?;
    let before = registers(&collector);
    c.find(Locator::Id("import-file"))
        .await?
        .send_keys(&snipe_file.display().to_string())
        .await?;
    c.find(Locator::Id("import-check")).await?.click().await?;
    let page = wait_text(&browser, "Dry run", Duration::from_secs(30)).await?;
    ensure!(page_status(c).await? == 200, "the dry run is 200");
    let dry = rows(c, "#import-rows").await?;
    ensure!(dry.len() == 4, "{dry:?}");
    // Row, would be, matched by, asset, fields.
    let expect = [
        ("2", "changed", "asset_tag", "prn-office"),
        ("3", "changed", "serial", "Interactive whiteboard B12"),
        ("4", "changed", "mac", "Laptop trolley 3"),
        ("5", "created", "", "(new)"),
    ];
    for (row, (n, action, by, name)) in dry.iter().zip(&expect) {
        ensure!(
            row[0] == *n && row[1] == *action && row[2] == *by && row[3] == *name,
            "dry-run row {n}: {row:?}"
        );
    }
    // The printer's row changes only what the register lacks (its room etc. are already so).
    ensure!(
        dry[0][4].contains("Supplier: (empty) → XMA")
            && dry[0][4].contains("Order reference: (empty) → PO-77")
            && !dry[0][4].contains("Room"),
        "printer: {:?}",
        dry[0][4]
    );
    ensure!(
        dry[1][4].contains("Department: (empty) → Maths")
            && dry[1][4].contains("Cost (£): (empty) → 1450.00"),
        "whiteboard: {:?}",
        dry[1][4]
    );
    ensure!(
        dry[2][4].contains("Notes: (empty) → charges 30"),
        "{:?}",
        dry[2][4]
    );
    ensure!(
        dry[3][4].contains("Asset tag: (empty) → CT-0900") && dry[3][4].contains("café"),
        "{:?}",
        dry[3][4]
    );
    ensure!(
        !page.contains("<script>alert(1)") && page.contains("&lt;script&gt;alert(1)"),
        "the file's text is escaped on the page"
    );
    let message = c.find(Locator::Id("import-message")).await?.text().await?;
    ensure!(
        message.contains("1 would be created, 3 changed"),
        "{message}"
    );
    browser.screenshot("register-12-dry-run").await?;
    ensure!(
        registers(&collector) == before,
        "the dry run changed nothing"
    );
    c.find(Locator::Id("import-confirm")).await?.click().await?;
    wait_text(&browser, "Imported 4 rows", Duration::from_secs(30)).await?;
    let heading = c.find(Locator::Id("h-result")).await?.text().await?;
    ensure!(
        heading == "Imported: snipe-it-assets.csv",
        "the result names the file: {heading}"
    );
    let done = rows(c, "#import-rows").await?;
    ensure!(
        done.len() == 4 && done[3][1] == "created" && done[3][3] == "Visualiser B2",
        "the result links the new asset: {done:?}"
    );
    browser.screenshot("register-13-imported").await?;
    c.find(Locator::LinkText("Visualiser B2"))
        .await?
        .click()
        .await?;
    let page = wait_text(&browser, "Visualiser B2", Duration::from_secs(10)).await?;
    ensure!(page.contains("CT-0900") && page.contains("café"), "{page}");
    let history = rows(c, "#h-changes ~ div table").await?;
    ensure!(
        history
            .iter()
            .any(|r| r.len() >= 6 && r[2] == "register.asset_tag" && r[5] == "tech"),
        "the import's changes are the technician's: {history:?}"
    );
    browser.screenshot("register-14-imported-asset").await?;
    let whiteboard = asset(&collector, &whiteboard_id);
    ensure!(
        whiteboard["register"]["department"] == "Maths"
            && whiteboard["register"]["cost_pence"] == 145_000,
        "{whiteboard}"
    );

    // A bad date: the error names row and column, and nothing is imported.
    let bad = "Asset Tag,Location,Purchase Date\nCT-0901,B3,2024-01-10\nCT-0902,B3,2024-02-30\n";
    let bad_file = dir.path().join("bad-date.csv");
    std::fs::write(&bad_file, bad)?;
    let before = registers(&collector);
    c.goto(&format!("{base}/assets/import")).await?;
    wait_text(&browser, "Import assets (CSV)", Duration::from_secs(10)).await?;
    c.find(Locator::Id("import-file"))
        .await?
        .send_keys(&bad_file.display().to_string())
        .await?;
    c.find(Locator::Id("import-check")).await?.click().await?;
    let page = wait_text(&browser, "Not imported", Duration::from_secs(30)).await?;
    ensure!(page_status(c).await? == 422, "a bad file is 422");
    let errors = rows(c, "#import-errors").await?;
    ensure!(
        errors.len() == 1 && errors[0][0] == "3" && errors[0][1] == "Purchase Date",
        "the error names row 3 and the date column: {errors:?}"
    );
    ensure!(
        !page.contains("id=\"import-confirm\""),
        "no Import button for a bad file"
    );
    browser.screenshot("register-15-bad-date").await?;
    ensure!(
        registers(&collector) == before,
        "nothing of the bad file was imported (not even its good row)"
    );

    // A dry run gone stale: someone edits the printer between the check and "Import", so
    // nothing is imported and the page shows what the file would do now.
    let moving = dir.path().join("move-printer.csv");
    std::fs::write(&moving, "Asset Tag,Location\nPR-0001,Staff room\n")?;
    c.goto(&format!("{base}/assets/import")).await?;
    wait_text(&browser, "Import assets (CSV)", Duration::from_secs(10)).await?;
    c.find(Locator::Id("import-file"))
        .await?
        .send_keys(&moving.display().to_string())
        .await?;
    c.find(Locator::Id("import-check")).await?.click().await?;
    wait_text(&browser, "Dry run", Duration::from_secs(30)).await?;
    let dry = rows(c, "#import-rows").await?;
    ensure!(dry[0][4].contains("Room: Library → Staff room"), "{dry:?}");
    let (status, body) = curl(&[
        "-X",
        "PATCH",
        "-H",
        &format!("Authorization: Bearer {}", collector.api_token()),
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"room": "Office 2"}"#,
        &format!("{base}/api/v1/assets/{PRINTER}"),
    ])?;
    ensure!(status == 200, "the edit in between: {status} {body}");
    c.find(Locator::Id("import-confirm")).await?.click().await?;
    wait_text(
        &browser,
        "The register changed since",
        Duration::from_secs(30),
    )
    .await?;
    ensure!(page_status(c).await? == 409, "a stale dry run is 409");
    let dry = rows(c, "#import-rows").await?;
    ensure!(
        dry[0][4].contains("Room: Office 2 → Staff room"),
        "the dry run as it is now: {dry:?}"
    );
    ensure!(
        asset(&collector, PRINTER)["register"]["room"] == "Office 2",
        "the edit in between is not overwritten"
    );
    browser.screenshot("register-16-stale-dry-run").await?;
    c.find(Locator::Id("import-confirm")).await?.click().await?;
    wait_text(&browser, "Imported 1 row", Duration::from_secs(30)).await?;
    ensure!(
        asset(&collector, PRINTER)["register"]["room"] == "Staff room",
        "confirmed again, it is imported"
    );

    // (f) The reports show real figures.
    c.goto(&format!("{base}/releases")).await?;
    wait_text(&browser, "id=\"titles\"", Duration::from_secs(10)).await?;
    let titles = rows(c, "#titles").await?;
    let dpkg_row = titles
        .iter()
        .find(|r| r.first().is_some_and(|t| t == "dpkg"))
        .with_context(|| format!("dpkg is listed: {titles:?}"))?;
    // Title, installs, versions, newest, minimum, outdated, licences.
    ensure!(
        dpkg_row[1] == "1" && dpkg_row[4] == "999" && dpkg_row[5] == "1" && dpkg_row[6] == "5",
        "{dpkg_row:?}"
    );
    browser.screenshot("register-17-releases").await?;
    c.find(Locator::LinkText("dpkg")).await?.click().await?;
    wait_text(&browser, "Outdated installs", Duration::from_secs(10)).await?;
    let versions = rows(c, "#versions").await?;
    ensure!(
        versions.len() == 1
            && versions[0][0].starts_with(&dpkg_version)
            && versions[0][2] == pc_name,
        "this machine's dpkg {dpkg_version} on {pc_name}: {versions:?}"
    );
    let outdated = rows(c, "table#outdated").await?;
    ensure!(
        outdated.len() == 1 && outdated[0][0] == pc_name && outdated[0][1] == dpkg_version,
        "{outdated:?}"
    );
    browser.screenshot("register-18-release-title").await?;

    c.goto(&format!("{base}/finance?days=3650")).await?;
    wait_text(&browser, "cost-department", Duration::from_secs(10)).await?;
    let by_department = rows(c, "#cost-department").await?;
    // The printer (349.99) and the visualiser (120.00) in Science; the whiteboard in Maths.
    ensure!(
        by_department
            .iter()
            .any(|r| r[0] == "Science" && r[1] == "2" && r[2].starts_with("469.99")),
        "{by_department:?}"
    );
    ensure!(
        by_department
            .iter()
            .any(|r| r[0] == "Maths" && r[1] == "1" && r[2].starts_with("1,450.00")),
        "{by_department:?}"
    );
    let warranties = rows(c, "#warranty-soon").await?;
    ensure!(
        warranties
            .iter()
            .any(|r| r[0] == "Interactive whiteboard B12" && r[4] == "2029-01-31"),
        "the whiteboard's imported warranty is listed: {warranties:?}"
    );
    browser.screenshot("register-19-finance").await?;

    c.goto(&format!("{base}/reports/monthly?month={month}"))
        .await?;
    wait_text(&browser, "id=\"services\"", Duration::from_secs(20)).await?;
    let services = rows(c, "#services").await?;
    // Service, devices, achieved, target, verdict (the seed's month, see seed.rs).
    ensure!(
        services.iter().any(|r| r[0] == "Curriculum network"
            && r[2] == "97.50 %"
            && r[3] == "99.00 %"
            && r[4] == "missed"),
        "{services:?}"
    );
    ensure!(
        services
            .iter()
            .any(|r| r[0] == "Printing" && r[2] == "100.00 %" && r[4] == "met"),
        "{services:?}"
    );
    let priorities = rows(c, "#priorities").await?;
    let p2 = priorities
        .iter()
        .find(|r| r[0].starts_with("P2"))
        .with_context(|| format!("a P2 row: {priorities:?}"))?;
    ensure!(
        p2.iter().any(|cell| cell.contains("2 of 3")) && p2.iter().any(|cell| cell == "3h 30m"),
        "P2 response and resolution: {p2:?}"
    );
    browser.screenshot("register-20-service-levels").await?;
    browser.close().await;

    // The import page's refusals over plain HTTP.
    let jar = dir.path().join("jar").display().to_string();
    let s = curl_login(&base, &jar, "viewer", PASSWORD)?;
    ensure!(s == 303, "read-only login: {s}");
    let (s, page) = curl(&["-b", &jar, &format!("{base}/assets/import")])?;
    ensure!(
        s == 200 && page.contains("id=\"exports\"") && !page.contains("id=\"import-form\""),
        "a read-only user sees the exports, not the upload: {s}"
    );
    let viewer_csrf = csrf_of(&page);
    let file_arg = format!("file=@{}", snipe_file.display());
    let (s, _) = curl(&[
        "-b",
        &jar,
        "-F",
        &format!("csrf={viewer_csrf}"),
        "-F",
        &file_arg,
        &format!("{base}/assets/import"),
    ])?;
    ensure!(s == 403, "a read-only user's upload: {s}");
    let (s, _) = curl(&["-b", &jar, &format!("{base}/export/assets.csv")])?;
    ensure!(s == 200, "a read-only user may export: {s}");
    let (s, _) = curl(&[&format!("{base}/export/assets.csv")])?;
    ensure!(s == 303, "the export wants a login: {s}");
    // A technician's session, through curl: a forged token, and a file past 16 MiB.
    let tech_jar = dir.path().join("tech-jar").display().to_string();
    let s = curl_login(&base, &tech_jar, "tech", PASSWORD)?;
    ensure!(s == 303, "tech login: {s}");
    let (_, page) = curl(&["-b", &tech_jar, &format!("{base}/assets/import")])?;
    let tech_csrf = csrf_of(&page);
    ensure!(tech_csrf.len() == 64, "{page}");
    let before = registers(&collector);
    let (s, _) = curl(&[
        "-b",
        &tech_jar,
        "-F",
        "csrf=forged",
        "-F",
        &file_arg,
        &format!("{base}/assets/import/confirm"),
    ])?;
    ensure!(s == 403, "a forged form token: {s}");
    let big = dir.path().join("big.csv");
    std::fs::write(
        &big,
        format!(
            "asset_tag,room\n{}",
            "CT-Y,B1\n".repeat(17 * 1024 * 1024 / 8)
        ),
    )?;
    let (s, page) = curl(&[
        "-b",
        &tech_jar,
        "-F",
        &format!("csrf={tech_csrf}"),
        "-F",
        &format!("file=@{}", big.display()),
        &format!("{base}/assets/import"),
    ])?;
    ensure!(
        s == 413 && page.contains("larger than 16 MiB"),
        "a 17 MiB file: {s}"
    );
    ensure!(registers(&collector) == before, "nothing was imported");
    Ok(())
}
