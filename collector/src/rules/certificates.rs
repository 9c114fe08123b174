//! `certificate_expiry`: an agent's client certificate, or the collector's CA, expires within
//! `[tls] warn_before` (agents renew at two thirds of their certificate's life, so a warning
//! means renewal has not happened: the PC is away, or something refuses it). The CA's
//! condition is on the pseudo-asset `collector`: `ca rotate` is the fix.

use super::{Condition, Context, human};

pub const RULE: &str = "certificate_expiry";

pub fn check(context: &Context<'_>, out: &mut Vec<Condition>) {
    let certs = &context.obs.certificates;
    if certs.warn_before <= time::Duration::ZERO {
        return;
    }
    let soon = |at: time::OffsetDateTime| at - context.now <= certs.warn_before;
    for (asset, (agent, not_after)) in &certs.agents {
        if !soon(*not_after) {
            continue;
        }
        let left = *not_after - context.now;
        let (title, urgency) = if left <= time::Duration::ZERO {
            (format!("Agent {agent}'s certificate has expired"), 3)
        } else {
            (
                format!("Agent {agent}'s certificate expires in {}", human(left)),
                2,
            )
        };
        out.push(Condition {
            rule: RULE,
            asset_id: asset.clone(),
            title,
            description: "The agent has not renewed its client certificate (it renews at two \
                          thirds of its life when it reaches the collector). Once expired, the \
                          PC must be enrolled again with a token."
                .to_owned(),
            impact: 2,
            urgency,
            measured: serde_json::json!({"agent_id": agent, "not_after": crate::pki::rfc3339(*not_after)}),
        });
    }
    for (subject, not_after) in &certs.cas {
        if !soon(*not_after) {
            continue;
        }
        let left = *not_after - context.now;
        out.push(Condition {
            rule: RULE,
            asset_id: "collector".to_owned(),
            title: format!("The collector's CA expires in {}", human(left.max(time::Duration::ZERO))),
            description: format!(
                "{subject} signs every agent certificate; run `caretaker-collector ca rotate` \
                 so agents move to a new CA at their next contact, then `ca rotate --finish`."
            ),
            impact: 3,
            urgency: 2,
            measured: serde_json::json!({"subject": subject, "not_after": crate::pki::rfc3339(*not_after)}),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Certificates, Observations};

    #[test]
    fn certificates_near_expiry_warn_and_others_do_not() {
        let now = time::OffsetDateTime::now_utc();
        let obs = Observations {
            certificates: Certificates {
                agents: [
                    (
                        "a1".to_owned(),
                        ("agent1".to_owned(), now + time::Duration::days(3)),
                    ),
                    (
                        "a2".to_owned(),
                        ("agent2".to_owned(), now + time::Duration::days(60)),
                    ),
                ]
                .into_iter()
                .collect(),
                cas: vec![("CN=CA".to_owned(), now + time::Duration::days(10))],
                warn_before: time::Duration::days(30),
            },
            ..Default::default()
        };
        let context = Context {
            now,
            assets: &[],
            obs: &obs,
            change_windows: &[],
            baseline: None,
        };
        let mut out = Vec::new();
        check(&context, &mut out);
        let mut ids: Vec<_> = out.iter().map(|c| c.asset_id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a1", "collector"]);
        assert!(out.iter().any(|c| c.title.contains("expires in 3 days")));
    }
}
