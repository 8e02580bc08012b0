//! `banyan branch`: runs one branch node until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use banyan_branch::{serve, BranchConfig, BranchNode};
use banyan_raft::{LinkControl, RaftTimers};
use clap::Args;

use crate::core_cmd::{bind, shut_down_within, stop_signal_or_fatal};
use crate::trust_args::TrustArgs;

#[derive(Args, Debug)]
pub struct BranchArgs {
    /// This branch's node id: positive, unique among core nodes and branches.
    #[arg(long, env = "BANYAN_ID")]
    pub id: u64,
    /// The site (regional center) this branch serves, e.g. `emea`.
    #[arg(long, env = "BANYAN_SITE")]
    pub site: String,
    /// Address the core and clients use to reach this branch (host:port).
    #[arg(long, env = "BANYAN_ADDR")]
    pub addr: String,
    /// Where to listen, when it differs from --addr.
    #[arg(long, env = "BANYAN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serve `/healthz` and `/readyz` on this address.
    #[arg(long, env = "BANYAN_HTTP")]
    pub http: Option<SocketAddr>,
    /// Directory for the branch's database (its replica of the core).
    #[arg(long, env = "BANYAN_DATA_DIR")]
    pub data_dir: PathBuf,
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
    #[arg(long, env = "BANYAN_HEARTBEAT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    #[arg(long, env = "BANYAN_ELECTION_TIMEOUT", default_value = "150ms", value_parser = humantime::parse_duration)]
    pub election_timeout: Duration,
    #[arg(long, env = "BANYAN_SNAPSHOT_EVERY", default_value_t = 20_000)]
    pub snapshot_every: u64,
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
    let (listener, advertise) = bind(&args.addr, args.listen).await?;
    let timers = RaftTimers {
        heartbeat: args.heartbeat,
        election_timeout: args.election_timeout,
        snapshot_every: args.snapshot_every,
    };
    let config = BranchConfig::validate(
        args.id,
        &args.site,
        &advertise,
        args.data_dir.clone(),
        args.core.clone(),
        args.lease_ttl,
        args.max_clock_skew,
        timers,
        &args.self_service,
        security,
    )?;
    let node = BranchNode::start(config.clone(), LinkControl::default())
        .await
        .context("starting the branch")?;
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = match args.http {
        Some(addr) => {
            let http_listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --http {addr}"))?;
            tracing::info!(http = %http_listener.local_addr()?, "serving /healthz, /readyz, /metrics and the wallboard");
            Some(tokio::spawn(banyan_branch::http::serve_http(
                node.clone(),
                http_listener,
                async {
                    let _ = http_stopped.await;
                },
            )))
        }
        None => None,
    };
    let raft = node.raft().clone();
    let identity = node.identity().clone();
    let running = serve(node, listener)?;
    tracing::info!(
        node_id = config.id,
        site = %config.site,
        addr = %advertise,
        core = ?config.core,
        "banyan branch serving"
    );
    let fatal = stop_signal_or_fatal(raft, identity).await;
    tracing::info!(node_id = config.id, "shutting down");
    let _ = http_stop.send(());
    if let Some(http) = http {
        // An open wallboard's live feed never ends by itself: cut it after the drain time.
        let _ = banyan_api::drain(http).await;
    }
    shut_down_within(running.shutdown(), fatal.is_some()).await;
    tracing::info!(node_id = config.id, "stopped");
    match fatal {
        Some(reason) => anyhow::bail!("stopped: {reason}"),
        None => Ok(()),
    }
}
