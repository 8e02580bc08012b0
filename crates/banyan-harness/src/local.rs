//! A cluster of `banyan core` processes on loopback.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use banyan_client::{Client, RetryPolicy, Security};
use banyan_proto::v1::{ClusterStatus, Event};

use crate::checker::NodeState;
use crate::contacts::NodeContacts;
use crate::link::BranchLinks;
use crate::nodes::Nodes;
use crate::pki::Pki;
use crate::ports::free_ports;

use crate::wait::wait_until;

/// The health-check GET lives with the HTTP port it reads; tests keep reaching it here.
pub use banyan_observe::{http_get, http_get_as};

/// Debian's libfaketime, preloaded into a node whose clock a drill skews.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One node process and what it takes to start it again.
struct LocalNode {
    addr: String,
    data_dir: PathBuf,
    log: PathBuf,
    /// `--init` it was first started with; kept so restarts use the same command line.
    init: Option<String>,
    /// `--http` address, when the cluster serves HTTP.
    http: Option<String>,
    /// For a branch: its flags (`--site`, `--core`, ...); `None` for a core node.
    branch: Option<Vec<String>>,
    /// The address other nodes are told to use, when it is not `addr` (a [`Link`](crate::link::Link) in
    /// front of the node); the node listens on `addr`.
    advertise: Option<String>,
    /// How far ahead of the real time the node's wall clock runs (under libfaketime), for
    /// clock-skew drills; its monotonic clock is left alone.
    clock_ahead: Option<Duration>,
    /// The size of the disk the node's data directory sits on (a tmpfs in a mount
    /// namespace of its own, its data copied in), for full-disk tests; `None`: the root's.
    disk_bytes: Option<u64>,
    child: Option<Child>,
}

/// Real `banyan core` processes under one temporary root. Dropping it kills them all.
pub struct LocalCluster {
    bin: PathBuf,
    root: tempfile::TempDir,
    /// Flags added to every node's command line (timers, snapshot interval).
    extra_args: Vec<String>,
    nodes: BTreeMap<u64, LocalNode>,
    /// Whether nodes get an `--http` port.
    http: bool,
    /// The cluster's certificates (under `root`); `None` runs every node `--insecure`.
    pki: Option<Pki>,
}

impl LocalCluster {
    /// An empty cluster that will start nodes with the `banyan` binary at `bin`, secure:
    /// a CA in its temporary directory, a certificate for every node it starts, and an
    /// admin client certificate for its own calls.
    pub fn new(bin: impl Into<PathBuf>, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut cluster = Self::new_insecure(bin, extra_args)?;
        cluster.pki = Some(Pki::create(cluster.root.path().join("certs"))?);
        Ok(cluster)
    }

    /// Like [`new`](Self::new), with every node started `--insecure` (no TLS, no
    /// credentials): only for the test that keeps that mode working.
    pub fn new_insecure(bin: impl Into<PathBuf>, extra_args: &[&str]) -> anyhow::Result<Self> {
        let bin = bin.into();
        if !bin.exists() {
            bail!("banyan binary not found at {}", bin.display());
        }
        Ok(Self {
            bin,
            root: tempfile::Builder::new()
                .prefix("banyan-cluster-")
                .tempdir()?,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            nodes: BTreeMap::new(),
            http: false,
            pki: None,
        })
    }

    /// The cluster's certificates, when it runs secure.
    pub fn pki(&self) -> Option<&Pki> {
        self.pki.as_ref()
    }

    /// The security the harness's own calls use: the admin client, or insecure.
    pub fn security(&self) -> Security {
        match &self.pki {
            Some(pki) => pki.admin().expect("the harness's admin certificate"),
            None => Security::Insecure,
        }
    }

    /// A viewer's bearer token for the nodes' HTTP pages (`None` when insecure).
    pub fn viewer_token(&self) -> Option<String> {
        let pki = self.pki.as_ref()?;
        banyan_trust::token::TokenSigner::load(pki.certs_dir())
            .and_then(|s| {
                s.scoped(
                    "harness",
                    banyan_trust::Role::Viewer,
                    None,
                    Duration::from_secs(3600),
                )
            })
            .ok()
    }

    /// The security of agent `agent`'s desk: a desk token, or insecure.
    pub fn agent_security(&self, agent: &str) -> anyhow::Result<Security> {
        match &self.pki {
            Some(pki) => pki.agent(agent),
            None => Ok(Security::Insecure),
        }
    }

    /// Gives every node started from now on an HTTP port (`/healthz`, `/readyz`).
    pub fn enable_http(&mut self) {
        self.http = true;
    }

    /// Node `id`'s HTTP address, when it has one.
    pub fn http_addr(&self, id: u64) -> Option<String> {
        self.nodes.get(&id).and_then(|n| n.http.clone())
    }

