//! `/metrics` in the Prometheus text format, version 0.0.4: Raft, the contact center, the
//! branch, and gRPC.

use std::fmt::Write as _;

use super::snapshot::{QueueFigures, Snapshot};
use super::telemetry::Histogram;
use super::Observed;

/// One metric family at a time: `# HELP`, `# TYPE`, then its samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in h.bounds.iter().zip(&h.counts) {
            let le = number(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, *count as f64);
        }
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        self.sample(&bucket, &inf, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// A queue's figure as a gauge (absent before it means anything), or as a counter.
type QueueGauge = fn(&QueueFigures) -> Option<f64>;
type QueueCounter = fn(&QueueFigures) -> u64;

/// Everything `node` reports, as the `/metrics` body.
pub fn render<N: Observed>(node: &N) -> String {
    let snap = Snapshot::of(node);
    let mut out = Out(String::new());
    let id = snap.node.id.to_string();
    let site = snap.node.site.clone().unwrap_or_default();

    out.family(
        "banyan_node_info",
        "gauge",
        "This node: id, role (core or branch) and site.",
    );
    out.sample(
        "banyan_node_info",
        &[("node_id", &id), ("role", snap.node.role), ("site", &site)],
        1.0,
    );
    out.gauge(
        "banyan_uptime_seconds",
        "Seconds since the node started.",
        snap.node.uptime_s,
    );

    // Raft.
    let c = &snap.cluster;
    out.gauge("banyan_raft_term", "Current Raft term.", c.term as f64);
    out.gauge(
        "banyan_raft_leader_id",
        "Node id of the leader this node knows, 0 when it knows none.",
        c.leader.unwrap_or(0) as f64,
    );
    out.gauge(
        "banyan_raft_is_leader",
        "1 on the leader.",
        f64::from(u8::from(c.role == "leader")),
    );
    out.gauge(
        "banyan_raft_last_log_index",
        "Index of the last entry in this node's log.",
        c.last_log_index as f64,
    );
    if let Some(committed) = c.committed {
        out.gauge(
            "banyan_raft_commit_index",
            "Highest log index this node knows committed.",
            committed as f64,
        );
    }
    out.gauge(
        "banyan_raft_applied_index",
        "Highest log index applied to this node's state.",
        c.applied as f64,
    );
    out.gauge(
        "banyan_raft_snapshot_index",
        "Log index of the last snapshot, 0 before the first.",
        c.snapshot_index.unwrap_or(0) as f64,
    );
    out.gauge(
        "banyan_raft_purged_index",
        "Log index up to which entries were purged after a snapshot.",
        c.purged_index.unwrap_or(0) as f64,
    );
    out.family(
        "banyan_raft_snapshots_built_total",
        "counter",
        "Snapshots this node built.",
    );
    out.sample(
        "banyan_raft_snapshots_built_total",
        &[],
        c.snapshots_built as f64,
    );
    out.family(
        "banyan_apply_inconsistencies_total",
        "counter",
        "Steps applying a command skipped because the replicated state was inconsistent \
         (an object its checks found was gone); zero in a healthy cluster.",
    );
    out.sample(
        "banyan_apply_inconsistencies_total",
        &[],
        c.apply_inconsistencies as f64,
    );
    if let Some(purges) = node.log_purges() {
        out.family(
            "banyan_raft_log_purges_total",
            "counter",
            "Purges of the Raft log after snapshots since the node started.",
        );
        out.sample("banyan_raft_log_purges_total", &[], purges as f64);
    }
    out.family(
        "banyan_raft_replication_lag_entries",
        "gauge",
        "Entries a member is behind the leader's log (reported by the leader).",
    );
    for m in &c.members {
        if let Some(lag) = m.lag {
            let peer = m.id.to_string();
            let role = if m.voter { "voter" } else { "learner" };
            out.sample(
                "banyan_raft_replication_lag_entries",
                &[("peer", &peer), ("member", role)],
                lag as f64,
            );
        }
    }
    out.family("banyan_raft_members", "gauge", "Cluster members by kind.");
    let voters = c.members.iter().filter(|m| m.voter).count();
    out.sample("banyan_raft_members", &[("member", "voter")], voters as f64);
    out.sample(
        "banyan_raft_members",
        &[("member", "learner")],
        (c.members.len() - voters) as f64,
    );

    // The contact center.
    let queue_gauges: [(&str, &str, QueueGauge); 6] = [
        (
            "banyan_queue_waiting",
            "Contacts waiting in the queue.",
            |q| Some(q.waiting as f64),
        ),
        (
            "banyan_queue_longest_wait_seconds",
            "How long the longest-waiting contact has waited.",
            |q| Some(q.longest_wait_ms as f64 / 1000.0),
        ),
        (
            "banyan_queue_service_level_ratio",
            "Answered within target over answered plus abandoned, since the queue was created.",
            |q| q.service_level_pct.map(|p| p / 100.0),
        ),
        (
            "banyan_queue_abandonment_ratio",
            "Abandoned over answered plus abandoned.",
            |q| q.abandonment_pct.map(|p| p / 100.0),
        ),
        (
            "banyan_queue_asa_seconds",
            "Average speed of answer.",
            |q| q.asa_ms.map(|ms| ms as f64 / 1000.0),
        ),
        ("banyan_queue_aht_seconds", "Average handle time.", |q| {
            q.aht_ms.map(|ms| ms as f64 / 1000.0)
        }),
    ];
    for (name, help, value) in queue_gauges {
        out.family(name, "gauge", help);
        for q in &snap.queues {
            if let Some(v) = value(q) {
                out.sample(name, &[("queue", &q.id)], v);
            }
        }
    }
    out.family(
        "banyan_queue_service_level_goal_ratio",
        "gauge",
        "The queue's service-level goal.",
    );
    for q in &snap.queues {
        out.sample(
            "banyan_queue_service_level_goal_ratio",
            &[("queue", &q.id)],
            f64::from(q.service_level_goal_pct) / 100.0,
        );
    }
    let queue_counters: [(&str, &str, QueueCounter); 6] = [
        (
            "banyan_queue_entered_total",
            "Contacts that entered the queue.",
            |q| q.entered,
        ),
        (
            "banyan_queue_answered_total",
            "Contacts answered by an agent.",
            |q| q.answered,
        ),
        (
            "banyan_queue_abandoned_total",
            "Contacts abandoned while waiting.",
            |q| q.abandoned,
        ),
        (
            "banyan_queue_handled_total",
            "Contacts completed by an agent.",
            |q| q.handled,
        ),
        ("banyan_queue_offers_total", "Offers made to agents.", |q| {
            q.offers
        }),
        (
            "banyan_queue_self_served_total",
            "Contacts answered by self-service at a branch.",
            |q| q.self_served,
        ),
    ];
    for (name, help, value) in queue_counters {
        out.family(name, "counter", help);
        for q in &snap.queues {
            out.sample(name, &[("queue", &q.id)], value(q) as f64);
        }
    }
    out.family("banyan_agents", "gauge", "Agents by state and site.");
    for site in &snap.agents {
        for (state, n) in site.by_state() {
            out.sample(
                "banyan_agents",
                &[("site", &site.site), ("state", state)],
                n as f64,
            );
        }
    }
    out.family(
        "banyan_time_to_offer_seconds",
        "histogram",
        "Time from a contact entering its queue to its first offer, as this node applied it.",
    );
    out.histogram(
        "banyan_time_to_offer_seconds",
        &[],
        &node.telemetry().time_to_offer(),
    );

    // Branches.
    out.family(
        "banyan_branch_mode",
        "gauge",
        "1 for the mode each site's branch is in: through_core, alone or handing_over.",
    );
    for b in &snap.branches {
        for (mode, label) in [
            ("through the core", "through_core"),
            ("alone", "alone"),
            ("handing over", "handing_over"),
        ] {
            out.sample(
                "banyan_branch_mode",
                &[("site", &b.site), ("mode", label)],
                f64::from(u8::from(b.mode == mode)),
            );
        }
    }
    out.family(
        "banyan_site_lease_lapsed",
        "gauge",
        "1 when the core fences a site (its branch's lease ran out).",
    );
    for b in &snap.branches {
        out.sample(
            "banyan_site_lease_lapsed",
            &[("site", &b.site)],
            f64::from(u8::from(b.lease == "lapsed")),
        );
    }
    out.family(
        "banyan_branch_journal_backlog",
        "gauge",
        "Commands a branch wrote alone that the core has not applied yet.",
    );
    for b in &snap.branches {
        out.sample(
            "banyan_branch_journal_backlog",
            &[("site", &b.site)],
            b.journal_backlog as f64,
        );
    }
    out.family(
        "banyan_branch_import_refused",
        "gauge",
        "1 while the core's answer to the site's last import is a refusal: the branch keeps \
         its journal and the site's work since the outage is not at the core.",
    );
    for b in &snap.branches {
        out.sample(
            "banyan_branch_import_refused",
            &[("site", &b.site)],
            f64::from(u8::from(b.import_refused.is_some())),
        );
    }
    out.family(
        "banyan_branch_clock_offset_seconds",
        "gauge",
        "How far ahead of the cluster clock the site's branch clock ran at its last lease \
         renewal (negative: behind, network delay included).",
    );
    for b in &snap.branches {
        if let Some(offset) = b.clock_offset_s {
            out.sample(
                "banyan_branch_clock_offset_seconds",
                &[("site", &b.site)],
                offset,
            );
        }
    }
    let clocks = node.peer_clocks();
    out.family(
        "banyan_peer_clock_offset_seconds",
        "gauge",
        "A peer's clock less this node's, from their last Raft round trip (the leader \
         measures every member); voters refuse a peer more than 0.25 s ahead.",
    );
    for (peer, clock) in &clocks {
        out.sample(
            "banyan_peer_clock_offset_seconds",
            &[("peer", &peer.to_string())],
            clock.offset_ms as f64 / 1000.0,
        );
    }
    out.family(
        "banyan_peer_clock_past_budget",
        "gauge",
        "1 while a peer's clock is off this node's by more than the cluster's 0.25 s \
         budget, allowing for the round trip.",
    );
    for (peer, clock) in &clocks {
        out.sample(
            "banyan_peer_clock_past_budget",
            &[("peer", &peer.to_string())],
            f64::from(u8::from(clock.past_budget())),
        );
    }
    if let Some(own) = node.own_branch() {
        out.gauge(
            "banyan_branch_outbox_backlog",
            "Self-served contacts this branch has not delivered to the core yet.",
            own.outbox_backlog as f64,
        );
        out.gauge(
            "banyan_branch_seconds_since_core_answered",
            "Seconds since the core last accepted this branch's lease renewal (-1: never).",
            own.since_core_answered.map_or(-1.0, |d| d.as_secs_f64()),
        );
    }

    // gRPC.
    let grpc = node.telemetry().grpc();
    out.family(
        "banyan_grpc_requests_total",
        "counter",
        "gRPC requests ended, by method and the status code they ended with (a stream counts when it ends).",
    );
    for (method, stats) in &grpc {
        for (code, n) in &stats.by_code {
            let code = format!("{:?}", tonic::Code::from(*code));
            out.sample(
                "banyan_grpc_requests_total",
                &[("method", method), ("code", &code)],
                *n as f64,
            );
        }
    }
    out.family(
        "banyan_grpc_in_flight",
        "gauge",
        "gRPC requests started and not yet ended: for streams, the sessions open now.",
    );
    for (method, stats) in &grpc {
        out.sample(
            "banyan_grpc_in_flight",
            &[("method", method)],
            stats.in_flight as f64,
        );
    }
    out.family(
        "banyan_grpc_errors_total",
        "counter",
        "gRPC requests answered with a status other than OK.",
    );
    for (method, stats) in &grpc {
        let errors: u64 = stats
            .by_code
            .iter()
            .filter(|(code, _)| **code != 0)
            .map(|(_, n)| n)
            .sum();
        out.sample(
            "banyan_grpc_errors_total",
            &[("method", method)],
            errors as f64,
        );
    }
    out.family(
        "banyan_grpc_request_duration_seconds",
        "histogram",
        "Time from a gRPC request to its status: a unary call's answer, a stream's end.",
    );
    for (method, stats) in &grpc {
        out.histogram(
            "banyan_grpc_request_duration_seconds",
            &[("method", method)],
            &stats.latency,
        );
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_labels_and_print_integers_plainly() {
        let mut out = Out(String::new());
        out.sample("m", &[("q", "a\"b")], 3.0);
        out.sample("m", &[], 0.25);
        out.sample("m", &[], f64::INFINITY);
        assert_eq!(out.0, "m{q=\"a\\\"b\"} 3\nm 0.25\nm +Inf\n");
    }
}
