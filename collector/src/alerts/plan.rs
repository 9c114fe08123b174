//! Planning: incident events + incidents + policy + now → new or updated outbox entries.
//!
//! Pure (no I/O, no clock), so every storm-control rule is unit-tested here. The outbox itself
//! is the planner's memory: what was mailed in the last hour (rate limit), which openings fell
//! in the digest window, which digests are still collecting, which incidents were escalated.
//! There is one entry per recipient, so a refused recipient fails only its own copy, and its
//! id says what it is (`open-`, `upd-`, `res-`, `esc-`, `digest-`, `quiet-`, `rate-`):
//! event-driven ids derive from the event `seq`, so replanning after a crash overwrites itself.
//!
//! Rules, in order, for each mail to each recipient:
//! 1. P1 is never held: not by quiet hours, digests or the rate limit (it still counts).
//! 2. During quiet hours, mail about P`quiet_min_priority`..P5 joins the morning digest.
//! 3. An opening joins a digest when more than `digest_threshold` openings for the recipient
//!    fall in `digest_window` (a burst seen at once is sent as one digest immediately; later
//!    openings in the window collect in a digest sent at the window's end).
//! 4. Updates about an incident still waiting in a digest refresh that digest instead.
//! 5. Over `rate_limit_per_hour`, mail joins a digest sent when the hour has room again.
//! 6. Escalations reply in the incident's thread once, when an open incident stays
//!    unacknowledged past its priority's response target.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::config::Policy;
use super::render::{self, AssetContext, MailKind};
use crate::model::{Incident, IncidentEvent, IncidentEventKind, OutboxEntry};

/// The planner's inputs: read from the store by the caller.
pub struct PlanInput<'a> {
    pub now: OffsetDateTime,
    pub events: &'a [IncidentEvent],
    pub incidents: &'a HashMap<String, Incident>,
    pub assets: &'a HashMap<String, AssetContext>,
    pub outbox: &'a [OutboxEntry],
}

/// The thread root of an incident: stable across restarts (derived from the incident id).
pub fn message_id(incident: &Incident) -> String {
    let hash = Sha256::digest(incident.id.as_bytes());
    format!(
        "<{}.{}@caretaker>",
        incident.number,
        hex::encode(&hash[..6])
    )
}

/// Recipients for an incident: every matching route, else the top-level `to`.
pub fn recipients(policy: &Policy, incident: &Incident) -> Vec<String> {
    let mut to: Vec<String> = policy
        .routes
        .iter()
        .filter(|r| r.matches(incident.priority, &incident.rule))
        .flat_map(|r| r.to.iter().cloned())
        .collect();
    if to.is_empty() {
        to = policy.to.clone();
    }
    to.sort();
    to.dedup();
    to
}

/// Is `at` inside quiet hours, and when do they end?
pub fn quiet_until(policy: &Policy, at: OffsetDateTime) -> Option<OffsetDateTime> {
    let (start, end) = policy.quiet?;
    let ts = jiff::Timestamp::from_second(at.unix_timestamp()).ok()?;
    let zoned = ts.to_zoned(policy.time_zone.clone());
    let minute = u16::try_from(i32::from(zoned.hour()) * 60 + i32::from(zoned.minute())).ok()?;
    let quiet = if start < end {
        start <= minute && minute < end
    } else {
        minute >= start || minute < end
    };
    if !quiet {
        return None;
    }
    let mut date = zoned.date();
    if minute >= end {
        date = date.tomorrow().ok()?;
    }
    let end_time = jiff::civil::Time::new(
        i8::try_from(end / 60).ok()?,
        i8::try_from(end % 60).ok()?,
        0,
        0,
    )
    .ok()?;
    let end_zoned = date
        .to_datetime(end_time)
        .to_zoned(policy.time_zone.clone())
        .ok()?;
    OffsetDateTime::from_unix_timestamp(end_zoned.timestamp().as_second()).ok()
}

/// The digest kinds; the entry id starts with the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Storm,
    Quiet,
    Rate,
}

impl Bucket {
    fn prefix(self) -> &'static str {
        match self {
            Bucket::Storm => "digest-",
            Bucket::Quiet => "quiet-",
            Bucket::Rate => "rate-",
        }
    }
    fn reason(self) -> &'static str {
        match self {
            Bucket::Storm => "opened",
            Bucket::Quiet => "held during quiet hours",
            Bucket::Rate => "held by the rate limit",
        }
    }
}

fn is_digest(entry: &OutboxEntry) -> bool {
    entry.id.starts_with("digest-")
        || entry.id.starts_with("quiet-")
        || entry.id.starts_with("rate-")
}

