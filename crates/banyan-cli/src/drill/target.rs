//! What a drill breaks: a cluster of processes it starts itself on loopback, or the
//! Compose deployment of `deploy/compose.yaml`, driven through the Docker CLI.
//!
//! Both have the same shape — core nodes 1, 2, 3 and the branches 101 (emea) and 102
//! (apac) — and the same faults: kill -9, pause (SIGSTOP / `docker pause`), graceful
//! restart, and cutting a site's line to the core. The drill reaches every node at an
//! address that stays put across restarts: for containers, a relay on loopback in front
//! of the port Docker published, led to the new port when a container comes back.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use banyan_client::Security;
use banyan_harness::{BranchLinks, Link, LocalCluster, Nodes};

/// The core's voters.
pub const CORE: [u64; 3] = [1, 2, 3];
/// The branches and their sites.
pub const BRANCHES: [(u64, &str); 2] = [(101, "emea"), (102, "apac")];

pub fn site_of(branch: u64) -> &'static str {
    BRANCHES
        .iter()
        .find(|(id, _)| *id == branch)
        .map_or("?", |(_, site)| site)
}

pub enum Target {
    Local(LocalTarget),
    Compose(ComposeTarget),
}

pub struct LocalTarget {
    cluster: LocalCluster,
    links: BTreeMap<u64, BranchLinks>,
    branch_addrs: BTreeMap<u64, String>,
}

impl LocalTarget {
    /// Starts 3 core processes at the default timers and both branches, each branch
    /// behind links the drill can cut.
    pub async fn start(branch_flags: &[String]) -> anyhow::Result<Self> {
        let bin = std::env::current_exe().context("locating the banyan binary")?;
        let mut cluster = LocalCluster::new(bin, &[])?;
        cluster.start_voters(&CORE)?;
        if let Err(e) = cluster
            .wait_for_leader(&CORE, Duration::from_secs(30))
            .await
        {
            bail!(
                "{e:#}; the end of each node's log:\n{}",
                cluster.all_log_tails(20)
            );
        }
        let flags: Vec<&str> = branch_flags.iter().map(String::as_str).collect();
        let mut links = BTreeMap::new();
        let mut branch_addrs = BTreeMap::new();
        for (id, site) in BRANCHES {
            let (addr, link) = cluster.start_branch_behind_links(id, site, &flags)?;
            links.insert(id, link);
            branch_addrs.insert(id, addr);
        }
        Ok(Self {
            cluster,
            links,
            branch_addrs,
        })
    }
}

pub struct ComposeTarget {
    project: String,
    /// The deployment's certificates (`--certs-dir`): the drill presents the admin client
    /// certificate and makes its agents' desk tokens with the token key.
    pki: Option<banyan_harness::Pki>,
    /// Container name per node id.
    containers: BTreeMap<u64, String>,
    grpc: BTreeMap<u64, Link>,
}

/// The Compose service of each node id.
fn service(id: u64) -> String {
    match id {
        1..=3 => format!("core{id}"),
        _ => format!("branch-{}", site_of(id)),
    }
}

