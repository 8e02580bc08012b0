//! `banyan demo`: the whole system alive in one process. Three core voters and two
//! branches (emea, apac) on loopback, queues, customers of every tier, agents at both
//! sites who accept, talk, wrap up and take breaks, and callers arriving at both branches
//! with a mix of voice, chat, email, callbacks and self-service questions. A live summary
//! every few seconds, the wallboard on every node's HTTP port, and at the end a final
//! summary and the verdict of the same checkers the tests and drills use. `--chaos` stops
//! and restarts the core's leader and cuts a branch off and heals it while all this runs.

mod summary;
mod world;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use banyan_client::{Client, RetryPolicy};
use banyan_core::{CoreNode, RaftTimers};
use banyan_harness::{check_contacts, EventTap, InProcessCluster, NodeContacts, Nodes};
use banyan_observe::{Observed, OwnBranch, Snapshot, Telemetry};
use banyan_proto::v1::ReadConsistency;
use banyan_raft::{AppliedState, RaftMetrics};
use clap::Args;
use tokio::net::TcpListener;

use world::{Rng, SITES};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long callers keep arriving.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of the callers, agents and timings: the same seed plays the same day.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Contacts per second over both sites.
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// Stop and restart the core's leader, and cut the emea branch off and heal it,
    /// while the demo runs.
    #[arg(long)]
    chaos: bool,
    /// Keep the nodes' data in this new or empty directory instead of a temporary one
    /// (to look at afterwards; each demo forms a new cluster).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where core node 1 serves its wallboard (the other nodes use free ports; if this
    /// one is taken, a free one too).
    #[arg(long, default_value = "127.0.0.1:8080")]
    wallboard: String,
    /// How often the live summary prints.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    every: Duration,
}

const CORE: [u64; 3] = [1, 2, 3];
/// The branches' lease: short, so a branch cut off by `--chaos` goes on alone within
/// seconds (a deployment's default is 10 s).
const LEASE_TTL: Duration = Duration::from_secs(3);
const CLOCK_SKEW: Duration = Duration::from_millis(500);

/// A core node as the wallboard sees it: whichever incarnation runs now, or none while
/// `--chaos` has it stopped (the handle must not keep a stopped node's storage open).
#[derive(Clone)]
struct Current {
    id: u64,
    node: Arc<RwLock<Option<CoreNode>>>,
    idle: Arc<Telemetry>,
}

impl Current {
    fn new(node: CoreNode) -> Self {
        Self {
            id: node.id(),
            node: Arc::new(RwLock::new(Some(node))),
            idle: Telemetry::new(),
        }
    }

    fn get(&self) -> Option<CoreNode> {
        self.node.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, node: Option<CoreNode>) {
        *self.node.write().unwrap_or_else(|p| p.into_inner()) = node;
    }
}

