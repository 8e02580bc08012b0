//! `/metrics`: Raft, the contact center, the branches and gRPC, in the Prometheus text
//! format (version 0.0.4), encoded by the `prometheus-client` crate.
//!
//! Every figure already lives in the node's state or its [`Telemetry`](crate::Telemetry),
//! so a scrape takes one [`Snapshot`] and hands it to a fresh registry as constant
//! samples: nothing is counted twice, and a scrape never races the counters it reads.

use std::fmt;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::snapshot::{QueueFigures, Snapshot};
use super::telemetry::Histogram;
use super::Observed;

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A sample's labels, in the order they are printed.
type Labels = Vec<(&'static str, String)>;

/// The samples of one family, each under its own labels.
#[derive(Debug)]
struct Samples<M>(Vec<(Labels, M)>);

impl<M: TypedMetric> TypedMetric for Samples<M> {
    const TYPE: MetricType = M::TYPE;
}

impl<M: EncodeMetric + TypedMetric> EncodeMetric for Samples<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, metric) in &self.0 {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        // The encoder adds up each bucket's own count; ours are cumulative already.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(bound, cumulative)| {
                let own = cumulative.saturating_sub(below);
                below = *cumulative;
                (*bound, own)
            })
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One scrape's families, in the order they are registered. Names are written out whole,
/// as Prometheus shows them, so a name in a dashboard or an alert can be found here.
struct Page(Registry);

impl Page {
    fn register(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        // The registry ends every help text with a full stop, and names a counter's
        // family with its `_total` suffix itself.
        let help = help.strip_suffix('.').unwrap_or(help);
        let name = match metric.metric_type() {
            MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        self.0.register(name, help, metric);
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.register(name, help, ConstGauge::new(value));
    }

    fn gauges(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, f64)>) {
        let rows = rows.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
        self.register(name, help, Samples(rows.collect()));
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.register(name, help, ConstCounter::new(value));
    }

    fn counters(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, u64)>) {
        let rows = rows.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
        self.register(name, help, Samples(rows.collect()));
    }

    fn histograms(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Labels, Histogram)>,
    ) {
        self.register(name, help, Samples(rows.into_iter().collect()));
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail, and every family here encodes.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.0);
        text
    }
}

fn flag(on: bool) -> f64 {
    f64::from(u8::from(on))
}

/// Everything `node` reports, as the `/metrics` body.
pub fn render<N: Observed>(node: &N) -> String {
    let snap = Snapshot::of(node);
    let mut page = Page(Registry::default());
    this_node(&mut page, &snap);
    raft(&mut page, node, &snap);
    queues(&mut page, &snap);
    agents_and_offers(&mut page, node, &snap);
    branches(&mut page, node, &snap);
    grpc(&mut page, node);
    page.encode()
}

fn this_node(page: &mut Page, snap: &Snapshot) {
    let labels = vec![
        ("node_id", snap.node.id.to_string()),
        ("role", snap.node.role.to_owned()),
        ("site", snap.node.site.clone().unwrap_or_default()),
    ];
    page.gauges(
        "banyan_node_info",
        "This node: id, role (core or branch) and site.",
        [(labels, 1.0)],
    );
    page.gauge(
        "banyan_uptime_seconds",
        "Seconds since the node started.",
        snap.node.uptime_s,
    );
}

