//! How each scenario breaks the cluster: inject the fault, wait for the cluster to react,
//! hold it, heal it and wait for the recovery, marking every moment for the report.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use banyan_client::RetryPolicy;
use banyan_harness::{wait_until, EventTap};
use banyan_proto::v1 as pb;

use super::probes::{core_status, site_mode, wait_alone, wait_caught_up, wait_connected};
use super::report::SiteFigures;
use super::run::Progress;
use super::target::{Target, BRANCHES};
use super::workload;
use super::{DrillArgs, Scenario};

/// What the scenario did, for the report.
#[derive(Default)]
pub struct Fault {
    /// The fault's moments as they happened, drawn on the report's timeline.
    pub marks: Vec<(Instant, String)>,
    /// When the fault began: write unavailability is measured from here.
    pub injected: Option<Instant>,
    /// When the healing began: the timeline shades the fault up to here.
    pub healed: Option<Instant>,
    /// How long the core went without a leader, for the scenarios that take it away.
    pub election_ms: Option<f64>,
    /// Per site: how fast its branch switched to routing alone, and back.
    pub sites: Vec<SiteFigures>,
    /// Branches' own events while they worked alone, per branch.
    pub alone: Vec<(u64, tokio::task::JoinHandle<anyhow::Result<Vec<pb::Event>>>)>,
    /// How far ahead of the real time a branch's clock ran while it was alone (the
    /// clock-skew drill): its events' stamps are moved back by that much before they are
    /// merged in time order with the core's.
    pub clock_ahead_ms: std::collections::BTreeMap<u64, i64>,
    /// What the scenario saw that the report should say in words.
    pub notes: Vec<String>,
}

impl Fault {
    /// Records one moment of the fault, and returns it for the figures timed from it.
    pub fn mark(&mut self, what: impl Into<String>) -> Instant {
        let now = Instant::now();
        self.marks.push((now, what.into()));
        now
    }
}

const REACT: Duration = Duration::from_secs(60);