/// Working state: the outbox as it will be after this plan.
struct Planner<'a> {
    policy: &'a Policy,
    now: OffsetDateTime,
    incidents: &'a HashMap<String, Incident>,
    assets: &'a HashMap<String, AssetContext>,
    outbox: BTreeMap<String, OutboxEntry>,
    changed: BTreeMap<String, ()>,
}

impl<'a> Planner<'a> {
    fn new(
        policy: &'a Policy,
        now: OffsetDateTime,
        incidents: &'a HashMap<String, Incident>,
        assets: &'a HashMap<String, AssetContext>,
        outbox: &[OutboxEntry],
    ) -> Self {
        Self {
            policy,
            now,
            incidents,
            assets,
            outbox: outbox.iter().map(|e| (e.id.clone(), e.clone())).collect(),
            changed: BTreeMap::new(),
        }
    }

    fn into_changes(self) -> Vec<OutboxEntry> {
        let mut out: Vec<OutboxEntry> = self
            .changed
            .keys()
            .filter_map(|id| self.outbox.get(id).cloned())
            .collect();
        out.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        out
    }

    fn mine<'b>(&'b self, recipient: &'b str) -> impl Iterator<Item = &'b OutboxEntry> + 'b {
        self.outbox
            .values()
            .filter(move |e| e.to.len() == 1 && e.to[0] == recipient)
    }

    /// Openings mailed (alone or in a digest) to `recipient` within the digest window.
    fn openings_in_window(&self, recipient: &str) -> usize {
        let since = self.now - self.policy.digest_window;
        self.mine(recipient)
            .filter(|e| e.created_at > since && e.status != "failed")
            .map(|e| {
                if e.id.starts_with("open-") {
                    1
                } else if e.id.starts_with("digest-") {
                    e.incident_ids.len()
                } else {
                    0
                }
            })
            .sum()
    }

    /// When the recipient may get another mail, if the rate limit holds it back now.
    fn rate_limited_until(&self, recipient: &str) -> Option<OffsetDateTime> {
        let limit = usize::try_from(self.policy.rate_limit_per_hour).ok()?;
        if limit == 0 {
            return None;
        }
        let since = self.now - time::Duration::HOUR;
        let mut times: Vec<OffsetDateTime> = self
            .mine(recipient)
            .filter(|e| e.created_at > since && e.status != "failed" && !e.id.starts_with("rate-"))
            .map(|e| e.created_at)
            .collect();
        if times.len() < limit {
            return None;
        }
        times.sort();
        // The hour has room again when the oldest counted mail leaves it.
        Some(times[times.len() - limit] + time::Duration::HOUR)
    }

    /// The unsent digest of this kind collecting for `recipient`, if any.
    fn open_bucket(&self, recipient: &str, bucket: Bucket) -> Option<String> {
        self.mine(recipient)
            .find(|e| {
                // Still collecting: due later, or created by this very plan (a burst).
                e.id.starts_with(bucket.prefix())
                    && e.status == "pending"
                    && (e.due_at > self.now || e.created_at == self.now)
            })
            .map(|e| e.id.clone())
    }

    /// The unsent digest (any kind) that already lists this incident for `recipient`.
    fn bucket_holding(&self, recipient: &str, incident: &str) -> Option<String> {
        self.mine(recipient)
            .find(|e| {
                is_digest(e)
                    && e.status == "pending"
                    && e.incident_ids.iter().any(|i| i == incident)
            })
            .map(|e| e.id.clone())
    }

    fn put(&mut self, entry: OutboxEntry) {
        self.changed.insert(entry.id.clone(), ());
        self.outbox.insert(entry.id.clone(), entry);
    }

    fn blank(&self, id: String, recipient: &str, due_at: OffsetDateTime) -> OutboxEntry {
        OutboxEntry::pending(id, self.now, due_at, vec![recipient.to_owned()])
    }

    /// Adds `incident` to a digest (creating it due at `due_at`), re-rendering its body.
    fn add_to_bucket(
        &mut self,
        recipient: &str,
        bucket: Bucket,
        existing: Option<String>,
        due_at: OffsetDateTime,
        incident: &Incident,
    ) {
        let mut entry = match existing.and_then(|id| self.outbox.get(&id).cloned()) {
            Some(entry) => entry,
            None => {
                let id = format!(
                    "{}{:013}-{recipient}",
                    bucket.prefix(),
                    crate::model::unix_millis(self.now)
                );
                let mut entry = self.blank(id, recipient, due_at);
                let hash = Sha256::digest(entry.id.as_bytes());
                entry.message_id = format!("<digest.{}@caretaker>", hex::encode(&hash[..8]));
                entry
            }
        };
        if !entry.incident_ids.contains(&incident.id) {
            entry.incident_ids.push(incident.id.clone());
        }
        let listed: Vec<&Incident> = entry
            .incident_ids
            .iter()
            .filter_map(|id| self.incidents.get(id))
            .collect();
        let first = listed
            .iter()
            .map(|i| i.opened_at)
            .min()
            .unwrap_or(self.now)
            .min(entry.created_at);
        let rendered = render::digest(self.policy, bucket.reason(), first, &listed);
        entry.subject = rendered.subject;
        entry.text = rendered.text;
        entry.html = rendered.html;
        self.put(entry);
    }

    fn single(
        &mut self,
        id: String,
        recipient: &str,
        kind: &MailKind,
        incident: &Incident,
        due_at: OffsetDateTime,
    ) {
        let rendered = render::incident_mail(
            self.policy,
            kind,
            incident,
            self.assets.get(&incident.asset_id),
            self.now,
        );
        let root = message_id(incident);
        let mut entry = self.blank(id, recipient, due_at);
        entry.subject = rendered.subject;
        entry.text = rendered.text;
        entry.html = rendered.html;
        entry.incident_ids = vec![incident.id.clone()];
        if *kind == MailKind::Open {
            entry.message_id = root;
        } else {
            let hash = Sha256::digest(entry.id.as_bytes());
            entry.message_id = format!(
                "<{}.{}@caretaker>",
                incident.number,
                hex::encode(&hash[..8])
            );
            entry.in_reply_to = Some(root.clone());
            entry.references = vec![root];
        }
        self.put(entry);
    }

    /// One mail about one incident to one recipient, through the storm-control rules.
    fn mail(
        &mut self,
        id: String,
        recipient: &str,
        kind: &MailKind,
        incident: &Incident,
        storm: bool,
    ) {
        let urgent = incident.priority <= 1;
        if !urgent && let Some(holding) = self.bucket_holding(recipient, &incident.id) {
            // The opening still waits in a digest: refresh it rather than mail out of order.
            let due = self.outbox[&holding].due_at;
            let bucket = if holding.starts_with("quiet-") {
                Bucket::Quiet
            } else if holding.starts_with("rate-") {
                Bucket::Rate
            } else {
                Bucket::Storm
            };
            self.add_to_bucket(recipient, bucket, Some(holding), due, incident);
            return;
        }
        if !urgent
            && incident.priority >= self.policy.quiet_min_priority
            && let Some(until) = quiet_until(self.policy, self.now)
        {
            if matches!(kind, MailKind::Escalation(_)) {
                self.single(id, recipient, kind, incident, until);
            } else {
                let existing = self.open_bucket(recipient, Bucket::Quiet);
                self.add_to_bucket(recipient, Bucket::Quiet, existing, until, incident);
            }
            return;
        }
        if !urgent && *kind == MailKind::Open {
            if let Some(existing) = self.open_bucket(recipient, Bucket::Storm) {
                let due = self.outbox[&existing].due_at;
                self.add_to_bucket(recipient, Bucket::Storm, Some(existing), due, incident);
                return;
            }
            if storm {
                let prior = self.openings_in_window(recipient);
                if prior >= self.policy.digest_threshold {
                    // The window is already busy: collect the followers until it ends.
                    let due = self.now + self.policy.digest_window;
                    self.add_to_bucket(recipient, Bucket::Storm, None, due, incident);
                    return;
                }
            }
        }
        if !urgent
            && !matches!(kind, MailKind::Escalation(_))
            && let Some(until) = self.rate_limited_until(recipient)
        {
            let existing = self.open_bucket(recipient, Bucket::Rate);
            self.add_to_bucket(recipient, Bucket::Rate, existing, until, incident);
            return;
        }
        self.single(id, recipient, kind, incident, self.now);
    }
}

