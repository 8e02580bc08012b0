//! One run of a drill: check the cluster healthy, set up and start the workload, let the
//! scenario inject its fault, stop the workload, wait for every acknowledged contact to
//! be served, read every node's final state, judge it with the shared checkers and write
//! the run's report and timeline.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use banyan_client::RetryPolicy;
use banyan_harness::{
    check_branch_sides, check_contacts, check_customers, ContactOp, ContactViolation, DeskAgent,
    EventTap, NodeContacts, NodeState, Sample, Violation,
};
use banyan_proto::v1::{self as pb, EventKind};

use super::faults::{inject, Fault};
use super::probes::{agents_at_the_end, branch_replica, contacts_at_the_end, wait_all_connected};
use super::report::{self, Counts, DrillReport, Invariants, Mark, SiteFigures};
use super::target::{site_of, Target, BRANCHES};
use super::workload::{self, Load, Names, Record, Workload};
use super::DrillArgs;

/// Live figures for the progress line.
pub struct Progress {
    origin: Instant,
    phase: std::sync::Mutex<String>,
}

impl Progress {
    /// Names the phase the drill is in, for the progress line and the log of a run
    /// without a terminal.
    pub fn set(&self, phase: impl Into<String>) {
        let phase = phase.into();
        if !std::io::stderr().is_terminal() {
            eprintln!("[{:>6.1} s] {phase}", self.origin.elapsed().as_secs_f64());
        }
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }
}

/// One run of the scenario, from a healthy cluster to its judged report.
pub async fn run_once(
    args: &DrillArgs,
    load: &Load,
    target: &mut Target,
    run: usize,
    dir: &Path,
) -> anyhow::Result<DrillReport> {
    let started_unix_ms = banyan_env::wall_clock_ms();
    let progress = Arc::new(Progress {
        origin: Instant::now(),
        phase: std::sync::Mutex::new("checking the cluster is healthy".into()),
    });
    let (names, tap) = prepare(target, load, run, &progress).await?;
    let mut fault = Fault::default();
    let worked =
        work_through_fault(args, load, target, &names, &tap, &progress, &mut fault).await?;

    progress.set("waiting for every acknowledged contact to be served");
    let ops = worked.record.contact_ops();
    let (unserved, mut notes) = serve_the_rest(target, &names, &ops, worked.desks).await?;

    progress.set("reading every node's final state");
    let end = read_final_state(target, &names, tap).await?;

    progress.set("checking the invariants");
    let branches = branch_streams(&mut fault).await?;
    let invariants = judge(&ops, &worked.record, &names, &unserved, &end, &branches);
    if invariants.broken() {
        notes.push(write_history(dir, run, &end, &branches)?);
    }
    notes.extend(std::mem::take(&mut fault.notes));
    notes.push(end.summary());

    let timeline = Timeline::of(worked.origin, worked.end, &fault);
    let (writes, contact_samples) = worked.record.samples();
    let (gap_max, gap_p99, steady) =
        report::write_gaps(&writes, timeline.origin, timeline.injected, timeline.end);
    let report = DrillReport {
        scenario: args.scenario.name().into(),
        target: target.describe(),
        run,
        passed: !invariants.broken(),
        started_unix_ms,
        workload_s: timeline.rel(timeline.end),
        marks: timeline.marks.clone(),
        write_gap_max_ms: gap_max,
        write_gap_p99_ms: gap_p99,
        steady_gap_max_ms: steady,
        election_ms: fault.election_ms,
        sites: site_figures(std::mem::take(&mut fault.sites), &branches),
        writes: Counts::of(&writes),
        contacts: Counts::of(&contact_samples),
        write_latency_p50_ms: report::latency_ms(&writes, 0.5),
        write_latency_p99_ms: report::latency_ms(&writes, 0.99),
        invariants,
        notes,
    };
    let svg = timeline.svg(
        &format!("banyan drill {} (run {run})", args.scenario.name()),
        &writes,
        &contact_samples,
    );
    std::fs::write(dir.join(format!("timeline-{run}.svg")), svg)?;
    Ok(report)
}

