//! `banyan core`: runs one core node until SIGTERM or SIGINT.

use anyhow::Context;
use banyan_core::node::system_clock;
use banyan_core::LinkControl;
use banyan_core::{serve, CoreConfig, CoreNode};
use clap::Args;

use crate::node_args::NodeArgs;
use crate::node_shell::{bind, serve_until_stopped, Served};
use crate::raft_args::RaftArgs;
use crate::trust_args::TrustArgs;

#[derive(Args, Debug)]
pub struct CoreArgs {
    /// This node's id: a positive integer, unique in the cluster, never reused. A
    /// StatefulSet pod name (`banyan-core-0`) stands for its ordinal plus one.
    #[arg(long, env = "BANYAN_ID", value_parser = node_id)]
    pub id: u64,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Voters of a new cluster: `1=host:port,2=host:port,3=host:port`. Safe to pass on
    /// every start: a node that is already initialized ignores it.
    #[arg(long, env = "BANYAN_INIT")]
    pub init: Option<String>,
    #[command(flatten)]
    pub raft: RaftArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// How long a finished contact (completed, abandoned, transferred, self-served) stays
    /// in the routing state; then it leaves it, and GetContact, ListContacts and customer
    /// history read it from the node's history store.
    #[arg(long, env = "BANYAN_RETAIN_FINISHED", default_value = "1h", value_parser = humantime::parse_duration)]
    pub retain_finished: std::time::Duration,
}

pub async fn run(args: CoreArgs) -> anyhow::Result<()> {
    let security = args.trust.node(args.id)?;
    let (listener, advertise) = bind(&args.node.addr, args.node.listen).await?;
    let timers = args.raft.timers();
    let config = CoreConfig::validate(
        args.id,
        &advertise,
        args.node.data_dir.clone(),
        args.init.as_deref(),
        timers,
        security,
    )?
    .with_retain_finished(args.retain_finished);
    let node = CoreNode::start(&config, LinkControl::default(), system_clock())
        .await
        .context("starting the node")?;
    let running = serve(node.clone(), listener)?;
    tracing::info!(
        node_id = config.id,
        addr = %advertise,
        listen = %running.addr,
        data_dir = %config.data_dir.display(),
        "banyan core serving"
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