/// New and changed outbox entries for `input.events`.
pub fn plan(policy: &Policy, input: &PlanInput<'_>) -> Vec<OutboxEntry> {
    let mut planner = Planner::new(
        policy,
        input.now,
        input.incidents,
        input.assets,
        input.outbox,
    );
    // (event seq, recipient, kind, incident), in event order.
    let mut mails: Vec<(u64, String, MailKind, &Incident)> = Vec::new();
    for event in input.events {
        let Some(incident) = input.incidents.get(&event.incident_id) else {
            continue;
        };
        let kind = match &event.kind {
            IncidentEventKind::Opened => MailKind::Open,
            IncidentEventKind::Reopened => {
                MailKind::Update("the condition is back: reopened".to_owned())
            }
            IncidentEventKind::PriorityChanged { from, to } => {
                MailKind::Update(format!("priority changed from P{from} to P{to}"))
            }
            IncidentEventKind::Acknowledged { by } => {
                MailKind::Update(format!("acknowledged by {by}"))
            }
            IncidentEventKind::Resolved { automatic } => {
                let _ = automatic;
                MailKind::Recovery
            }
            IncidentEventKind::Noted { .. }
            | IncidentEventKind::Assigned { .. }
            | IncidentEventKind::Held { .. }
            | IncidentEventKind::Resumed { .. }
            | IncidentEventKind::Closed => continue,
        };
        for recipient in recipients(policy, incident) {
            mails.push((event.seq, recipient, kind.clone(), incident));
        }
    }
    // A burst: more openings for one recipient in this batch (plus the window) than allowed.
    let mut batch_openings: HashMap<&str, usize> = HashMap::new();
    for (_, recipient, kind, incident) in &mails {
        if *kind == MailKind::Open && incident.priority > 1 {
            *batch_openings.entry(recipient.as_str()).or_default() += 1;
        }
    }
    let mut burst: HashMap<String, bool> = HashMap::new();
    for (recipient, count) in &batch_openings {
        let prior = planner.openings_in_window(recipient);
        burst.insert(
            (*recipient).to_owned(),
            prior + count > policy.digest_threshold,
        );
    }
    for (seq, recipient, kind, incident) in &mails {
        let storm = burst.get(recipient).copied().unwrap_or(false);
        if storm
            && *kind == MailKind::Open
            && incident.priority > 1
            && planner.open_bucket(recipient, Bucket::Storm).is_none()
            && planner.openings_in_window(recipient) < policy.digest_threshold
            && quiet_until(policy, input.now)
                .is_none_or(|_| incident.priority < policy.quiet_min_priority)
        {
            // The burst arrived at once: one digest now, not a few singles then a digest.
            planner.add_to_bucket(recipient, Bucket::Storm, None, input.now, incident);
            continue;
        }
        let prefix = match kind {
            MailKind::Open => "open",
            MailKind::Recovery => "res",
            _ => "upd",
        };
        let id = format!("{prefix}-{seq:012}-{recipient}");
        planner.mail(id, recipient, kind, incident, storm);
    }
    // A member of staff who reported an incident on `/report` hears when it is resolved
    // (one short mail, outside the technicians' storm and rate rules).
    for event in input.events {
        let Some(incident) = input.incidents.get(&event.incident_id) else {
            continue;
        };
        let Some(reporter) = &incident.desk.reporter else {
            continue;
        };
        if !matches!(event.kind, IncidentEventKind::Resolved { .. })
            || !reporter.email.contains('@')
        {
            continue;
        }
        let rendered = render::reporter_resolved(policy, incident);
        let mut entry = planner.blank(
            format!("rep-{:012}-{}", event.seq, reporter.email),
            &reporter.email,
            input.now,
        );
        entry.subject = rendered.subject;
        entry.text = rendered.text;
        entry.html = rendered.html;
        entry.incident_ids = vec![incident.id.clone()];
        let hash = Sha256::digest(entry.id.as_bytes());
        entry.message_id = format!(
            "<{}.{}@caretaker>",
            incident.number,
            hex::encode(&hash[..8])
        );
        planner.put(entry);
    }
    planner.into_changes()
}

