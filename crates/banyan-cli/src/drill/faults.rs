//! How each scenario breaks the cluster: inject the fault, wait for the cluster to react,
//! hold it, heal it and wait for the recovery, marking every moment for the report.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use banyan_client::RetryPolicy;
use banyan_harness::{EventTap, Nodes};
use banyan_proto::v1 as pb;

use super::probes::{
    wait_alone, wait_caught_up, wait_clock_refused, wait_connected, wait_fenced, wait_registered,
};
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

/// How long the drill waits for the cluster to react to a fault, or to a healing.
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
    let mut injector = Injector {
        args,
        target,
        tap,
        progress,
        fault,
        nodes,
        core,
        leader,
        others,
    };
    match args.scenario {
        Scenario::LeaderKill => injector.take_the_leader(false).await,
        Scenario::LeaderPause => injector.take_the_leader(true).await,
        Scenario::FollowerRestart => injector.restart_a_follower().await,
        Scenario::QuorumLoss => injector.lose_the_quorum().await,
        Scenario::BranchPartition => injector.cut_a_branch_off().await,
        Scenario::WipedVoter => injector.wipe_a_voter().await,
        Scenario::ClockSkew => injector.skew_a_branch_clock().await,
        Scenario::RollingRestart => injector.restart_every_node().await,
    }
}

/// One scenario's hold on the cluster while it breaks and heals it.
struct Injector<'a> {
    /// How long a fault holds, and how far a skewed clock runs ahead.
    args: &'a DrillArgs,
    /// The cluster the scenario breaks.
    target: &'a mut Target,
    /// The event tap, kept off a node while it is down so the history stays whole.
    tap: &'a EventTap,
    /// The phase shown on the progress line.
    progress: &'a Progress,
    /// What the scenario did, filled in for the report.
    fault: &'a mut Fault,
    /// The cluster's nodes, for the leader waits and the branches' own event streams.
    nodes: Nodes,
    /// The core's voters when the scenario began.
    core: Vec<u64>,
    /// Which of them led then: the scenarios that take the leader away take this one.
    leader: u64,
    /// The others, in id order.
    others: Vec<u64>,
}

