//! `banyan drill SCENARIO`: breaks a running cluster on purpose under a steady contact
//! center workload, heals it, and reports what the users would have seen; the exit status
//! is non-zero when an invariant broke. This file holds the flags and runs the drill as
//! often as asked, summing the runs up; `run.rs` runs one (health check, workload, fault,
//! judging, report), `faults.rs` breaks and heals the cluster as the scenario says,
//! `probes.rs` reads the cluster's state for both, `workload.rs` is the steady work,
//! `target.rs` the cluster broken and `report.rs` the report.

mod faults;
mod probes;
mod report;
mod run;
mod target;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use report::DrillReport;
use run::run_once;
use target::Target;
use workload::Load;

/// The failures a drill rehearses, each one an operator will meet in production.
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

/// Which cluster a drill breaks: one it starts itself, or a deployment already running.
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

/// Runs the drill `--runs` times against one target, writes each run's report and the
/// summary, and fails when any run broke an invariant, so CI and cron can act on it.
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
