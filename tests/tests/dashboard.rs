//! The dashboard in real headless Chromium (Debian `chromium` + `chromium-driver`, driven
//! through WebDriver), against the real collector in a namespace lab with a real agent and a
//! real SMTP server: log in, find this machine by its hostname, open it and see its
//! software, acknowledge a host-down incident raised in the lab, assign it, hold and resume
//! it, record its problem's workaround as a known error, mark a change expected, report a
//! problem on the staff form naming part of this PC's name and see it at the desk, follow an
//! email's link to the incident page, and the bad-input answers (CSRF, read-only, oversize, flood, unknown ids, wrong passwords).
//! Screenshots of every step land in `target/screenshots/`.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use caretaker_tests::bin;
use caretaker_tests::browser::{Browser, Forward, csrf_of, curl, curl_login, wait_text};
use caretaker_tests::daemon::Daemon;
use caretaker_tests::lab::Lab;
use caretaker_tests::smtp::SmtpServer;
use fantoccini::Locator;

const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_works_the_desk_in_a_real_browser() -> Result<()> {
    let mut lab = Lab::new()?;
    let host = lab.add_host_ns("198.18.0.60".parse()?)?;
    let pc = lab.add_host_ns("198.18.0.50".parse()?)?;
    let mail_dir = tempfile::tempdir()?;
    let smtp = SmtpServer::start_in_netns(mail_dir.path(), lab.scanner_ns());
    let (forward, listener) = Forward::listen()?;
    let base = format!("http://127.0.0.1:{}", forward.port);
    let extra = format!(
        "[rules.host_down]\nmisses = 2\n\
         [rules.disk_full]\nenabled = false\n[rules.memory_pressure]\nenabled = false\n[rules.cpu_saturation]\nenabled = false\n\
         [incidents]\nevaluate_every = \"1s\"\nhold_down = \"3s\"\nproblem_repeats = 1\n\
         [web]\nreport_per_hour = 4\nlogin_failures = 3\nschool_name = \"Lab School\"\n\
         [smtp]\nserver = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"caretaker@school.example\"\n\
         to = [\"technician@school.example\"]\nbase_url = \"{base}\"\n",
        port = smtp.port
    );
    let mut daemon = Daemon::start(&lab, &extra)?;
    forward.to(listener, lab.scanner_ns(), daemon.http);
    ensure!(
        daemon.log().contains("/setup?token="),
        "the first start without users logs a one-time setup link:\n{}",
        daemon.log()
    );

    // Accounts through the CLI (which talks to the daemon's API inside the namespace).
    let pw_file = daemon.dir.path().join("pw");
    std::fs::write(&pw_file, format!("{PASSWORD}\n"))?;
    let config = daemon.dir.path().join("collector.toml");
    for (name, role) in [("tech", "technician"), ("viewer", "read-only")] {
        let out = lab
            .scanner_cmd(
                bin("caretaker-collector"),
                &[
                    "user",
                    "add",
                    name,
                    "--role",
                    role,
                    "--password-file",
                    &pw_file.display().to_string(),
                    "--config",
                    &config.display().to_string(),
                ],
            )
            .output()?;
        ensure!(
            out.status.success(),
            "user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = lab
        .scanner_cmd(
            bin("caretaker-collector"),
            &["user", "list", "--config", &config.display().to_string()],
        )
        .output()?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    ensure!(
        listed.contains("tech") && listed.contains("read-only"),
        "{listed}"
    );

    // A PC with a real agent: this machine's inventory (hostname, dpkg packages).
    let agent_state = tempfile::tempdir()?;
    let mut agent = Command::new("ip")
        .args(["netns", "exec", &pc.netns])
        .arg(bin("caretaker-agent"))
        .args([
            "run",
            "--collector",
            &format!("http://198.18.0.1:{}", daemon.grpc),
            "--enroll-token",
            &daemon.enroll_token()?,
        ])
        .arg("--state-dir")
        .arg(agent_state.path())
        .args(["--heartbeat-interval", "2s", "--status-interval", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let hostname = caretaker_tests::hostname();
    daemon.wait_until(
        "the agent's PC and the lab host",
        Duration::from_secs(90),
        |d| {
            Ok(d.asset_with_ip("198.18.0.60")?.is_some()
                && d.assets()?
                    .iter()
                    .any(|a| a["hostname"] == hostname.as_str()))
        },
    )?;
    // A program this machine really has, as the agent reported it.
    let pc_asset = daemon
        .assets()?
        .into_iter()
        .find(|a| a["hostname"] == hostname.as_str())
        .context("the PC")?;
    let pc_id = pc_asset["id"].as_str().context("id")?.to_owned();
    let detail = daemon.curl(&format!("/api/v1/assets/{pc_id}"))?;
    let program = detail["software"]
        .as_array()
        .and_then(|s| s.iter().find(|p| p["name"] == "dpkg").or_else(|| s.first()))
        .and_then(|p| p["name"].as_str())
        .context("the agent reported no software")?
        .to_owned();

    // An incident raised in the lab: the host's link goes down.
    lab.set_link(&host, false)?;
    let host_id = daemon.asset_with_ip("198.18.0.60")?.context("host")?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    daemon.wait_until("the host-down incident", Duration::from_secs(60), |d| {
        Ok(d.curl("/api/v1/incidents?status=open")?
            .as_array()
            .is_some_and(|l| l.iter().any(|i| i["asset_id"] == host_id.as_str())))
    })?;
    let incidents = daemon.curl("/api/v1/incidents?status=open")?;
    let incident = incidents
        .as_array()
        .and_then(|l| l.iter().find(|i| i["asset_id"] == host_id.as_str()))
        .context("incident")?
        .clone();
    let incident_id = incident["id"].as_str().context("id")?.to_owned();
    let number = incident["number"].as_str().context("number")?.to_owned();

    let browser = Browser::start(1280, 900).await?;
    let c = &browser.client;

    // 1. An email link before logging in leads through the login back to the incident.
    let mails = smtp.wait_for_messages(1, Duration::from_secs(60));
    let opened = mails
        .iter()
        .find(|m| m.text.contains(&number))
        .context("the opening mail")?;
    let link = opened
        .text
        .split_whitespace()
        .find(|w| w.starts_with(&base) && w.contains("/incidents/"))
        .with_context(|| format!("no dashboard link in the mail:\n{}", opened.text))?
        .to_owned();
    ensure!(
        link.ends_with(&format!("/incidents/{incident_id}")),
        "{link}"
    );
    c.goto(&link).await?;
    wait_text(&browser, "Log in", Duration::from_secs(10)).await?;
    browser.screenshot("01-login").await?;
    c.find(Locator::Id("username"))
        .await?
        .send_keys("tech")
        .await?;
    c.find(Locator::Id("password"))
        .await?
        .send_keys(PASSWORD)
        .await?;
    c.find(Locator::Css("main form button[type=submit]"))
        .await?
        .click()
        .await?;
    let page = wait_text(&browser, &number, Duration::from_secs(20)).await?;
    ensure!(
        c.current_url().await?.path() == format!("/incidents/{incident_id}"),
        "after login the email's link opens the incident"
    );
    ensure!(page.contains("host_down"), "{page}");
    browser.screenshot("02-incident-from-email").await?;

    // 2. Acknowledge it: the actor is the logged-in user.
    c.find(Locator::Id("ack")).await?.click().await?;
    let page = wait_text(&browser, "Acknowledged.", Duration::from_secs(20)).await?;
    ensure!(page.contains("in progress"), "{page}");
    browser.screenshot("03-incident-acknowledged").await?;
    let after = daemon.curl(&format!("/api/v1/incidents/{incident_id}"))?;
    ensure!(after["state"] == "in_progress", "{after}");
    ensure!(
        after["notes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["author"] == "tech")),
        "the note names the logged-in user: {after}"
    );

    // Assign it and put it on hold with a reason: both in the timeline, by the user.
    c.find(Locator::Css("#to option[value=tech]"))
        .await?
        .click()
        .await?;
    c.find(Locator::Css("form[action$=\"/assign\"] button"))
        .await?
        .click()
        .await?;
    wait_text(&browser, "Assigned to tech.", Duration::from_secs(20)).await?;
    c.find(Locator::Id("reason"))
        .await?
        .send_keys("waiting for a new switch port")
        .await?;
    c.find(Locator::Css("form[action$=\"/hold\"] button"))
        .await?
        .click()
        .await?;
    let page = wait_text(
        &browser,
        "On hold: waiting for a new switch port",
        Duration::from_secs(20),
    )
    .await?;
    ensure!(page.contains("on hold"), "{page}");
    browser.screenshot("03b-incident-on-hold").await?;
    let after = daemon.curl(&format!("/api/v1/incidents/{incident_id}"))?;
    ensure!(
        after["state"] == "on_hold" && after["desk"]["assigned_to"] == "tech",
        "{after}"
    );

    // Take it off hold with a note: back in progress, the note in the timeline by the user.
    c.find(Locator::Id("resume-note"))
        .await?
        .send_keys("port 12 patched")
        .await?;
    c.find(Locator::Id("resume")).await?.click().await?;
    let page = wait_text(&browser, "Taken off hold.", Duration::from_secs(20)).await?;
    ensure!(page.contains("Taken off hold: port 12 patched"), "{page}");
    browser.screenshot("03c-incident-resumed").await?;
    let after = daemon.curl(&format!("/api/v1/incidents/{incident_id}"))?;
    ensure!(
        after["state"] == "in_progress"
            && after["notes"].as_array().is_some_and(|n| n
                .iter()
                .any(|n| n["author"] == "tech" && n["text"] == "Taken off hold: port 12 patched")),
        "{after}"
    );

    // The incident proposed a problem (problem_repeats = 1 here): the technician records the
    // root cause and workaround and marks it a known error; the incident shows the workaround.
    let problem = daemon
        .curl("/api/v1/problems")?
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|p| {
                    p["incident_ids"]
                        .as_array()
                        .is_some_and(|i| i.iter().any(|i| i == incident_id.as_str()))
                })
                .cloned()
        })
        .context("no problem links the host-down incident")?;
    let problem_id = problem["id"].as_str().context("id")?.to_owned();
    c.goto(&format!("{base}/problems")).await?;
    wait_text(&browser, &number, Duration::from_secs(10)).await?;
    c.find(Locator::Id(&format!("rc-{problem_id}")))
        .await?
        .send_keys("The switch port's transceiver failed")
        .await?;
    c.find(Locator::Id(&format!("wa-{problem_id}")))
        .await?
        .send_keys("Patch the host into spare port 12")
        .await?;
    let form = format!("#p-{problem_id} form");
    c.find(Locator::Css(&format!("{form} input[name=known_error]")))
        .await?
        .click()
        .await?;
    c.find(Locator::Css(&format!("{form} button[type=submit]")))
        .await?
        .click()
        .await?;
    let page = wait_text(&browser, "known error</span>", Duration::from_secs(20)).await?;
    ensure!(
        page.contains("The switch port's transceiver failed"),
        "{page}"
    );
    browser.screenshot("03d-problem-known-error").await?;
    let saved = daemon.curl(&format!("/api/v1/problems/{problem_id}"))?;
    ensure!(
        saved["known_error"] == true && saved["workaround"] == "Patch the host into spare port 12",
        "{saved}"
    );
    c.goto(&format!("{base}/incidents/{incident_id}")).await?;
    wait_text(&browser, "id=\"workaround\"", Duration::from_secs(10)).await?;
    let workaround = c.find(Locator::Id("workaround")).await?.text().await?;
    ensure!(
        workaround == "Patch the host into spare port 12",
        "{workaround}"
    );
    browser.screenshot("03e-incident-workaround").await?;

    // The host's changes: mark one expected; the list then says who expected it. The host has
    // been silent past the test daemon's `gone_after` (4 s), so its "removed" record is due:
    // wait for it, so that no record lands between the two reads below.
    daemon.wait_until("the host's removed record", Duration::from_secs(60), |d| {
        let changes = d.curl(&format!("/api/v1/changes?asset={host_id}"))?;
        Ok(changes
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["kind"] == "removed")))
    })?;
    c.goto(&format!("{base}/changes?asset={host_id}")).await?;
    wait_text(&browser, "Mark expected", Duration::from_secs(10)).await?;
    let before = daemon.curl(&format!("/api/v1/changes?asset={host_id}"))?;
    let unexpected = before.as_array().map_or(0, |l| {
        l.iter().filter(|c| c["expected_by"].is_null()).count()
    });
    ensure!(unexpected > 0, "the host has changes: {before}");
    c.find(Locator::Css("form[action=\"/changes/expected\"] button"))
        .await?
        .click()
        .await?;
    wait_text(&browser, "yes (tech)", Duration::from_secs(20)).await?;
    ensure!(
        c.current_url()
            .await?
            .query()
            .is_some_and(|q| q.contains(&host_id)),
        "marking a change keeps the list's filter"
    );
    browser.screenshot("03f-change-expected").await?;
    let after = daemon.curl(&format!("/api/v1/changes?asset={host_id}"))?;
    let marked: Vec<_> = after
        .as_array()
        .map(|l| l.iter().filter(|c| c["expected_by"] == "tech").collect())
        .unwrap_or_default();
    ensure!(
        marked.len() == 1
            && after.as_array().map_or(0, Vec::len) == before.as_array().map_or(0, Vec::len),
        "one change marked, none added or lost: {after}"
    );

    // 3. The overview.
    c.goto(&format!("{base}/")).await?;
    let page = wait_text(&browser, "Open incidents", Duration::from_secs(10)).await?;
    ensure!(page.contains("Capacity warnings") && page.contains("Last sweep"));
    browser.screenshot("04-overview").await?;

    // 4. Search for this machine (htmx, as one types), open it, see its software.
    c.goto(&format!("{base}/assets")).await?;
    wait_text(&browser, "assets", Duration::from_secs(10)).await?;
    c.find(Locator::Id("q")).await?.send_keys(&hostname).await?;
    let start = std::time::Instant::now();
    loop {
        let rows = c.find_all(Locator::Css("#results table tbody tr")).await?;
        if rows.len() == 1 {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "typing the hostname leaves {} rows",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("05-asset-search").await?;
    c.find(Locator::Css("#results table tbody tr a"))
        .await?
        .click()
        .await?;
    let page = wait_text(&browser, "Software (", Duration::from_secs(10)).await?;
    ensure!(page.contains(&program), "the asset page lists {program}");
    ensure!(
        page.contains("<svg class=\"timeline\""),
        "availability timeline"
    );
    browser.screenshot("06-asset").await?;
    c.find(Locator::Id("sw")).await?.send_keys(&program).await?;
    c.find(Locator::Css("#h-software ~ form button"))
        .await?
        .click()
        .await?;
    wait_text(
        &browser,
        &format!("value=\"{program}\""),
        Duration::from_secs(10),
    )
    .await?;
    let rows = c.find_all(Locator::Css("#software tbody tr")).await?;
    ensure!(!rows.is_empty(), "the software filter finds {program}");

    // 5. The staff form (no login needed): a report with markup in it, escaped everywhere.
    c.goto(&format!("{base}/report")).await?;
    wait_text(&browser, "Report an ICT problem", Duration::from_secs(10)).await?;
    c.find(Locator::Id("name"))
        .await?
        .send_keys("<script>alert(1)</script>Ann")
        .await?;
    c.find(Locator::Id("email"))
        .await?
        .send_keys("ann@school.example")
        .await?;
    c.find(Locator::Id("room")).await?.send_keys("B12").await?;
    // Part of this PC's name picks it (the picker matches partial names).
    let partial: String = hostname
        .chars()
        .take(hostname.chars().count().clamp(1, 6))
        .collect();
    c.find(Locator::Id("device"))
        .await?
        .send_keys(&partial)
        .await?;
    c.find(Locator::Id("text"))
        .await?
        .send_keys("The projector shows <b>no picture</b>")
        .await?;
    browser.screenshot("07-report-form").await?;
    c.find(Locator::Css("main form button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_text(&browser, "Your reference is", Duration::from_secs(20)).await?;
    let reference = c.find(Locator::Id("reference")).await?.text().await?;
    ensure!(reference.starts_with("INC"), "{reference}");
    browser.screenshot("08-report-done").await?;
    c.goto(&format!("{base}/incidents")).await?;
    let page = wait_text(&browser, &reference, Duration::from_secs(10)).await?;
    ensure!(
        !page.contains("<script>alert(1)</script>") && page.contains("&lt;script&gt;"),
        "the reporter's name is escaped in the list"
    );
    browser.screenshot("09-incidents").await?;

    // 6. Resolve the staff report: the reporter is emailed.
    let report_incident = daemon.curl(&format!("/api/v1/incidents/{reference}"))?;
    let report_id = report_incident["id"].as_str().context("id")?.to_owned();
    ensure!(
        report_incident["asset_id"] == pc_id.as_str(),
        "typing {partial:?} picked this PC ({pc_id}): {report_incident}"
    );
    c.goto(&format!("{base}/incidents/{report_id}")).await?;
    wait_text(&browser, "Resolution", Duration::from_secs(10)).await?;
    c.find(Locator::Id("resolution"))
        .await?
        .send_keys("Replaced the HDMI cable.")
        .await?;
    c.find(Locator::Css("form[action$=\"/resolve\"] button"))
        .await?
        .click()
        .await?;
    wait_text(&browser, "Resolved.", Duration::from_secs(20)).await?;
    browser.screenshot("10-report-resolved").await?;
    let start = std::time::Instant::now();
    loop {
        let mails = smtp.messages();
        if let Some(mail) = mails
            .iter()
            .find(|m| m.rcpt_tos.iter().any(|r| r == "ann@school.example"))
        {
            ensure!(mail.text.contains(&reference), "{}", mail.text);
            ensure!(
                mail.text.contains("Replaced the HDMI cable."),
                "{}",
                mail.text
            );
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "the reporter got no mail; mails: {:?}",
            mails
                .iter()
                .map(|m| m.subject().to_owned())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // 7. A phone-sized overview and the poster.
    c.set_window_size(390, 844).await?;
    c.goto(&format!("{base}/")).await?;
    wait_text(&browser, "Open incidents", Duration::from_secs(10)).await?;
    browser.screenshot("11-overview-phone").await?;
    c.set_window_size(1280, 900).await?;
    c.goto(&format!("{base}/report/poster")).await?;
    let page = wait_text(&browser, "<svg", Duration::from_secs(10)).await?;
    ensure!(page.contains(&format!("{base}/report")));
    browser.screenshot("12-poster").await?;
    browser.close().await;
    // Dark mode follows the browser's setting (prefers-color-scheme).
    let dark = Browser::start_with(800, 700, &["--force-dark-mode"]).await?;
    dark.client.goto(&format!("{base}/report")).await?;
    wait_text(&dark, "Report an ICT problem", Duration::from_secs(10)).await?;
    dark.screenshot("13-report-dark").await?;
    dark.close().await;

    // 8. Bad input, straight over HTTP.
    let jar = daemon.dir.path().join("jar");
    let jar = jar.display().to_string();
    let (_, login_page) = curl(&["-c", &jar, "-b", &jar, &format!("{base}/login")])?;
    let form = csrf_of(&login_page);
    ensure!(form.len() == 64, "{login_page}");
    // The same answer for an unknown user as for a wrong password.
    let (s1, b1) = curl(&[
        "-c",
        &jar,
        "-b",
        &jar,
        "-d",
        &format!("username=nobody&password=x&csrf={form}"),
        &format!("{base}/login"),
    ])?;
    let (s2, b2) = curl(&[
        "-c",
        &jar,
        "-b",
        &jar,
        "-d",
        &format!("username=viewer&password=wrong&csrf={form}"),
        &format!("{base}/login"),
    ])?;
    ensure!(s1 == 401 && s2 == 401, "{s1} {s2}");
    ensure!(
        b1.contains("Wrong user name or password.") && b2.contains("Wrong user name or password."),
        "{b1}"
    );
    // Without the form token, or from another origin: 403.
    let (s, _) = curl(&[
        "-c",
        &jar,
        "-b",
        &jar,
        "-d",
        &format!("username=viewer&password={PASSWORD}"),
        &format!("{base}/login"),
    ])?;
    ensure!(s == 403, "login without the form token: {s}");
    let (s, _) = curl(&[
        "-c",
        &jar,
        "-b",
        &jar,
        "-H",
        "Origin: http://evil.example",
        "-d",
        &format!("username=viewer&password={PASSWORD}&csrf={form}"),
        &format!("{base}/login"),
    ])?;
    ensure!(s == 403, "login from another origin: {s}");
    // The read-only user logs in, sees pages, and every POST is refused.
    let s = curl_login(&base, &jar, "viewer", PASSWORD)?;
    ensure!(s == 303, "read-only login: {s}");
    let (s, page) = curl(&["-b", &jar, &format!("{base}/incidents/{incident_id}")])?;
    ensure!(s == 200 && page.contains(&number), "{s}");
    let session_csrf = csrf_of(&page);
    let (s, _) = curl(&[
        "-b",
        &jar,
        "-d",
        &format!("csrf={session_csrf}&text=hello"),
        &format!("{base}/incidents/{incident_id}/note"),
    ])?;
    ensure!(s == 403, "a read-only user's POST: {s}");
    let (s, _) = curl(&[
        "-b",
        &jar,
        "-d",
        "csrf=forged&text=hello",
        &format!("{base}/incidents/{incident_id}/note"),
    ])?;
    ensure!(s == 403, "a forged token: {s}");
    // Unknown ids are the 404 page; an oversized form is 413.
    let (s, page) = curl(&["-b", &jar, &format!("{base}/incidents/INC9999999")])?;
    ensure!(s == 404 && page.contains("<html"), "{s}");
    let (s, _) = curl(&["-b", &jar, &format!("{base}/assets/no-such-asset")])?;
    ensure!(s == 404, "{s}");
    let big = format!("csrf={session_csrf}&text={}", "a".repeat(100_000));
    let big_file = daemon.dir.path().join("big");
    std::fs::write(&big_file, big)?;
    let (s, _) = curl(&[
        "-b",
        &jar,
        "--data-binary",
        &format!("@{}", big_file.display()),
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        &format!("{base}/incidents/{incident_id}/note"),
    ])?;
    ensure!(s == 413, "an oversized form: {s}");
    // The staff form flooded from one address: 429 after the hourly allowance.
    let anon = daemon.dir.path().join("anon");
    let anon = anon.display().to_string();
    let (_, report_page) = curl(&["-c", &anon, "-b", &anon, &format!("{base}/report")])?;
    let token = csrf_of(&report_page);
    let mut codes = Vec::new();
    for n in 0..6 {
        let (s, _) = curl(&[
            "-c",
            &anon,
            "-b",
            &anon,
            "-d",
            &format!(
                "csrf={token}&name=Flood{n}&email=f@school.example&room=&device=&text=help+{n}"
            ),
            &format!("{base}/report"),
        ])?;
        codes.push(s);
    }
    // One report came from this address already (the browser): 3 more pass, then 429.
    ensure!(codes == [200, 200, 200, 429, 429, 429], "{codes:?}");
    // The API token still works for scripts.
    let api = daemon.curl("/api/v1/incidents?status=all")?;
    ensure!(api.as_array().is_some_and(|l| l.len() >= 5), "{api}");

    let _ = agent.kill();
    let _ = agent.wait();
    Ok(())
}
