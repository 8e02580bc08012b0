//! `banyan ctl status`: every member's own view of the log, the leader's view of its lag
//! and clock, and each site's lease and branch: what an operator reads first when
//! something is wrong.

use std::time::Duration;

use anyhow::{bail, Context};
use banyan_client::{Client, RetryPolicy};
use banyan_proto::v1::{BranchMode, ClusterStatus, Role, SiteMode};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;

/// Prints the cluster's status; each member is asked on its own, so one that is down
/// shows as `unreachable` instead of failing the command.
pub async fn status(client: &Client, timeout: Duration, json: bool) -> anyhow::Result<()> {
    let report = collect_status(client, timeout).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_status(&report);
    }
    Ok(())
}

/// One member as `ctl status` reports it: its own view, plus the leader's view of its lag.
#[derive(Debug, Serialize)]
pub struct NodeRow {
    pub id: u64,
    pub addr: String,
    pub voter: bool,
    /// `leader`, `follower`, `candidate`, `learner`, `shutdown` or `unreachable`.
    pub role: String,
    pub term: Option<u64>,
    pub leader: Option<u64>,
    pub last_log: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    /// Entries behind the leader's last log, as the leader sees it.
    pub replication_lag: Option<u64>,
    /// The node's clock less the leader's, as the leader measured it, in ms.
    pub clock_offset_ms: Option<i64>,
    /// Off the leader's past the cluster's budget: voters refuse it if it runs ahead.
    pub clock_past_budget: bool,
    /// The data directory the node runs on, as it reports it.
    pub incarnation: Option<String>,
    /// The data directory the cluster registered for this node id, when it differs: the
    /// node's directory was wiped or replaced and its peers refuse it.
    pub registered_elsewhere: Option<String>,
    pub error: Option<String>,
}

/// A site and its branch as the leader sees them.
#[derive(Debug, Serialize)]
pub struct SiteRow {
    pub site: String,
    /// `core` (no lease), `leased` or `lapsed`.
    pub mode: String,
    pub branch: Option<u64>,
    /// What the branch reported: `connected`, `autonomous` or `reconciling`.
    pub branch_mode: Option<String>,
    pub replication_lag: Option<u64>,
    pub journal_backlog: u64,
    /// Seconds since the core applied the branch's last renewal.
    pub last_contact_s: Option<f64>,
    pub lease_left_s: Option<f64>,
    pub agents: u32,
    /// Why the core refused the site's last import (the branch keeps its journal).
    pub import_refused: Option<String>,
    /// The branch's clock offset to the cluster clock at its last renewal, in ms.
    pub clock_offset_ms: Option<i64>,
    /// Past the cluster's budget: its renewals are refused.
    pub clock_offset_past_budget: bool,
}

/// The whole of `ctl status`: the `--json` output as it is, and what the tables show.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub answered_by: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub voters: usize,
    pub members: usize,
    pub nodes: Vec<NodeRow>,
    pub sites: Vec<SiteRow>,
    /// The answering node runs `--insecure`: no TLS, no credentials checked.
    pub insecure: bool,
    /// The cluster's id (empty until its first leader named it).
    pub cluster_id: String,
}

fn site_rows(view: &ClusterStatus) -> Vec<SiteRow> {
    let enum_name = |name: &str, prefix: &str| name.trim_start_matches(prefix).to_lowercase();
    let now = view.cluster_clock_ms;
    let secs = |ms: i64| ms as f64 / 1000.0;
    view.sites
        .iter()
        .map(|s| SiteRow {
            site: s.site_id.clone(),
            mode: enum_name(
                SiteMode::try_from(s.mode).map_or("unknown", |m| m.as_str_name()),
                "SITE_MODE_",
            ),
            branch: (s.branch_node_id != 0).then_some(s.branch_node_id),
            branch_mode: (s.branch_node_id != 0).then(|| {
                enum_name(
                    BranchMode::try_from(s.branch_mode).map_or("unknown", |m| m.as_str_name()),
                    "BRANCH_MODE_",
                )
            }),
            replication_lag: s.lag_known.then_some(s.replication_lag),
            journal_backlog: s.journal_backlog,
            last_contact_s: (s.last_renewal_ms != 0).then(|| secs(now - s.last_renewal_ms)),
            lease_left_s: (s.lease_expires_ms != 0).then(|| secs(s.lease_expires_ms - now)),
            agents: s.agents,
            import_refused: (!s.import_refused.is_empty()).then(|| s.import_refused.clone()),
            clock_offset_ms: s.clock_offset_known.then_some(s.clock_offset_ms),
            clock_offset_past_budget: s.clock_offset_past_budget,
        })
        .collect()
}

fn role_name(role: i32) -> String {
    Role::try_from(role)
        .map_or("unknown", |r| r.as_str_name())
        .trim_start_matches("ROLE_")
        .to_lowercase()
}

