//! What `banyan core` and `banyan branch` do the same way once their node is started:
//! bind the listener, serve the HTTP port, wait for a stop signal or a fatal error, then
//! stop in order (HTTP, gRPC and Raft, bounded) and exit non-zero on a fatal error.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use banyan_observe::Observed;
use banyan_trust::Security;

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

/// A started node as the shell runs it.
pub struct Served<N, F> {
    /// What the HTTP port shows.
    pub observed: N,
    pub security: Security,
    pub raft: banyan_raft::Raft,
    pub identity: banyan_raft::Identity,
    /// Stops serving gRPC, then Raft, and flushes storage.
    pub shutdown: F,
    /// How long the node keeps finished contacts in its history store.
    pub history_retention: std::time::Duration,
    /// How long the node keeps applied events on disk.
    pub event_retention: std::time::Duration,
    /// Where to write contact detail records, if anywhere.
    pub cdr_dir: Option<std::path::PathBuf>,
}

/// Serves `node`'s HTTP port on `http` (if given) and waits for a stop signal or a fatal
/// error; then stops the HTTP port (an open wallboard's live feed is cut after the drain
/// time), runs the node's shutdown within its bound, and fails with the fatal error's
/// reason if there was one.
pub async fn serve_until_stopped<N, F>(
    node_id: u64,
    http: Option<SocketAddr>,
    node: Served<N, F>,
) -> anyhow::Result<()>
where
    N: Observed,
    F: Future<Output = ()>,
{
    let shell_stop = banyan_env::Shutdown::new();
    let state = node.observed.serving();
    if let Some(log) = state.event_log().cloned() {
        let clock = banyan_env::system_clock();
        tokio::spawn(log.keep_for(node.event_retention, clock, shell_stop.clone()));
    }
    if let Some(history) = state.history().cloned() {
        let keep = node.history_retention;
        let clock = banyan_env::system_clock();
        tokio::spawn(
            history
                .clone()
                .keep_for(keep, clock.clone(), shell_stop.clone()),
        );
        if let Some(dir) = &node.cdr_dir {
            let writer = banyan_observe::CdrWriter::new(dir, node_id, history, clock)
                .with_context(|| format!("--cdr-dir {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "writing contact detail records");
            tokio::spawn(writer.run(state.clone(), shell_stop.clone()));
        }
    }
    let http = match http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --http {addr}"))?;
            tracing::info!(http = %listener.local_addr()?, "serving /healthz, /readyz, /metrics and the wallboard");
            Some(tokio::spawn(banyan_observe::serve(
                node.observed,
                node.security,
                listener,
                {
                    let shell_stop = shell_stop.clone();
                    async move { shell_stop.begun().await }
                },
            )))
        }
        None => None,
    };
    let fatal = stop_signal_or_fatal(node.raft, node.identity).await;
    tracing::info!(node_id, "shutting down");
    shell_stop.begin();
    if let Some(http) = http {
        let _ = banyan_api::drain(http).await;
    }
    shut_down_within(node.shutdown, fatal.is_some()).await;
    tracing::info!(node_id, "stopped");
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
