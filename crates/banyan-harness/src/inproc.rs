//! A cluster of core nodes inside this process: real sled in temporary directories, real
//! gRPC on loopback ports chosen by the OS, and a shared [`LinkControl`] so a test can cut
//! and heal the Raft links between any two nodes. Branches join it in the same process
//! behind [`BranchLinks`] a test cuts the same way it does for `banyan` processes.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use banyan_client::{Client, RetryPolicy, Security};
use banyan_core::node::system_clock;
use banyan_core::{serve, CoreConfig, CoreNode, LinkControl, RaftTimers, RunningNode};
use tokio::net::TcpListener;

use crate::link::BranchLinks;
use crate::pki::Pki;
use crate::ports::bind_loopback;
use crate::wait::wait_until;

/// A branch running in this process, with its links to the core.
pub struct InProcessBranch {
    /// The branch node and its server, for reading its state or stopping it.
    pub running: banyan_branch::RunningBranch,
    /// Its only way to and from the core, so a test can cut the site off.
    pub links: BranchLinks,
}

/// Where the nodes keep their data: a temporary directory removed at the end, or one the
/// caller chose and keeps.
enum Root {
    Temporary(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl Root {
    fn path(&self) -> &std::path::Path {
        match self {
            Root::Temporary(dir) => dir.path(),
            Root::Kept(path) => path,
        }
    }
}

/// Core nodes (and branches) inside the test process: faster to start than processes, and
/// open to the test for partitions between any two nodes and for direct reads of a node.
pub struct InProcessCluster {
    root: Root,
    links: LinkControl,
    timers: RaftTimers,
    nodes: BTreeMap<u64, RunningNode>,
    addrs: BTreeMap<u64, String>,
    branches: BTreeMap<u64, InProcessBranch>,
    /// The cluster's certificates, under the root: every node runs secure.
    pki: Pki,
}

impl InProcessCluster {
    /// Starts voters `ids` on port 0, bootstrapped together.
    pub async fn start(ids: &[u64], timers: RaftTimers) -> anyhow::Result<Self> {
        Self::start_in(None, ids, timers).await
    }

    /// Like [`start`](Self::start), with the nodes' data under `data_dir` (kept
    /// afterwards) when given, else in a temporary directory.
    pub async fn start_in(
        data_dir: Option<&std::path::Path>,
        ids: &[u64],
        timers: RaftTimers,
    ) -> anyhow::Result<Self> {
        let root = match data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                Root::Kept(dir.to_owned())
            }
            None => Root::Temporary(
                tempfile::Builder::new()
                    .prefix("banyan-inproc-")
                    .tempdir()?,
            ),
        };
        let mut listeners = BTreeMap::new();
        for id in ids {
            let listener = bind_loopback().await?;
            listeners.insert(*id, listener);
        }
        let addrs: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(id, l)| Ok((*id, l.local_addr()?.to_string())))
            .collect::<std::io::Result<_>>()?;
        let init = addrs
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let links = LinkControl::default();
        let pki = Pki::create(root.path().join("certs"))?;
        let mut nodes = BTreeMap::new();
        for (id, listener) in listeners {
            pki.node(id)?;
            let config = CoreConfig::validate(
                id,
                &addrs[&id],
                root.path().join(format!("node-{id}")),
                Some(&init),
                timers,
                pki.node_security(id)?,
            )?;
            let node = CoreNode::start(&config, links.clone(), system_clock())
                .await
                .with_context(|| format!("starting node {id}"))?;
            nodes.insert(id, serve(node, listener)?);
        }
        Ok(Self {
            root,
            links,
            timers,
            nodes,
            addrs,
            branches: BTreeMap::new(),
            pki,
        })
    }

    /// Starts branch `id` for `site` in this process, reaching the core (and reached by
    /// it) only through links the test can cut. Returns the address its clients use.
    pub async fn start_branch(
        &mut self,
        id: u64,
        site: &str,
        lease_ttl: Duration,
        max_clock_skew: Duration,
    ) -> anyhow::Result<String> {
        self.start_branch_with(id, site, lease_ttl, max_clock_skew, &[])
            .await
    }

    /// Like [`start_branch`](Self::start_branch), answering the `self_service` intents
    /// (`intent=text:...` or `intent=attr:key`) at the branch.
    pub async fn start_branch_with(
        &mut self,
        id: u64,
        site: &str,
        lease_ttl: Duration,
        max_clock_skew: Duration,
        self_service: &[String],
    ) -> anyhow::Result<String> {
        let listener = bind_loopback().await?;
        let addr = listener.local_addr()?.to_string();
        let core: Vec<String> = self.addrs.values().cloned().collect();
        let links = BranchLinks::start(&core, &addr)?;
        self.pki.branch(id, site)?;
        let config = banyan_branch::BranchConfig::validate(
            id,
            site,
            links.branch_addr(),
            self.root.path().join(format!("branch-{id}")),
            links.core_addrs(),
            lease_ttl,
            max_clock_skew,
            self.timers,
            self_service,
            self.pki.node_security(id)?,
        )?;
        let node = banyan_branch::BranchNode::start(
            config,
            self.links.clone(),
            banyan_env::system_clock(),
        )
        .await
        .with_context(|| format!("starting branch {id}"))?;
        let running = banyan_branch::serve(node, listener)?;
        self.branches.insert(id, InProcessBranch { running, links });
        Ok(addr)
    }

    /// Branch `id` as started by [`start_branch`](Self::start_branch), to cut its links.
    pub fn branch(&self, id: u64) -> Option<&InProcessBranch> {
        self.branches.get(&id)
    }

    /// The cluster's certificates: admin client, agents' tokens.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The admin client's security, for the harness's own calls.
    pub fn security(&self) -> Security {
        self.pki.admin().expect("the harness's admin certificate")
    }

    /// The security of agent `agent`'s desk: a 12-hour desk token.
    pub fn agent_security(&self, agent: &str) -> anyhow::Result<Security> {
        self.pki.agent(agent)
    }

    /// The switchboard of the Raft links between core nodes, to partition and heal them.
    pub fn links(&self) -> &LinkControl {
        &self.links
    }

    /// The Raft timers every node runs with, so a test can size its deadlines to them.
    pub fn timers(&self) -> RaftTimers {
        self.timers
    }

    /// The directory holding every node's data and the certificates, to print or inspect.
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    /// The ids of the core nodes running now, in order.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Core node `id` itself, for what a client cannot see (Raft metrics, applied state).
    pub fn node(&self, id: u64) -> Option<&CoreNode> {
        self.nodes.get(&id).map(|r| &r.node)
    }

    /// The gRPC address of core node `id`, kept while it is stopped, to reach that node alone.
    pub fn addr(&self, id: u64) -> Option<&str> {
        self.addrs.get(&id).map(String::as_str)
    }

    /// A client of every node.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(
            self.addrs.values(),
            RetryPolicy::default(),
            &self.security(),
        )?)
    }

    /// A client of node `id` only.
    pub fn node_client(&self, id: u64, policy: RetryPolicy) -> anyhow::Result<Client> {
        let addr = self.addr(id).with_context(|| format!("no node {id}"))?;
        Ok(Client::new([addr], policy, &self.security())?)
    }

    /// The leader that the nodes in `among` agree on.
    pub async fn wait_for_leader(&self, among: &[u64], timeout: Duration) -> anyhow::Result<u64> {
        wait_until("an agreed leader", timeout, || async {
            let mut agreed = None;
            for id in among {
                let metrics = self.nodes.get(id)?.node.metrics();
                let leader = metrics.current_leader.filter(|l| among.contains(l))?;
                let view = (leader, metrics.current_term);
                if *agreed.get_or_insert(view) != view {
                    return None;
                }
            }
            let (leader, _) = agreed?;
            let leader_metrics = self.nodes.get(&leader)?.node.metrics();
            leader_metrics.state.is_leader().then_some(leader)
        })
        .await
    }

    /// Stops core node `id` (its data stays); [`restart`](Self::restart) brings it back.
    pub async fn stop_node(&mut self, id: u64) -> anyhow::Result<()> {
        let running = self
            .nodes
            .remove(&id)
            .with_context(|| format!("node {id} is not running"))?;
        running.shutdown().await;
        Ok(())
    }

    /// Starts stopped core node `id` again on its data and its address.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let addr = self
            .addrs
            .get(&id)
            .with_context(|| format!("no node {id}"))?
            .clone();
        // The port was this node's: retry briefly while the old socket closes.
        let listener = wait_until(
            &format!("node {id}'s port {addr} to be free"),
            Duration::from_secs(10),
            || async { TcpListener::bind(&addr).await.ok() },
        )
        .await?;
        let config = CoreConfig::validate(
            id,
            &addr,
            self.root.path().join(format!("node-{id}")),
            None,
            self.timers,
            self.pki.node_security(id)?,
        )?;
        let node = CoreNode::start(&config, self.links.clone(), system_clock())
            .await
            .with_context(|| format!("restarting node {id}"))?;
        self.nodes.insert(id, serve(node, listener)?);
        Ok(())
    }

    /// Stops every node gracefully.
    pub async fn shutdown(mut self) {
        for (_, branch) in std::mem::take(&mut self.branches) {
            branch.running.shutdown().await;
        }
        for (_, node) in std::mem::take(&mut self.nodes) {
            node.shutdown().await;
        }
    }
}