async fn collect_status(client: &Client, timeout: Duration) -> anyhow::Result<StatusReport> {
    let first = client.status().await.map_err(|s| {
        anyhow::anyhow!("status from {}: {}", client.current_endpoint(), s.message())
    })?;
    if first.nodes.is_empty() {
        bail!(
            "node {} is not part of an initialized cluster yet",
            first.node_id
        );
    }
    let per_node = first.nodes.iter().map(|n| {
        let addr = n.addr.clone();
        async move {
            let one = Client::new(
                [&addr],
                RetryPolicy::once(timeout.min(Duration::from_secs(2))),
                client.security(),
            )
            .context("endpoint")?;
            one.status()
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
        }
    });
    let views: Vec<anyhow::Result<ClusterStatus>> = futures::future::join_all(per_node).await;
    let leader_view = views
        .iter()
        .filter_map(|v| v.as_ref().ok())
        .find(|v| v.role == Role::Leader as i32);
    let leader = leader_view
        .map(|v| v.node_id)
        .or((first.leader_id != 0).then_some(first.leader_id));
    let nodes = first
        .nodes
        .iter()
        .zip(&views)
        .map(|(member, view)| {
            let seen_by_leader =
                leader_view.and_then(|l| l.nodes.iter().find(|n| n.id == member.id));
            let lag = seen_by_leader
                .filter(|n| n.lag_known)
                .map(|n| n.replication_lag);
            let registered = seen_by_leader
                .map(|n| n.incarnation.clone())
                .filter(|r| !r.is_empty());
            let clock = seen_by_leader.filter(|n| n.clock_offset_known);
            let clock_offset_ms = clock.map(|n| n.clock_offset_ms);
            let clock_past_budget = clock.is_some_and(|n| n.clock_past_budget);
            match view {
                Ok(v) => NodeRow {
                    id: member.id,
                    addr: member.addr.clone(),
                    voter: member.voter,
                    role: role_name(v.role),
                    term: Some(v.term),
                    leader: (v.leader_id != 0).then_some(v.leader_id),
                    last_log: Some(v.last_log_index),
                    committed: Some(v.committed_index),
                    applied: Some(v.applied_index),
                    snapshot: Some(v.snapshot_index),
                    replication_lag: lag,
                    clock_offset_ms,
                    clock_past_budget,
                    incarnation: Some(v.incarnation.clone()).filter(|i| !i.is_empty()),
                    registered_elsewhere: registered
                        .filter(|r| !v.incarnation.is_empty() && *r != v.incarnation),
                    error: None,
                },
                Err(e) => NodeRow {
                    id: member.id,
                    addr: member.addr.clone(),
                    voter: member.voter,
                    role: "unreachable".into(),
                    term: None,
                    leader: None,
                    last_log: None,
                    committed: None,
                    applied: None,
                    snapshot: None,
                    replication_lag: lag,
                    clock_offset_ms,
                    clock_past_budget,
                    incarnation: None,
                    registered_elsewhere: None,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect();
    let sites = site_rows(leader_view.unwrap_or(&first));
    Ok(StatusReport {
        sites,
        answered_by: first.node_id,
        leader,
        term: leader_view.map_or(first.term, |l| l.term),
        voters: first.nodes.iter().filter(|n| n.voter).count(),
        members: first.nodes.len(),
        nodes,
        insecure: first.insecure,
        cluster_id: leader_view.map_or(first.cluster_id.clone(), |l| l.cluster_id.clone()),
    })
}

fn print_status(report: &StatusReport) {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "node",
        "addr",
        "member",
        "role",
        "term",
        "leader",
        "last log",
        "committed",
        "applied",
        "lag",
        "clock",
    ]);
    for n in &report.nodes {
        table.add_row([
            n.id.to_string(),
            n.addr.clone(),
            if n.voter { "voter" } else { "learner" }.to_owned(),
            n.role.clone(),
            opt(n.term),
            opt(n.leader),
            opt(n.last_log),
            opt(n.committed),
            opt(n.applied),
            opt(n.replication_lag),
            n.clock_offset_ms
                .map_or("-".to_owned(), |ms| format!("{ms:+} ms")),
        ]);
    }
    println!("{table}");
    if !report.cluster_id.is_empty() {
        println!("cluster {}", report.cluster_id);
    }
    for n in &report.nodes {
        if n.clock_past_budget {
            println!(
                "CLOCK: node {}'s clock is {} ms off the leader's, past the cluster's budget of 250 ms: fix its time (NTP); voters refuse a node whose clock runs that far ahead",
                n.id,
                n.clock_offset_ms.unwrap_or(0),
            );
        }
        if let (Some(registered), Some(own)) = (&n.registered_elsewhere, &n.incarnation) {
            println!(
                "FENCED: node {} runs on data directory {own}, but the cluster registered {registered} for it: its directory was wiped or replaced; remove it and rejoin the machine under a new id",
                n.id
            );
        }
    }
    if report.insecure {
        println!(
            "INSECURE: node {} runs with --insecure: no TLS, and every caller may do anything",
            report.answered_by
        );
    }
    if !report.sites.is_empty() {
        let mut sites = Table::new();
        sites.load_preset(UTF8_FULL_CONDENSED);
        sites.set_header([
            "site",
            "mode",
            "branch",
            "branch mode",
            "lag",
            "journal",
            "last contact",
            "lease left",
            "clock",
            "agents",
        ]);
        let secs = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} s"));
        for s in &report.sites {
            sites.add_row([
                s.site.clone(),
                s.mode.clone(),
                opt(s.branch),
                s.branch_mode.clone().unwrap_or_else(|| "-".into()),
                opt(s.replication_lag),
                s.journal_backlog.to_string(),
                secs(s.last_contact_s),
                secs(s.lease_left_s),
                s.clock_offset_ms
                    .map_or("-".to_owned(), |ms| format!("{ms:+} ms")),
                s.agents.to_string(),
            ]);
        }
        println!("{sites}");
        for s in &report.sites {
            if let Some(why) = &s.import_refused {
                println!("site {}: {why}", s.site);
            }
            if let (true, Some(ms)) = (s.clock_offset_past_budget, s.clock_offset_ms) {
                let (by, way) = (
                    ms.unsigned_abs(),
                    if ms < 0 { "behind" } else { "ahead of" },
                );
                println!(
                    "site {}: the branch's clock runs {by} ms {way} the cluster's, past \
                     its budget: its lease renewals are refused until its clock is fixed",
                    s.site
                );
            }
        }
    }
    println!(
        "leader: {}   term: {}   voters: {}   members: {}",
        opt(report.leader),
        report.term,
        report.voters,
        report.members
    );
}
