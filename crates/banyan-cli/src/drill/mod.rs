//! `banyan drill SCENARIO`: breaks a running cluster on purpose under a steady contact
//! center workload, heals it, and reports what the users would have seen.
//!
//! One run: the cluster is checked healthy; the run's queue and agents are created; the
//! workload starts (`workload.rs`); the scenario injects its fault, waits for the cluster
//! to react, heals it and waits for it to recover (`faults.rs`, watching the cluster
//! through `probes.rs`); the workload stops, every acknowledged contact is waited for
//! until an agent completed it, every node's final state is read and judged by the shared
//! checkers, and the report is written (`report.rs`): Markdown, JSON and an SVG timeline.
//! The exit status is non-zero when an invariant broke.

mod faults;
mod probes;
mod report;
mod target;
mod workload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use banyan_client::{Client, RetryPolicy};
use banyan_harness::{
    check_branch_sides, check_contacts, check_customers, wait_until, ContactViolation, EventTap,
    NodeContacts, Violation,
};
use banyan_proto::v1::{self as pb, EventKind, ReadConsistency};
use clap::{Args, ValueEnum};
use faults::{inject, Fault};
use probes::wait_all_connected;
use report::{Counts, DrillReport, Invariants, Mark};
use target::{site_of, Target, BRANCHES};
use workload::{Load, Names, Workload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Kill -9 the core's leader, restart it later.
    LeaderKill,
    /// Freeze the leader (SIGSTOP / docker pause) past the election timeout, then thaw it.
    LeaderPause,
    /// Kill -9 a follower and restart it on its data.
    FollowerRestart,
    /// Kill the leader and a follower: the core cannot commit, branches go autonomous.
    QuorumLoss,
    /// Cut the emea branch off the core and heal it.
    BranchPartition,
    /// Stop and start every node in turn, followers first, then the branches.
    RollingRestart,
    /// Restart the emea branch with its clock running ahead past the cluster's budget
    /// (libfaketime; local target only): the core refuses its renewals, naming the offset,
    /// and fences the site; the branch serves it alone, then reconciles once its clock is
    /// right again.
    ClockSkew,
    /// Wipe a follower's data directory and restart it with its old id and command line
    /// (local target only): its peers refuse it and it stops, the other two keep the
    /// quorum; then the runbook's rejoin under a new id (remove, start on an empty
    /// directory without --init, add as voter).
    WipedVoter,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::LeaderKill => "leader-kill",
            Scenario::LeaderPause => "leader-pause",
            Scenario::FollowerRestart => "follower-restart",
            Scenario::QuorumLoss => "quorum-loss",
            Scenario::BranchPartition => "branch-partition",
            Scenario::RollingRestart => "rolling-restart",
            Scenario::ClockSkew => "clock-skew",
            Scenario::WipedVoter => "wiped-voter",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// Processes the drill starts on loopback (3 core, 2 branches) and stops at the end.
    Local,
    /// The running deployment of deploy/compose.yaml.
    Compose,
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    scenario: Scenario,
    #[arg(long, value_enum, default_value = "local")]
    target: TargetKind,
    /// Compose project of `--target compose`.
    #[arg(long, default_value = "banyan")]
    project: String,
    /// Workload time around the fault: a quarter before it, the rest during and after.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long the fault holds once the cluster has reacted to it.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// Run the drill this many times (each with its own report) and summarise.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Contacts per second over all entry points.
    #[arg(long, default_value_t = 8.0)]
    rate: f64,
    /// Concurrent customer writers through the core (what write unavailability is
    /// measured on).
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Simulated agents per site.
    #[arg(long, default_value_t = 2)]
    agents: usize,
    /// A client retries an attempt unanswered for this long (on another node).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    attempt_timeout: Duration,
    /// Lease of the branches a local drill starts (the branch default is 10s).
    #[arg(long, default_value = "2s")]
    lease_ttl: String,
    /// Clock skew the local branches allow for.
    #[arg(long, default_value = "500ms")]
    max_clock_skew: String,
    /// `clock-skew`: how far ahead the branch's clock runs.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    clock_ahead: Duration,
    /// Where the reports go (a directory per drill inside).
    #[arg(long, default_value = "drill-reports")]
    out: PathBuf,
    /// `--target compose`: the deployment's certificates directory (the drill presents
    /// `client.admin.crt` and signs its agents' desk tokens with `token.key`). A local
    /// drill makes its own CA.
    #[arg(long, env = "BANYAN_CERTS_DIR")]
    certs_dir: Option<PathBuf>,
}