    /// Starts a new cluster of voters `ids`, all started with the same `--init`.
    pub fn start_voters(&mut self, ids: &[u64]) -> anyhow::Result<()> {
        let ports = free_ports(ids.len())?;
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let init = ids
            .iter()
            .zip(&addrs)
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        for (id, addr) in ids.iter().zip(addrs) {
            self.register(*id, addr, Some(init.clone()))?;
            self.start(*id)?;
        }
        Ok(())
    }

    /// Starts a node that belongs to no cluster yet (to be added as learner or voter).
    /// Returns its address.
    pub fn start_new_node(&mut self, id: u64) -> anyhow::Result<String> {
        let port = free_ports(1)?[0];
        let addr = format!("127.0.0.1:{port}");
        self.register(id, addr.clone(), None)?;
        self.start(id)?;
        Ok(addr)
    }

    fn register(&mut self, id: u64, addr: String, init: Option<String>) -> anyhow::Result<()> {
        if self.nodes.contains_key(&id) {
            bail!("node {id} already exists in this cluster");
        }
        let http = if self.http {
            Some(format!("127.0.0.1:{}", free_ports(1)?[0]))
        } else {
            None
        };
        let data_dir = self.root.path().join(format!("node-{id}"));
        let log = self.root.path().join(format!("node-{id}.log"));
        self.nodes.insert(
            id,
            LocalNode {
                addr,
                data_dir,
                log,
                init,
                http,
                branch: None,
                advertise: None,
                clock_ahead: None,
                disk_bytes: None,
                child: None,
            },
        );
        Ok(())
    }

