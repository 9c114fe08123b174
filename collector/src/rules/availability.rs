//! Host down (N missed pings in a row, agent silent too), agent silent while the host still
//! answers ping, and repeated reboots.

use serde_json::json;

use super::{Condition, Context, RulesConfig, human, label};
use crate::model::{Asset, Source};
use crate::observe::AssetObs;

pub(super) fn check(
    config: &RulesConfig,
    cx: &Context<'_>,
    asset: &Asset,
    obs: &AssetObs,
    out: &mut Vec<Condition>,
) {
    let agent_fresh = |within: std::time::Duration| {
        obs.agent_heard.is_some_and(|at| {
            cx.now - at <= time::Duration::try_from(within).unwrap_or(time::Duration::MAX)
        })
    };
    let rule = &config.host_down;
    // An agent still reporting proves the host is up, whatever ping says (firewalls).
    let agent_alive = asset.sources.contains(&Source::Agent)
        && agent_fresh(
            config
                .agent_silent
                .after
                .min(std::time::Duration::from_secs(180)),
        );
    if rule.enabled && obs.ping.consecutive_misses >= rule.misses && !agent_alive {
        let since = obs.ping.missing_since.unwrap_or(cx.now);
        out.push(Condition {
            rule: "host_down",
            asset_id: asset.id.clone(),
            title: format!("{} down", label(asset)),
            description: format!(
                "{} ({}) has not answered ping for {} ({} checks in a row); {}.",
                label(asset),
                asset.ips.join(", "),
                human(cx.now - since),
                obs.ping.consecutive_misses,
                // No clock time in the text: the pages show times in the school's zone.
                obs.ping.last_up_at.map_or("it has never answered".to_owned(), |t| format!(
                    "last answer {} ago",
                    human(cx.now - t)
                )),
            ),
            impact: rule.impact,
            urgency: rule.urgency,
            measured: json!({"missed_checks": obs.ping.consecutive_misses, "down_since": since.unix_timestamp()}),
        });
    }

    let rule = &config.agent_silent;
    let pings = obs.ping.consecutive_misses == 0 && obs.ping.last_up_at.is_some();
    if rule.enabled && asset.sources.contains(&Source::Agent) && pings && !agent_fresh(rule.after) {
        let silent = obs.agent_heard.map(|h| cx.now - h);
        out.push(Condition {
            rule: "agent_silent",
            asset_id: asset.id.clone(),
            title: format!("Caretaker agent on {} is not reporting", label(asset)),
            description: format!(
                "{} answers ping but its agent has been silent for {}: the service may be stopped or blocked.",
                label(asset),
                silent.map_or("ever".to_owned(), human),
            ),
            impact: rule.impact,
            urgency: rule.urgency,
            measured: json!({"silent_secs": silent.map(|s| s.whole_seconds())}),
        });
    }

    let rule = &config.reboots;
    let window = time::Duration::try_from(rule.within).unwrap_or(time::Duration::MAX);
    let recent: Vec<_> = obs
        .boots
        .iter()
        .filter(|b| cx.now - **b <= window)
        .collect();
    if rule.enabled && recent.len() >= rule.count {
        out.push(Condition {
            rule: "reboots",
            asset_id: asset.id.clone(),
            title: format!("{} rebooted {} times in {}", label(asset), recent.len(), human(window)),
            description: format!(
                "{} started {} times within {}: a crash, a power problem or an update loop.",
                label(asset),
                recent.len(),
                human(window)
            ),
            impact: rule.impact,
            urgency: rule.urgency,
            measured: json!({"boots": recent.iter().map(|b| b.unix_timestamp()).collect::<Vec<_>>()}),
        });
    }
}