async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .context("running docker (is the Docker CLI installed?)")?;
    if !output.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl ComposeTarget {
    /// Finds the running Compose project `project` (containers labelled by Compose) and
    /// puts a relay in front of each node's published gRPC port.
    pub async fn attach(
        project: &str,
        certs_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let mut target = Self {
            project: project.to_owned(),
            pki: certs_dir.map(banyan_harness::Pki::open),
            containers: BTreeMap::new(),
            grpc: BTreeMap::new(),
        };
        let ids = CORE
            .iter()
            .copied()
            .chain(BRANCHES.iter().map(|(id, _)| *id));
        for id in ids {
            let name = docker(&[
                "ps",
                "-a",
                "--filter",
                &format!("label=com.docker.compose.project={project}"),
                "--filter",
                &format!("label=com.docker.compose.service={}", service(id)),
                "--format",
                "{{.Names}}",
            ])
            .await?;
            let name = name
                .lines()
                .next()
                .filter(|n| !n.is_empty())
                .with_context(|| {
                    format!(
                        "no container of service {} in Compose project {project}: is the cluster up \
                         (docker-compose -f deploy/compose.yaml -p {project} up -d)?",
                        service(id)
                    )
                })?
                .to_owned();
            target.containers.insert(id, name);
            let grpc = target.published(id).await?;
            target.grpc.insert(id, Link::start(&grpc)?);
        }
        Ok(target)
    }

    fn container(&self, id: u64) -> anyhow::Result<&str> {
        self.containers
            .get(&id)
            .map(String::as_str)
            .with_context(|| format!("no node {id}"))
    }

    /// The loopback address Docker published node `id`'s gRPC port at.
    async fn published(&self, id: u64) -> anyhow::Result<String> {
        let name = self.container(id)?;
        let out = docker(&["port", name, "7000/tcp"]).await?;
        out.lines()
            .find(|l| l.starts_with("127.0.0.1:") || l.starts_with("0.0.0.0:"))
            .map(|l| l.replace("0.0.0.0:", "127.0.0.1:"))
            .with_context(|| format!("{name} publishes no 7000/tcp on loopback: {out}"))
    }

    /// After a container came back: lead the relays to wherever Docker published it now.
    async fn follow_ports(&self, id: u64) -> anyhow::Result<()> {
        let grpc = self.published(id).await?;
        if let Some(link) = self.grpc.get(&id) {
            link.retarget(&grpc);
        }
        Ok(())
    }

    fn wan(&self, branch: u64) -> String {
        format!("{}_wan-{}", self.project, site_of(branch))
    }
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Local(local) => {
                format!("local processes under {}", local.cluster.root().display())
            }
            Target::Compose(compose) => format!("Compose project {}", compose.project),
        }
    }

    /// Node `id`'s gRPC address as the drill reaches it.
    pub fn addr(&self, id: u64) -> anyhow::Result<String> {
        match self {
            Target::Local(local) => match local.branch_addrs.get(&id) {
                Some(addr) => Ok(addr.clone()),
                None => local.cluster.addr(id),
            },
            Target::Compose(compose) => compose
                .grpc
                .get(&id)
                .map(|l| l.addr().to_owned())
                .with_context(|| format!("no node {id}")),
        }
    }

    /// The credentials of the drill's own calls: the admin client, or insecure for a
    /// deployment run without certificates.
    pub fn security(&self) -> anyhow::Result<Security> {
        match self {
            Target::Local(local) => Ok(local.cluster.security()),
            Target::Compose(compose) => match &compose.pki {
                Some(pki) => pki.admin(),
                None => Ok(Security::Insecure),
            },
        }
    }

    /// The credential of agent `agent`'s desk: a token signed with the cluster's key.
    pub fn agent_security(&self, agent: &str) -> anyhow::Result<Security> {
        match self {
            Target::Local(local) => local.cluster.agent_security(agent),
            Target::Compose(compose) => match &compose.pki {
                Some(pki) => pki.agent(agent),
                None => Ok(Security::Insecure),
            },
        }
    }

    /// The core's members now: nodes 1, 2, 3, unless a drill rejoined one under a new id.
    pub fn core_ids(&self) -> Vec<u64> {
        match self {
            Target::Local(local) => local
                .cluster
                .ids()
                .into_iter()
                .filter(|id| BRANCHES.iter().all(|(branch, _)| branch != id))
                .collect(),
            Target::Compose(_) => CORE.to_vec(),
        }
    }

    /// Every node, core and branches, by the address the drill reaches it at.
    pub fn nodes(&self) -> anyhow::Result<Nodes> {
        let ids = self
            .core_ids()
            .into_iter()
            .chain(BRANCHES.iter().map(|(id, _)| *id));
        let addrs = ids
            .map(|id| Ok((id, self.addr(id)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Nodes::new(addrs, self.security()?))
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => local.cluster.kill(id),
            Target::Compose(compose) => {
                docker(&["kill", "--signal", "KILL", compose.container(id)?]).await?;
                Ok(())
            }
        }
    }

    /// Starts a node that was killed or stopped, on its own data.
    pub async fn start(&mut self, id: u64) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => local.cluster.start(id),
            Target::Compose(compose) => {
                docker(&["start", compose.container(id)?]).await?;
                compose.follow_ports(id).await
            }
        }
    }

    /// Stops a node the way an orchestrator does (SIGTERM, then waiting for a clean exit)
    /// and starts it again.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => {
                local.cluster.terminate(id).await?;
                local.cluster.start(id)
            }
            Target::Compose(compose) => {
                let name = compose.container(id)?.to_owned();
                docker(&["stop", "--time", "20", &name]).await?;
                let code = docker(&["inspect", "--format", "{{.State.ExitCode}}", &name]).await?;
                if code != "0" {
                    bail!("{name} exited with {code} when stopped");
                }
                docker(&["start", &name]).await?;
                compose.follow_ports(id).await
            }
        }
    }

    /// Restarts a node with its wall clock `ahead` of the real time (`None`: the real time
    /// again), under libfaketime. Local targets only.
    pub async fn restart_with_clock(
        &mut self,
        id: u64,
        ahead: Option<Duration>,
    ) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => {
                local.cluster.set_clock_ahead(id, ahead)?;
                local.cluster.terminate(id).await?;
                local.cluster.start(id)
            }
            Target::Compose(_) => {
                bail!("a skewed clock is a local drill's: the deployment's nodes keep the host's time")
            }
        }
    }

    /// Kills core node `id`, deletes its data directory and starts it again with its old
    /// id and command line (`--init` included), as after a disk replaced under a running
    /// deployment. Local targets only. Returns how the node ended: it must refuse to run
    /// as that id, so it exits non-zero; `Err` when it keeps running past `timeout`.
    pub async fn wipe_and_restart(
        &mut self,
        id: u64,
        timeout: Duration,
    ) -> anyhow::Result<(std::process::ExitStatus, String)> {
        match self {
            Target::Local(local) => {
                local.cluster.kill(id)?;
                local.cluster.wipe(id)?;
                local.cluster.start(id)?;
                let status = local.cluster.wait_exited(id, timeout).await?;
                Ok((status, local.cluster.log_tail(id, 400)))
            }
            Target::Compose(_) => {
                bail!("wiping a voter's volume is a local drill's: a deployment's volumes are the operator's")
            }
        }
    }

    /// The runbook's rejoin of a wiped machine: the old id `old` is removed (by the
    /// caller), and the machine comes back as the new id `new` on an empty data directory
    /// without `--init`. Returns the address to add it at.
    pub fn start_as_new_node(&mut self, old: u64, new: u64) -> anyhow::Result<String> {
        match self {
            Target::Local(local) => {
                local.cluster.forget(old)?;
                local.cluster.start_new_node(new)
            }
            Target::Compose(_) => bail!("rejoining under a new id is a local drill's"),
        }
    }

    /// Freezes a node (SIGSTOP, `docker pause`): connections stay open, nothing answers.
    pub async fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => local.cluster.pause(id),
            Target::Compose(compose) => {
                docker(&["pause", compose.container(id)?]).await?;
                Ok(())
            }
        }
    }

    pub async fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => local.cluster.resume(id),
            Target::Compose(compose) => {
                docker(&["unpause", compose.container(id)?]).await?;
                Ok(())
            }
        }
    }

    /// Cuts branch `id`'s line to the core, both ways; its own site still reaches it.
    pub async fn cut(&mut self, branch: u64) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => {
                local
                    .links
                    .get(&branch)
                    .with_context(|| format!("no branch {branch}"))?
                    .cut();
                Ok(())
            }
            Target::Compose(compose) => {
                let (wan, name) = (compose.wan(branch), compose.container(branch)?);
                docker(&["network", "disconnect", &wan, name]).await?;
                Ok(())
            }
        }
    }

    pub async fn heal(&mut self, branch: u64) -> anyhow::Result<()> {
        match self {
            Target::Local(local) => {
                local
                    .links
                    .get(&branch)
                    .with_context(|| format!("no branch {branch}"))?
                    .heal();
                Ok(())
            }
            Target::Compose(compose) => {
                let (wan, name) = (compose.wan(branch), compose.container(branch)?);
                // The core reaches the branch by its service name on the site's line.
                let alias = service(branch);
                docker(&["network", "connect", "--alias", &alias, &wan, name]).await?;
                Ok(())
            }
        }
    }

    /// The last lines of every node's log, for a failed drill's report.
    pub async fn log_tails(&self, lines: usize) -> String {
        match self {
            Target::Local(local) => local.cluster.all_log_tails(lines),
            Target::Compose(compose) => {
                let mut out = String::new();
                for (id, name) in &compose.containers {
                    let tail = tokio::process::Command::new("docker")
                        .args(["logs", "--tail", &lines.to_string(), name])
                        .output()
                        .await
                        .map(|o| {
                            format!(
                                "{}{}",
                                String::from_utf8_lossy(&o.stdout),
                                String::from_utf8_lossy(&o.stderr)
                            )
                        })
                        .unwrap_or_default();
                    out.push_str(&format!("--- node {id} ({name}) ---\n{tail}\n"));
                }
                out
            }
        }
    }
}
