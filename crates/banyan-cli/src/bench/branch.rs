//! `banyan bench branch`: how far a branch's replica trails the core under a steady stream
//! of contacts, and how fast the core takes in a branch's journal when it reconciles.
//!
//! Starts three `banyan core` processes and one `banyan branch` on loopback, the branch
//! behind links the benchmark cuts (`banyan_harness::BranchLinks`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use banyan_client::{Client, RetryPolicy, Security};
use banyan_harness::{wait_until, BranchLinks, LocalCluster};
use banyan_proto::v1::{self as pb, EventKind};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

const SITE: &str = "emea";
const BRANCH: u64 = 101;
const DEADLINE: Duration = Duration::from_secs(120);

#[derive(Args, Debug)]
pub struct BranchBenchArgs {
    /// Contacts per second entering at the core while the replica lag is measured.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Length of the replica-lag measurement.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Contacts the branch takes on its own before each reconciliation, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    journal: Vec<u64>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct LagResult {
    rate: u64,
    seconds: f64,
    created: u64,
    errors: u64,
    /// From the leader's stamp on a contact's creation to its event at the node.
    branch_p50_ms: f64,
    branch_p99_ms: f64,
    branch_max_ms: f64,
    follower_p50_ms: f64,
    follower_p99_ms: f64,
    follower_max_ms: f64,
    /// Entries the branch's replica was behind the leader, sampled by the leader every
    /// 200 ms (`lag_samples` of them).
    max_lag_entries: u64,
    lag_samples: u64,
}

#[derive(Debug, Serialize)]
struct ReconcileResult {
    journal_entries: u64,
    /// From healing the link until the core had applied the import.
    heal_to_applied_ms: f64,
    entries_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    lag: LagResult,
    reconcile: Vec<ReconcileResult>,
}

pub async fn run(args: BranchBenchArgs) -> anyhow::Result<()> {
    let bin = std::env::current_exe().context("locating the banyan binary")?;
    let mut cluster = LocalCluster::new(bin, &[])?;
    cluster.start_voters(&[1, 2, 3])?;
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await?;
    let (branch_addr, links) = cluster.start_branch_behind_links(
        BRANCH,
        SITE,
        &["--lease-ttl", "2s", "--max-clock-skew", "500ms"],
    )?;
    eprintln!(
        "started 3 core nodes and a branch under {}",
        cluster.root().display()
    );
    let core = cluster.client()?;
    core.upsert_queue(pb::UpsertQueueRequest {
        queue: Some(pb::Queue {
            id: "bench".into(),
            name: "Bench".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await?;
    wait_leased(&core, "the branch holding its lease").await?;

    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != BRANCH)
        .context("no follower")?;
    let lag = replica_lag(&cluster, &args, &core, &branch_addr, follower).await?;
    eprintln!(
        "replica lag at {} contacts/s: branch p50 {:.1} ms p99 {:.1} ms max {:.1} ms; follower p50 {:.1} ms p99 {:.1} ms; at most {} entries behind",
        lag.rate, lag.branch_p50_ms, lag.branch_p99_ms, lag.branch_max_ms, lag.follower_p50_ms, lag.follower_p99_ms, lag.max_lag_entries
    );
    let mut reconcile = Vec::new();
    for (round, &entries) in args.journal.iter().enumerate() {
        let result = reconciliation(&cluster, &links, &core, &branch_addr, entries, round).await?;
        eprintln!(
            "reconciled {} journal entries in {:.0} ms: {:.0} entries/s",
            result.journal_entries, result.heal_to_applied_ms, result.entries_per_sec
        );
        reconcile.push(result);
    }
    let report = Report { lag, reconcile };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_markdown(&report);
    }
    Ok(())
}

/// Waits until the core shows the branch's site leased.
async fn wait_leased(core: &Client, what: &str) -> anyhow::Result<()> {
    wait_until(what, DEADLINE, || {
        let core = core.clone();
        async move {
            let status = core.status().await.ok()?;
            let site = status.sites.into_iter().find(|s| s.site_id == SITE)?;
            (site.mode == pb::SiteMode::Leased as i32).then_some(())
        }
    })
    .await
}

/// Watches node `addr`'s events from now on, recording for each contact created after
/// `since_ms` how long after the leader stamped it the node delivered it.
fn watch_lag(
    addr: &str,
    security: &Security,
    since_ms: i64,
    stop: banyan_env::Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<Histogram<u64>>> {
    let client = Client::new([addr], RetryPolicy::default(), security)?;
    Ok(tokio::spawn(async move {
        let mut histogram = Histogram::<u64>::new(3).expect("valid histogram");
        let request = pb::WatchEventsRequest::default();
        let Ok(mut stream) = client.watch_events(request).await else {
            return histogram;
        };
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(event)) => {
                        if event.kind == EventKind::ContactCreated as i32 && event.at_ms >= since_ms {
                            let lag = (banyan_env::wall_clock_ms() - event.at_ms).max(0) as u64;
                            let _ = histogram.record(lag);
                        }
                    }
                    _ => return histogram,
                },
                () = stop.begun() => return histogram,
            }
        }
    }))
}