pub async fn run(args: DrillArgs) -> anyhow::Result<()> {
    let load = Load {
        contacts_per_sec: args.rate,
        writers: args.writers,
        agents_per_site: args.agents.max(1),
        talk: Duration::from_millis(300),
        attempt_timeout: args.attempt_timeout,
    };
    let stamp = banyan_env::clock::since_epoch().as_secs();
    let dir = args.out.join(format!(
        "{}-{}-{stamp}",
        args.scenario.name(),
        target_name(args.target)
    ));
    if args.target == TargetKind::Compose
        && matches!(args.scenario, Scenario::ClockSkew | Scenario::WipedVoter)
    {
        bail!(
            "drill {} runs on the local target only: it skews a node's clock or wipes its \
             data directory, which a deployment leaves to its operator",
            args.scenario.name()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut target = match args.target {
        TargetKind::Local => {
            let flags = vec![
                "--lease-ttl".to_owned(),
                args.lease_ttl.clone(),
                "--max-clock-skew".to_owned(),
                args.max_clock_skew.clone(),
            ];
            Target::Local(target::LocalTarget::start(&flags).await?)
        }
        TargetKind::Compose => Target::Compose(
            target::ComposeTarget::attach(&args.project, args.certs_dir.as_deref()).await?,
        ),
    };
    eprintln!(
        "drill {} against {}; reports in {}",
        args.scenario.name(),
        target.describe(),
        dir.display()
    );
    let mut reports = Vec::new();
    for run in 1..=args.runs.max(1) {
        let report = match run_once(&args, &load, &mut target, run, &dir).await {
            Ok(report) => report,
            Err(e) => {
                let logs = target.log_tails(400).await;
                std::fs::write(dir.join(format!("logs-{run}.txt")), &logs)?;
                return Err(e.context(format!(
                    "drill {} run {run} could not complete (node logs in {})",
                    args.scenario.name(),
                    dir.join(format!("logs-{run}.txt")).display()
                )));
            }
        };
        std::fs::write(dir.join(format!("report-{run}.md")), report.markdown())?;
        if !report.passed {
            std::fs::write(
                dir.join(format!("logs-{run}.txt")),
                target.log_tails(400).await,
            )?;
            for detail in report.invariants.details.iter().take(10) {
                eprintln!("  {detail}");
            }
        }
        std::fs::write(
            dir.join(format!("report-{run}.json")),
            serde_json::to_string_pretty(&report)?,
        )?;
        eprintln!(
            "run {run}: {} — writes paused {:.0} ms (p99 gap {:.0} ms), {} lost, {} duplicated, {} double-assigned, {} over capacity",
            if report.passed { "passed" } else { "FAILED" },
            report.write_gap_max_ms,
            report.write_gap_p99_ms,
            report.invariants.lost,
            report.invariants.duplicated,
            report.invariants.double_assigned,
            report.invariants.over_capacity,
        );
        reports.push(report);
    }
    let summary = summary_markdown(args.scenario, args.target, &reports);
    std::fs::write(dir.join("summary.md"), &summary)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&reports)?,
    )?;
    println!("{summary}");
    println!("reports: {}", dir.display());
    let failed = reports.iter().filter(|r| !r.passed).count();
    if failed > 0 {
        bail!("invariants broken in {failed} of {} runs", reports.len());
    }
    Ok(())
}

fn target_name(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Local => "local",
        TargetKind::Compose => "compose",
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn summary_markdown(scenario: Scenario, kind: TargetKind, reports: &[DrillReport]) -> String {
    let mut out = format!(
        "## Drill `{}` against {} — {} run(s), {} passed\n\n",
        scenario.name(),
        target_name(kind),
        reports.len(),
        reports.iter().filter(|r| r.passed).count()
    );
    out.push_str("| run | verdict | write gap max | p99 gap | election | autonomy switch | reconciliation | writes ok/unknown | contacts ok/unknown | lost | dup | double | capacity |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0} ms"));
    for r in reports {
        let switch = r
            .sites
            .iter()
            .filter_map(|s| s.autonomy_switch_ms)
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
        let reconcile = r
            .sites
            .iter()
            .filter_map(|s| s.reconciliation_ms)
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
        out.push_str(&format!(
            "| {} | {} | {:.0} ms | {:.0} ms | {} | {} | {} | {}/{} | {}/{} | {} | {} | {} | {} |\n",
            r.run,
            if r.passed { "passed" } else { "FAILED" },
            r.write_gap_max_ms,
            r.write_gap_p99_ms,
            opt(r.election_ms),
            opt(switch),
            opt(reconcile),
            r.writes.ok,
            r.writes.unknown,
            r.contacts.ok,
            r.contacts.unknown,
            r.invariants.lost,
            r.invariants.duplicated,
            r.invariants.double_assigned,
            r.invariants.over_capacity,
        ));
    }
    let mut gaps: Vec<f64> = reports.iter().map(|r| r.write_gap_max_ms).collect();
    let max = gaps.iter().copied().fold(0.0, f64::max);
    out.push_str(&format!(
        "\nWrite unavailability over {} run(s): median {:.0} ms, max {:.0} ms.\n",
        reports.len(),
        median(&mut gaps),
        max
    ));
    out
}