    fn node(&self, id: u64) -> anyhow::Result<&LocalNode> {
        self.nodes.get(&id).with_context(|| format!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> anyhow::Result<&mut LocalNode> {
        self.nodes
            .get_mut(&id)
            .with_context(|| format!("no node {id}"))
    }

    /// Starts a branch node `id` for `site` that joins the core nodes started so far (with
    /// `extra` flags such as `--lease-ttl`). Returns its address.
    pub fn start_branch(&mut self, id: u64, site: &str, extra: &[&str]) -> anyhow::Result<String> {
        let addr = format!("127.0.0.1:{}", free_ports(1)?[0]);
        self.start_branch_at(id, site, addr.clone(), self.core_addrs(), None, extra)?;
        Ok(addr)
    }

    /// Like [`start_branch`](Self::start_branch), with every path between the branch and
    /// the core through [`BranchLinks`] the test can cut. Clients of the branch (its
    /// agents, the test) reach it at the returned address directly.
    pub fn start_branch_behind_links(
        &mut self,
        id: u64,
        site: &str,
        extra: &[&str],
    ) -> anyhow::Result<(String, BranchLinks)> {
        let addr = format!("127.0.0.1:{}", free_ports(1)?[0]);
        let links = BranchLinks::start(&self.core_addrs(), &addr)?;
        let advertise = Some(links.branch_addr().to_owned());
        self.start_branch_at(id, site, addr.clone(), links.core_addrs(), advertise, extra)?;
        Ok((addr, links))
    }

    fn core_addrs(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.branch.is_none())
            .map(|n| n.addr.clone())
            .collect()
    }

    fn start_branch_at(
        &mut self,
        id: u64,
        site: &str,
        addr: String,
        core: Vec<String>,
        advertise: Option<String>,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        self.register(id, addr, None)?;
        if let Some(pki) = &self.pki {
            pki.branch(id, site)?;
        }
        let mut flags = vec![
            "--site".to_owned(),
            site.to_owned(),
            "--core".to_owned(),
            core.join(","),
        ];
        flags.extend(extra.iter().map(|s| s.to_string()));
        let node = self.node_mut(id)?;
        node.branch = Some(flags);
        node.advertise = advertise;
        self.start(id)
    }

    /// (Re)starts node `id` with its original command line and data directory.
    pub fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let bin = self.bin.clone();
        let mut extra = self.extra_args.clone();
        match &self.pki {
            Some(pki) => {
                // A branch's certificate was issued when it was registered.
                pki.node(id)?;
                extra.push("--certs-dir".to_owned());
                extra.push(pki.path().display().to_string());
            }
            None => extra.push("--insecure".to_owned()),
        }
        let node = self.node_mut(id)?;
        if node.child.is_some() {
            bail!("node {id} is already running");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let mut command = match node.disk_bytes {
            None => Command::new(bin),
            Some(bytes) => {
                // unshare execs the shell, which execs the node: the child is the node.
                let mut command = Command::new("unshare");
                command.args(["--mount", "--propagation", "private", "sh", "-c"]).arg(
                    "set -e; dir=\"$1\"; shift; mkdir -p \"$dir\" \"$dir.stage\"; \
                     cp -a \"$dir/.\" \"$dir.stage/\"; mount -t tmpfs -o size=\"$1\" tmpfs \"$dir\"; \
                     shift; cp -a \"$dir.stage/.\" \"$dir/\"; rm -rf \"$dir.stage\"; exec \"$@\"",
                );
                command
                    .arg("sh")
                    .arg(&node.data_dir)
                    .arg(bytes.to_string())
                    .arg(bin);
                command
            }
        };
        if let Some(ahead) = node.clock_ahead {
            // libfaketime preloaded into the node itself (not the `faketime` wrapper, which
            // would take the signals meant for the node).
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", format!("+{:.3}s", ahead.as_secs_f64()))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        match &node.branch {
            Some(flags) => command.arg("branch").args(flags),
            None => command.arg("core"),
        };
        let advertised = node.advertise.as_deref().unwrap_or(&node.addr);
        command.args(["--id", &id.to_string(), "--addr", advertised]);
        if node.advertise.is_some() {
            command.args(["--listen", &node.addr]);
        }
        command
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(&extra)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if let Some(init) = &node.init {
            command.args(["--init", init]);
        }
        if let Some(http) = &node.http {
            command.args(["--http", http]);
        }
        node.child = Some(command.spawn().context("spawning banyan")?);
        Ok(())
    }

    /// Kills node `id` with SIGKILL: no shutdown code runs, unflushed data is lost.
    /// Runs node `id`'s wall clock `ahead` of the real time from its next start (`None`:
    /// the real time again). Needs `faketime` (Debian's package).
    pub fn set_clock_ahead(&mut self, id: u64, ahead: Option<Duration>) -> anyhow::Result<()> {
        if ahead.is_some() && !Path::new(LIBFAKETIME).is_file() {
            bail!("a node with a skewed clock needs libfaketime (apt-get install faketime)");
        }
        self.node_mut(id)?.clock_ahead = ahead;
        Ok(())
    }

    /// Puts node `id`'s data directory on a disk of `bytes` from its next start (`None`:
    /// the root's disk again). Its data is copied onto it; what it writes there is gone
    /// once it stops. Needs `unshare` and `mount` (root in a container).
    pub fn set_disk_size(&mut self, id: u64, bytes: Option<u64>) -> anyhow::Result<()> {
        self.node_mut(id)?.disk_bytes = bytes;
        Ok(())
    }

    /// Kills node `id` with SIGKILL, as a crash would: no shutdown, its data left as it was.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        if let Some(mut child) = node.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops node `id` with SIGTERM and waits for it to exit.
    pub async fn terminate(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        let Some(mut child) = node.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed for node {id}");
        }
        let exited = wait_until("graceful exit", Duration::from_secs(20), || {
            let done = child.try_wait().ok().flatten().map(|s| s.success());
            async move { done }
        })
        .await;
        match exited {
            Ok(true) => Ok(()),
            Ok(false) => bail!("node {id} exited with an error after SIGTERM"),
            Err(e) => {
                let _ = child.kill();
                Err(e)
            }
        }
    }

    /// Waits for node `id` to exit by itself; returns its exit status.
    pub async fn wait_exited(
        &mut self,
        id: u64,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let node = self.node_mut(id)?;
        let Some(child) = node.child.take() else {
            bail!("node {id} is not running");
        };
        let child = std::sync::Mutex::new(child);
        let status = wait_until(&format!("node {id} to exit"), timeout, || {
            let status = child
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_wait()
                .ok()
                .flatten();
            async move { status }
        })
        .await;
        if status.is_err() {
            node.child = Some(child.into_inner().unwrap_or_else(|p| p.into_inner()));
        }
        status
    }