impl Observed for Current {
    fn up(&self) -> bool {
        self.get().is_some()
    }
    fn node_id(&self) -> u64 {
        self.id
    }
    fn site(&self) -> Option<String> {
        None
    }
    fn serving(&self) -> AppliedState {
        self.get()
            .map_or_else(AppliedState::default, |n| n.applied().clone())
    }
    fn raft_metrics(&self) -> RaftMetrics {
        self.get()
            .map_or_else(|| RaftMetrics::new_initial(self.id), |n| n.metrics())
    }
    fn committed_index(&self) -> Option<u64> {
        self.get().map(|n| n.committed_index())
    }
    fn snapshots_built(&self) -> u64 {
        self.get().map_or(0, |n| n.snapshots_built())
    }
    fn log_purges(&self) -> Option<u64> {
        self.get().and_then(|n| n.log_purges())
    }
    fn own_branch(&self) -> Option<OwnBranch> {
        None
    }
    fn readiness(&self) -> Result<String, String> {
        self.get()
            .map_or_else(|| Err("restarting".into()), |n| n.readiness())
    }
    fn telemetry(&self) -> Arc<Telemetry> {
        // A restarted node starts its counters afresh.
        self.get()
            .map_or_else(|| self.idle.clone(), |n| n.telemetry().clone())
    }
    fn peer_clocks(&self) -> std::collections::BTreeMap<u64, banyan_raft::identity::PeerClock> {
        self.get()
            .map(|n| n.identity().peer_clocks())
            .unwrap_or_default()
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    refuse_used_data_dir(args.data_dir.as_deref())?;
    let mut rng = Rng::new(args.seed);
    let mut demo = Demo::start(&args, &mut rng).await?;
    let ops: world::Ops = Arc::new(Mutex::new(Vec::new()));
    let people = demo.open_doors(&args, &mut rng, &ops)?;
    let chaos = demo.live(&args, &ops).await?;
    let settled = people.go_home(&demo.core).await;
    let report = demo.verdict(&ops, settled, &chaos).await?;
    println!(
        "Stopped every node cleanly after {:.0?}.",
        started.elapsed()
    );
    if !report.is_ok() {
        anyhow::bail!(
            "the checker found {} broken invariants",
            report.violations.len()
        );
    }
    Ok(())
}

/// Refuses a used `--data-dir` before anything starts: a demo cannot resume an earlier one.
fn refuse_used_data_dir(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(dir) = dir else {
        return Ok(());
    };
    // Each demo forms a new cluster on ports the OS picks, so an earlier demo's
    // cluster (its members' addresses are in its data) cannot be resumed.
    let used = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if used {
        anyhow::bail!(
            "--data-dir {} is not empty: the demo forms a new cluster each time; give it a new or empty directory",
            dir.display()
        );
    }
    Ok(())
}

/// The demo's cluster and what watches it through the day. Fields are in the reverse order
/// of their making, so on an early return they drop last made first, the cluster last.
struct Demo {
    core: Client,
    /// What this day's callers' request ids start with.
    prefix: String,
    /// The event history the checker judges, from this day's first log entry.
    tap: EventTap,
    nodes: Nodes,
    /// The core nodes the wallboards show, swapped as `--chaos` stops and restarts them.
    current: Vec<(u64, Current)>,
    /// Each branch's site and address, where its agents and callers go.
    branches: Vec<(String, String)>,
    cluster: InProcessCluster,
}

/// The day's people: agents at their desks and callers arriving at the branches. Fields
/// are in the reverse order of their making, like [`Demo`]'s.
struct People {
    callers: tokio::task::JoinHandle<()>,
    stop_callers: banyan_env::Shutdown,
    desks: Vec<banyan_harness::DeskAgent>,
}

impl Demo {
    /// Set-up, before anyone arrives: the cluster formed, wallboards served, the world written.
    async fn start(args: &DemoArgs, rng: &mut Rng) -> anyhow::Result<Self> {
        let mut cluster =
            InProcessCluster::start_in(args.data_dir.as_deref(), &CORE, RaftTimers::default())
                .await?;
        println!(
            "Banyan demo (seed {}): 3 core nodes and 2 branches on loopback, data in {}",
            args.seed,
            cluster.root().display()
        );
        let leader = cluster
            .wait_for_leader(&CORE, Duration::from_secs(20))
            .await?;
        let self_service: Vec<String> = world::SELF_SERVICE.iter().map(|s| s.to_string()).collect();
        let mut branches = Vec::new();
        for (id, site) in SITES {
            let addr = cluster
                .start_branch_with(id, site, LEASE_TTL, CLOCK_SKEW, &self_service)
                .await?;
            branches.push((site.to_owned(), addr));
        }
        let current = serve_wallboards(&cluster, args).await?;
        let nodes = Nodes::new(
            CORE.iter()
                .filter_map(|id| Some((*id, cluster.addr(*id)?.to_owned()))),
            cluster.security(),
        );
        // The history the checker judges starts here: with a `--data-dir` kept from an earlier
        // day, that day's log is not this one's (and may be compacted away).
        let from = nodes.status(leader).await?.last_log_index + 1;
        let tap = EventTap::start(nodes.clone(), CORE.to_vec(), from);
        // This day's callers' requests, apart from any earlier day's in a kept `--data-dir`.
        let day = banyan_env::clock::since_epoch().as_millis();
        let prefix = format!("demo-{day:x}-contact-");
        let core = cluster.client()?;
        world::populate(&core, rng).await?;
        wait_for_branches(&cluster).await?;
        println!(
            "Leader node {leader}; 3 queues, {} customers, {} agents per site. Callers arrive at {:.1}/s for {:.0?}{}.\n",
            world::CUSTOMERS,
            world::AGENTS_PER_SITE,
            args.rate,
            args.duration,
            if args.chaos { " with chaos" } else { "" }
        );
        Ok(Self {
            core,
            prefix,
            tap,
            nodes,
            current,
            branches,
            cluster,
        })
    }