impl Injector<'_> {
    /// `leader-kill` and `leader-pause`: kill -9 or freeze the leader, time the election
    /// among the others, hold, and bring the old leader back until it has caught up.
    async fn take_the_leader(&mut self, pause: bool) -> anyhow::Result<()> {
        let leader = self.leader;
        self.tap.avoid(leader);
        self.progress.set(format!(
            "{} the leader, node {leader}",
            if pause { "pausing" } else { "killing" }
        ));
        let at = if pause {
            let at = self.fault.mark(format!("paused the leader, node {leader}"));
            self.target.pause(leader).await?;
            at
        } else {
            let at = self.fault.mark(format!("killed the leader, node {leader}"));
            self.target.kill(leader).await?;
            at
        };
        self.fault.injected = Some(at);
        let new = self.nodes.wait_for_leader(&self.others, REACT).await?;
        self.fault.election_ms = Some(at.elapsed().as_secs_f64() * 1000.0);
        self.fault.mark(format!("node {new} leads"));
        self.progress
            .set(format!("node {new} leads; holding the fault"));
        tokio::time::sleep(self.args.hold).await;
        if pause {
            self.fault.healed = Some(self.fault.mark(format!("resumed node {leader}")));
            self.target.resume(leader).await?;
        } else {
            self.fault.healed = Some(self.fault.mark(format!("restarted node {leader}")));
            self.target.start(leader).await?;
        }
        self.catch_up(leader).await
    }

    /// `follower-restart`: kill -9 a follower, hold, and restart it on its data.
    async fn restart_a_follower(&mut self) -> anyhow::Result<()> {
        let follower = self.others[0];
        self.tap.avoid(follower);
        self.progress.set(format!("killing follower {follower}"));
        self.fault.injected = Some(self.fault.mark(format!("killed follower {follower}")));
        self.target.kill(follower).await?;
        tokio::time::sleep(self.args.hold).await;
        self.fault.healed = Some(self.fault.mark(format!("restarted node {follower}")));
        self.target.start(follower).await?;
        self.catch_up(follower).await
    }

    /// Waits for the whole core to catch up after `id` came back, and lets the tap read
    /// from it again.
    async fn catch_up(&mut self, id: u64) -> anyhow::Result<()> {
        self.progress
            .set(format!("waiting for node {id} to catch up"));
        wait_caught_up(self.target, &self.core, REACT).await?;
        self.tap.allow(id);
        self.fault.mark(format!("node {id} caught up"));
        Ok(())
    }

    /// `quorum-loss`: kill the leader and a follower, so the core cannot commit and both
    /// branches route alone; hold; restart both and time each site's reconciliation.
    async fn lose_the_quorum(&mut self) -> anyhow::Result<()> {
        let (leader, follower) = (self.leader, self.others[0]);
        let victims = [leader, follower];
        for id in victims {
            self.tap.avoid(id);
        }
        self.progress
            .set(format!("killing nodes {leader} (leader) and {follower}"));
        let at = self.fault.mark(format!(
            "killed nodes {leader} (leader) and {follower}: no quorum"
        ));
        self.fault.injected = Some(at);
        for id in victims {
            self.target.kill(id).await?;
        }
        self.progress.set("waiting for the branches to route alone");
        let mut switches = Vec::new();
        for (branch, site) in BRANCHES {
            switches.push((branch, site, self.branch_alone(branch, site, at).await?));
        }
        self.progress
            .set("core down, branches alone; holding the fault");
        tokio::time::sleep(self.args.hold).await;
        let healed = self
            .fault
            .mark(format!("restarted nodes {leader} and {follower}"));
        self.fault.healed = Some(healed);
        for id in victims {
            self.target.start(id).await?;
        }
        self.progress
            .set("waiting for the core and the branches to reconcile");
        let new = self.nodes.wait_for_leader(&self.core, REACT).await?;
        self.fault.mark(format!("node {new} leads"));
        for (branch, site, switch) in switches {
            self.branch_reconciled(branch, site, switch, healed).await?;
        }
        wait_caught_up(self.target, &self.core, REACT).await?;
        for id in victims {
            self.tap.allow(id);
        }
        Ok(())
    }

    /// `branch-partition`: cut the emea branch's line to the core until the core fences
    /// the site and the branch routes alone; hold; heal the line and time the
    /// reconciliation.
    async fn cut_a_branch_off(&mut self) -> anyhow::Result<()> {
        let (branch, site) = BRANCHES[0];
        self.progress
            .set(format!("cutting site {site} off the core"));
        let at = self.fault.mark(format!("cut site {site} off the core"));
        self.fault.injected = Some(at);
        self.target.cut(branch).await?;
        self.site_fenced(site).await?;
        let switch = self.branch_alone(branch, site, at).await?;
        self.progress
            .set(format!("site {site} alone; holding the fault"));
        tokio::time::sleep(self.args.hold).await;
        let healed = self.fault.mark(format!("healed site {site}'s line"));
        self.fault.healed = Some(healed);
        self.target.heal(branch).await?;
        self.progress
            .set(format!("waiting for site {site} to reconcile"));
        self.branch_reconciled(branch, site, switch, healed).await
    }

    /// `clock-skew`: restart the emea branch with its clock ahead past the budget until
    /// the core refuses its renewals, naming the offset, fences the site and the branch
    /// routes alone; hold; restart it with the right time and time the reconciliation.
    async fn skew_a_branch_clock(&mut self) -> anyhow::Result<()> {
        let (branch, site) = BRANCHES[0];
        let ahead = self.args.clock_ahead;
        self.progress.set(format!(
            "restarting branch {site} with its clock {} ms ahead",
            ahead.as_millis()
        ));
        let at = self.fault.mark(format!(
            "restarted branch {site} with its clock {} ms ahead",
            ahead.as_millis()
        ));
        self.fault.injected = Some(at);
        self.target.restart_with_clock(branch, Some(ahead)).await?;
        self.fault
            .clock_ahead_ms
            .insert(branch, ahead.as_millis() as i64);
        let refused = wait_clock_refused(self.target, site, REACT).await?;
        self.fault.mark(format!(
            "the core refused {site}'s renewals: its clock runs {refused} ms ahead, past the budget"
        ));
        self.site_fenced(site).await?;
        let switch = self.branch_alone(branch, site, at).await?;
        self.progress.set(format!(
            "site {site} alone with a clock ahead; holding the fault"
        ));
        tokio::time::sleep(self.args.hold).await;
        let healed = self
            .fault
            .mark(format!("restarted branch {site} with the right time"));
        self.fault.healed = Some(healed);
        self.target.restart_with_clock(branch, None).await?;
        self.progress
            .set(format!("waiting for site {site} to reconcile"));
        self.branch_reconciled(branch, site, switch, healed).await
    }

    /// Waits for the core to fence `site` (its lease lapsed).
    async fn site_fenced(&mut self, site: &str) -> anyhow::Result<()> {
        wait_fenced(self.target, site, REACT).await?;
        self.fault.mark(format!("core fenced {site}"));
        Ok(())
    }

    /// Waits for `branch` to route alone and starts collecting the events it records
    /// meanwhile; returns how long the switch took from `since`.
    async fn branch_alone(
        &mut self,
        branch: u64,
        site: &str,
        since: Instant,
    ) -> anyhow::Result<Duration> {
        wait_alone(self.target, branch, REACT).await?;
        let switch = since.elapsed();
        self.fault.mark(format!("branch {site} alone"));
        self.fault
            .alone
            .push((branch, self.nodes.collect_events(branch, 1)?));
        Ok(switch)
    }

    /// Waits for `branch` to work through the core again, and records the site's
    /// autonomy switch and its reconciliation from `healed`.
    async fn branch_reconciled(
        &mut self,
        branch: u64,
        site: &str,
        switch: Duration,
        healed: Instant,
    ) -> anyhow::Result<()> {
        wait_connected(self.target, branch, REACT).await?;
        let reconciliation = healed.elapsed();
        self.fault.mark(format!("branch {site} reconciled"));
        self.fault.sites.push(SiteFigures {
            site: site.into(),
            autonomy_switch_ms: Some(switch.as_secs_f64() * 1000.0),
            reconciliation_ms: Some(reconciliation.as_secs_f64() * 1000.0),
            local_offers: 0,
        });
        Ok(())
    }

    /// `wiped-voter`: a follower restarted on a wiped data directory under its old id is
    /// refused by its peers while the other two keep the quorum; then the runbook's rejoin
    /// under a new id.
    async fn wipe_a_voter(&mut self) -> anyhow::Result<()> {
        // The follower with the highest id: node 1, which the drill's notes read, stays.
        let victim = *self.others.last().context("the core has no follower")?;
        self.tap.avoid(victim);
        self.progress.set(format!(
            "wiping node {victim}'s data directory and restarting it as node {victim}"
        ));
        self.fault.injected = Some(self.fault.mark(format!(
            "killed node {victim}, wiped its data directory, restarted it with its old id and --init"
        )));
        self.refused_on_wiped_directory(victim).await?;
        let remaining: Vec<u64> = self
            .core
            .iter()
            .copied()
            .filter(|id| *id != victim)
            .collect();
        wait_caught_up(self.target, &remaining, REACT).await?;
        self.progress
            .set("serving on two voters; holding the fault");
        tokio::time::sleep(self.args.hold).await;
        self.rejoin_under_new_id(victim).await
    }

    /// Restarts `victim` on a wiped directory and checks it stopped, saying its directory
    /// was wiped or replaced.
    async fn refused_on_wiped_directory(&mut self, victim: u64) -> anyhow::Result<()> {
        let (status, log) = self.target.wipe_and_restart(victim, REACT).await?;
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
        self.fault
            .mark(format!("node {victim} refused to run as node {victim}"));
        self.fault.notes.push(format!(
            "node {victim} on its wiped directory stopped ({status}): {}",
            reason.trim()
        ));
        Ok(())
    }

    /// The runbook's rejoin: remove `victim`, start the machine on an empty directory
    /// under a new id, add it as a voter, and wait until it is registered and caught up.
    async fn rejoin_under_new_id(&mut self, victim: u64) -> anyhow::Result<()> {
        let new_id = self.core.iter().max().copied().unwrap_or(0) + 1;
        self.progress
            .set(format!("rejoining the machine as node {new_id}"));
        let admin = workload::core_clients(self.target, RetryPolicy::default(), 1)?.remove(0);
        admin
            .remove_node(victim)
            .await
            .with_context(|| format!("removing node {victim}"))?;
        let addr = self.target.start_as_new_node(victim, new_id)?;
        admin
            .add_voter(new_id, &addr)
            .await
            .with_context(|| format!("adding node {new_id}"))?;
        self.fault.healed = Some(self.fault.mark(format!(
            "removed node {victim}; the machine rejoined as node {new_id}"
        )));
        let members = self.target.core_ids();
        let leader = wait_caught_up(self.target, &members, REACT).await?;
        let registered = wait_registered(self.target, leader, new_id, REACT).await?;
        self.fault.mark(format!("node {new_id} caught up"));
        self.fault.notes.push(format!(
            "cluster {registered}: voters {members:?} after the rejoin"
        ));
        Ok(())
    }

    /// `rolling-restart`: stop and start every core node in turn, followers first and the
    /// leader last (one election, at the end), then each branch.
    async fn restart_every_node(&mut self) -> anyhow::Result<()> {
        self.fault.injected = Some(Instant::now());
        for id in self.others.clone().into_iter().chain([self.leader]) {
            self.tap.avoid(id);
            self.progress.set(format!("restarting node {id}"));
            self.fault.mark(format!("restarting node {id}"));
            self.target.restart(id).await?;
            wait_caught_up(self.target, &self.core, REACT).await?;
            self.tap.allow(id);
        }
        for (branch, site) in BRANCHES {
            self.progress.set(format!("restarting branch {site}"));
            self.fault.mark(format!("restarting branch {site}"));
            self.target.restart(branch).await?;
            wait_connected(self.target, branch, REACT).await?;
        }
        self.fault.healed = Some(self.fault.mark("every node restarted"));
        Ok(())
    }
}
