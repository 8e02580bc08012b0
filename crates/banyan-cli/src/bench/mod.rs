//! `banyan bench`: `UpsertCustomer` throughput and latency at several client counts, and
//! the write pause after a leader is killed with SIGKILL. `banyan bench branch`: a
//! branch's replica lag and reconciliation throughput (`branch.rs`).
//!
//! Without `--endpoints` it starts its own 3-node cluster of `banyan core` processes on
//! loopback (the binary running this command), so the numbers include real processes,
//! real gRPC and real flushes to disk. With `--etcd` the same load runs against a local
//! 3-member etcd cluster as well, for a side-by-side figure on the same machine.

mod branch;
mod etcd;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use banyan_client::{Client, RetryPolicy, Security};
use banyan_harness::LocalCluster;
use banyan_proto::v1::Customer;
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    /// Nodes of an existing cluster; when absent, a 3-node cluster is started locally.
    #[arg(long, env = "BANYAN_ENDPOINTS", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Concurrent clients, one measurement per value.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
    clients: Vec<usize>,
    /// Length of each measurement.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Writes before each measurement that are not counted.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Also kill the leader this many times under load and measure the write pause
    /// (local cluster only).
    #[arg(long, default_value_t = 0)]
    leader_kills: usize,
    /// Clients writing during the leader-kill runs.
    #[arg(long, default_value_t = 64)]
    kill_clients: usize,
    /// Heartbeat of the nodes the benchmark starts (the node default).
    #[arg(long, default_value = "50ms")]
    heartbeat: String,
    /// Minimum election timeout of the nodes the benchmark starts (the node default).
    #[arg(long, default_value = "150ms")]
    election_timeout: String,
    /// Also run the throughput levels against a local 3-member etcd cluster.
    #[arg(long)]
    etcd: bool,
    /// Also run the throughput levels against a second local cluster started with
    /// `--insecure` (no TLS, no credentials): what the trust boundary costs.
    #[arg(long)]
    also_insecure: bool,
    /// The etcd binary for `--etcd` (Debian's etcd-server package provides it).
    #[arg(long, default_value = "etcd")]
    etcd_bin: String,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// With `--endpoints`: the deployment's certificates (or `--insecure`). The cluster
    /// the benchmark starts itself makes its own CA and runs secure.
    #[command(flatten)]
    trust: crate::trust_args::TrustArgs,
}

#[derive(clap::Subcommand, Debug)]
enum BenchWhat {
    /// A branch's replica lag under a steady contact rate, and how fast the core takes in
    /// its journal when it reconciles.
    Branch(branch::BranchBenchArgs),
}