/// Live figures for the progress line.
struct Progress {
    origin: Instant,
    phase: std::sync::Mutex<String>,
}

impl Progress {
    fn set(&self, phase: impl Into<String>) {
        let phase = phase.into();
        if !std::io::stderr().is_terminal() {
            eprintln!("[{:>6.1} s] {phase}", self.origin.elapsed().as_secs_f64());
        }
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }
}

async fn run_once(
    args: &DrillArgs,
    load: &Load,
    target: &mut Target,
    run: usize,
    dir: &std::path::Path,
) -> anyhow::Result<DrillReport> {
    let started_unix_ms = banyan_env::wall_clock_ms();
    let progress = Arc::new(Progress {
        origin: Instant::now(),
        phase: std::sync::Mutex::new("checking the cluster is healthy".into()),
    });
    progress.set("checking the cluster is healthy");
    let nodes = target.nodes()?;
    let leader = nodes
        .wait_for_leader(&target.core_ids(), Duration::from_secs(60))
        .await?;
    wait_all_connected(target, Duration::from_secs(90)).await?;
    let names = Names::new(run);
    // The tap starts before the set-up so the agents' capacities are in the history.
    let from = nodes.status(leader).await?.last_log_index + 1;
    let tap = EventTap::start(nodes.clone(), target.core_ids(), from);
    progress.set("creating the drill's queue and agents");
    workload::set_up(target, &names, load).await?;

    let workload = Workload::start(target, &names, load)?;
    let origin = Instant::now();
    let ticker = spawn_ticker(progress.clone(), &workload);
    let lead = args.duration / 4;
    progress.set(format!("steady workload for {:.0} s", lead.as_secs_f64()));
    tokio::time::sleep(lead).await;

    let mut fault = Fault::default();
    let scenario_result = inject(args, target, &tap, &progress, &mut fault).await;
    // Whatever happened, the rest of the planned workload runs, so recovery is visible.
    let planned_end = origin + args.duration;
    if let Ok(()) = &scenario_result {
        progress.set("steady workload after the fault");
        tokio::time::sleep_until(planned_end.into()).await;
    }
    let workload_end = Instant::now();
    ticker.abort();
    progress.set("stopping callers and writers");
    let (record, desks) = workload.stop_arrivals().await;
    scenario_result?;

    progress.set("waiting for every acknowledged contact to be served");
    let ops = record.contact_ops();
    let unserved = workload::wait_served(target, &ops, Duration::from_secs(90)).await?;
    let mut notes = Vec::new();
    if !unserved.is_empty() {
        notes.extend(agents_at_the_end(target, &names).await);
        notes.extend(contacts_at_the_end(target, &unserved).await);
    }
    notes.extend(workload::log_out(desks).await);

    progress.set("reading every node's final state");
    // The members now: a drill may have rejoined one under a new id.
    let (nodes, core) = (target.nodes()?, target.core_ids());
    let (mut contacts, committed) = nodes.final_contacts(&core, Duration::from_secs(60)).await?;
    let customers = nodes.final_states(&core, Duration::from_secs(60)).await?;
    for (branch, _) in BRANCHES {
        contacts.push(branch_replica(target, branch, contacts[0].contacts.len()).await?);
    }
    // A write after the reads, so the tap sees the log pass them.
    let core = workload::core_clients(target, RetryPolicy::default(), 1)?.remove(0);
    core.upsert_customer(
        pb::Customer {
            id: format!("{}end", names.prefix),
            name: "Drill end marker".into(),
            ..Default::default()
        },
        None,
    )
    .await?;
    tap.wait_past(committed, Duration::from_secs(60)).await?;
    let events = tap.stop().await?;

    progress.set("checking the invariants");
    let contact_report = check_contacts(&ops, &contacts, &events, &names.prefix);
    let customer_report = check_customers(&record.history, &customers, &names.customers());
    let mut invariants = Invariants {
        unserved: unserved.len(),
        ..Default::default()
    };
    for id in &unserved {
        invariants.details.push(format!(
            "acknowledged contact {id} was not completed by the end"
        ));
    }
    let mut tally = |v: &ContactViolation| {
        match v {
            ContactViolation::Lost { .. } => invariants.lost += 1,
            ContactViolation::Duplicated { .. } => invariants.duplicated += 1,
            ContactViolation::DoubleAssigned { .. } => invariants.double_assigned += 1,
            ContactViolation::OverCapacity { .. } => invariants.over_capacity += 1,
            _ => invariants.other += 1,
        }
        invariants.details.push(v.to_string());
    };
    contact_report.violations.iter().for_each(&mut tally);
    let mut sites = std::mem::take(&mut fault.sites);
    let mut streams = vec![("core".to_owned(), events.clone())];
    for (branch, alone) in std::mem::take(&mut fault.alone) {
        let mut own = tokio::time::timeout(Duration::from_secs(60), alone)
            .await
            .context("the branch did not end its own event stream after reconciling")???;
        if let Some(ahead) = fault.clock_ahead_ms.get(&branch) {
            for event in &mut own {
                event.at_ms -= ahead;
            }
        }
        let site = site_of(branch);
        let sides = check_branch_sides(&events, &own, site);
        streams.push((format!("branch {branch} alone"), own.clone()));
        sides.violations.iter().for_each(&mut tally);
        let offers = own
            .iter()
            .filter(|e| e.kind == EventKind::ContactOffered as i32)
            .count();
        if let Some(figures) = sites.iter_mut().find(|s| s.site == site) {
            figures.local_offers = offers;
        }
    }
    for v in &customer_report.violations {
        match v {
            Violation::LostAcknowledged { .. } => invariants.lost += 1,
            Violation::AppliedTwice { .. } => invariants.duplicated += 1,
            _ => invariants.other += 1,
        }
        invariants.details.push(v.to_string());
    }
    invariants.details.truncate(50);

    let (writes, contact_samples) = record.samples();
    let injected = fault.injected.unwrap_or(workload_end);
    let healed = fault.healed.unwrap_or(workload_end);
    let (gap_max, gap_p99, steady) = report::write_gaps(&writes, origin, injected, workload_end);
    let rel = |t: Instant| t.saturating_duration_since(origin).as_secs_f64();
    let marks: Vec<Mark> = fault
        .marks
        .iter()
        .map(|(t, what)| Mark {
            at_s: rel(*t),
            what: what.clone(),
        })
        .collect();
    if invariants.broken() {
        let path = dir.join(format!("history-{run}.txt"));
        std::fs::write(&path, report::history_text(&streams))?;
        notes.push(format!("the events judged are in {}", path.display()));
    }
    notes.extend(fault.notes);
    notes.push(format!(
        "checked {} core events, {} contacts on {} replicas, {} customers",
        events.len(),
        contacts.first().map_or(0, |c| c.contacts.len()),
        contacts.len(),
        customers.first().map_or(0, |c| c.customers.len())
    ));
    let report = DrillReport {
        scenario: args.scenario.name().into(),
        target: target.describe(),
        run,
        passed: !invariants.broken(),
        started_unix_ms,
        workload_s: rel(workload_end),
        marks: marks.clone(),
        write_gap_max_ms: gap_max,
        write_gap_p99_ms: gap_p99,
        steady_gap_max_ms: steady,
        election_ms: fault.election_ms,
        sites: {
            sites.sort_by(|a, b| a.site.cmp(&b.site));
            sites
        },
        writes: Counts::of(&writes),
        contacts: Counts::of(&contact_samples),
        write_latency_p50_ms: report::latency_ms(&writes, 0.5),
        write_latency_p99_ms: report::latency_ms(&writes, 0.99),
        invariants,
        notes,
    };
    let svg = report::timeline_svg(
        &format!("banyan drill {} (run {run})", args.scenario.name()),
        origin,
        workload_end,
        &[
            ("customer writes through the core", &writes, "#1f77b4"),
            ("contacts, all entry points", &contact_samples, "#2ca02c"),
        ],
        &marks,
        (rel(injected), rel(healed)),
    );
    std::fs::write(dir.join(format!("timeline-{run}.svg")), svg)?;
    Ok(report)
}

/// Prints the phase and the live counts about once a second.
fn spawn_ticker(progress: Arc<Progress>, workload: &Workload) -> tokio::task::JoinHandle<()> {
    let counts = workload.counters();
    tokio::spawn(async move {
        let terminal = std::io::stderr().is_terminal();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last = (0, 0);
        for n in 0u64.. {
            tick.tick().await;
            let (writes, contacts, completed) = counts();
            let phase = progress
                .phase
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let line = format!(
                "[{:>6.1} s] {phase} | writes ok {writes} (+{}/s) | contacts ok {contacts} | completed {completed}",
                progress.origin.elapsed().as_secs_f64(),
                writes - last.0,
            );
            last = (writes, contacts);
            if terminal {
                eprint!("\r\x1b[2K{line}");
            } else if n > 0 && n.is_multiple_of(5) {
                eprintln!("{line}");
            }
        }
    })
}

/// The drill's agents as the core and their branch see them: why contacts were not served.
async fn agents_at_the_end(target: &Target, names: &Names) -> Vec<String> {
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
async fn contacts_at_the_end(target: &Target, unserved: &[String]) -> Vec<String> {
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
async fn branch_replica(
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