    /// Starts the day's people: the agents log in, the callers start arriving.
    fn open_doors(
        &self,
        args: &DemoArgs,
        rng: &mut Rng,
        ops: &world::Ops,
    ) -> anyhow::Result<People> {
        let desks = world::start_agents(&self.branches, self.cluster.pki(), rng)?;
        // Callers come in through the IVR, a telephony front end with an integration
        // certificate.
        let ivr = self
            .cluster
            .pki()
            .new_client("ivr", banyan_trust::Role::Integration, None)?;
        let stop_callers = banyan_env::Shutdown::new();
        let callers = world::start_callers(
            self.branches.clone(),
            ivr,
            args.rate,
            rng.clone(),
            self.prefix.clone(),
            ops.clone(),
            stop_callers.clone(),
        );
        Ok(People {
            callers,
            stop_callers,
            desks,
        })
    }

    /// The live loop: a summary every few seconds and the chaos at its moments, all day.
    async fn live(&mut self, args: &DemoArgs, ops: &world::Ops) -> anyhow::Result<Chaos> {
        let mut chaos = Chaos::plan(args.chaos, args.duration);
        let terminal = std::io::stdout().is_terminal();
        let mut every = tokio::time::interval(args.every);
        every.tick().await;
        let day_started = Instant::now();
        let day_end = tokio::time::Instant::from_std(day_started + args.duration);
        while day_started.elapsed() < args.duration {
            tokio::select! {
                () = tokio::time::sleep_until(day_end) => break,
                _ = every.tick() => {
                    let picture = picture(&self.cluster, &self.current);
                    summary::live(day_started.elapsed(), picture.as_ref(), ops, &chaos.log, terminal);
                }
                () = chaos.next_moment(day_started) => {
                    chaos.act(&mut self.cluster, &self.current, day_started.elapsed()).await?;
                }
            }
        }
        chaos
            .finish(&mut self.cluster, &self.current, day_started.elapsed())
            .await?;
        Ok(chaos)
    }

    /// The summary: final states and the event history checked, figures shown, nodes stopped.
    async fn verdict(
        self,
        ops: &world::Ops,
        settled: bool,
        chaos: &Chaos,
    ) -> anyhow::Result<banyan_harness::ContactReport> {
        let (mut contacts, committed) = self
            .nodes
            .final_contacts(&CORE, Duration::from_secs(60))
            .await?;
        for (id, site) in SITES {
            contacts.push(self.branch_contacts(id, site, committed).await?);
        }
        self.tap
            .wait_past(committed.saturating_sub(1), Duration::from_secs(30))
            .await?;
        let events = self.tap.stop().await?;
        let ops = ops.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let report = check_contacts(&ops, &contacts, &events, &self.prefix);
        let picture = picture(&self.cluster, &self.current);
        summary::final_report(
            &contacts[0].contacts,
            picture.as_ref(),
            &ops,
            &report,
            settled,
            &chaos.log,
        );
        self.cluster.shutdown().await;
        Ok(report)
    }