#[derive(Debug, Serialize)]
struct ThroughputResult {
    /// `banyan` (TLS), `banyan-insecure`, `etcd` (TLS) or `etcd-plain`.
    system: &'static str,
    clients: usize,
    writes: u64,
    errors: u64,
    seconds: f64,
    writes_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct LeaderKillResult {
    run: usize,
    killed: u64,
    new_leader: u64,
    /// Longest gap between two successful writes around the kill.
    write_pause_ms: f64,
    /// From the kill until every remaining node agreed on a new leader.
    election_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    throughput: Vec<ThroughputResult>,
    leader_kills: Vec<LeaderKillResult>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(BenchWhat::Branch(branch)) = args.what {
        return branch::run(branch).await;
    }
    let mut local = None;
    let security;
    let endpoints = if args.endpoints.is_empty() {
        let cluster = start_local(&args, true).await?;
        let endpoints = cluster
            .ids()
            .iter()
            .map(|id| cluster.addr(*id))
            .collect::<anyhow::Result<Vec<_>>>()?;
        eprintln!(
            "started a 3-node cluster under {}",
            cluster.root().display()
        );
        security = cluster.security();
        local = Some(cluster);
        endpoints
    } else {
        security = args.trust.client("admin", None)?;
        args.endpoints.clone()
    };

    let mut report = Report {
        throughput: Vec::new(),
        leader_kills: Vec::new(),
    };
    let banyan = banyan_writers(&endpoints, &security)?;
    let secure = security.is_secure();
    measure(
        &args,
        if secure { "banyan" } else { "banyan-insecure" },
        &banyan,
        &mut report,
    )
    .await?;
    if args.also_insecure {
        let plain = start_local(&args, false).await?;
        let endpoints = plain
            .ids()
            .iter()
            .map(|id| plain.addr(*id))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let writers = banyan_writers(&endpoints, &Security::Insecure)?;
        measure(&args, "banyan-insecure", &writers, &mut report).await?;
    }
    if args.etcd {
        // Beside a secure Banyan, etcd runs on TLS from the same CA with client
        // certificates, so both pay for the same handshakes and encryption.
        let pki = local.as_ref().and_then(LocalCluster::pki);
        let cluster = etcd::EtcdCluster::start(&args.etcd_bin, pki, &security).await?;
        let system = if pki.is_some() { "etcd" } else { "etcd-plain" };
        eprintln!("started a 3-member etcd cluster for comparison ({system})");
        let writers = cluster
            .client_urls
            .iter()
            .map(|url| {
                Ok(Writer::Etcd(etcd::pb::kv_client::KvClient::new(
                    etcd::channel(url, &security)?,
                )))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        measure(&args, system, &writers, &mut report).await?;
    }
    if args.leader_kills > 0 {
        let cluster = local
            .as_mut()
            .context("--leader-kills needs the local cluster (no --endpoints)")?;
        for run in 1..=args.leader_kills {
            let result = leader_kill(cluster, run, args.kill_clients).await?;
            eprintln!(
                "leader kill {run}: node {} killed, node {} elected in {:.0} ms, writes paused {:.0} ms",
                result.killed, result.new_leader, result.election_ms, result.write_pause_ms
            );
            report.leader_kills.push(result);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_markdown(&report);
    }
    Ok(())
}

/// A 3-node cluster of `banyan core` processes at the benchmark's timers: secure (its
/// own CA) or `--insecure`.
async fn start_local(args: &BenchArgs, secure: bool) -> anyhow::Result<LocalCluster> {
    let bin = std::env::current_exe().context("locating the banyan binary")?;
    let timers = [
        "--heartbeat",
        args.heartbeat.as_str(),
        "--election-timeout",
        args.election_timeout.as_str(),
    ];
    let mut cluster = if secure {
        LocalCluster::new(bin, &timers)?
    } else {
        LocalCluster::new_insecure(bin, &timers)?
    };
    cluster.start_voters(&[1, 2, 3])?;
    cluster
        .wait_for_leader(&[1, 2, 3], Duration::from_secs(20))
        .await?;
    Ok(cluster)
}

/// Runs every `--clients` level against `writers`.
async fn measure(
    args: &BenchArgs,
    system: &'static str,
    writers: &[Writer],
    report: &mut Report,
) -> anyhow::Result<()> {
    for (round, &clients) in args.clients.iter().enumerate() {
        let prefix = format!("{system}{round}-{}", std::process::id());
        load(writers, clients, args.warmup, &format!("{prefix}w")).await?;
        let outcome = load(writers, clients, args.duration, &prefix).await?;
        let result = outcome.summary(system, clients);
        eprintln!(
            "{system:>6} {clients:>5} clients: {:>8.0} writes/s  p50 {:.2} ms  p99 {:.2} ms  ({} errors)",
            result.writes_per_sec, result.p50_ms, result.p99_ms, result.errors
        );
        report.throughput.push(result);
    }
    Ok(())
}

/// Something the benchmark writes to: a Banyan client, or an etcd member.
#[derive(Clone)]
enum Writer {
    Banyan(Client),
    Etcd(etcd::pb::kv_client::KvClient<tonic::transport::Channel>),
}

impl Writer {
    /// Writes record `id` (a customer of similar size on both systems).
    async fn write(&mut self, id: String, n: u64) -> bool {
        let name = format!("Bench customer {n}");
        let phone = format!("+1 555 {:07}", n % 10_000_000);
        match self {
            Writer::Banyan(client) => client
                .upsert_customer(
                    Customer {
                        id,
                        name,
                        phones: vec![phone],
                        ..Default::default()
                    },
                    None,
                )
                .await
                .is_ok(),
            Writer::Etcd(kv) => {
                let value = format!("{{\"name\":\"{name}\",\"phones\":[\"{phone}\"]}}");
                kv.put(etcd::pb::PutRequest {
                    key: id.into_bytes(),
                    value: value.into_bytes(),
                })
                .await
                .is_ok()
            }
        }
    }
}

/// One Banyan client per starting node, so the load enters through every node.
fn banyan_writers(endpoints: &[String], security: &Security) -> anyhow::Result<Vec<Writer>> {
    (0..endpoints.len())
        .map(|start| {
            let rotated: Vec<&String> = endpoints
                .iter()
                .cycle()
                .skip(start)
                .take(endpoints.len())
                .collect();
            Ok(Writer::Banyan(Client::new(
                rotated,
                RetryPolicy::default(),
                security,
            )?))
        })
        .collect()
}

/// What a load run saw: every successful write's latency and completion time.
struct Outcome {
    histogram: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
    /// Completion times of successful writes, relative to the run's start.
    completions: Vec<Duration>,
}

impl Outcome {
    fn summary(&self, system: &'static str, clients: usize) -> ThroughputResult {
        let ms = |us: u64| us as f64 / 1000.0;
        let writes = self.histogram.len();
        ThroughputResult {
            system,
            clients,
            writes,
            errors: self.errors,
            seconds: self.elapsed.as_secs_f64(),
            writes_per_sec: writes as f64 / self.elapsed.as_secs_f64(),
            p50_ms: ms(self.histogram.value_at_quantile(0.50)),
            p99_ms: ms(self.histogram.value_at_quantile(0.99)),
            max_ms: ms(self.histogram.max()),
        }
    }
}

/// Runs `clients` concurrent writers for `duration` (or until `stop` is set).
async fn load_until(
    writers: &[Writer],
    clients: usize,
    duration: Duration,
    prefix: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let mut writer = writers[worker % writers.len()].clone();
        let prefix = prefix.to_owned();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            let mut completions = Vec::new();
            let mut errors = 0;
            let mut n = 0u64;
            while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
                let id = format!("{prefix}-{worker}-{n}");
                let t0 = Instant::now();
                if writer.write(id, n).await {
                    let _ = histogram.record(t0.elapsed().as_micros() as u64);
                    completions.push(started.elapsed());
                } else {
                    errors += 1;
                }
                n += 1;
            }
            (histogram, completions, errors)
        }));
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut completions = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (h, c, e) = task.await?;
        histogram.add(h)?;
        completions.extend(c);
        errors += e;
    }
    completions.sort();
    Ok(Outcome {
        histogram,
        errors,
        elapsed: started.elapsed(),
        completions,
    })
}