async fn replica_lag(
    cluster: &LocalCluster,
    args: &BranchBenchArgs,
    core: &Client,
    branch_addr: &str,
    follower: u64,
) -> anyhow::Result<LagResult> {
    let stop = banyan_env::Shutdown::new();
    let since = banyan_env::wall_clock_ms();
    let at_branch = watch_lag(branch_addr, &cluster.security(), since, stop.clone())?;
    let at_follower = watch_lag(
        &cluster.addr(follower)?,
        &cluster.security(),
        since,
        stop.clone(),
    )?;
    let max_lag = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    // Replication progress is the leader's to know.
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await?;
    let at_leader = cluster.node_client(leader, RetryPolicy::once(Duration::from_secs(1)))?;
    let sampler = {
        let (core, max_lag, samples, stopped) =
            (at_leader, max_lag.clone(), samples.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = stopped.begun() => return,
                }
                if let Ok(status) = core.status().await {
                    if let Some(branch) = status.nodes.iter().find(|n| n.id == BRANCH) {
                        if branch.lag_known {
                            samples.fetch_add(1, Ordering::Relaxed);
                            max_lag.fetch_max(branch.replication_lag, Ordering::Relaxed);
                        }
                    }
                }
            }
        })
    };
    // Open loop: a contact every 1/rate seconds, whatever the answers take.
    let created = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = tokio::task::JoinSet::new();
    while started.elapsed() < args.duration {
        pace.tick().await;
        let (core, created, errors) = (core.clone(), created.clone(), errors.clone());
        calls.spawn(async move {
            let request = pb::CreateContactRequest {
                channel: pb::Channel::Chat.into(),
                queue_id: "bench".into(),
                ..Default::default()
            };
            match core.create_contact(request).await {
                Ok(_) => created.fetch_add(1, Ordering::Relaxed),
                Err(_) => errors.fetch_add(1, Ordering::Relaxed),
            };
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    let seconds = started.elapsed().as_secs_f64();
    // Let the last events reach both replicas.
    let leader_index = core.status().await?.committed_index;
    cluster
        .wait_applied(follower, leader_index, DEADLINE)
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.begin();
    let branch = at_branch.await?;
    let follower = at_follower.await?;
    sampler.await?;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64;
    Ok(LagResult {
        rate: args.rate,
        seconds,
        created: created.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        branch_p50_ms: ms(&branch, 0.5),
        branch_p99_ms: ms(&branch, 0.99),
        branch_max_ms: branch.max() as f64,
        follower_p50_ms: ms(&follower, 0.5),
        follower_p99_ms: ms(&follower, 0.99),
        follower_max_ms: follower.max() as f64,
        max_lag_entries: max_lag.load(Ordering::Relaxed),
        lag_samples: samples.load(Ordering::Relaxed),
    })
}

async fn reconciliation(
    cluster: &LocalCluster,
    links: &BranchLinks,
    core: &Client,
    branch_addr: &str,
    entries: u64,
    round: usize,
) -> anyhow::Result<ReconcileResult> {
    let branch = Client::new(
        [branch_addr],
        RetryPolicy {
            total_timeout: Duration::from_secs(3),
            follow_leader: false,
            ..RetryPolicy::default()
        },
        &cluster.security(),
    )?;
    let contact = move |n: u64| pb::CreateContactRequest {
        request_id: format!("bench-reconcile-{round}-{n}"),
        channel: pb::Channel::Email.into(),
        queue_id: "bench".into(),
        ..Default::default()
    };
    links.cut();
    // The first contact the branch takes while cut off proves it routes on its own.
    wait_until("the branch on its own", DEADLINE, || {
        let branch = branch.clone();
        let first = contact(0);
        async move { branch.create_contact(first).await.ok() }
    })
    .await?;
    let next = Arc::new(AtomicU64::new(1));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (branch, next) = (branch.clone(), next.clone());
        writers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= entries {
                    return Ok::<_, tonic::Status>(());
                }
                branch.create_contact(contact(n)).await?;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await?;
    let from = cluster.status(leader).await?.last_log_index + 1;
    let watch = {
        let client = Client::new(
            [cluster.addr(leader)?],
            RetryPolicy::default(),
            &cluster.security(),
        )?;
        tokio::spawn(async move {
            let request = pb::WatchEventsRequest {
                from_index: from,
                ..Default::default()
            };
            let mut stream = client.watch_events(request).await?;
            let mut imported = 0u64;
            while let Some(event) = stream.message().await? {
                if event.kind == EventKind::ContactImported as i32 {
                    imported += 1;
                    if imported == entries {
                        return Ok::<_, anyhow::Error>(Instant::now());
                    }
                }
            }
            anyhow::bail!("the event stream ended before the import")
        })
    };
    let healed = Instant::now();
    links.heal();
    let applied = tokio::time::timeout(DEADLINE, watch)
        .await
        .context("the import did not arrive")???;
    wait_leased(core, "the branch leased again").await?;
    let took = applied.duration_since(healed);
    Ok(ReconcileResult {
        journal_entries: entries,
        heal_to_applied_ms: took.as_secs_f64() * 1000.0,
        entries_per_sec: entries as f64 / took.as_secs_f64(),
    })
}

fn print_markdown(report: &Report) {
    let l = &report.lag;
    println!("| node | contacts/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| branch (learner) | {} | {:.0} | {:.0} | {:.0} |",
        l.rate, l.branch_p50_ms, l.branch_p99_ms, l.branch_max_ms
    );
    println!(
        "| core follower | {} | {:.0} | {:.0} | {:.0} |",
        l.rate, l.follower_p50_ms, l.follower_p99_ms, l.follower_max_ms
    );
    println!(
        "\n{} contacts created in {:.1} s ({} errors); the branch was at most {} entries behind in {} samples.\n",
        l.created, l.seconds, l.errors, l.max_lag_entries, l.lag_samples
    );
    println!("| journal entries | heal to applied ms | entries/s |");
    println!("|---:|---:|---:|");
    for r in &report.reconcile {
        println!(
            "| {} | {:.0} | {:.0} |",
            r.journal_entries, r.heal_to_applied_ms, r.entries_per_sec
        );
    }
}