/// Escalations due now: one per unacknowledged open incident past its response target.
pub fn plan_escalations(
    policy: &Policy,
    now: OffsetDateTime,
    incidents: &HashMap<String, Incident>,
    assets: &HashMap<String, AssetContext>,
    outbox: &[OutboxEntry],
) -> Vec<OutboxEntry> {
    let mut planner = Planner::new(policy, now, incidents, assets, outbox);
    let escalated: std::collections::HashSet<&str> = outbox
        .iter()
        .filter_map(|e| e.id.strip_prefix("esc-"))
        .filter_map(|rest| rest.split_once('/').map(|(incident, _)| incident))
        .collect();
    let mut candidates: Vec<&Incident> = incidents
        .values()
        .filter(|i| i.state.is_open() && i.acknowledged_at.is_none())
        .filter(|i| !escalated.contains(i.id.as_str()))
        .collect();
    candidates.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
    for incident in candidates {
        let Some(after) = usize::from(incident.priority)
            .checked_sub(1)
            .and_then(|i| policy.escalate_after.get(i).copied().flatten())
        else {
            continue;
        };
        if now < incident.opened_at + after {
            continue;
        }
        let to = if policy.escalate_to.is_empty() {
            recipients(policy, incident)
        } else {
            let mut to = policy.escalate_to.clone();
            to.sort();
            to.dedup();
            to
        };
        for recipient in to {
            let id = format!("esc-{}/{recipient}", incident.id);
            planner.mail(
                id,
                &recipient,
                &MailKind::Escalation(after),
                incident,
                false,
            );
        }
    }
    planner.into_changes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::config::SmtpConfig;
    use crate::model::{Change, IncidentState};
    use time::macros::datetime;

    fn policy(extra: &str) -> Policy {
        let zone = if extra.contains("time_zone") {
            ""
        } else {
            "time_zone = \"UTC\"\n"
        };
        let config: SmtpConfig = toml::from_str(&format!(
            "server = \"m\"\nfrom = \"caretaker@school.example\"\nto = [\"ict@school.example\"]\n\
             {zone}{extra}"
        ))
        .expect("config");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        config.policy()
    }

    fn incident(n: u32, priority: u8, opened_at: OffsetDateTime) -> Incident {
        Incident {
            id: format!("inc-{n}"),
            number: format!("INC{n:07}"),
            asset_id: format!("asset-{n}"),
            asset_name: format!("ICT-SW{n}"),
            rule: "host_down".to_owned(),
            title: format!("ICT-SW{n} down — 31 devices unreachable"),
            description: "No answer to ping for 3 sweeps.".to_owned(),
            impact: 1,
            urgency: priority.saturating_sub(0).clamp(1, 3),
            priority,
            state: IncidentState::New,
            opened_at,
            updated_at: opened_at,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            occurrences: 1,
            notes: Vec::new(),
            affected: Vec::new(),
            flapping: false,
            measured: serde_json::json!({"missed_sweeps": 3, "last_rtt_ms": 1.2}),
            problem_id: None,
            clear_since: None,
            transitions: Vec::new(),
            desk: Default::default(),
        }
    }

    fn event(
        seq: u64,
        at: OffsetDateTime,
        incident: &Incident,
        kind: IncidentEventKind,
    ) -> IncidentEvent {
        IncidentEvent {
            seq,
            at,
            incident_id: incident.id.clone(),
            kind,
        }
    }

    struct World {
        policy: Policy,
        incidents: HashMap<String, Incident>,
        assets: HashMap<String, AssetContext>,
        outbox: Vec<OutboxEntry>,
        seq: u64,
    }

    impl World {
        fn new(extra: &str) -> Self {
            Self {
                policy: policy(extra),
                incidents: HashMap::new(),
                assets: HashMap::new(),
                outbox: Vec::new(),
                seq: 0,
            }
        }

        /// Plans `events` at `now` and applies the result to the outbox; returns the changes.
        fn step(
            &mut self,
            now: OffsetDateTime,
            kinds: Vec<(Incident, IncidentEventKind)>,
        ) -> Vec<OutboxEntry> {
            let mut events = Vec::new();
            for (incident, kind) in kinds {
                self.seq += 1;
                events.push(event(self.seq, now, &incident, kind));
                self.incidents.insert(incident.id.clone(), incident);
            }
            let changes = plan(
                &self.policy,
                &PlanInput {
                    now,
                    events: &events,
                    incidents: &self.incidents,
                    assets: &self.assets,
                    outbox: &self.outbox,
                },
            );
            self.apply(&changes);
            changes
        }

        fn apply(&mut self, changes: &[OutboxEntry]) {
            for change in changes {
                match self.outbox.iter_mut().find(|e| e.id == change.id) {
                    Some(e) => *e = change.clone(),
                    None => self.outbox.push(change.clone()),
                }
            }
        }

        /// Marks everything due at `now` as sent.
        fn send_due(&mut self, now: OffsetDateTime) -> Vec<OutboxEntry> {
            let mut sent = Vec::new();
            for e in &mut self.outbox {
                if e.status == "pending" && e.due_at <= now {
                    e.status = "sent".to_owned();
                    e.sent_at = Some(now);
                    sent.push(e.clone());
                }
            }
            sent
        }
    }

    const T0: OffsetDateTime = datetime!(2025-03-04 09:00 UTC);

    #[test]
    fn an_opening_is_one_mail_with_the_incident_thread_id() {
        let mut w = World::new("");
        let inc = incident(42, 2, T0);
        let out = w.step(T0, vec![(inc.clone(), IncidentEventKind::Opened)]);
        assert_eq!(out.len(), 1);
        let mail = &out[0];
        assert_eq!(mail.subject, "[P2] ICT-SW42 down — 31 devices unreachable");
        assert_eq!(mail.to, vec!["ict@school.example"]);
        assert_eq!(mail.message_id, message_id(&inc));
        assert!(mail.message_id.starts_with("<INC0000042."));
        assert_eq!(mail.in_reply_to, None);
        assert_eq!(mail.due_at, T0);
        assert!(
            mail.text
                .contains("caretaker-collector incident ack INC0000042")
        );
        assert!(mail.text.contains("missed_sweeps: 3"));
        assert!(mail.html.contains("&mdash;") || mail.html.contains("—"));
    }

    #[test]
    fn the_thread_id_is_stable_across_restarts() {
        let a = incident(7, 2, T0);
        assert_eq!(message_id(&a), message_id(&a.clone()));
        assert_ne!(message_id(&a), message_id(&incident(8, 2, T0)));
    }

    #[test]
    fn updates_and_recovery_reply_in_the_thread() {
        let mut w = World::new("");
        let mut inc = incident(42, 2, T0);
        w.step(T0, vec![(inc.clone(), IncidentEventKind::Opened)]);
        let root = message_id(&inc);
        inc.priority = 1;
        let t1 = T0 + time::Duration::minutes(5);
        let out = w.step(
            t1,
            vec![(
                inc.clone(),
                IncidentEventKind::PriorityChanged { from: 2, to: 1 },
            )],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].subject,
            "Re: [P1] ICT-SW42 down — 31 devices unreachable"
        );
        assert_eq!(out[0].in_reply_to.as_deref(), Some(root.as_str()));
        assert_eq!(out[0].references, vec![root.clone()]);
        assert_ne!(out[0].message_id, root);
        assert!(out[0].text.contains("priority changed from P2 to P1"));

        let t2 = t1 + time::Duration::minutes(5);
        inc.acknowledged_at = Some(t2);
        inc.state = IncidentState::InProgress;
        let out = w.step(
            t2,
            vec![(
                inc.clone(),
                IncidentEventKind::Acknowledged {
                    by: "jan".to_owned(),
                },
            )],
        );
        assert!(out[0].text.contains("acknowledged by jan"));
        assert!(!out[0].text.contains("To acknowledge"));

        let t3 = t2 + time::Duration::minutes(30);
        inc.state = IncidentState::Resolved;
        inc.resolved_at = Some(t3);
        let out = w.step(
            t3,
            vec![(inc.clone(), IncidentEventKind::Resolved { automatic: true })],
        );
        assert_eq!(
            out[0].subject,
            "[RESOLVED] [P1] ICT-SW42 down — 31 devices unreachable"
        );
        assert_eq!(out[0].in_reply_to.as_deref(), Some(root.as_str()));
        // Notes and closing do not mail.
        let out = w.step(t3, vec![(inc.clone(), IncidentEventKind::Closed)]);
        assert!(out.is_empty());
    }

    #[test]
    fn a_burst_seen_at_once_is_one_digest_sent_now() {
        let mut w = World::new("");
        let burst: Vec<_> = (1..=10)
            .map(|n| (incident(n, 3, T0), IncidentEventKind::Opened))
            .collect();
        let out = w.step(T0, burst);
        assert_eq!(
            out.len(),
            1,
            "{:?}",
            out.iter().map(|e| &e.id).collect::<Vec<_>>()
        );
        let digest = &out[0];
        assert_eq!(digest.incident_ids.len(), 10);
        assert_eq!(digest.subject, "[Caretaker] 10 incidents opened at 09:00");
        assert_eq!(digest.due_at, T0);
        assert!(digest.text.contains("INC0000007"));
    }

    #[test]
    fn openings_beyond_the_threshold_in_the_window_collect_in_a_digest() {
        let mut w = World::new("");
        for n in 1..=3 {
            let t = T0 + time::Duration::seconds(i64::from(n));
            let out = w.step(t, vec![(incident(n, 3, t), IncidentEventKind::Opened)]);
            assert!(out[0].id.starts_with("open-"), "{}", out[0].id);
        }
        let t4 = T0 + time::Duration::seconds(10);
        let out = w.step(t4, vec![(incident(4, 3, t4), IncidentEventKind::Opened)]);
        assert!(out[0].id.starts_with("digest-"));
        assert_eq!(out[0].due_at, t4 + time::Duration::seconds(60));
        let t5 = T0 + time::Duration::seconds(20);
        let out = w.step(t5, vec![(incident(5, 3, t5), IncidentEventKind::Opened)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].incident_ids, vec!["inc-4", "inc-5"]);
        // Its recovery before the digest went out refreshes the digest, not a lone reply.
        let mut five = incident(5, 3, t5);
        five.state = IncidentState::Resolved;
        let out = w.step(
            t5,
            vec![(five, IncidentEventKind::Resolved { automatic: true })],
        );
        assert_eq!(out.len(), 1);
        assert!(out[0].id.starts_with("digest-"));
        assert!(out[0].text.contains("resolved"));
        // After the window, a single opening is a single mail again.
        let later = T0 + time::Duration::minutes(5);
        w.send_due(later);
        let out = w.step(
            later,
            vec![(incident(6, 3, later), IncidentEventKind::Opened)],
        );
        assert!(out[0].id.starts_with("open-"));
    }

    #[test]
    fn p1_never_waits_for_a_digest() {
        let mut w = World::new("");
        let mut burst: Vec<_> = (1..=5)
            .map(|n| (incident(n, 2, T0), IncidentEventKind::Opened))
            .collect();
        burst.push((incident(99, 1, T0), IncidentEventKind::Opened));
        let out = w.step(T0, burst);
        assert_eq!(out.len(), 2);
        let single = out
            .iter()
            .find(|e| e.id.starts_with("open-"))
            .expect("P1 alone");
        assert_eq!(single.incident_ids, vec!["inc-99"]);
        assert_eq!(single.due_at, T0);
    }

    #[test]
    fn quiet_hours_hold_low_priorities_for_a_morning_digest_but_not_p3() {
        let mut w = World::new("[quiet_hours]\nstart = \"18:00\"\nend = \"07:30\"\n");
        let night = datetime!(2025-03-04 22:15 UTC);
        let out = w.step(
            night,
            vec![
                (incident(1, 4, night), IncidentEventKind::Opened),
                (incident(2, 5, night), IncidentEventKind::Opened),
                (incident(3, 3, night), IncidentEventKind::Opened),
                (incident(4, 1, night), IncidentEventKind::Opened),
            ],
        );
        let quiet = out
            .iter()
            .find(|e| e.id.starts_with("quiet-"))
            .expect("morning digest");
        assert_eq!(quiet.incident_ids, vec!["inc-1", "inc-2"]);
        assert_eq!(quiet.due_at, datetime!(2025-03-05 07:30 UTC));
        assert!(
            quiet
                .subject
                .contains("2 incidents held during quiet hours")
        );
        let now: Vec<_> = out
            .iter()
            .filter(|e| e.due_at == night)
            .map(|e| e.incident_ids[0].clone())
            .collect();
        assert_eq!(now, vec!["inc-3", "inc-4"]);
        // After midnight the same digest keeps collecting.
        let early = datetime!(2025-03-05 03:00 UTC);
        let out = w.step(
            early,
            vec![(incident(5, 4, early), IncidentEventKind::Opened)],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, quiet.id);
        assert_eq!(out[0].incident_ids.len(), 3);
        // Daytime: no holding.
        let day = datetime!(2025-03-05 10:00 UTC);
        let out = w.step(day, vec![(incident(6, 5, day), IncidentEventKind::Opened)]);
        assert_eq!(out[0].due_at, day);
    }

    #[test]
    fn quiet_hours_follow_the_time_zone_and_daytime_spans() {
        let p = policy(
            "time_zone = \"Europe/Amsterdam\"\n[quiet_hours]\nstart = \"18:00\"\nend = \"07:30\"\n",
        );
        // 17:30 UTC is 18:30 in Amsterdam (CET, +1): quiet until 06:30 UTC.
        assert_eq!(
            quiet_until(&p, datetime!(2025-03-04 17:30 UTC)),
            Some(datetime!(2025-03-05 06:30 UTC))
        );
        assert_eq!(quiet_until(&p, datetime!(2025-03-04 16:30 UTC)), None);
        let p = policy("[quiet_hours]\nstart = \"12:00\"\nend = \"13:00\"\n");
        assert_eq!(
            quiet_until(&p, datetime!(2025-03-04 12:10 UTC)),
            Some(datetime!(2025-03-04 13:00 UTC))
        );
        assert_eq!(quiet_until(&p, datetime!(2025-03-04 13:00 UTC)), None);
    }

    #[test]
    fn the_rate_limit_holds_mail_beyond_the_hour_in_one_digest() {
        let mut w = World::new("rate_limit_per_hour = 3\n");
        let mut sent = 0;
        for n in 1..=6u32 {
            // Spaced past the digest window so they are not a burst.
            let t = T0 + time::Duration::minutes(i64::from(n) * 2);
            let out = w.step(t, vec![(incident(n, 3, t), IncidentEventKind::Opened)]);
            sent += out.iter().filter(|e| e.id.starts_with("open-")).count();
        }
        assert_eq!(sent, 3);
        let held: Vec<_> = w
            .outbox
            .iter()
            .filter(|e| e.id.starts_with("rate-"))
            .collect();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].incident_ids, vec!["inc-4", "inc-5", "inc-6"]);
        // Room again when the first mail (T0+2m) leaves the hour.
        assert_eq!(held[0].due_at, T0 + time::Duration::minutes(62));
        // P1 is never held back.
        let t = T0 + time::Duration::minutes(20);
        let out = w.step(t, vec![(incident(7, 1, t), IncidentEventKind::Opened)]);
        assert!(out[0].id.starts_with("open-"));
    }

    #[test]
    fn routes_send_by_rule_and_priority_and_the_rest_to_the_default() {
        let mut w = World::new(
            "[[routes]]\nto = [\"network@school.example\"]\nrules = [\"host_down\"]\npriorities = [1, 2]\n\
             [[routes]]\nto = [\"head@school.example\", \"network@school.example\"]\npriorities = [1]\n",
        );
        let p1 = incident(1, 1, T0);
        let p2 = incident(2, 2, T0);
        let mut disk = incident(3, 2, T0);
        disk.rule = "disk_full".to_owned();
        let p3 = incident(4, 3, T0);
        assert_eq!(
            recipients(&w.policy, &p1),
            vec!["head@school.example", "network@school.example"]
        );
        assert_eq!(recipients(&w.policy, &p2), vec!["network@school.example"]);
        assert_eq!(recipients(&w.policy, &disk), vec!["ict@school.example"]);
        assert_eq!(recipients(&w.policy, &p3), vec!["ict@school.example"]);
        let out = w.step(T0, vec![(p1, IncidentEventKind::Opened)]);
        assert_eq!(out.len(), 2, "one entry per recipient");
        assert_eq!(out[0].message_id, out[1].message_id);
    }

    #[test]
    fn unacknowledged_incidents_escalate_once_after_their_target() {
        let mut w = World::new("escalate_to = [\"head@school.example\"]\n");
        let p1 = incident(1, 1, T0);
        let p5 = incident(2, 5, T0);
        let mut acked = incident(3, 1, T0);
        acked.acknowledged_at = Some(T0 + time::Duration::minutes(3));
        for i in [&p1, &p5, &acked] {
            w.incidents.insert(i.id.clone(), i.clone());
        }
        let early = T0 + time::Duration::minutes(14);
        assert!(plan_escalations(&w.policy, early, &w.incidents, &w.assets, &w.outbox).is_empty());
        let late = T0 + time::Duration::minutes(16);
        let out = plan_escalations(&w.policy, late, &w.incidents, &w.assets, &w.outbox);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, vec!["head@school.example"]);
        assert_eq!(
            out[0].in_reply_to.as_deref(),
            Some(message_id(&p1).as_str())
        );
        assert!(out[0].subject.starts_with("Re: [P1]"));
        assert!(out[0].text.contains("15m"));
        w.apply(&out);
        let again = T0 + time::Duration::hours(5);
        assert!(plan_escalations(&w.policy, again, &w.incidents, &w.assets, &w.outbox).is_empty());
    }

    #[test]
    fn bodies_carry_the_asset_history_link_and_escape_html() {
        let mut w = World::new("base_url = \"http://caretaker.school.example:8080/\"\n");
        let mut inc = incident(42, 2, T0);
        inc.title = "<script>alert(1)</script> down".to_owned();
        w.assets.insert(
            inc.asset_id.clone(),
            AssetContext {
                asset: None,
                recent: vec![Change {
                    id: "c1".to_owned(),
                    asset_id: inc.asset_id.clone(),
                    at: T0 - time::Duration::days(1),
                    kind: "upgraded".to_owned(),
                    field: "firmware".to_owned(),
                    before: Some("1.0".to_owned()),
                    after: Some("1.1".to_owned()),
                    clock_suspect: false,
                    expected_by: None,
                    author: None,
                }],
                location: Some("Building B, room 12".to_owned()),
            },
        );
        let out = w.step(T0, vec![(inc, IncidentEventKind::Opened)]);
        let mail = &out[0];
        // The dashboard's pages: the incident and its asset.
        assert!(
            mail.text
                .contains("http://caretaker.school.example:8080/incidents/inc-42"),
            "{}",
            mail.text
        );
        assert!(
            mail.text
                .contains("http://caretaker.school.example:8080/assets/"),
            "{}",
            mail.text
        );
        assert!(mail.text.contains("upgraded firmware: 1.0 → 1.1"));
        assert!(mail.text.contains("Location: Building B, room 12"));
        assert!(
            mail.text
                .contains("POST http://caretaker.school.example:8080/api/v1/incidents/inc-42/ack")
        );
        assert!(!mail.html.contains("<script>"));
        assert!(mail.html.contains("&lt;script&gt;"));
        assert!(mail.html.contains("/assets/"));
    }

    #[test]
    fn replanning_the_same_events_overwrites_the_same_entries() {
        let mut w = World::new("");
        let inc = incident(1, 2, T0);
        let events = vec![event(1, T0, &inc, IncidentEventKind::Opened)];
        w.incidents.insert(inc.id.clone(), inc);
        let input = |outbox: &[OutboxEntry]| {
            plan(
                &w.policy,
                &PlanInput {
                    now: T0,
                    events: &events,
                    incidents: &w.incidents,
                    assets: &w.assets,
                    outbox,
                },
            )
        };
        let first = input(&[]);
        let second = input(&first);
        assert_eq!(first[0].id, second[0].id);
        assert_eq!(first[0].message_id, second[0].message_id);
    }
}