async fn load(
    writers: &[Writer],
    clients: usize,
    duration: Duration,
    prefix: &str,
) -> anyhow::Result<Outcome> {
    load_until(writers, clients, duration, prefix, Arc::default()).await
}

/// Kills the leader under load and measures how long writes stopped.
async fn leader_kill(
    cluster: &mut LocalCluster,
    run: usize,
    clients: usize,
) -> anyhow::Result<LeaderKillResult> {
    let ids = cluster.ids();
    let leader = cluster
        .wait_for_leader(&ids, Duration::from_secs(20))
        .await?;
    let endpoints: Vec<String> = ids
        .iter()
        .map(|id| cluster.addr(*id))
        .collect::<anyhow::Result<_>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let prefix = format!("k{run}-{}", std::process::id());
    let load = {
        let stop = stop.clone();
        let endpoints = endpoints.clone();
        let security = cluster.security();
        tokio::spawn(async move {
            let writers = banyan_writers(&endpoints, &security)?;
            load_until(&writers, clients, Duration::from_secs(120), &prefix, stop).await
        })
    };
    let load_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = load_started.elapsed();
    let kill_instant = Instant::now();
    cluster.kill(leader)?;
    let survivors: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let new_leader = cluster
        .wait_for_leader(&survivors, Duration::from_secs(30))
        .await?;
    let election = kill_instant.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let outcome = load.await??;
    // The pause: the longest gap between successful writes from 1 s before the kill on.
    let window: Vec<Duration> = outcome
        .completions
        .iter()
        .copied()
        .filter(|t| *t + Duration::from_secs(1) >= killed_at)
        .collect();
    let pause = window
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    // Bring the killed node back so the next run starts from three healthy nodes.
    cluster.start(leader)?;
    let target = cluster.status(new_leader).await?.committed_index;
    cluster
        .wait_applied(leader, target, Duration::from_secs(60))
        .await?;
    Ok(LeaderKillResult {
        run,
        killed: leader,
        new_leader,
        write_pause_ms: pause.as_secs_f64() * 1000.0,
        election_ms: election.as_secs_f64() * 1000.0,
    })
}

fn print_markdown(report: &Report) {
    println!("| system | clients | writes/s | p50 ms | p99 ms | max ms | writes | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &report.throughput {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} |",
            r.system, r.clients, r.writes_per_sec, r.p50_ms, r.p99_ms, r.max_ms, r.writes, r.errors
        );
    }
    if !report.leader_kills.is_empty() {
        println!();
        println!("| run | killed | new leader | election ms | write pause ms |");
        println!("|---:|---:|---:|---:|---:|");
        for k in &report.leader_kills {
            println!(
                "| {} | {} | {} | {:.0} | {:.0} |",
                k.run, k.killed, k.new_leader, k.election_ms, k.write_pause_ms
            );
        }
        let mut pauses: Vec<f64> = report
            .leader_kills
            .iter()
            .map(|k| k.write_pause_ms)
            .collect();
        pauses.sort_by(f64::total_cmp);
        println!();
        println!(
            "write pause after leader kill: median {:.0} ms, max {:.0} ms over {} runs",
            pauses[pauses.len() / 2],
            pauses[pauses.len() - 1],
            pauses.len()
        );
    }
}
