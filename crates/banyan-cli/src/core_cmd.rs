//! `banyan core`: runs one core node until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use banyan_core::http::serve_http;
use banyan_core::node::system_clock;
use banyan_core::{serve, CoreConfig, CoreNode};
use banyan_core::{LinkControl, RaftTimers};
use clap::Args;

use crate::trust_args::TrustArgs;

#[derive(Args, Debug)]
pub struct CoreArgs {
    /// This node's id: a positive integer, unique in the cluster, never reused. A
    /// StatefulSet pod name (`banyan-core-0`) stands for its ordinal plus one.
    #[arg(long, env = "BANYAN_ID", value_parser = node_id)]
    pub id: u64,
    /// Address peers and clients use to reach this node (host:port).
    #[arg(long, env = "BANYAN_ADDR")]
    pub addr: String,
    /// Where to listen, when it differs from --addr (e.g. 0.0.0.0:7001 in a container).
    /// Default: --addr when it is an IP address, else 0.0.0.0 on --addr's port.
    #[arg(long, env = "BANYAN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HTTP address for /healthz and /readyz (e.g. 127.0.0.1:8001); none when absent.
    #[arg(long, env = "BANYAN_HTTP")]
    pub http: Option<SocketAddr>,
    /// Directory for this node's database (created if missing).
    #[arg(long, env = "BANYAN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Voters of a new cluster: `1=host:port,2=host:port,3=host:port`. Safe to pass on
    /// every start: a node that is already initialized ignores it.
    #[arg(long, env = "BANYAN_INIT")]
    pub init: Option<String>,
    /// Raft heartbeat interval; across sites, above the round trip plus a disk flush.
    #[arg(long, env = "BANYAN_HEARTBEAT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Minimum election timeout (the maximum is twice this).
    #[arg(long, env = "BANYAN_ELECTION_TIMEOUT", default_value = "150ms", value_parser = humantime::parse_duration)]
    pub election_timeout: Duration,
    /// Log entries applied between snapshots.
    #[arg(long, env = "BANYAN_SNAPSHOT_EVERY", default_value_t = 20_000)]
    pub snapshot_every: u64,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// Where to listen: `--listen`, else `--addr` when it is an IP address, else all
/// interfaces on `--addr`'s port.
pub fn listen_addr(addr: &str, listen: Option<SocketAddr>) -> anyhow::Result<SocketAddr> {
    if let Some(listen) = listen {
        return Ok(listen);
    }
    if let Ok(addr) = addr.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .context("--addr: expected host:port")?;
    Ok(SocketAddr::from(([0, 0, 0, 0], port)))
}

/// Binds the node's gRPC listener and says which address to advertise: `--addr`, or with
/// port 0 the address actually bound.
pub async fn bind(
    addr: &str,
    listen: Option<SocketAddr>,
) -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(listen_addr(addr, listen)?)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let advertise = match addr.parse::<SocketAddr>() {
        Ok(bound) if bound.port() == 0 => listener.local_addr()?.to_string(),
        _ => addr.to_owned(),
    };
    Ok((listener, advertise))
}

pub async fn run(args: CoreArgs) -> anyhow::Result<()> {
    let security = args.trust.node(args.id)?;
    let (listener, advertise) = bind(&args.addr, args.listen).await?;
    let timers = RaftTimers {
        heartbeat: args.heartbeat,
        election_timeout: args.election_timeout,
        snapshot_every: args.snapshot_every,
    };
    let config = CoreConfig::validate(
        args.id,
        &advertise,
        args.data_dir.clone(),
        args.init.as_deref(),
        timers,
        security,
    )?;
    let node = CoreNode::start(&config, LinkControl::default(), system_clock())
        .await
        .context("starting the node")?;
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = match args.http {
        Some(addr) => {
            let http_listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --http {addr}"))?;
            tracing::info!(http = %http_listener.local_addr()?, "serving /healthz, /readyz, /metrics and the wallboard");
            Some(tokio::spawn(serve_http(
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
        addr = %advertise,
        listen = %running.addr,
        data_dir = %config.data_dir.display(),
        "banyan core serving"
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

/// Waits for SIGTERM or SIGINT (`None`), or for the node's Raft to stop with a fatal
/// error, or for its peers to fence it off as a wiped or replaced data directory (`Some`,
/// why): then the node must exit non-zero, so its orchestrator restarts it (or shows the
/// reason), instead of answering UNAVAILABLE for ever.
pub async fn stop_signal_or_fatal(
    raft: banyan_raft::Raft,
    identity: banyan_raft::Identity,
) -> Option<String> {
    let mut fenced = identity.fenced();
    let fenced = async move {
        match fenced.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    };
    let mut metrics = raft.metrics();
    let fatal = async move {
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "Raft ended".to_owned();
            }
        }
    };
    tokio::select! {
        () = shutdown_signal() => None,
        reason = fatal => {
            tracing::error!(%reason, "Raft stopped with a fatal error: exiting");
            Some(reason)
        }
        reason = fenced => {
            tracing::error!(%reason, "this data directory is not the one the cluster knows for this node id: exiting");
            Some(reason)
        }
    }
}

/// Runs a node's shutdown (drain, stop Raft, final flush), bounded: after a fatal error
/// the disk may be what failed, and a flush stuck on it must not keep the node from
/// exiting non-zero.
pub async fn shut_down_within(shutdown: impl std::future::Future<Output = ()>, fatal: bool) {
    let limit = if fatal {
        std::time::Duration::from_secs(5)
    } else {
        std::time::Duration::from_secs(30)
    };
    if tokio::time::timeout(limit, shutdown).await.is_err() {
        tracing::error!(
            ?limit,
            "the shutdown did not finish in time; exiting without it"
        );
    }
}

/// Resolves on SIGTERM (orchestrators) or SIGINT (a terminal).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A node id: a positive number, or a StatefulSet pod name `<name>-<ordinal>`, which is
/// node `ordinal + 1` (so pods 0, 1, 2 are nodes 1, 2, 3).
pub fn node_id(value: &str) -> Result<u64, String> {
    if let Ok(id) = value.parse::<u64>() {
        return Ok(id);
    }
    value
        .rsplit_once('-')
        .and_then(|(_, ordinal)| ordinal.parse::<u64>().ok())
        .and_then(|ordinal| ordinal.checked_add(1))
        .ok_or_else(|| {
            format!("{value:?} is neither a node id nor a StatefulSet pod name (name-ordinal)")
        })
}

#[cfg(test)]
mod tests {
    use super::node_id;

    #[test]
    fn a_node_id_is_a_number_or_a_pod_ordinal_plus_one() {
        assert_eq!(node_id("7"), Ok(7));
        assert_eq!(node_id("banyan-core-0"), Ok(1));
        assert_eq!(node_id("banyan-core-2"), Ok(3));
        assert!(node_id("banyan-core").is_err());
        assert!(node_id("").is_err());
    }
}
