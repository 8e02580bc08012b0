//! What a drill reads from the cluster: while it runs, to know when a fault has taken hold
//! and when the cluster has recovered (a branch's mode from its `Branch.Status`, a site's mode
//! and a node's status from the core, and the waits built on them); at the end, each
//! branch's replica of the contacts, and where agents and contacts stand when some were
//! not served.

use std::time::Duration;

use banyan_client::{Client, RetryPolicy};
use banyan_harness::{wait_until, NodeContacts};
use banyan_proto::v1::{self as pb, ReadConsistency};

use super::target::{site_of, Target, BRANCHES};
use super::workload::{self, Names};

/// A branch's mode as its `Branch.Status` says it: the drill times the autonomy switch and the
/// reconciliation by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchMode {
    Connected,
    Alone,
    Handing,
}

/// The branch's mode, or `None` while it does not answer (restarting, cut off from the
/// drill).
pub async fn branch_mode(target: &Target, branch: u64) -> Option<BranchMode> {
    let client = Client::new(
        [target.addr(branch).ok()?],
        RetryPolicy::once(Duration::from_secs(2)),
        &target.security().ok()?,
    )
    .ok()?;
    let status = client.branch_status().await.ok()?;
    match pb::BranchMode::try_from(status.mode).ok()? {
        pb::BranchMode::Connected => Some(BranchMode::Connected),
        pb::BranchMode::Autonomous => Some(BranchMode::Alone),
        pb::BranchMode::Reconciling => Some(BranchMode::Handing),
        pb::BranchMode::Unspecified => None,
    }
}

/// The site as the core's leader sees it.
pub async fn site_mode(target: &Target, site: &str) -> Option<i32> {
    site_status(target, site).await.map(|s| s.mode)
}

/// The site's status as the core's leader shows it.
pub async fn site_status(target: &Target, site: &str) -> Option<pb::SiteStatus> {
    for id in target.core_ids() {
        let Some(status) = core_status(target, id).await else {
            continue;
        };
        if status.role == pb::Role::Leader as i32 {
            return status.sites.into_iter().find(|s| s.site_id == site);
        }
    }
    None
}

/// Core node `id`'s status, if it answers within two seconds.
pub async fn core_status(target: &Target, id: u64) -> Option<pb::ClusterStatus> {
    let client = Client::new(
        [target.addr(id).ok()?],
        RetryPolicy::once(Duration::from_secs(2)),
        &target.security().ok()?,
    )
    .ok()?;
    client.status().await.ok()
}

/// Waits until `branch` works through the core again with its site leased.
pub async fn wait_connected(target: &Target, branch: u64, timeout: Duration) -> anyhow::Result<()> {
    let site = site_of(branch);
    wait_until(
        &format!("branch {branch} back through the core with site {site} leased"),
        timeout,
        || async {
            let connected = branch_mode(target, branch).await? == BranchMode::Connected;
            let leased = site_mode(target, site).await? == pb::SiteMode::Leased as i32;
            (connected && leased).then_some(())
        },
    )
    .await
}

/// Waits until both branches work through the core: a drill starts from a healthy cluster.
pub async fn wait_all_connected(target: &Target, timeout: Duration) -> anyhow::Result<()> {
    for (branch, _) in BRANCHES {
        wait_connected(target, branch, timeout).await?;
    }
    Ok(())
}

/// Waits until `branch` routes its site on its own: the fault has reached it.
pub async fn wait_alone(target: &Target, branch: u64, timeout: Duration) -> anyhow::Result<()> {
    wait_until(
        &format!("branch {branch} routing its site alone"),
        timeout,
        || async { (branch_mode(target, branch).await? == BranchMode::Alone).then_some(()) },
    )
    .await
}

/// Waits for a leader among `among` and every one of them to have applied what it
/// committed.
pub async fn wait_caught_up(
    target: &Target,
    among: &[u64],
    timeout: Duration,
) -> anyhow::Result<u64> {
    let nodes = target.nodes()?;
    let leader = nodes.wait_for_leader(among, timeout).await?;
    let committed = nodes.status(leader).await?.committed_index;
    for id in among {
        nodes.wait_applied(*id, committed, timeout).await?;
    }
    Ok(leader)
}

/// Waits until the core's leader shows `site` lapsed: the core has fenced it.
pub async fn wait_fenced(target: &Target, site: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_until(
        &format!("the core fencing site {site}"),
        timeout,
        || async { (site_mode(target, site).await? == pb::SiteMode::Lapsed as i32).then_some(()) },
    )
    .await
}