    /// A branch's replica, read once it has applied everything the core's were read at.
    async fn branch_contacts(
        &self,
        id: u64,
        site: &str,
        committed: u64,
    ) -> anyhow::Result<NodeContacts> {
        let branch = self
            .cluster
            .branch(id)
            .context("branch")?
            .running
            .node
            .clone();
        banyan_harness::wait_until(
            &format!("branch {site} to catch up"),
            Duration::from_secs(30),
            || async {
                let applied = branch.raft().metrics().borrow().last_applied;
                applied.is_some_and(|l| l.index >= committed).then_some(())
            },
        )
        .await?;
        let client = Client::new(
            [cluster_branch_addr(&self.branches, site)],
            RetryPolicy::default(),
            &self.cluster.security(),
        )?;
        let mine = client
            .all_contacts(ReadConsistency::Local)
            .await
            .map_err(|s| anyhow::anyhow!("reading branch {site}: {}", s.message()))?;
        Ok(NodeContacts {
            node: id,
            contacts: mine,
        })
    }
}

impl People {
    /// The day's end: callers stop, agents finish what they hold; whether all settled.
    async fn go_home(self, core: &Client) -> bool {
        self.stop_callers.begin();
        let _ = self.callers.await;
        println!("\nCallers stopped; agents finish the contacts they hold…");
        let settled = summary::wait_settled(core, Duration::from_secs(45)).await;
        for desk in self.desks {
            desk.stop().await;
        }
        settled
    }
}

/// Serves every node's wallboard and metrics and prints their links, each with a token.
async fn serve_wallboards(
    cluster: &InProcessCluster,
    args: &DemoArgs,
) -> anyhow::Result<Vec<(u64, Current)>> {
    let mut current = Vec::new();
    let mut urls = Vec::new();
    for id in CORE {
        let node = cluster.node(id).context("core node")?.clone();
        let security = node.security().clone();
        let handle = Current::new(node);
        let listener = match (id, TcpListener::bind(&args.wallboard).await) {
            (1, Ok(listener)) => listener,
            _ => banyan_harness::bind_loopback().await?,
        };
        urls.push((
            format!("core node {id}"),
            serve_http(listener, banyan_observe::routes(handle.clone(), security))?,
        ));
        current.push((id, handle));
    }
    for (id, site) in SITES {
        let node = cluster.branch(id).context("branch")?.running.node.clone();
        let listener = banyan_harness::bind_loopback().await?;
        urls.push((
            format!("branch {site}"),
            serve_http(
                listener,
                banyan_observe::routes(node.clone(), node.security().clone()),
            )?,
        ));
    }
    // The wallboard takes credentials like every other port: the links carry a viewer's
    // token for the length of the day.
    let viewer = banyan_trust::token::TokenSigner::load(cluster.pki().certs_dir())?.scoped(
        "wallboard",
        banyan_trust::Role::Viewer,
        None,
        args.duration + Duration::from_secs(3600),
    )?;
    println!(
        "Wallboards (live, every node serves one; /metrics beside each, with the same token):"
    );
    for (what, url) in &urls {
        println!("  {what:<12} {url}?token={viewer}");
    }
    Ok(current)
}

fn serve_http(listener: TcpListener, app: axum::Router) -> anyhow::Result<String> {
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

fn cluster_branch_addr(branches: &[(String, String)], site: &str) -> String {
    branches
        .iter()
        .find(|(s, _)| s == site)
        .map(|(_, a)| a.clone())
        .unwrap_or_default()
}

/// The picture the current leader sees (any core node if none leads).
fn picture(cluster: &InProcessCluster, current: &[(u64, Current)]) -> Option<Snapshot> {
    let running: Vec<&Current> = current
        .iter()
        .filter(|(id, c)| cluster.node(*id).is_some() && c.up())
        .map(|(_, c)| c)
        .collect();
    let leader = running
        .iter()
        .find(|c| c.get().is_some_and(|n| n.is_leader()))
        .or_else(|| running.first())?;
    Some(Snapshot::of(*leader))
}

/// Waits until both branches hold the demo's agents and their sites' leases.
async fn wait_for_branches(cluster: &InProcessCluster) -> anyhow::Result<()> {
    for (id, site) in SITES {
        let branch = &cluster.branch(id).context("branch")?.running.node;
        banyan_harness::wait_until(
            &format!("branch {site} to join and hold its agents"),
            Duration::from_secs(60),
            || async {
                let state = branch.serving();
                let applied = state.read();
                let agents = applied
                    .domain
                    .agents()
                    .filter(|a| a.input.site == site)
                    .count();
                (agents == world::AGENTS_PER_SITE
                    && branch.mode() == banyan_branch::Mode::Connected)
                    .then_some(())
            },
        )
        .await?;
    }
    Ok(())
}

/// `--chaos`: the leader stopped at 30 % of the day and restarted 6 s later; emea cut off
/// at 60 % and healed once it has served alone for a while.
struct Chaos {
    steps: Vec<(f64, Step)>,
    /// What happened, with the time into the day.
    log: Vec<(Duration, String)>,
    stopped: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    StopLeader,
    RestartNode,
    CutBranch,
    HealBranch,
}

impl Chaos {
    fn plan(on: bool, day: Duration) -> Self {
        let day = day.as_secs_f64();
        let mut steps = if on {
            vec![
                (day * 0.3, Step::StopLeader),
                (day * 0.3 + 6.0, Step::RestartNode),
                (day * 0.6, Step::CutBranch),
                (day * 0.6 + LEASE_TTL.as_secs_f64() + 6.0, Step::HealBranch),
            ]
        } else {
            Vec::new()
        };
        // On a short day a step's pause can carry it past the next one.
        steps.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self {
            steps,
            log: Vec::new(),
            stopped: None,
        }
    }

    async fn next_moment(&self, day_started: Instant) {
        match self.steps.first() {
            Some((at, _)) => {
                tokio::time::sleep_until((day_started + Duration::from_secs_f64(*at)).into()).await
            }
            None => std::future::pending().await,
        }
    }

    async fn act(
        &mut self,
        cluster: &mut InProcessCluster,
        current: &[(u64, Current)],
        now: Duration,
    ) -> anyhow::Result<()> {
        if self.steps.is_empty() {
            return Ok(());
        }
        let (_, step) = self.steps.remove(0);
        match step {
            Step::StopLeader => {
                let running = cluster.ids();
                let leader = cluster
                    .wait_for_leader(&running, Duration::from_secs(20))
                    .await?;
                if let Some((_, handle)) = current.iter().find(|(i, _)| *i == leader) {
                    handle.set(None);
                }
                cluster.stop_node(leader).await?;
                self.stopped = Some(leader);
                self.note(now, format!("chaos: stopped the leader, node {leader}"));
                let rest = cluster.ids();
                let started = Instant::now();
                let new = cluster
                    .wait_for_leader(&rest, Duration::from_secs(20))
                    .await?;
                self.note(
                    now + started.elapsed(),
                    format!("node {new} leads after {:.0?}", started.elapsed()),
                );
            }
            Step::RestartNode => {
                if let Some(id) = self.stopped.take() {
                    cluster.restart(id).await?;
                    if let (Some(node), Some((_, handle))) =
                        (cluster.node(id), current.iter().find(|(i, _)| *i == id))
                    {
                        handle.set(Some(node.clone()));
                    }
                    self.note(now, format!("chaos: restarted node {id} on its data"));
                }
            }
            Step::CutBranch => {
                if let Some(branch) = cluster.branch(SITES[0].0) {
                    branch.links.cut();
                    self.note(
                        now,
                        format!("chaos: cut the {} branch off the core", SITES[0].1),
                    );
                }
            }
            Step::HealBranch => {
                if let Some(branch) = cluster.branch(SITES[0].0) {
                    branch.links.heal();
                    self.note(
                        now,
                        format!("chaos: healed the {} branch's link", SITES[0].1),
                    );
                }
            }
        }
        Ok(())
    }

    /// Runs what is left of the chaos (a short `--duration` ends before it did).
    async fn finish(
        &mut self,
        cluster: &mut InProcessCluster,
        current: &[(u64, Current)],
        now: Duration,
    ) -> anyhow::Result<()> {
        while !self.steps.is_empty() {
            let (_, step) = self.steps[0];
            if matches!(step, Step::StopLeader | Step::CutBranch) {
                self.steps.remove(0);
                continue;
            }
            self.act(cluster, current, now).await?;
        }
        Ok(())
    }

    fn note(&mut self, at: Duration, what: String) {
        println!("[{:>5.1} s] {what}", at.as_secs_f64());
        self.log.push((at, what));
    }
}
