//! Email bodies: text and HTML for one incident mail or one digest, by hand with `format!`.
//!
//! Pure functions of the incident, its asset context and the policy; everything user- or
//! device-supplied is HTML-escaped. Times are shown in the policy's time zone.

use std::fmt::Write as _;
use std::time::Duration;

use time::OffsetDateTime;

use super::config::Policy;
use crate::model::{Asset, Change, Incident};

/// What a mail about one incident says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailKind {
    Open,
    /// A short update in the thread (priority change, acknowledgement, reopening).
    Update(String),
    /// Unacknowledged past this response target.
    Escalation(Duration),
    Recovery,
}

/// What the body says about the incident's asset.
#[derive(Debug, Clone, Default)]
pub struct AssetContext {
    pub asset: Option<Asset>,
    /// Newest first, a few.
    pub recent: Vec<Change>,
    pub location: Option<String>,
}

/// Subject, text body and HTML body.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// `2025-03-04 07:55 CET` in the policy's zone.
pub fn local_time(policy: &Policy, at: OffsetDateTime) -> String {
    let Ok(ts) = jiff::Timestamp::from_second(at.unix_timestamp()) else {
        return at.to_string();
    };
    ts.to_zoned(policy.time_zone.clone())
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// `07:55` in the policy's zone.
pub fn local_clock(policy: &Policy, at: OffsetDateTime) -> String {
    let Ok(ts) = jiff::Timestamp::from_second(at.unix_timestamp()) else {
        return at.to_string();
    };
    ts.to_zoned(policy.time_zone.clone())
        .strftime("%H:%M")
        .to_string()
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn state_name(incident: &Incident) -> String {
    serde_json::to_value(incident.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
        .replace('_', " ")
}

/// The `What the rule measured` lines: one `key: value` per field of a JSON object.
fn measured_lines(measured: &serde_json::Value) -> Vec<String> {
    match measured {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                v => format!("{k}: {v}"),
            })
            .collect(),
        other => vec![other.to_string()],
    }
}

pub fn subject(kind: &MailKind, incident: &Incident) -> String {
    let base = format!("[P{}] {}", incident.priority, incident.title);
    match kind {
        MailKind::Open => base,
        MailKind::Update(_) | MailKind::Escalation(_) => format!("Re: {base}"),
        MailKind::Recovery => format!("[RESOLVED] {base}"),
    }
}

/// One incident mail: the opening, an update, an escalation or the recovery.
pub fn incident_mail(
    policy: &Policy,
    kind: &MailKind,
    incident: &Incident,
    ctx: Option<&AssetContext>,
    now: OffsetDateTime,
) -> Rendered {
    // Sections as (heading, lines); the text and HTML bodies are the same content.
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let lead = match kind {
        MailKind::Open => format!(
            "{} opened {}.",
            incident.number,
            local_time(policy, incident.opened_at)
        ),
        MailKind::Update(what) => format!("{}: {what}.", incident.number),
        MailKind::Escalation(after) => format!(
            "{} has not been acknowledged {} after it opened (response target for P{}). Escalated.",
            incident.number,
            humantime::format_duration(*after),
            incident.priority
        ),
        MailKind::Recovery => format!(
            "{} resolved {} after {}.",
            incident.number,
            local_time(policy, incident.resolved_at.unwrap_or(now)),
            humantime::format_duration(std::time::Duration::from_secs(
                u64::try_from(
                    (incident.resolved_at.unwrap_or(now) - incident.opened_at).whole_minutes()
                )
                .unwrap_or(0)
                    * 60
            ))
        ),
    };
    let mut what = vec![incident.title.clone()];
    if !incident.description.is_empty() {
        what.push(incident.description.clone());
    }
    what.push(format!("Rule: {}", incident.rule));
    what.push(format!(
        "Priority: P{} (impact {}, urgency {}) · state: {}",
        incident.priority,
        incident.impact,
        incident.urgency,
        state_name(incident)
    ));
    what.push(format!("Since: {}", local_time(policy, incident.opened_at)));
    if incident.occurrences > 1 {
        what.push(format!("Occurrences: {}", incident.occurrences));
    }
    if incident.flapping {
        what.push("Flapping: the condition keeps coming and going".to_owned());
    }
    if !incident.affected.is_empty() {
        what.push(format!(
            "Stands for {} other device(s) that depend on it",
            incident.affected.len()
        ));
    }
    sections.push(("What broke".to_owned(), what));
    let measured = measured_lines(&incident.measured);
    if !measured.is_empty() {
        sections.push(("What the rule measured".to_owned(), measured));
    }

    let mut asset_lines = Vec::new();
    let asset = ctx.and_then(|c| c.asset.as_ref());
    asset_lines.push(format!(
        "Name: {}",
        asset.map_or(incident.asset_name.as_str(), |a| a.name.as_str())
    ));
    if let Some(asset) = asset {
        let kind = serde_json::to_value(asset.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        asset_lines.push(format!("Kind: {kind}"));
        if !asset.vendor.is_empty() || !asset.model.is_empty() {
            asset_lines.push(
                format!("Model: {} {}", asset.vendor, asset.model)
                    .trim()
                    .to_owned(),
            );
        }
        if !asset.ips.is_empty() {
            asset_lines.push(format!("Address: {}", asset.ips.join(", ")));
        }
        if !asset.hostname.is_empty() && asset.hostname != asset.name {
            asset_lines.push(format!("Hostname: {}", asset.hostname));
        }
    }
    if let Some(location) = ctx.and_then(|c| c.location.as_deref()) {
        asset_lines.push(format!("Location: {location}"));
    }
    sections.push(("Asset".to_owned(), asset_lines));

    if let Some(ctx) = ctx
        && !ctx.recent.is_empty()
    {
        let lines = ctx
            .recent
            .iter()
            .map(|c| {
                let mut line = format!("{} {} {}", local_time(policy, c.at), c.kind, c.field);
                match (&c.before, &c.after) {
                    (Some(b), Some(a)) => {
                        let _ = write!(line, ": {b} → {a}");
                    }
                    (None, Some(a)) => {
                        let _ = write!(line, ": {a}");
                    }
                    (Some(b), None) => {
                        let _ = write!(line, ": was {b}");
                    }
                    (None, None) => {}
                }
                line
            })
            .collect();
        sections.push(("Recent history of the asset".to_owned(), lines));
    }

    if let Some(base) = &policy.base_url {
        let mut links = vec![format!("Incident: {base}/incidents/{}", incident.id)];
        if !incident.asset_id.is_empty() {
            links.push(format!("Asset: {base}/assets/{}", incident.asset_id));
        }
        sections.push(("Open in the dashboard".to_owned(), links));
    }

    if incident.state.is_open() && incident.acknowledged_at.is_none() {
        let api = policy.base_url.as_ref().map_or_else(
            || format!("POST /api/v1/incidents/{}/ack", incident.id),
            |base| format!("POST {base}/api/v1/incidents/{}/ack", incident.id),
        );
        sections.push((
            "To acknowledge".to_owned(),
            vec![
                format!("caretaker-collector incident ack {}", incident.number),
                api,
            ],
        ));
    }

    let mut text = format!("{lead}\n");
    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><p><strong>{}</strong></p>\n",
        escape(&lead)
    );
    for (heading, lines) in &sections {
        let _ = write!(text, "\n{heading}\n");
        let _ = writeln!(html, "<h3>{}</h3><ul>", escape(heading));
        for line in lines {
            let _ = writeln!(text, "  {line}");
            let _ = writeln!(html, "<li>{}</li>", escape(line));
        }
        html.push_str("</ul>\n");
    }
    text.push_str("\n-- \nCaretaker\n");
    html.push_str("<p style=\"color:#777\">Caretaker</p></body></html>\n");
    Rendered {
        subject: subject(kind, incident),
        text,
        html,
    }
}

/// To the member of staff who reported `incident` on `/report`: it is resolved.
pub fn reporter_resolved(policy: &Policy, incident: &Incident) -> Rendered {
    let name = incident
        .desk
        .reporter
        .as_ref()
        .map_or("", |r| r.name.as_str());
    let last_note = incident
        .notes
        .last()
        .map(|n| n.text.clone())
        .unwrap_or_default();
    let resolved = incident
        .resolved_at
        .map(|at| local_time(policy, at))
        .unwrap_or_default();
    let text = format!(
        "Hello {name},\n\nyour report {} (\"{}\") was resolved on {resolved}.\n\n{last_note}\n\n\
         If the problem is still there, report it again and mention {}.\n\n-- \nCaretaker, the ICT service desk\n",
        incident.number,
        incident.description.lines().next().unwrap_or_default(),
        incident.number
    );
    let html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><pre style=\"font-family:inherit;white-space:pre-wrap\">{}</pre></body></html>\n",
        escape(&text)
    );
    Rendered {
        subject: format!("[Caretaker] Your report {} is resolved", incident.number),
        text,
        html,
    }
}