/// Checks the cluster is healthy, starts the event tap and creates the run's queue and
/// agents: every run starts from the same footing.
async fn prepare(
    target: &Target,
    load: &Load,
    run: usize,
    progress: &Progress,
) -> anyhow::Result<(Names, EventTap)> {
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
    Ok((names, tap))
}

/// The workload as it ran through the fault.
struct WorkedThrough {
    /// Every client operation with its outcome, what the figures and checks are made of.
    record: Record,
    /// The simulated agents, still logged in to finish the contacts they hold.
    desks: Vec<DeskAgent>,
    /// When the workload started: the timeline's zero.
    origin: Instant,
    /// When callers and writers stopped: the figures are measured up to here.
    end: Instant,
}

/// Runs the workload for `--duration` with the scenario's fault in it, a quarter of it
/// steady before the fault so the report has a baseline, then stops callers and writers.
/// A scenario that failed still lets the workload stop first, so nothing is left running.
async fn work_through_fault(
    args: &DrillArgs,
    load: &Load,
    target: &mut Target,
    names: &Names,
    tap: &EventTap,
    progress: &Arc<Progress>,
    fault: &mut Fault,
) -> anyhow::Result<WorkedThrough> {
    let workload = Workload::start(target, names, load)?;
    let origin = Instant::now();
    let ticker = spawn_ticker(progress.clone(), &workload);
    let lead = args.duration / 4;
    progress.set(format!("steady workload for {:.0} s", lead.as_secs_f64()));
    tokio::time::sleep(lead).await;

    let scenario_result = inject(args, target, tap, progress, fault).await;
    // Whatever happened, the rest of the planned workload runs, so recovery is visible.
    let planned_end = origin + args.duration;
    if let Ok(()) = &scenario_result {
        progress.set("steady workload after the fault");
        tokio::time::sleep_until(planned_end.into()).await;
    }
    let end = Instant::now();
    ticker.abort();
    progress.set("stopping callers and writers");
    let (record, desks) = workload.stop_arrivals().await;
    scenario_result?;
    Ok(WorkedThrough {
        record,
        desks,
        origin,
        end,
    })
}

/// Waits for every acknowledged contact to be completed, then logs the desks out. Returns
/// the contacts that were not, and notes on where the drill's agents and those contacts
/// stand, to tell why.
async fn serve_the_rest(
    target: &Target,
    names: &Names,
    ops: &[ContactOp],
    desks: Vec<DeskAgent>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let unserved = workload::wait_served(target, ops, Duration::from_secs(90)).await?;
    let mut notes = Vec::new();
    if !unserved.is_empty() {
        notes.extend(agents_at_the_end(target, names).await);
        notes.extend(contacts_at_the_end(target, &unserved).await);
    }
    notes.extend(workload::log_out(desks).await);
    Ok((unserved, notes))
}

/// Every node's final state, and the core's events up to it: what the checkers judge.
struct FinalState {
    /// The contacts of every core node, then of each branch's replica.
    contacts: Vec<NodeContacts>,
    /// The customers of every core node.
    customers: Vec<NodeState>,
    /// The core's events, at least up to the state read.
    events: Vec<pb::Event>,
}

impl FinalState {
    /// How much was checked, for the report's notes.
    fn summary(&self) -> String {
        format!(
            "checked {} core events, {} contacts on {} replicas, {} customers",
            self.events.len(),
            self.contacts.first().map_or(0, |c| c.contacts.len()),
            self.contacts.len(),
            self.customers.first().map_or(0, |c| c.customers.len())
        )
    }
}

/// Reads every node's final state, then writes once more so the tap sees the log pass
/// what was read, and stops the tap.
async fn read_final_state(
    target: &Target,
    names: &Names,
    tap: EventTap,
) -> anyhow::Result<FinalState> {
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
    Ok(FinalState {
        contacts,
        customers,
        events,
    })
}

