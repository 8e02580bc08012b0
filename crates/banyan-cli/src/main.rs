//! `banyan`: one binary for every role. `banyan core` runs a core node, `banyan branch` a
//! branch node, `banyan ctl` operates a cluster, `banyan demo` shows one running,
//! `banyan drill` breaks one on purpose and judges it, `banyan bench` measures it, and
//! `banyan certs` makes its certificates and tokens.
//! Every flag can also be set with an environment variable `BANYAN_<FLAG>`.

mod bench;
mod branch_cmd;
mod certs_cmd;
mod core_cmd;
mod ctl;
mod demo;
mod drill;
mod logging;
mod node_args;
mod node_shell;
mod raft_args;
mod trust_args;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "banyan",
    version,
    about = "Banyan: a multi-site contact-center cluster"
)]
struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, env = "BANYAN_LOG_FORMAT", default_value = "text")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a core node (a Raft voter holding the global state).
    Core(core_cmd::CoreArgs),
    /// Run a branch node: a learner of the core serving one regional center.
    Branch(branch_cmd::BranchArgs),
    /// Operate a running cluster: status, membership, customers, queues, agents, contacts.
    Ctl(ctl::CtlArgs),
    /// Run a contact center's day in this process: three core voters, two branches, agents
    /// and callers at both sites, the wallboard on every node, and the checkers' verdict.
    Demo(demo::DemoArgs),
    /// Break a cluster on purpose under a steady workload, heal it, and report what users
    /// saw and whether every invariant held.
    Drill(drill::DrillArgs),
    /// Measure write throughput, latency and the write pause after a leader kill.
    Bench(bench::BenchArgs),
    /// Make the cluster's CA, node, branch and client certificates, and bearer tokens.
    Certs(certs_cmd::CertsArgs),
    /// Ask a node's HTTP port whether it is ready (or healthy): exit 0 on 200, else 1. For
    /// container health checks in images without a shell or curl.
    Probe(ProbeArgs),
}

#[derive(clap::Args, Debug)]
struct ProbeArgs {
    /// The node's `--http` address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// `/readyz` or `/healthz`.
    #[arg(long, default_value = "/readyz")]
    path: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

/// `banyan probe`: the container health check, through the node's own HTTP client so the
/// production command needs nothing of the test harness.
async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let answer = tokio::time::timeout(
        args.timeout,
        banyan_observe::http_get(&args.http, &args.path),
    )
    .await;
    match answer {
        Ok(Ok((200, body))) => {
            print!("{body}");
            Ok(())
        }
        Ok(Ok((code, body))) => anyhow::bail!("{} answered {code}: {}", args.path, body.trim()),
        Ok(Err(e)) => anyhow::bail!("{}: {e}", args.http),
        Err(_) => anyhow::bail!("{}: no answer within {:?}", args.http, args.timeout),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Commands whose output is the answer log only warnings unless RUST_LOG says otherwise.
    let verbosity = match cli.command {
        Command::Core(_) | Command::Branch(_) => logging::Verbosity::Node,
        Command::Demo(_) => logging::Verbosity::Narrated,
        _ => logging::Verbosity::Quiet,
    };
    logging::init(cli.log_format, verbosity);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Core(args) => core_cmd::run(args).await,
            Command::Branch(args) => branch_cmd::run(args).await,
            Command::Ctl(args) => ctl::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Drill(args) => drill::run(args).await,
            Command::Probe(args) => probe(args).await,
            Command::Certs(args) => certs_cmd::run(args),
        }
    });
    // A write stuck on a failed disk must not keep the process from exiting (dropping the
    // runtime would wait for it): the exit code is what the orchestrator acts on.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}
