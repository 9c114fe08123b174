//! `caretaker-collector scan`: one sweep from the command line, with a progress bar on a
//! terminal, a table otherwise, or one JSON object per live host.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use caretaker_collector::scan::{
    self, Alive, CredentialMemory, DiscoveredHost, Progress, ScanOptions, Scope,
};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

struct Counting {
    bar: ProgressBar,
    found: std::sync::atomic::AtomicU64,
}

impl Progress for Counting {
    fn probed(&self, count: u64) {
        self.bar.set_position(count);
    }
    fn found(&self, _alive: &Alive) {
        let n = self
            .found
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.bar.set_message(format!("{n} live"));
    }
}

pub async fn run(scope: Scope, options: ScanOptions, json: bool) -> ExitCode {
    let total: u64 = scope
        .ranges()
        .iter()
        .map(|r| r.hosts().count() as u64)
        .sum();
    let progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} sweeping [{bar:30}] {pos}/{len} probes, {msg} ({elapsed})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Box::new(Counting {
            bar,
            found: Default::default(),
        })
    } else {
        Box::new(())
    };
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            cancel.cancel();
        });
    }
    let memory = CredentialMemory::default();
    let dns = scan::dns::ReverseDns::from_system(std::time::Duration::from_secs(1));
    let started = std::time::Instant::now();
    let result = scan::run(&scope, &options, &memory, &dns, progress.as_ref(), &cancel).await;
    drop(progress);
    let mut sweep = match result {
        Ok(sweep) => sweep,
        Err(error) => {
            eprintln!("caretaker-collector: {error}");
            return match error {
                scan::ScanError::Targets(_) => ExitCode::from(2),
                scan::ScanError::Ping(_) => ExitCode::from(69),
            };
        }
    };
    // This machine's own addresses are never probed: it is the scanner, not a find.
    let own_found = std::mem::take(&mut sweep.own);
    let mut out = std::io::stdout().lock();
    if json {
        for host in &sweep.hosts {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(host).expect("host serialises")
            );
        }
    } else {
        let _ = write!(out, "{}", table(&sweep.hosts));
        let own_note = if own_found.is_empty() {
            String::new()
        } else {
            format!(
                "; this machine's own {} not listed",
                own_found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let _ = writeln!(
            out,
            "\n{} live of {} addresses in {} ({:.2} s){own_note}",
            sweep.hosts.len(),
            sweep.probed,
            scope
                .ranges()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            started.elapsed().as_secs_f64()
        );
    }
    if cancel.is_cancelled() {
        eprintln!("caretaker-collector: interrupted; the results above are partial");
        return ExitCode::from(130);
    }
    ExitCode::SUCCESS
}

/// A plain table, one row per host; widths fit the content.
fn table(hosts: &[DiscoveredHost]) -> String {
    let header = [
        "IP", "MAC", "VENDOR", "NAME", "KIND", "RTT", "MODEL", "PORTS", "SUPPLIES",
    ];
    let rows: Vec<[String; 9]> = hosts
        .iter()
        .map(|h| {
            let kind = serde_json::to_value(h.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let model = h.snmp.as_ref().map(|d| d.model.clone()).unwrap_or_default();
            let supplies = h
                .snmp
                .as_ref()
                .map(|d| {
                    d.supplies
                        .iter()
                        .filter_map(|s| {
                            s.percent
                                .map(|p| format!("{} {p:.0}%", short(&s.description, 18)))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            [
                h.ip.to_string(),
                h.mac.clone().unwrap_or_default(),
                short(&h.vendor, 32),
                short(&h.name().unwrap_or_default(), 24),
                kind,
                format!("{:.1}ms", h.rtt_ms),
                short(&model, 28),
                h.open_ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                supplies,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
            + "\n"
    };
    let mut out = line(&header.map(str::to_owned));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// `text` in at most `max` characters: whitespace runs become one space, and a longer text is
/// cut after its last whole word that fits, with an ellipsis (mid-word only when a single word
/// is longer than half the column).
fn short(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let keep = max.saturating_sub(1);
    let cut = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    let (head, rest) = text.split_at(cut);
    let words = if rest.starts_with(' ') {
        head
    } else {
        head.rsplit_once(' ').map_or("", |(words, _)| words)
    };
    let words = words.trim_end_matches(|c: char| c.is_whitespace() || ",;:-–—/&(".contains(c));
    if words.chars().count() * 2 >= keep {
        format!("{words}…")
    } else {
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn long_names_are_cut_after_a_whole_word() {
        let lenovo = "Lenovo Future Communication Technology (Chongqing) Company Limited";
        assert_eq!(short(lenovo, 32), "Lenovo Future Communication…");
        assert_eq!(
            short("Motorola Mobility LLC, a Lenovo Company", 32),
            "Motorola Mobility LLC, a Lenovo…"
        );
        assert_eq!(
            short("Samsung Electronics Co., Ltd., Memory Division", 32),
            "Samsung Electronics Co., Ltd.…"
        );
        assert_eq!(
            short("(locally administered MAC)", 32),
            "(locally administered MAC)"
        );
        assert_eq!(
            short("Notebook Development Lab.  Lenovo Japan Ltd.", 32),
            "Notebook Development Lab.…"
        );
        // One long word is cut where it must be.
        assert_eq!(
            short("Supercalifragilisticexpialidocious", 10),
            "Supercali…"
        );
        for max in 2..40 {
            for text in [lenovo, "A B C D", "Hewlett Packard"] {
                let cut = short(text, max);
                assert!(cut.chars().count() <= max, "{cut:?} is longer than {max}");
                let kept = cut.trim_end_matches('…');
                assert!(
                    text.starts_with(kept),
                    "{cut:?} is not a prefix of {text:?}"
                );
            }
        }
    }

    #[test]
    fn this_machine_knows_its_loopback_address() {
        #[cfg(target_os = "linux")]
        assert!(scan::LocalAddresses::read().contains(Ipv4Addr::LOCALHOST));
    }
}