/// A digest: many incidents in one mail.
pub fn digest(
    policy: &Policy,
    reason: &str,
    first_at: OffsetDateTime,
    incidents: &[&Incident],
) -> Rendered {
    let n = incidents.len();
    let noun = if n == 1 { "incident" } else { "incidents" };
    let subject = format!(
        "[Caretaker] {n} {noun} {reason} at {}",
        local_clock(policy, first_at)
    );
    let mut text = format!(
        "{n} {noun} {reason} since {}.\n\n",
        local_time(policy, first_at)
    );
    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><p>{}</p><table cellpadding=\"4\">\n\
         <tr><th align=\"left\">Incident</th><th align=\"left\">Priority</th><th align=\"left\">What</th>\
         <th align=\"left\">Asset</th><th align=\"left\">Opened</th><th align=\"left\">State</th></tr>\n",
        escape(text.trim_end())
    );
    for incident in incidents {
        let opened = local_clock(policy, incident.opened_at);
        let state = state_name(incident);
        let _ = writeln!(
            text,
            "  {}  [P{}] {} — {} — opened {opened} — {state}",
            incident.number, incident.priority, incident.title, incident.asset_name
        );
        if let Some(base) = &policy.base_url {
            let _ = writeln!(text, "      {base}/incidents/{}", incident.id);
        }
        let asset = escape(&incident.asset_name);
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>P{}</td><td>{}</td><td>{asset}</td><td>{}</td><td>{}</td></tr>",
            escape(&incident.number),
            incident.priority,
            escape(&incident.title),
            escape(&opened),
            escape(&state)
        );
    }
    text.push_str(
        "\nAcknowledge one with `caretaker-collector incident ack INC...` or\n\
         POST /api/v1/incidents/{id}/ack.\n\n-- \nCaretaker\n",
    );
    html.push_str(
        "</table><p>Acknowledge one with <code>caretaker-collector incident ack INC...</code> or \
         <code>POST /api/v1/incidents/{id}/ack</code>.</p><p style=\"color:#777\">Caretaker</p></body></html>\n",
    );
    Rendered {
        subject,
        text,
        html,
    }
}
