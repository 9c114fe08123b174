//! `warranty_expiry`: an asset's warranty (register field `warranty_end`) ends within
//! `[finance] warranty_notice_days`, or has ended: one low-priority notice per asset, mailed
//! like every incident. It stays while the warranty stays ended and clears when the date is
//! moved (a renewal) or the asset is retired or disposed; a technician resolving it is heard
//! (the engine does not reopen a resolved incident while its condition lasts).

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
        if left > i64::from(config.warranty_notice_days) {
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