fn raft<N: Observed>(page: &mut Page, node: &N, snap: &Snapshot) {
    let c = &snap.cluster;
    page.gauge("banyan_raft_term", "Current Raft term.", c.term as f64);
    page.gauge(
        "banyan_raft_leader_id",
        "Node id of the leader this node knows, 0 when it knows none.",
        c.leader.unwrap_or(0) as f64,
    );
    page.gauge(
        "banyan_raft_is_leader",
        "1 on the leader.",
        flag(c.role == "leader"),
    );
    page.gauge(
        "banyan_raft_last_log_index",
        "Index of the last entry in this node's log.",
        c.last_log_index as f64,
    );
    if let Some(committed) = c.committed {
        page.gauge(
            "banyan_raft_commit_index",
            "Highest log index this node knows committed.",
            committed as f64,
        );
    }
    page.gauge(
        "banyan_raft_applied_index",
        "Highest log index applied to this node's state.",
        c.applied as f64,
    );
    page.gauge(
        "banyan_raft_snapshot_index",
        "Log index of the last snapshot, 0 before the first.",
        c.snapshot_index.unwrap_or(0) as f64,
    );
    page.gauge(
        "banyan_raft_purged_index",
        "Log index up to which entries were purged after a snapshot.",
        c.purged_index.unwrap_or(0) as f64,
    );
    page.counter(
        "banyan_raft_snapshots_built_total",
        "Snapshots this node built.",
        c.snapshots_built,
    );
    page.counter(
        "banyan_apply_inconsistencies_total",
        "Steps applying a command skipped because the replicated state was inconsistent \
         (an object its checks found was gone); zero in a healthy cluster.",
        c.apply_inconsistencies,
    );
    page.gauge(
        "banyan_finished_contacts_in_state",
        "Finished contacts still in the routing state; they leave after --retain-finished \
         and are read from the history store then.",
        c.finished_in_state as f64,
    );
    page.gauge(
        "banyan_request_log_bytes",
        "Encoded size of the idempotency keys and first answers the state remembers.",
        c.request_log.0 as f64,
    );
    page.counter(
        "banyan_request_log_evicted_early_total",
        "Idempotency records let go before their two minutes because the request log was \
         at its byte bound; a retry of one would apply anew.",
        c.request_log.1,
    );
    if let Some(purges) = node.log_purges() {
        page.counter(
            "banyan_raft_log_purges_total",
            "Purges of the Raft log after snapshots since the node started.",
            purges,
        );
    }
    page.gauges(
        "banyan_raft_replication_lag_entries",
        "Entries a member is behind the leader's log (reported by the leader).",
        c.members.iter().filter_map(|m| {
            let role = if m.voter { "voter" } else { "learner" };
            let labels = vec![("peer", m.id.to_string()), ("member", role.to_owned())];
            Some((labels, m.lag? as f64))
        }),
    );
    let voters = c.members.iter().filter(|m| m.voter).count();
    page.gauges(
        "banyan_raft_members",
        "Cluster members by kind.",
        [
            (vec![("member", "voter".to_owned())], voters as f64),
            (
                vec![("member", "learner".to_owned())],
                (c.members.len() - voters) as f64,
            ),
        ],
    );
}

/// A queue's figure as a gauge (absent before it means anything), or as a counter.
type QueueGauge = fn(&QueueFigures) -> Option<f64>;
type QueueCounter = fn(&QueueFigures) -> u64;

fn queue_labels(q: &QueueFigures) -> Labels {
    vec![("queue", q.id.clone())]
}