/// Waits until a core node refuses `site`'s renewals for its clock, and returns the
/// offset it measured. The core node the renewal reached refuses it; any of them may be
/// that node.
pub async fn wait_clock_refused(
    target: &Target,
    site: &str,
    timeout: Duration,
) -> anyhow::Result<i64> {
    wait_until(
        &format!("the core refusing site {site}'s renewals for its clock"),
        timeout,
        || async {
            for id in target.core_ids() {
                let Some(status) = core_status(target, id).await else {
                    continue;
                };
                let refused = status
                    .sites
                    .into_iter()
                    .find(|s| s.site_id == site && s.clock_offset_past_budget);
                if let Some(s) = refused {
                    return Some(s.clock_offset_ms);
                }
            }
            None
        },
    )
    .await
}

/// Waits until `leader` shows node `id` registered on its data directory, and returns the
/// cluster's id: a rejoined node is fenced by that registration from then on.
pub async fn wait_registered(
    target: &Target,
    leader: u64,
    id: u64,
    timeout: Duration,
) -> anyhow::Result<String> {
    wait_until(
        &format!("node {id} registered on its data directory"),
        timeout,
        || async {
            let status = core_status(target, leader).await?;
            let node = status.nodes.iter().find(|n| n.id == id)?;
            (!node.incarnation.is_empty() && !status.cluster_id.is_empty())
                .then_some(status.cluster_id)
        },
    )
    .await
}

/// The drill's agents as the core and their branch see them: why contacts were not served.
pub async fn agents_at_the_end(target: &Target, names: &Names) -> Vec<String> {
    let mut notes = Vec::new();
    for (where_, id) in [
        ("core", target.core_ids()[0]),
        ("branch emea", BRANCHES[0].0),
        ("branch apac", BRANCHES[1].0),
    ] {
        let Ok(security) = target.security() else {
            continue;
        };
        let Ok(addr) = target.addr(id) else { continue };
        let Ok(client) = Client::new([addr], RetryPolicy::once(Duration::from_secs(5)), &security)
        else {
            continue;
        };
        let list = pb::ListAgentsRequest {
            consistency: ReadConsistency::Local.into(),
            ..Default::default()
        };
        match client.list_agents(list).await {
            Ok(reply) => {
                for agent in reply
                    .agents
                    .iter()
                    .filter(|a| a.id.starts_with(&names.prefix))
                {
                    notes.push(format!(
                        "at the {where_}: agent {} is {:?}, holds {:?}, missed {} in a row",
                        agent.id,
                        pb::AgentState::try_from(agent.state).unwrap_or_default(),
                        agent.contacts,
                        agent.missed_in_row
                    ));
                }
            }
            Err(status) => notes.push(format!(
                "the {where_} did not list its agents: {}",
                status.message()
            )),
        }
    }
    notes
}

/// Where the first unserved contacts stand at the core, with their timelines.
pub async fn contacts_at_the_end(target: &Target, unserved: &[String]) -> Vec<String> {
    let Ok(core) = workload::core_clients(target, RetryPolicy::default(), 1) else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    for id in unserved.iter().take(5) {
        let request = pb::GetContactRequest {
            id: id.clone(),
            consistency: ReadConsistency::Linearizable.into(),
        };
        match core[0].get_contact(request).await {
            Ok(contact) => {
                let timeline: Vec<String> = contact
                    .timeline
                    .iter()
                    .map(|t| {
                        format!(
                            "{:?} at {} {}",
                            pb::ContactState::try_from(t.state).unwrap_or_default(),
                            t.at_ms,
                            t.detail
                        )
                    })
                    .collect();
                notes.push(format!(
                    "contact {id} (request {}): {:?}, agent {:?}; {}",
                    contact.request_id,
                    pb::ContactState::try_from(contact.state).unwrap_or_default(),
                    contact.agent_id,
                    timeline.join(" → ")
                ));
            }
            Err(status) => notes.push(format!("contact {id}: {}", status.message())),
        }
    }
    notes
}

/// The branch's replica of the contacts once it holds as many as the core.
pub async fn branch_replica(
    target: &Target,
    branch: u64,
    at_core: usize,
) -> anyhow::Result<NodeContacts> {
    let client = Client::new(
        [target.addr(branch)?],
        RetryPolicy::once(Duration::from_secs(10)),
        &target.security()?,
    )?;
    let contacts = wait_until(
        &format!("branch {branch}'s replica to catch up"),
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let mine = client.all_contacts(ReadConsistency::Local).await.ok()?;
                (mine.len() == at_core).then_some(mine)
            }
        },
    )
    .await?;
    Ok(NodeContacts {
        node: branch,
        contacts,
    })
}