/// Injects the scenario's fault, waits for the cluster to react, heals it, and waits for
/// it to recover.
pub async fn inject(
    args: &DrillArgs,
    target: &mut Target,
    tap: &EventTap,
    progress: &Progress,
    fault: &mut Fault,
) -> anyhow::Result<()> {
    let nodes = target.nodes()?;
    let core = target.core_ids();
    let leader = nodes.wait_for_leader(&core, REACT).await?;
    let others: Vec<u64> = core.iter().copied().filter(|id| *id != leader).collect();
    match args.scenario {
        Scenario::LeaderKill | Scenario::LeaderPause => {
            let pause = args.scenario == Scenario::LeaderPause;
            tap.avoid(leader);
            progress.set(format!(
                "{} the leader, node {leader}",
                if pause { "pausing" } else { "killing" }
            ));
            let at = if pause {
                let at = fault.mark(format!("paused the leader, node {leader}"));
                target.pause(leader).await?;
                at
            } else {
                let at = fault.mark(format!("killed the leader, node {leader}"));
                target.kill(leader).await?;
                at
            };
            fault.injected = Some(at);
            let new = nodes.wait_for_leader(&others, REACT).await?;
            fault.election_ms = Some(at.elapsed().as_secs_f64() * 1000.0);
            fault.mark(format!("node {new} leads"));
            progress.set(format!("node {new} leads; holding the fault"));
            tokio::time::sleep(args.hold).await;
            if pause {
                fault.healed = Some(fault.mark(format!("resumed node {leader}")));
                target.resume(leader).await?;
            } else {
                fault.healed = Some(fault.mark(format!("restarted node {leader}")));
                target.start(leader).await?;
            }
            progress.set(format!("waiting for node {leader} to catch up"));
            wait_caught_up(target, &core, REACT).await?;
            tap.allow(leader);
            fault.mark(format!("node {leader} caught up"));
        }
        Scenario::FollowerRestart => {
            let follower = others[0];
            tap.avoid(follower);
            progress.set(format!("killing follower {follower}"));
            fault.injected = Some(fault.mark(format!("killed follower {follower}")));
            target.kill(follower).await?;
            tokio::time::sleep(args.hold).await;
            fault.healed = Some(fault.mark(format!("restarted node {follower}")));
            target.start(follower).await?;
            progress.set(format!("waiting for node {follower} to catch up"));
            wait_caught_up(target, &core, REACT).await?;
            tap.allow(follower);
            fault.mark(format!("node {follower} caught up"));
        }
        Scenario::QuorumLoss => {
            let victims = [leader, others[0]];
            for id in victims {
                tap.avoid(id);
            }
            progress.set(format!("killing nodes {leader} (leader) and {}", others[0]));
            let at = fault.mark(format!(
                "killed nodes {leader} (leader) and {}: no quorum",
                others[0]
            ));
            fault.injected = Some(at);
            for id in victims {
                target.kill(id).await?;
            }
            progress.set("waiting for the branches to route alone");
            let mut switches = Vec::new();
            for (branch, site) in BRANCHES {
                wait_alone(target, branch, REACT).await?;
                switches.push((branch, site, at.elapsed()));
                fault.mark(format!("branch {site} alone"));
                fault.alone.push((branch, nodes.collect_events(branch, 1)?));
            }
            progress.set("core down, branches alone; holding the fault");
            tokio::time::sleep(args.hold).await;
            let healed = fault.mark(format!("restarted nodes {leader} and {}", others[0]));
            fault.healed = Some(healed);
            for id in victims {
                target.start(id).await?;
            }
            progress.set("waiting for the core and the branches to reconcile");
            let new = nodes.wait_for_leader(&core, REACT).await?;
            fault.mark(format!("node {new} leads"));
            let mut figures = Vec::new();
            for (branch, site, switch) in switches {
                wait_connected(target, branch, REACT).await?;
                figures.push(SiteFigures {
                    site: site.into(),
                    autonomy_switch_ms: Some(switch.as_secs_f64() * 1000.0),
                    reconciliation_ms: Some(healed.elapsed().as_secs_f64() * 1000.0),
                    local_offers: 0,
                });
                fault.mark(format!("branch {site} reconciled"));
            }
            fault.sites = figures;
            wait_caught_up(target, &core, REACT).await?;
            for id in victims {
                tap.allow(id);
            }
        }
        Scenario::BranchPartition => {
            let (branch, site) = BRANCHES[0];
            progress.set(format!("cutting site {site} off the core"));
            let at = fault.mark(format!("cut site {site} off the core"));
            fault.injected = Some(at);
            target.cut(branch).await?;
            wait_until(&format!("the core fencing site {site}"), REACT, || async {
                (site_mode(target, site).await? == pb::SiteMode::Lapsed as i32).then_some(())
            })
            .await?;
            fault.mark(format!("core fenced {site}"));
            wait_alone(target, branch, REACT).await?;
            let switch = at.elapsed();
            fault.mark(format!("branch {site} alone"));
            fault.alone.push((branch, nodes.collect_events(branch, 1)?));
            progress.set(format!("site {site} alone; holding the fault"));
            tokio::time::sleep(args.hold).await;
            let healed = fault.mark(format!("healed site {site}'s line"));
            fault.healed = Some(healed);
            target.heal(branch).await?;
            progress.set(format!("waiting for site {site} to reconcile"));
            wait_connected(target, branch, REACT).await?;
            fault.mark(format!("branch {site} reconciled"));
            fault.sites.push(SiteFigures {
                site: site.into(),
                autonomy_switch_ms: Some(switch.as_secs_f64() * 1000.0),
                reconciliation_ms: Some(healed.elapsed().as_secs_f64() * 1000.0),
                local_offers: 0,
            });
        }
        Scenario::WipedVoter => {
            // The follower with the highest id: node 1, which the drill's notes read, stays.
            let victim = *others.last().context("the core has no follower")?;
            tap.avoid(victim);
            progress.set(format!(
                "wiping node {victim}'s data directory and restarting it as node {victim}"
            ));
            fault.injected = Some(fault.mark(format!(
                "killed node {victim}, wiped its data directory, restarted it with its old id and --init"
            )));
            let (status, log) = target.wipe_and_restart(victim, REACT).await?;
            let reason = log
                .lines()
                .rev()
                .find(|line| line.contains("wiped or replaced"))
                .map(str::to_owned);
            let Some(reason) = reason.filter(|_| !status.success()) else {
                bail!(
                    "node {victim}, wiped, ended with {status} without saying it was refused:\n{log}"
                );
            };
            fault.mark(format!("node {victim} refused to run as node {victim}"));
            fault.notes.push(format!(
                "node {victim} on its wiped directory stopped ({status}): {}",
                reason.trim()
            ));
            let remaining: Vec<u64> = core.iter().copied().filter(|id| *id != victim).collect();
            wait_caught_up(target, &remaining, REACT).await?;
            progress.set("serving on two voters; holding the fault");
            tokio::time::sleep(args.hold).await;

            let new_id = core.iter().max().copied().unwrap_or(0) + 1;
            progress.set(format!("rejoining the machine as node {new_id}"));
            let admin = workload::core_clients(target, RetryPolicy::default(), 1)?.remove(0);
            admin
                .remove_node(victim)
                .await
                .with_context(|| format!("removing node {victim}"))?;
            let addr = target.start_as_new_node(victim, new_id)?;
            admin
                .add_voter(new_id, &addr)
                .await
                .with_context(|| format!("adding node {new_id}"))?;
            fault.healed = Some(fault.mark(format!(
                "removed node {victim}; the machine rejoined as node {new_id}"
            )));
            let members = target.core_ids();
            let leader = wait_caught_up(target, &members, REACT).await?;
            let registered = wait_until(
                &format!("node {new_id} registered on its data directory"),
                REACT,
                || async {
                    let status = core_status(target, leader).await?;
                    let node = status.nodes.iter().find(|n| n.id == new_id)?;
                    (!node.incarnation.is_empty() && !status.cluster_id.is_empty())
                        .then_some(status.cluster_id)
                },
            )
            .await?;
            fault.mark(format!("node {new_id} caught up"));
            fault.notes.push(format!(
                "cluster {registered}: voters {members:?} after the rejoin"
            ));
        }
        Scenario::ClockSkew => {
            let (branch, site) = BRANCHES[0];
            let ahead = args.clock_ahead;
            progress.set(format!(
                "restarting branch {site} with its clock {} ms ahead",
                ahead.as_millis()
            ));
            let at = fault.mark(format!(
                "restarted branch {site} with its clock {} ms ahead",
                ahead.as_millis()
            ));
            fault.injected = Some(at);
            target.restart_with_clock(branch, Some(ahead)).await?;
            fault
                .clock_ahead_ms
                .insert(branch, ahead.as_millis() as i64);
            // The core node the renewal reached refuses it; any of them may be that node.
            let refused = wait_until(
                &format!("the core refusing site {site}'s renewals for its clock"),
                REACT,
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
            .await?;
            fault.mark(format!(
                "the core refused {site}'s renewals: its clock runs {refused} ms ahead, past the budget"
            ));
            wait_until(&format!("the core fencing site {site}"), REACT, || async {
                (site_mode(target, site).await? == pb::SiteMode::Lapsed as i32).then_some(())
            })
            .await?;
            fault.mark(format!("core fenced {site}"));
            wait_alone(target, branch, REACT).await?;
            let switch = at.elapsed();
            fault.mark(format!("branch {site} alone"));
            fault.alone.push((branch, nodes.collect_events(branch, 1)?));
            progress.set(format!(
                "site {site} alone with a clock ahead; holding the fault"
            ));
            tokio::time::sleep(args.hold).await;
            let healed = fault.mark(format!("restarted branch {site} with the right time"));
            fault.healed = Some(healed);
            target.restart_with_clock(branch, None).await?;
            progress.set(format!("waiting for site {site} to reconcile"));
            wait_connected(target, branch, REACT).await?;
            fault.mark(format!("branch {site} reconciled"));
            fault.sites.push(SiteFigures {
                site: site.into(),
                autonomy_switch_ms: Some(switch.as_secs_f64() * 1000.0),
                reconciliation_ms: Some(healed.elapsed().as_secs_f64() * 1000.0),
                local_offers: 0,
            });
        }
        Scenario::RollingRestart => {
            fault.injected = Some(Instant::now());
            // Followers first, the leader last: one election, at the end.
            for id in others.iter().copied().chain([leader]) {
                tap.avoid(id);
                progress.set(format!("restarting node {id}"));
                fault.mark(format!("restarting node {id}"));
                target.restart(id).await?;
                wait_caught_up(target, &core, REACT).await?;
                tap.allow(id);
            }
            for (branch, site) in BRANCHES {
                progress.set(format!("restarting branch {site}"));
                fault.mark(format!("restarting branch {site}"));
                target.restart(branch).await?;
                wait_connected(target, branch, REACT).await?;
            }
            fault.healed = Some(fault.mark("every node restarted"));
        }
    }
    Ok(())
}
