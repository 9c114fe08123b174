//! Inline SVG charts (no JavaScript): the availability timeline with school hours shaded,
//! and line charts of use over time with a dashed forecast line.

use std::fmt::Write;

use time::OffsetDateTime;

const W: f64 = 720.0;

/// A straight forecast segment: from `(t0, v0)` to `(t1, v1)`.
pub type Segment = ((OffsetDateTime, f64), (OffsetDateTime, f64));

fn x_of(at: OffsetDateTime, from: OffsetDateTime, to: OffsetDateTime) -> f64 {
    let span = (to - from).as_seconds_f64().max(1.0);
    ((at - from).as_seconds_f64() / span * W).clamp(0.0, W)
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

/// Up (green), down (red) and no data (grey) over `[from, to)`, school hours shaded.
/// `points` are `(time, up)` oldest first; a point counts until the next one, or for
/// `hold` at most.
pub fn availability(
    points: &[(OffsetDateTime, bool)],
    from: OffsetDateTime,
    to: OffsetDateTime,
    school: &[(OffsetDateTime, OffsetDateTime)],
    hold: time::Duration,
    label: &str,
) -> String {
    let mut svg = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {W} 48\" role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"none\">",
        escape(label)
    );
    svg.push_str("<rect class=\"nodata\" x=\"0\" y=\"8\" width=\"720\" height=\"24\"/>");
    for (a, b) in school {
        let (x0, x1) = (x_of(*a, from, to), x_of(*b, from, to));
        let _ = write!(
            svg,
            "<rect class=\"school\" x=\"{x0:.1}\" y=\"0\" width=\"{:.1}\" height=\"40\"/>",
            (x1 - x0).max(0.5)
        );
    }
    for (i, (at, up)) in points.iter().enumerate() {
        let end = points
            .get(i + 1)
            .map_or(to, |(next, _)| *next)
            .min(*at + hold)
            .min(to);
        if end <= from || *at >= to {
            continue;
        }
        let (x0, x1) = (x_of((*at).max(from), from, to), x_of(end, from, to));
        let _ = write!(
            svg,
            "<rect class=\"{}\" x=\"{x0:.1}\" y=\"8\" width=\"{:.1}\" height=\"24\"/>",
            if *up { "up" } else { "down" },
            (x1 - x0).max(0.5)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One line per series over `[from, to)` on a 0–100 % scale; `forecast` adds a dashed line
/// from `(t0, v0)` to `(t1, v1)` for the series of the same index.
pub fn lines(
    series: &[(String, Vec<(OffsetDateTime, f64)>)],
    forecast: &[Option<Segment>],
    from: OffsetDateTime,
    to: OffsetDateTime,
    label: &str,
) -> String {
    const H: f64 = 160.0;
    let y_of = |v: f64| H - (v.clamp(0.0, 100.0) / 100.0 * (H - 10.0)) - 5.0;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    for pct in [0.0, 50.0, 100.0] {
        let y = y_of(pct);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"0\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"axis\" x=\"2\" y=\"{:.1}\">{pct:.0}%</text>",
            y - 2.0
        );
    }
    let now_x = x_of(OffsetDateTime::now_utc(), from, to);
    let _ = write!(
        svg,
        "<line class=\"now\" x1=\"{now_x:.1}\" x2=\"{now_x:.1}\" y1=\"0\" y2=\"{H}\"/>"
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let class = i % 6;
        let mut path = String::new();
        for (at, v) in points {
            let _ = write!(path, "{:.1},{:.1} ", x_of(*at, from, to), y_of(*v));
        }
        let _ = write!(
            svg,
            "<polyline class=\"s{class}\" points=\"{}\"><title>{}</title></polyline>",
            path.trim_end(),
            escape(name)
        );
        if let Some(Some(((t0, v0), (t1, v1)))) = forecast.get(i) {
            let _ = write!(
                svg,
                "<line class=\"forecast s{class}\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"><title>forecast: {}</title></line>",
                x_of(*t0, from, to),
                y_of(*v0),
                x_of(*t1, from, to),
                y_of(*v1),
                escape(name)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names_are_escaped_in_the_svg() {
        let now = OffsetDateTime::now_utc();
        let svg = lines(
            &[(
                "<script>".to_owned(),
                vec![(now - time::Duration::hours(1), 10.0)],
            )],
            &[],
            now - time::Duration::days(1),
            now,
            "a \"chart\"",
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("a &quot;chart&quot;"));
    }

    #[test]
    fn a_down_period_is_drawn_red_where_it_happened() {
        let from = OffsetDateTime::UNIX_EPOCH;
        let to = from + time::Duration::hours(10);
        let points = [(from, true), (from + time::Duration::hours(5), false)];
        let svg = availability(&points, from, to, &[], time::Duration::hours(24), "x");
        assert!(svg.contains("class=\"up\" x=\"0.0\""), "{svg}");
        assert!(svg.contains("class=\"down\" x=\"360.0\""), "{svg}");
    }
}