    /// Freezes node `id` with SIGSTOP: it holds its connections and answers nothing, like
    /// a machine stalled by a long pause, until [`resume`](Self::resume).
    pub fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, "-STOP")
    }

    /// Lets a paused node run again (SIGCONT).
    pub fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, "-CONT")
    }

    fn signal(&mut self, id: u64, signal: &str) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        let child = node
            .child
            .as_ref()
            .with_context(|| format!("node {id} is not running"))?;
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} failed for node {id}");
        }
        Ok(())
    }

    /// Deletes node `id`'s data directory; the node must be stopped.
    pub fn wipe(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node(id)?;
        if node.child.is_some() {
            bail!("node {id} is running; stop it before wiping");
        }
        if node.data_dir.exists() {
            std::fs::remove_dir_all(&node.data_dir)?;
        }
        Ok(())
    }

    /// Appends `record` to the durable record log `name` (a branch's `journal`,
    /// `accepts` or `outbox`) in stopped node `id`'s data directory, as a damaged record
    /// or one written by another build would sit there.
    pub fn append_record(&self, id: u64, name: &str, record: &[u8]) -> anyhow::Result<()> {
        let node = self.node(id)?;
        if node.child.is_some() {
            bail!("node {id} is running; stop it before changing its records");
        }
        let dir = node.data_dir.clone();
        let name = name.to_owned();
        let record = record.to_vec();
        // A runtime of its own, shut down before returning: the stores' tasks end with it
        // and the database is closed again for the node.
        std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let (db, _log, _state) =
                    banyan_raft::open_stores(&dir, std::sync::Arc::new(banyan_events::Discard))?;
                let records = banyan_branch::Outbox::open(&db, &name)?;
                records.push(&record).await?;
                db.flush().await?;
                anyhow::Ok(())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("writing node {id}'s records panicked"))?
    }

    /// Forgets a stopped node entirely (after removing it from the membership).
    pub fn forget(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id)?;
        self.nodes.remove(&id);
        Ok(())
    }

    /// Node `id`'s data directory (a stopped node's may be copied, replaced or wiped).
    pub fn data_dir(&self, id: u64) -> anyhow::Result<&Path> {
        Ok(&self.node(id)?.data_dir)
    }

    /// Whether node `id`'s process was started and not killed or stopped since.
    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.child.is_some())
    }

    /// The address node `id` listens on, to reach it directly (past any link in front of it).
    pub fn addr(&self, id: u64) -> anyhow::Result<String> {
        Ok(self.node(id)?.addr.clone())
    }

    /// Every node the cluster knows, running or not, so a drill can bring each one back.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The nodes whose process runs now: the ones a client or a final read can reach.
    pub fn running_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.child.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The temporary root holding every node's data directory and log, to print on failure.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A client of every running node, with the default retry policy.
    pub fn client(&self) -> anyhow::Result<Client> {
        let endpoints: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.child.is_some() && n.branch.is_none())
            .map(|n| n.addr.clone())
            .collect();
        Ok(Client::new(
            endpoints,
            RetryPolicy::default(),
            &self.security(),
        )?)
    }

    /// A client of node `id` alone.
    pub fn node_client(&self, id: u64, policy: RetryPolicy) -> anyhow::Result<Client> {
        Ok(Client::new([self.addr(id)?], policy, &self.security())?)
    }

    /// Every node of the cluster by address, for reads against any of them.
    pub fn nodes(&self) -> Nodes {
        Nodes::new(
            self.nodes.iter().map(|(id, n)| (*id, n.addr.clone())),
            self.security(),
        )
    }

    /// Status as node `id` sees it (one attempt).
    pub async fn status(&self, id: u64) -> anyhow::Result<ClusterStatus> {
        self.nodes().status(id).await
    }

    /// See [`Nodes::wait_for_leader`].
    pub async fn wait_for_leader(&self, among: &[u64], timeout: Duration) -> anyhow::Result<u64> {
        self.nodes().wait_for_leader(among, timeout).await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> anyhow::Result<()> {
        self.nodes().wait_applied(id, index, timeout).await
    }

    /// See [`Nodes::final_states`].
    pub async fn final_states(
        &self,
        ids: &[u64],
        timeout: Duration,
    ) -> anyhow::Result<Vec<NodeState>> {
        self.nodes().final_states(ids, timeout).await
    }

    /// See [`Nodes::final_contacts`].
    pub async fn final_contacts(
        &self,
        ids: &[u64],
        timeout: Duration,
    ) -> anyhow::Result<(Vec<NodeContacts>, u64)> {
        self.nodes().final_contacts(ids, timeout).await
    }

    /// Every event of the run on node `id` up to log index `until` (see
    /// [`Nodes::events_from`]).
    pub async fn events(
        &self,
        id: u64,
        until: u64,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Event>> {
        self.nodes().events_from(id, 1, until, timeout).await
    }

    /// See [`Nodes::events_from`].
    pub async fn events_from(
        &self,
        id: u64,
        from: u64,
        until: u64,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Event>> {
        self.nodes().events_from(id, from, until, timeout).await
    }

    /// See [`Nodes::collect_events`].
    pub fn collect_events(
        &self,
        id: u64,
        from: u64,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<Vec<Event>>>> {
        self.nodes().collect_events(id, from)
    }

    /// The last `lines` lines of node `id`'s log, for failure reports.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let Ok(node) = self.node(id) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&node.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Every node's log tail, labelled.
    pub fn all_log_tails(&self, lines: usize) -> String {
        self.nodes
            .keys()
            .map(|id| format!("--- node {id} ---\n{}", self.log_tail(*id, lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster logs:\n{}", self.all_log_tails(40));
        }
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
