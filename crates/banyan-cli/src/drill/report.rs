//! A drill's report: the figures an SRE asks for after a failover rehearsal, as Markdown
//! for people, JSON for tooling, and an SVG timeline of throughput and latency with the
//! fault marked.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use banyan_harness::{Outcome, Sample};
use banyan_proto::v1 as pb;
use serde::Serialize;

/// One moment of the fault, relative to the start of the workload.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub at_s: f64,
    pub what: String,
}

/// How the operations of one kind ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
}

impl Counts {
    pub fn of(samples: &[Sample]) -> Self {
        let count = |o| samples.iter().filter(|s| s.outcome == o).count();
        Self {
            ok: count(Outcome::Ok),
            failed: count(Outcome::Failed),
            unknown: count(Outcome::Unknown),
        }
    }
}

/// What the checker found, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Invariants {
    pub lost: usize,
    pub duplicated: usize,
    pub double_assigned: usize,
    pub over_capacity: usize,
    /// Every other violation (illegal contact histories, replicas that disagree, offers
    /// across a lapsed lease, writes refused but applied).
    pub other: usize,
    /// Acknowledged contacts no agent had completed by the end.
    pub unserved: usize,
    /// Every violation in words (the first 50).
    pub details: Vec<String>,
}

impl Invariants {
    pub fn broken(&self) -> bool {
        self.lost
            + self.duplicated
            + self.double_assigned
            + self.over_capacity
            + self.other
            + self.unserved
            > 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteFigures {
    pub site: String,
    /// From the fault until the branch routed its site on its own.
    pub autonomy_switch_ms: Option<f64>,
    /// From the heal until the branch worked through the core again with its site leased.
    pub reconciliation_ms: Option<f64>,
    /// Offers the branch made on its own.
    pub local_offers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub scenario: String,
    pub target: String,
    pub run: usize,
    pub passed: bool,
    pub started_unix_ms: i64,
    pub workload_s: f64,
    pub marks: Vec<Mark>,
    /// Longest gap between two successful customer writes from the fault on.
    pub write_gap_max_ms: f64,
    /// 99th percentile of those gaps.
    pub write_gap_p99_ms: f64,
    /// The same before the fault, for scale.
    pub steady_gap_max_ms: f64,
    /// From the fault until every live core node agreed on a new leader.
    pub election_ms: Option<f64>,
    pub sites: Vec<SiteFigures>,
    pub writes: Counts,
    pub contacts: Counts,
    pub write_latency_p50_ms: f64,
    pub write_latency_p99_ms: f64,
    pub invariants: Invariants,
    pub notes: Vec<String>,
}

/// Gaps between consecutive successful completions, for completions after `from` (the
/// first gap spans `from`).
fn gaps_after(completions: &[Instant], from: Instant, until: Instant) -> Vec<Duration> {
    let start = completions.partition_point(|t| *t < from).saturating_sub(1);
    let end = completions.partition_point(|t| *t <= until);
    let window = &completions[start..end.max(start)];
    let mut gaps: Vec<Duration> = window.windows(2).map(|w| w[1] - w[0]).collect();
    // Writes that have not resumed by `until` are a gap still open.
    if let Some(last) = window.last() {
        gaps.push(until.saturating_duration_since(*last));
    }
    gaps.sort();
    gaps
}

fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Write-gap figures: (max after the fault, p99 after the fault, max before it).
pub fn write_gaps(
    writes: &[Sample],
    origin: Instant,
    fault: Instant,
    end: Instant,
) -> (f64, f64, f64) {
    let mut completions: Vec<Instant> = writes
        .iter()
        .filter(|s| s.outcome == Outcome::Ok)
        .map(|s| s.completed)
        .collect();
    completions.sort();
    let after = gaps_after(&completions, fault, end);
    let before = gaps_after(&completions, origin, fault);
    (
        quantile_ms(&after, 1.0),
        quantile_ms(&after, 0.99),
        quantile_ms(&before, 1.0),
    )
}

pub fn latency_ms(samples: &[Sample], q: f64) -> f64 {
    let mut ok: Vec<Duration> = samples
        .iter()
        .filter(|s| s.outcome == Outcome::Ok)
        .map(|s| s.completed - s.invoked)
        .collect();
    ok.sort();
    quantile_ms(&ok, q)
}

fn ms(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.0} ms"))
}

impl DrillReport {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(
            out,
            "# Drill `{}` against {} (run {}): {verdict}\n",
            self.scenario, self.target, self.run
        );
        let _ = writeln!(
            out,
            "Workload for {:.1} s. Timeline: `timeline-{}.svg`.\n",
            self.workload_s, self.run
        );
        let _ = writeln!(out, "## What happened\n");
        for mark in &self.marks {
            let _ = writeln!(out, "* {:>6.2} s — {}", mark.at_s, mark.what);
        }
        let _ = writeln!(out, "\n## What users saw\n");
        let _ = writeln!(out, "| figure | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| write unavailability (longest gap between successful writes after the fault) | {:.0} ms |",
            self.write_gap_max_ms
        );
        let _ = writeln!(
            out,
            "| p99 gap between successful writes after the fault | {:.0} ms |",
            self.write_gap_p99_ms
        );
        let _ = writeln!(
            out,
            "| longest gap before the fault | {:.0} ms |",
            self.steady_gap_max_ms
        );
        let _ = writeln!(
            out,
            "| new leader agreed after | {} |",
            ms(self.election_ms)
        );
        let _ = writeln!(
            out,
            "| customer writes ok / failed / unknown | {} / {} / {} |",
            self.writes.ok, self.writes.failed, self.writes.unknown
        );
        let _ = writeln!(
            out,
            "| write latency p50 / p99 | {:.1} / {:.1} ms |",
            self.write_latency_p50_ms, self.write_latency_p99_ms
        );
        let _ = writeln!(
            out,
            "| contacts ok / failed / unknown | {} / {} / {} |",
            self.contacts.ok, self.contacts.failed, self.contacts.unknown
        );
        for site in &self.sites {
            let _ = writeln!(
                out,
                "| site {}: switch to autonomy / reconciliation | {} / {} ({} offers made alone) |",
                site.site,
                ms(site.autonomy_switch_ms),
                ms(site.reconciliation_ms),
                site.local_offers
            );
        }
        let i = &self.invariants;
        let _ = writeln!(out, "\n## Invariants\n");
        let _ = writeln!(out, "| check | count |\n|---|---|");
        let _ = writeln!(out, "| acknowledged contacts or writes lost | {} |", i.lost);
        let _ = writeln!(out, "| duplicated | {} |", i.duplicated);
        let _ = writeln!(
            out,
            "| contacts assigned to two agents | {} |",
            i.double_assigned
        );
        let _ = writeln!(out, "| agents over capacity | {} |", i.over_capacity);
        let _ = writeln!(out, "| other violations | {} |", i.other);
        let _ = writeln!(
            out,
            "| acknowledged contacts never served | {} |",
            i.unserved
        );
        if !i.details.is_empty() {
            let _ = writeln!(out, "\nViolations:\n");
            for d in &i.details {
                let _ = writeln!(out, "* {d}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(out, "* {n}");
            }
        }
        out
    }
}

/// An SVG timeline: successful operations per second and their worst latency, in
/// quarter-second buckets, with the fault shaded and every mark labelled.
pub fn timeline_svg(
    title: &str,
    origin: Instant,
    end: Instant,
    series: &[(&str, &[Sample], &str)],
    marks: &[Mark],
    fault: (f64, f64),
) -> String {
    const BUCKET: f64 = 0.25;
    let (w, h, left, right, top) = (960.0, 520.0, 70.0, 20.0, 40.0);
    let panel = 190.0;
    let gap = 50.0;
    let span = end.saturating_duration_since(origin).as_secs_f64().max(1.0);
    let buckets = (span / BUCKET).ceil() as usize;
    let x = |t: f64| left + (t / span) * (w - left - right);
    let rel = |t: Instant| t.saturating_duration_since(origin).as_secs_f64();

    // Per series: ok per second, and worst latency (ms) per bucket.
    let mut rates: Vec<Vec<f64>> = Vec::new();
    let mut worst: Vec<Vec<f64>> = Vec::new();
    let mut errors: Vec<f64> = Vec::new();
    for (_, samples, _) in series {
        let mut rate = vec![0.0; buckets];
        let mut lat = vec![0.0f64; buckets];
        for s in samples.iter() {
            let b = ((rel(s.completed) / BUCKET) as usize).min(buckets - 1);
            if s.outcome == Outcome::Ok {
                rate[b] += 1.0 / BUCKET;
                lat[b] = lat[b].max((s.completed - s.invoked).as_secs_f64() * 1000.0);
            } else {
                errors.push(rel(s.completed));
            }
        }
        rates.push(rate);
        worst.push(lat);
    }
    let max_rate = rates.iter().flatten().copied().fold(1.0, f64::max) * 1.1;
    let max_lat = worst.iter().flatten().copied().fold(10.0, f64::max) * 1.1;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let panels = [
        (top, "successful operations / s", max_rate, &rates),
        (
            top + panel + gap,
            "worst latency in 250 ms (ms)",
            max_lat,
            &worst,
        ),
    ];
    let (f0, f1) = fault;
    for (y0, label, max, data) in panels {
        let y = |v: f64| y0 + panel - (v / max) * panel;
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{y0}" width="{:.1}" height="{panel}" fill="#fde2e1"/>"##,
            x(f0),
            (x(f1) - x(f0)).max(2.0)
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{left}" y="{y0}" width="{:.1}" height="{panel}" fill="none" stroke="#888"/>"##,
            w - left - right
        );
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="{:.1}">{label}</text>"#,
            y0 - 6.0
        );
        for tick in 0..=4 {
            let v = max * tick as f64 / 4.0;
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{v:.0}</text>"##,
                left - 6.0,
                y(v) + 4.0
            );
        }
        for ((name, _, colour), values) in series.iter().zip(data.iter()) {
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", x((i as f64 + 0.5) * BUCKET), y(*v)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"><title>{}</title></polyline>"#,
                points.join(" "),
                escape(name)
            );
        }
    }
    let bottom = top + 2.0 * panel + gap;
    for t in &errors {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#c00"/>"##,
            x(*t),
            bottom + 4.0,
            bottom + 12.0
        );
    }
    for (i, mark) in marks.iter().enumerate() {
        let mx = x(mark.at_s);
        let _ = writeln!(
            svg,
            r##"<line x1="{mx:.1}" x2="{mx:.1}" y1="{top}" y2="{bottom}" stroke="#b00" stroke-dasharray="4 3"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" fill="#b00">{}</text>"##,
            mx + 3.0,
            bottom + 28.0 + 14.0 * (i % 3) as f64,
            escape(&mark.what)
        );
    }
    let seconds = span.ceil() as usize;
    let step = (seconds / 12).max(1);
    for s in (0..=seconds).step_by(step) {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{s} s</text>"##,
            x(s as f64),
            top + panel + 16.0
        );
    }
    for (i, (name, _, colour)) in series.iter().enumerate() {
        let lx = w - right - 220.0;
        let ly = 16.0 + 14.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{ly}">{}</text>"#,
            lx + 18.0,
            ly - 4.0,
            ly - 4.0,
            lx + 24.0,
            escape(name)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{left}" y="{:.1}" fill="#c00">red ticks: operations that failed or ended without an answer</text>"##,
        h - 8.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Every event the checkers judged, one per line, for finding what broke an invariant.
pub fn history_text(streams: &[(String, Vec<pb::Event>)]) -> String {
    let mut out = String::new();
    for (name, events) in streams {
        let _ = writeln!(out, "--- {name}: {} events ---", events.len());
        for e in events {
            let kind = pb::EventKind::try_from(e.kind)
                .map(|k| k.as_str_name().to_owned())
                .unwrap_or_else(|_| e.kind.to_string());
            let _ = writeln!(
                out,
                "{}.{} at={} {kind} contact={} agents={} channel={} site={} state={} reason={}",
                e.index,
                e.ordinal,
                e.at_ms,
                e.contact_id,
                e.agent_ids.join(","),
                e.channel,
                e.site_id,
                e.contact_state,
                e.reason,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_at(origin: Instant, ms: u64) -> Sample {
        let t = origin + Duration::from_millis(ms);
        Sample {
            invoked: t - Duration::from_millis(2),
            completed: t,
            outcome: Outcome::Ok,
        }
    }

    #[test]
    fn the_write_gap_spans_the_fault_and_counts_a_gap_still_open_at_the_end() {
        let origin = Instant::now();
        let writes: Vec<Sample> = [0, 100, 200, 300, 1500, 1600]
            .map(|t| ok_at(origin, t))
            .into();
        let fault = origin + Duration::from_millis(350);
        let (max, _, before) =
            write_gaps(&writes, origin, fault, origin + Duration::from_millis(1700));
        assert_eq!(max.round(), 1200.0, "300 → 1500 spans the fault");
        assert_eq!(before.round(), 100.0);
        let (open, _, _) = write_gaps(&writes, origin, fault, origin + Duration::from_millis(4000));
        assert_eq!(open.round(), 2400.0, "nothing after 1600 until the end");
    }

    #[test]
    fn the_timeline_is_one_svg_with_the_fault_marked() {
        let origin = Instant::now();
        let writes: Vec<Sample> = (0..40).map(|i| ok_at(origin, i * 100)).collect();
        let marks = vec![Mark {
            at_s: 1.0,
            what: "killed node 1 <leader>".into(),
        }];
        let svg = timeline_svg(
            "t",
            origin,
            origin + Duration::from_secs(4),
            &[("writes", &writes, "#1f77b4")],
            &marks,
            (1.0, 2.0),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("killed node 1 &lt;leader&gt;"));
        assert!(svg.contains("<polyline"));
    }
}