fn queues(page: &mut Page, snap: &Snapshot) {
    let gauges: [(&str, &str, QueueGauge); 7] = [
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
        (
            "banyan_queue_service_level_goal_ratio",
            "The queue's service-level goal.",
            |q| Some(f64::from(q.service_level_goal_pct) / 100.0),
        ),
    ];
    for (name, help, value) in gauges {
        let rows = snap
            .queues
            .iter()
            .filter_map(|q| Some((queue_labels(q), value(q)?)));
        page.gauges(name, help, rows);
    }
    let counters: [(&str, &str, QueueCounter); 6] = [
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
    for (name, help, value) in counters {
        let rows = snap.queues.iter().map(|q| (queue_labels(q), value(q)));
        page.counters(name, help, rows);
    }
}

fn agents_and_offers<N: Observed>(page: &mut Page, node: &N, snap: &Snapshot) {
    page.gauges(
        "banyan_agents",
        "Agents by state and site.",
        snap.agents.iter().flat_map(|site| {
            site.by_state().into_iter().map(|(state, n)| {
                let labels = vec![("site", site.site.clone()), ("state", state.to_owned())];
                (labels, n as f64)
            })
        }),
    );
    page.histograms(
        "banyan_time_to_offer_seconds",
        "Time from a contact entering its queue to its first offer, as this node applied it.",
        [(Labels::new(), node.telemetry().time_to_offer())],
    );
}

fn site_labels(site: &str) -> Labels {
    vec![("site", site.to_owned())]
}

fn branches<N: Observed>(page: &mut Page, node: &N, snap: &Snapshot) {
    page.gauges(
        "banyan_branch_mode",
        "1 for the mode each site's branch is in: through_core, alone or handing_over.",
        snap.branches.iter().flat_map(|b| {
            [
                ("through the core", "through_core"),
                ("alone", "alone"),
                ("handing over", "handing_over"),
            ]
            .map(|(mode, label)| {
                let labels = vec![("site", b.site.clone()), ("mode", label.to_owned())];
                (labels, flag(b.mode == mode))
            })
        }),
    );
    page.gauges(
        "banyan_site_lease_lapsed",
        "1 when the core fences a site (its branch's lease ran out).",
        snap.branches
            .iter()
            .map(|b| (site_labels(&b.site), flag(b.lease == "lapsed"))),
    );
    page.gauges(
        "banyan_branch_journal_backlog",
        "Commands a branch wrote alone that the core has not applied yet.",
        snap.branches
            .iter()
            .map(|b| (site_labels(&b.site), b.journal_backlog as f64)),
    );
    page.gauges(
        "banyan_branch_import_refused",
        "1 while the core's answer to the site's last import is a refusal: the branch keeps \
         its journal and the site's work since the outage is not at the core.",
        snap.branches
            .iter()
            .map(|b| (site_labels(&b.site), flag(b.import_refused.is_some()))),
    );
    page.gauges(
        "banyan_branch_clock_offset_seconds",
        "How far ahead of the cluster clock the site's branch clock ran at its last lease \
         renewal (negative: behind, network delay included).",
        snap.branches
            .iter()
            .filter_map(|b| Some((site_labels(&b.site), b.clock_offset_s?))),
    );
    let clocks = node.peer_clocks();
    page.gauges(
        "banyan_peer_clock_offset_seconds",
        "A peer's clock less this node's, from their last Raft round trip (the leader \
         measures every member); voters refuse a peer more than 0.25 s ahead.",
        clocks.iter().map(|(peer, clock)| {
            let labels = vec![("peer", peer.to_string())];
            (labels, clock.offset_ms as f64 / 1000.0)
        }),
    );
    page.gauges(
        "banyan_peer_clock_past_budget",
        "1 while a peer's clock is off this node's by more than the cluster's 0.25 s \
         budget, allowing for the round trip.",
        clocks
            .iter()
            .map(|(peer, clock)| (vec![("peer", peer.to_string())], flag(clock.past_budget()))),
    );
    if let Some(own) = node.own_branch() {
        page.gauge(
            "banyan_branch_outbox_backlog",
            "Self-served contacts this branch has not delivered to the core yet.",
            own.outbox_backlog as f64,
        );
        page.gauge(
            "banyan_branch_seconds_since_core_answered",
            "Seconds since the core last accepted this branch's lease renewal (-1: never).",
            own.since_core_answered.map_or(-1.0, |d| d.as_secs_f64()),
        );
    }
}

fn grpc<N: Observed>(page: &mut Page, node: &N) {
    let grpc = node.telemetry().grpc();
    let method = |m: &String| vec![("method", m.clone())];
    page.counters(
        "banyan_grpc_requests_total",
        "gRPC requests ended, by method and the status code they ended with (a stream counts when it ends).",
        grpc.iter().flat_map(|(m, stats)| {
            stats.by_code.iter().map(move |(code, n)| {
                let code = format!("{:?}", tonic::Code::from(*code));
                (vec![("method", m.clone()), ("code", code)], *n)
            })
        }),
    );
    page.gauges(
        "banyan_grpc_in_flight",
        "gRPC requests started and not yet ended: for streams, the sessions open now.",
        grpc.iter()
            .map(|(m, stats)| (method(m), stats.in_flight as f64)),
    );
    page.counters(
        "banyan_grpc_errors_total",
        "gRPC requests answered with a status other than OK.",
        grpc.iter().map(|(m, stats)| {
            let errors = stats
                .by_code
                .iter()
                .filter(|(code, _)| **code != 0)
                .map(|(_, n)| n)
                .sum();
            (method(m), errors)
        }),
    );
    page.histograms(
        "banyan_grpc_request_duration_seconds",
        "Time from a gRPC request to its status: a unary call's answer, a stream's end.",
        grpc.iter()
            .map(|(m, stats)| (method(m), stats.latency.clone())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_labels_and_keep_the_exported_names() {
        let mut page = Page(Registry::default());
        page.gauges("m", "A gauge.", [(vec![("q", "a\"b".to_owned())], 3.0)]);
        page.gauge("g", "Plain.", 0.25);
        page.counter("c_total", "A counter.", 7);
        let text = page.encode();
        assert!(text.contains("m{q=\"a\\\"b\"} 3"), "{text}");
        assert!(text.contains("\ng 0.25\n"), "{text}");
        assert!(text.contains("# HELP c_total A counter.\n"), "{text}");
        assert!(text.contains("# TYPE c_total counter\n"), "{text}");
        assert!(text.contains("\nc_total 7\n"), "{text}");
    }

    #[test]
    fn a_histogram_prints_cumulative_buckets_up_to_inf() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for seconds in [0.05, 0.5, 0.7, 3.0] {
            h.observe(seconds);
        }
        let mut page = Page(Registry::default());
        page.histograms("h", "A histogram.", [(vec![("method", "x".to_owned())], h)]);
        let text = page.encode();
        for line in [
            "h_bucket{method=\"x\",le=\"0.1\"} 1\n",
            "h_bucket{method=\"x\",le=\"1\"} 3\n",
            "h_bucket{method=\"x\",le=\"+Inf\"} 4\n",
            "h_count{method=\"x\"} 4\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.contains("h_sum{method=\"x\"} 4.25"), "{text}");
    }
}
