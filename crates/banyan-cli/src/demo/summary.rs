//! What the demo prints: one screen every few seconds while the day runs, and the day's
//! figures with the checker's verdict at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use banyan_client::Client;
use banyan_harness::{ContactReport, Outcome};
use banyan_observe::Snapshot;
use banyan_proto::v1::{self as pb, ContactState, ReadConsistency};

use super::world::Ops;

fn secs(ms: Option<i64>) -> String {
    ms.map_or("–".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

fn pct(p: Option<f64>) -> String {
    p.map_or("–".into(), |p| format!("{p:.1} %"))
}

fn queue_table(out: &mut String, s: &Snapshot) {
    let _ = writeln!(
        out,
        "  {:<18} {:>7} {:>8} {:>15} {:>7} {:>7} {:>9} {:>8}",
        "queue", "waiting", "longest", "service level", "ASA", "AHT", "abandoned", "answered"
    );
    for q in &s.queues {
        let _ = writeln!(
            out,
            "  {:<18} {:>7} {:>8} {:>15} {:>7} {:>7} {:>9} {:>8}",
            q.name,
            q.waiting,
            if q.waiting > 0 {
                secs(Some(q.longest_wait_ms))
            } else {
                "–".into()
            },
            format!(
                "{} / {} %",
                pct(q.service_level_pct),
                q.service_level_goal_pct
            ),
            secs(q.asa_ms),
            secs(q.aht_ms),
            pct(q.abandonment_pct),
            q.answered,
        );
    }
}

/// The live one-screen summary.
pub fn live(
    elapsed: Duration,
    picture: Option<&Snapshot>,
    ops: &Ops,
    chaos: &[(Duration, String)],
    terminal: bool,
) {
    let mut out = String::new();
    if terminal {
        out.push_str("\x1b[2J\x1b[H");
    }
    let (sent, ok) = {
        let ops = ops.lock().unwrap_or_else(|p| p.into_inner());
        (
            ops.len(),
            ops.iter().filter(|o| o.outcome == Outcome::Ok).count(),
        )
    };
    let _ = writeln!(
        out,
        "[{:>5.1} s] {sent} callers, {ok} contacts accepted",
        elapsed.as_secs_f64()
    );
    match picture {
        Some(s) => {
            queue_table(&mut out, s);
            let agents: Vec<String> = s
                .agents
                .iter()
                .map(|a| {
                    format!(
                        "{}: {} available, {} on contact, {} wrap-up, {} break",
                        a.site, a.available, a.on_contact, a.wrap_up, a.on_break
                    )
                })
                .collect();
            let _ = writeln!(out, "  agents     {}", agents.join(" | "));
            let branches: Vec<String> = s
                .branches
                .iter()
                .map(|b| format!("{} {} ({})", b.site, b.mode, b.lease))
                .collect();
            let _ = writeln!(
                out,
                "  cluster    leader {} term {} applied {} | branches: {}",
                s.cluster
                    .leader
                    .map_or("none".into(), |l| format!("node {l}")),
                s.cluster.term,
                s.cluster.applied,
                branches.join(", ")
            );
        }
        None => out.push_str("  (no core node answers right now)\n"),
    }
    if terminal {
        for (at, what) in chaos {
            let _ = writeln!(out, "  [{:>5.1} s] {what}", at.as_secs_f64());
        }
    }
    print!("{out}");
}

/// Waits until no contact waits or is with an agent, or `timeout`; says whether it got
/// there.
pub async fn wait_settled(core: &Client, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        let open = core
            .all_contacts(ReadConsistency::Linearizable)
            .await
            .map(|all| {
                all.iter()
                    .filter(|c| {
                        matches!(
                            ContactState::try_from(c.state),
                            Ok(ContactState::Queued
                                | ContactState::Offered
                                | ContactState::Connected
                                | ContactState::WrapUp)
                        )
                    })
                    .count()
            });
        if open.is_ok_and(|n| n == 0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

fn state_name(state: i32) -> String {
    ContactState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("CONTACT_STATE_")
                .to_lowercase()
                .replace('_', " ")
        })
        .unwrap_or_else(|_| state.to_string())
}

/// Milliseconds from entering the queue to the first offer, for every offered contact.
fn times_to_offer(contacts: &[pb::Contact]) -> Vec<i64> {
    let mut times: Vec<i64> = contacts
        .iter()
        .filter_map(|c| {
            let offered = c
                .timeline
                .iter()
                .find(|t| t.state == ContactState::Offered as i32)?;
            Some((offered.at_ms - c.enqueued_ms).max(0))
        })
        .collect();
    times.sort_unstable();
    times
}

fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The day's figures and the checker's verdict.
pub fn final_report(
    contacts: &[pb::Contact],
    picture: Option<&Snapshot>,
    ops: &[banyan_harness::ContactOp],
    report: &ContactReport,
    settled: bool,
    chaos: &[(Duration, String)],
) {
    let mut out = String::from("\n== The day in figures ==\n");
    let mut by_outcome: BTreeMap<String, usize> = BTreeMap::new();
    for c in contacts {
        *by_outcome.entry(state_name(c.state)).or_default() += 1;
    }
    let outcomes: Vec<String> = by_outcome.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(
        out,
        "contacts: {} ({})",
        contacts.len(),
        outcomes.join(", ")
    );
    if !settled {
        let _ = writeln!(
            out,
            "  (some contacts were still open when the demo stopped waiting)"
        );
    }
    if let Some(s) = picture {
        let answered: u64 = s.queues.iter().map(|q| q.answered).sum();
        let abandoned: u64 = s.queues.iter().map(|q| q.abandoned).sum();
        let handled: u64 = s.queues.iter().map(|q| q.handled).sum();
        let weigh = |f: &dyn Fn(&banyan_observe::QueueFigures) -> Option<(f64, u64)>| {
            let (sum, n) = s
                .queues
                .iter()
                .filter_map(f)
                .fold((0.0, 0u64), |(s, n), (v, w)| (s + v * w as f64, n + w));
            (n > 0).then(|| sum / n as f64)
        };
        let sl = weigh(&|q| q.service_level_pct.map(|p| (p, q.answered + q.abandoned)));
        let asa = weigh(&|q| q.asa_ms.map(|ms| (ms as f64, q.answered)));
        let aht = weigh(&|q| q.aht_ms.map(|ms| (ms as f64, q.handled)));
        let _ = writeln!(
            out,
            "service level {} · ASA {} · AHT {} · abandonment {} ({answered} answered, {abandoned} abandoned, {handled} handled)",
            pct(sl),
            secs(asa.map(|v| v as i64)),
            secs(aht.map(|v| v as i64)),
            pct((answered + abandoned > 0)
                .then(|| 100.0 * abandoned as f64 / (answered + abandoned) as f64)),
        );
        queue_table(&mut out, s);
    }
    let times = times_to_offer(contacts);
    let _ = writeln!(
        out,
        "time to offer: p50 {} · p99 {} (over {} offered contacts)",
        secs(quantile(&times, 0.5)),
        secs(quantile(&times, 0.99)),
        times.len()
    );
    let unknown = ops.iter().filter(|o| o.outcome == Outcome::Unknown).count();
    let refused = ops.iter().filter(|o| o.outcome == Outcome::Failed).count();
    let _ = writeln!(
        out,
        "callers: {} sent, {} acknowledged, {refused} refused, {unknown} without an answer",
        ops.len(),
        ops.len() - refused - unknown
    );
    for (at, what) in chaos {
        let _ = writeln!(out, "  [{:>5.1} s] {what}", at.as_secs_f64());
    }
    let lost = report
        .violations
        .iter()
        .filter(|v| matches!(v, banyan_harness::ContactViolation::Lost { .. }))
        .count();
    let double = report
        .violations
        .iter()
        .filter(|v| matches!(v, banyan_harness::ContactViolation::DoubleAssigned { .. }))
        .count();
    let _ = writeln!(
        out,
        "checker: {lost} lost, {double} double-assigned, {} violations in all over {} offers and {} connections on 5 replicas",
        report.violations.len(),
        report.offers,
        report.connected
    );
    for v in report.violations.iter().take(10) {
        let _ = writeln!(out, "  {v}");
    }
    print!("{out}");
}
