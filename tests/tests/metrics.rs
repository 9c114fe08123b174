//! `/metrics` on a real collector after a real agent reported: Prometheus text with the
//! documented names, refused without a token unless the client's address is allowed.

use caretaker_tests::{Collector, agent_once, get_raw};

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_need_a_token_and_count_what_the_agent_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"));
    agent_once(&collector, &dir.path().join("agent"), &[]);

    let (status, _) = get_raw(collector.http, "/metrics", None).expect("scrape");
    assert_eq!(status, 401, "no token, loopback not allowed by default");
    let (status, text) =
        get_raw(collector.http, "/metrics", Some(&collector.api_token())).expect("scrape");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("caretaker_build_info{version=\""), "{text}");
    let stored = value(&text, "caretaker_reports_ingested_total{result=\"stored\"}");
    assert!(
        stored.is_some_and(|v| v >= 2.0),
        "inventory and status stored:\n{text}"
    );
    assert_eq!(
        value(
            &text,
            "caretaker_reports_received_total{kind=\"inventory\"}"
        ),
        Some(1.0)
    );
    assert!(
        value(&text, "caretaker_store_commit_duration_seconds_count").is_some_and(|v| v >= 1.0)
    );
    assert!(value(&text, "caretaker_store_bytes").is_some_and(|v| v > 0.0));
    assert_eq!(
        value(
            &text,
            "caretaker_degraded{component=\"store\",reason=\"full\"}"
        ),
        Some(0.0)
    );
    assert!(text.contains("caretaker_incidents_open{priority=\"P1\"}"));
    assert!(text.contains("caretaker_outbox_messages{state=\"pending\"}"));
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn an_allowed_address_scrapes_without_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start_with(
        &dir.path().join("collector"),
        "[metrics]\nallow = [\"127.0.0.0/8\"]\n",
    );
    let (status, text) = get_raw(collector.http, "/metrics", None).expect("scrape");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("caretaker_register_queue_depth"));
}