/// The events each branch recorded while it worked alone, on the cluster's clock (a
/// branch whose clock ran ahead has its stamps moved back by as much).
async fn branch_streams(fault: &mut Fault) -> anyhow::Result<Vec<(u64, Vec<pb::Event>)>> {
    let mut streams = Vec::new();
    for (branch, alone) in std::mem::take(&mut fault.alone) {
        let mut own = tokio::time::timeout(Duration::from_secs(60), alone)
            .await
            .context("the branch did not end its own event stream after reconciling")???;
        if let Some(ahead) = fault.clock_ahead_ms.get(&branch) {
            for event in &mut own {
                event.at_ms -= ahead;
            }
        }
        streams.push((branch, own));
    }
    Ok(streams)
}

/// Judges the run by the shared checkers: no acknowledged contact lost, duplicated,
/// double-assigned or over capacity, on the core and across each branch's time alone;
/// every acknowledged customer write applied once; every acknowledged contact served.
fn judge(
    ops: &[ContactOp],
    record: &Record,
    names: &Names,
    unserved: &[String],
    end: &FinalState,
    branches: &[(u64, Vec<pb::Event>)],
) -> Invariants {
    let contact_report = check_contacts(ops, &end.contacts, &end.events, &names.prefix);
    let customer_report = check_customers(&record.history, &end.customers, &names.customers());
    let mut invariants = Invariants {
        unserved: unserved.len(),
        ..Default::default()
    };
    for id in unserved {
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
    for (branch, own) in branches {
        let sides = check_branch_sides(&end.events, own, site_of(*branch));
        sides.violations.iter().for_each(&mut tally);
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
    invariants
}

/// Writes the events judged to the run's history file, for a run that broke an
/// invariant, and returns the note that points to it.
fn write_history(
    dir: &Path,
    run: usize,
    end: &FinalState,
    branches: &[(u64, Vec<pb::Event>)],
) -> anyhow::Result<String> {
    let mut streams = vec![("core".to_owned(), end.events.clone())];
    for (branch, own) in branches {
        streams.push((format!("branch {branch} alone"), own.clone()));
    }
    let path = dir.join(format!("history-{run}.txt"));
    std::fs::write(&path, report::history_text(&streams))?;
    Ok(format!("the events judged are in {}", path.display()))
}

/// The sites' figures in site order, each with the contacts its branch offered alone.
fn site_figures(
    mut sites: Vec<SiteFigures>,
    branches: &[(u64, Vec<pb::Event>)],
) -> Vec<SiteFigures> {
    for (branch, own) in branches {
        let offers = own
            .iter()
            .filter(|e| e.kind == EventKind::ContactOffered as i32)
            .count();
        if let Some(figures) = sites.iter_mut().find(|s| s.site == site_of(*branch)) {
            figures.local_offers = offers;
        }
    }
    sites.sort_by(|a, b| a.site.cmp(&b.site));
    sites
}

/// The run on its own clock: when the workload started, the fault held and the workload
/// stopped, and the fault's moments, all as seconds since the start.
struct Timeline {
    origin: Instant,
    end: Instant,
    /// When the fault began (the workload's end when the scenario never injected it).
    injected: Instant,
    /// When the healing began (the workload's end when the scenario never healed).
    healed: Instant,
    marks: Vec<Mark>,
}

impl Timeline {
    fn of(origin: Instant, end: Instant, fault: &Fault) -> Self {
        let mut timeline = Timeline {
            origin,
            end,
            injected: fault.injected.unwrap_or(end),
            healed: fault.healed.unwrap_or(end),
            marks: Vec::new(),
        };
        timeline.marks = fault
            .marks
            .iter()
            .map(|(t, what)| Mark {
                at_s: timeline.rel(*t),
                what: what.clone(),
            })
            .collect();
        timeline
    }

    /// Seconds since the workload started.
    fn rel(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.origin).as_secs_f64()
    }

    /// The SVG of throughput and latency over the run, the fault shaded.
    fn svg(&self, title: &str, writes: &[Sample], contacts: &[Sample]) -> String {
        report::timeline_svg(
            title,
            self.origin,
            self.end,
            &[
                ("customer writes through the core", writes, "#1f77b4"),
                ("contacts, all entry points", contacts, "#2ca02c"),
            ],
            &self.marks,
            (self.rel(self.injected), self.rel(self.healed)),
        )
    }
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
