//! `banyan branch`: runs one branch node until SIGTERM or SIGINT.

use std::time::Duration;

use anyhow::Context;
use banyan_branch::{serve, BranchConfig, BranchNode};
use banyan_raft::LinkControl;
use clap::Args;

use crate::node_args::NodeArgs;
use crate::node_shell::{bind, serve_until_stopped, Served};
use crate::raft_args::RaftArgs;
use crate::trust_args::TrustArgs;

#[derive(Args, Debug)]
pub struct BranchArgs {
    /// This branch's node id: positive, unique among core nodes and branches.
    #[arg(long, env = "BANYAN_ID")]
    pub id: u64,
    /// The site (regional center) this branch serves, e.g. `emea`.
    #[arg(long, env = "BANYAN_SITE")]
    pub site: String,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Core nodes: host:port,host:port,...
    #[arg(long, env = "BANYAN_CORE", value_delimiter = ',', required = true)]
    pub core: Vec<String>,
    /// How long each renewal of the site's lease holds at the core.
    #[arg(long, env = "BANYAN_LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// The largest clock difference assumed between this branch and the core.
    #[arg(long, env = "BANYAN_MAX_CLOCK_SKEW", default_value = "1s", value_parser = humantime::parse_duration)]
    pub max_clock_skew: Duration,
    /// Raft timers: must match the core's.
    #[command(flatten)]
    pub raft: RaftArgs,
    /// An intent answered at the branch (self-service), repeatable:
    /// `hours=text:Open 8-18 on weekdays` or `order-status=attr:order_status` (an attribute
    /// of the caller's customer record).
    #[arg(
        long = "self-service",
        env = "BANYAN_SELF_SERVICE",
        value_delimiter = ';'
    )]
    pub self_service: Vec<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

pub async fn run(args: BranchArgs) -> anyhow::Result<()> {
    let security = args.trust.node(args.id)?;
    let (listener, advertise) = bind(&args.node.addr, args.node.listen).await?;
    let timers = args.raft.timers();
    let config = BranchConfig::validate(
        args.id,
        &args.site,
        &advertise,
        args.node.data_dir.clone(),
        args.core.clone(),
        args.lease_ttl,
        args.max_clock_skew,
        timers,
        &args.self_service,
        security,
    )?;
    let node = BranchNode::start(
        config.clone(),
        LinkControl::default(),
        banyan_env::system_clock(),
    )
    .await
    .context("starting the branch")?;
    let running = serve(node.clone(), listener)?;
    tracing::info!(
        node_id = config.id,
        site = %config.site,
        addr = %advertise,
        core = ?config.core,
        "banyan branch serving"
    );
    let served = Served {
        security: node.security().clone(),
        raft: node.raft().clone(),
        identity: node.identity().clone(),
        observed: node,
        shutdown: running.shutdown(),
        history_retention: args.node.history_retention,
        event_retention: args.node.event_retention,
        cdr_dir: args.node.cdr_dir.clone(),
    };
    serve_until_stopped(config.id, args.node.http, served).await
}
