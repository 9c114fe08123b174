//! `warranty_expiry`: an asset's warranty (register field `warranty_end`) ends within
//! `[finance] warranty_notice_days`: one low-priority notice per asset, mailed like every
//! incident. It stays for as many days again after the end (the warranty has "ended on …")
//! and then clears by itself, as it does when the date is moved (a renewal) or the asset is
//! retired or disposed; a technician resolving it is heard (the engine does not reopen a
//! resolved incident while its condition lasts). A warranty that ended longer ago raises
//! nothing: a register imported with years of expired warranties is the finance page's
//! expired list, not hundreds of incidents.

use serde_json::json;

use super::{Condition, Context, RulesConfig, label};
use crate::model::Lifecycle;

pub const RULE: &str = "warranty_expiry";

pub(super) fn check(config: &RulesConfig, cx: &Context<'_>, out: &mut Vec<Condition>) {
    let rule = &config.warranty_expiry;
    if !rule.enabled || config.warranty_notice_days == 0 {
        return;
    }
    let today = cx.now.date();
    for asset in cx.assets {
        let Some(end) = asset.register.warranty_end else {
            continue;
        };
        if matches!(
            asset.register.lifecycle,
            Lifecycle::Retired | Lifecycle::Disposed
        ) {
            continue;
        }
        let left = (end - today).whole_days();
        let window = i64::from(config.warranty_notice_days);
        if !(-window..=window).contains(&left) {
            continue;
        }
        let when = crate::model::register::iso_date::format(end);
        let title = match left {
            ..0 => format!("Warranty of {} ended on {when}", label(asset)),
            0 => format!("Warranty of {} ends today", label(asset)),
            1 => format!("Warranty of {} ends tomorrow ({when})", label(asset)),
            _ => format!("Warranty of {} ends in {left} days ({when})", label(asset)),
        };
        out.push(Condition {
            rule: RULE,
            asset_id: asset.id.clone(),
            title,
            description: format!(
                "{} (tag {}, supplier {}) is under warranty until {when}. Renew or extend it, \
                 plan a replacement, or record the new end date in the register.",
                label(asset),
                or_dash(&asset.register.asset_tag),
                or_dash(&asset.register.supplier)
            ),
            impact: rule.impact,
            urgency: rule.urgency,
            measured: json!({"warranty_end": when, "days_left": left}),
        });
    }
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "–" } else { text }
}

#[cfg(test)]
mod tests {
    use time::Date;
    use time::macros::date;

    use super::*;
    use crate::model::Asset;
    use crate::observe::Observations;
    use crate::rules::tests::{NOW, asset};
    use crate::rules::{Condition, evaluate};

    fn with_warranty(id: &str, end: Date, lifecycle: Lifecycle) -> Asset {
        let mut a = asset(id, &[]);
        a.register.warranty_end = Some(end);
        a.register.lifecycle = lifecycle;
        a.register.asset_tag = format!("TAG-{id}");
        a
    }

    fn notices(assets: &[Asset], days: u32, enabled: bool) -> Vec<Condition> {
        let mut config = RulesConfig {
            warranty_notice_days: days,
            ..RulesConfig::default()
        };
        config.warranty_expiry.enabled = enabled;
        let obs = Observations::default();
        let cx = Context {
            now: NOW,
            assets,
            obs: &obs,
            change_windows: &[],
            baseline: None,
        };
        evaluate(&config, &cx)
            .into_iter()
            .filter(|c| c.rule == RULE)
            .collect()
    }

    #[test]
    fn a_notice_within_the_window_and_none_beyond_it() {
        // NOW is 2026-10-05.
        let assets = [
            with_warranty("soon", date!(2026 - 10 - 10), Lifecycle::Deployed),
            with_warranty("edge", date!(2026 - 11 - 04), Lifecycle::Deployed),
            with_warranty("far", date!(2026 - 11 - 05), Lifecycle::Deployed),
            with_warranty("today", date!(2026 - 10 - 05), Lifecycle::InRepair),
            with_warranty("tomorrow", date!(2026 - 10 - 06), Lifecycle::InStock),
            asset("none", &[]),
        ];
        let found = notices(&assets, 30, true);
        let got: Vec<_> = found
            .iter()
            .map(|c| (c.asset_id.as_str(), c.title.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("soon", "Warranty of SOON ends in 5 days (2026-10-10)"),
                ("edge", "Warranty of EDGE ends in 30 days (2026-11-04)"),
                ("today", "Warranty of TODAY ends today"),
                (
                    "tomorrow",
                    "Warranty of TOMORROW ends tomorrow (2026-10-06)"
                ),
            ]
        );
        assert_eq!(found[0].measured["days_left"], 5);
        assert_eq!(found[0].measured["warranty_end"], "2026-10-10");
        assert!(
            found[0].description.contains("tag TAG-soon"),
            "{}",
            found[0].description
        );
        assert_eq!((found[0].impact, found[0].urgency), (3, 3));
        // A shorter notice period leaves the far ones out.
        let short: Vec<_> = notices(&assets, 5, true)
            .into_iter()
            .map(|c| c.asset_id)
            .collect();
        assert_eq!(short, ["soon", "today", "tomorrow"]);
    }

    #[test]
    fn an_ended_warranty_stays_noticed_for_the_window_unless_the_asset_leaves_service() {
        // NOW is 2026-10-05; with a 30-day window an end on 2026-09-05 is the last noticed.
        let assets = [
            with_warranty("ended", date!(2026 - 10 - 01), Lifecycle::Deployed),
            with_warranty("long-ago", date!(2026 - 09 - 04), Lifecycle::Deployed),
            with_warranty("years-ago", date!(2021 - 03 - 31), Lifecycle::Deployed),
            with_warranty("retired", date!(2026 - 10 - 10), Lifecycle::Retired),
            with_warranty("disposed", date!(2026 - 10 - 10), Lifecycle::Disposed),
        ];
        let found = notices(&assets, 30, true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].title, "Warranty of ENDED ended on 2026-10-01");
        assert_eq!(found[0].measured["days_left"], -4);
        let edge = [with_warranty(
            "edge",
            date!(2026 - 09 - 05),
            Lifecycle::Deployed,
        )];
        assert_eq!(notices(&edge, 30, true).len(), 1, "30 days after the end");
    }

    #[test]
    fn notices_are_not_counted_as_repairs() {
        assert!(crate::finance::NOT_REPAIRS.contains(&RULE));
        assert!(crate::finance::NOT_REPAIRS.contains(&crate::rules::certificates::RULE));
    }

    #[test]
    fn no_notice_when_switched_off() {
        let assets = [with_warranty(
            "soon",
            date!(2026 - 10 - 10),
            Lifecycle::Deployed,
        )];
        assert!(
            notices(&assets, 0, true).is_empty(),
            "warranty_notice_days = 0"
        );
        assert!(notices(&assets, 30, false).is_empty(), "rule disabled");
    }
}
