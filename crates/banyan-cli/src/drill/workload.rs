//! The steady work a drill runs through its fault, the way a contact center would see
//! it: callers at both sites entering through their branch and through the core, agents
//! at both sites answering at their branch, and customer records written through the
//! core. Every client operation is recorded as ok, failed or unknown, with when it was
//! sent and answered.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use banyan_client::{Client, RetryPolicy};
use banyan_harness::desk::DeskBehaviour;
use banyan_harness::{
    wait_until, ContactFeed, ContactOp, DeskAgent, History, Outcome, Sample, WriteLoad,
};
use banyan_proto::v1::{self as pb, ReadConsistency};

use super::target::{Target, BRANCHES};

/// How hard the workload pushes.
#[derive(Debug, Clone)]
pub struct Load {
    /// Contacts per second over all entry points.
    pub contacts_per_sec: f64,
    /// Concurrent customer writers through the core.
    pub writers: usize,
    /// Agents logged in at each site.
    pub agents_per_site: usize,
    /// How long an agent talks.
    pub talk: Duration,
    /// A client gives up on an attempt after this long and retries (on another node).
    pub attempt_timeout: Duration,
}

/// The names one drill run writes under, so runs against a long-lived cluster never mix.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
    pub queue: String,
}

impl Names {
    pub fn new(run: usize) -> Self {
        let stamp = banyan_env::clock::since_epoch().as_millis() % 100_000_000;
        let prefix = format!("drill{stamp:x}r{run}-");
        Self {
            queue: format!("{prefix}queue"),
            prefix,
        }
    }

    fn agent(&self, site: &str, n: usize) -> String {
        format!("{}{site}-agent{n}", self.prefix)
    }

    /// The customer id prefix of the write workload.
    pub fn customers(&self) -> String {
        format!("{}customer", self.prefix)
    }
}

/// Clients of the core for the workload: each starts at a different core node. They
/// follow the leader only where its address is reachable from here.
pub fn core_clients(
    target: &Target,
    policy: RetryPolicy,
    count: usize,
) -> anyhow::Result<Vec<Client>> {
    let addrs = target
        .core_ids()
        .into_iter()
        .map(|id| target.addr(id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let security = target.security()?;
    (0..count.max(1))
        .map(|start| {
            let rotated: Vec<&String> = addrs
                .iter()
                .cycle()
                .skip(start % addrs.len())
                .take(addrs.len())
                .collect();
            Ok(Client::new(rotated, policy, &security)?)
        })
        .collect()
}

pub fn policy(target: &Target, load: &Load) -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: load.attempt_timeout,
        total_timeout: Duration::from_secs(10),
        follow_leader: matches!(target, Target::Local(_)),
        ..RetryPolicy::default()
    }
}

/// Creates the run's queue and agents, and waits until each branch holds its agents.
pub async fn set_up(target: &Target, names: &Names, load: &Load) -> anyhow::Result<()> {
    let core = core_clients(target, RetryPolicy::default(), 1)?.remove(0);
    let queue = pb::Queue {
        id: names.queue.clone(),
        name: "Drill".into(),
        wrap_up_ms: Some(0),
        ..Default::default()
    };
    core.upsert_queue(pb::UpsertQueueRequest {
        queue: Some(queue),
        ..Default::default()
    })
    .await
    .context("creating the drill's queue")?;
    for (_, site) in BRANCHES {
        for n in 1..=load.agents_per_site {
            let id = names.agent(site, n);
            let agent = pb::Agent {
                name: format!("Drill agent {n} at {site}"),
                id,
                site: site.into(),
                ..Default::default()
            };
            core.upsert_agent(pb::UpsertAgentRequest {
                agent: Some(agent),
                ..Default::default()
            })
            .await
            .context("creating the drill's agents")?;
        }
    }
    for (branch, site) in BRANCHES {
        let client = Client::new(
            [target.addr(branch)?],
            RetryPolicy::once(Duration::from_secs(2)),
            &target.security()?,
        )?;
        let wanted: Vec<String> = (1..=load.agents_per_site)
            .map(|n| names.agent(site, n))
            .collect();
        wait_until(
            &format!("branch {branch} to hold the drill's agents"),
            Duration::from_secs(60),
            || {
                let (client, wanted) = (client.clone(), wanted.clone());
                async move {
                    let list = pb::ListAgentsRequest {
                        site: site.into(),
                        consistency: ReadConsistency::Local.into(),
                        ..Default::default()
                    };
                    let agents = client.list_agents(list).await.ok()?.agents;
                    wanted
                        .iter()
                        .all(|w| agents.iter().any(|a| &a.id == w))
                        .then_some(())
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// A running workload.
pub struct Workload {
    writes: WriteLoad,
    feeds: Vec<ContactFeed>,
    desks: Vec<DeskAgent>,
}

/// What the workload did, once stopped.
pub struct Record {
    pub history: History,
    /// When the customer writes' times count from.
    pub writes_started: Instant,
    pub contacts: Vec<(ContactOp, Sample)>,
}

impl Record {
    /// Every operation's timing: customer writes first, then contacts.
    pub fn samples(&self) -> (Vec<Sample>, Vec<Sample>) {
        let writes = self
            .history
            .operations
            .iter()
            .map(|op| Sample {
                invoked: self.writes_started + op.invoked,
                completed: self.writes_started + op.completed,
                outcome: op.outcome,
            })
            .collect();
        let contacts = self.contacts.iter().map(|(_, s)| *s).collect();
        (writes, contacts)
    }

    pub fn contact_ops(&self) -> Vec<ContactOp> {
        self.contacts.iter().map(|(op, _)| op.clone()).collect()
    }
}

impl Workload {
    pub fn start(target: &Target, names: &Names, load: &Load) -> anyhow::Result<Self> {
        let policy = policy(target, load);
        let writes = WriteLoad::start(
            core_clients(target, policy, load.writers)?,
            load.writers,
            &names.customers(),
        );
        // Two entry points per site (its branch and the core), each at a quarter of the rate.
        let every = Duration::from_secs_f64(4.0 / load.contacts_per_sec.max(0.1));
        let core = core_clients(target, policy, 1)?.remove(0);
        let mut feeds = Vec::new();
        let mut desks = Vec::new();
        let talk = DeskBehaviour {
            talk: load.talk,
            ..Default::default()
        };
        for (branch, site) in BRANCHES {
            let template = pb::CreateContactRequest {
                channel: pb::Channel::Voice.into(),
                queue_id: names.queue.clone(),
                site: site.into(),
                intent: "drill".into(),
                ..Default::default()
            };
            let at_branch = Client::new(
                [target.addr(branch)?],
                RetryPolicy {
                    follow_leader: false,
                    ..policy
                },
                &target.security()?,
            )?;
            feeds.push(ContactFeed::start(
                at_branch,
                &format!("{}{site}-branch-", names.prefix),
                template.clone(),
                every,
            ));
            feeds.push(ContactFeed::start(
                core.clone(),
                &format!("{}{site}-core-", names.prefix),
                template,
                every,
            ));
            for n in 1..=load.agents_per_site {
                let agent = names.agent(site, n);
                desks.push(DeskAgent::start(
                    &agent,
                    vec![target.addr(branch)?],
                    talk.clone(),
                    target.agent_security(&agent)?,
                ));
            }
        }
        Ok(Self {
            writes,
            feeds,
            desks,
        })
    }

    /// Live counts for a progress display: acknowledged customer writes, acknowledged
    /// contacts, contacts the agents completed.
    pub fn counters(&self) -> impl Fn() -> (u64, u64, u64) + Send + 'static {
        let writes = self.writes.counter();
        let feeds: Vec<_> = self.feeds.iter().map(ContactFeed::counter).collect();
        let desks: Vec<_> = self.desks.iter().map(|d| d.stats.clone()).collect();
        move || {
            let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            (
                load(&writes),
                feeds.iter().map(|c| load(c)).sum(),
                desks.iter().map(|d| load(&d.completed)).sum(),
            )
        }
    }

    /// Stops the callers and the writers; the agents keep working until
    /// [`log_out`](Self::log_out).
    pub async fn stop_arrivals(self) -> (Record, Vec<DeskAgent>) {
        let writes_started = self.writes.started();
        let history = self.writes.stop().await;
        let mut contacts = Vec::new();
        for feed in self.feeds {
            contacts.extend(feed.stop_timed().await);
        }
        (
            Record {
                history,
                writes_started,
                contacts,
            },
            self.desks,
        )
    }
}

/// Waits until the core shows every acknowledged contact completed; returns those that
/// were not by the deadline.
pub async fn wait_served(
    target: &Target,
    ops: &[ContactOp],
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let core = core_clients(target, RetryPolicy::default(), 1)?.remove(0);
    let acknowledged: Vec<String> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| o.contact_id.clone())
        .collect();
    let unserved = || {
        let (core, acknowledged) = (core.clone(), acknowledged.clone());
        async move {
            let all = core
                .all_contacts(ReadConsistency::Linearizable)
                .await
                .ok()?;
            let done: std::collections::BTreeSet<&str> = all
                .iter()
                .filter(|c| c.state == pb::ContactState::Completed as i32)
                .map(|c| c.id.as_str())
                .collect();
            Some(
                acknowledged
                    .iter()
                    .filter(|id| !done.contains(id.as_str()))
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        }
    };
    let served = wait_until("every acknowledged contact served", timeout, || {
        let unserved = unserved();
        async move { unserved.await.filter(|left| left.is_empty()) }
    })
    .await;
    match served {
        Ok(_) => Ok(Vec::new()),
        Err(_) => unserved()
            .await
            .context("the core did not answer for the final count"),
    }
}

/// Logs every simulated agent out.
/// Logs every simulated agent out; says what each one did.
pub async fn log_out(desks: Vec<DeskAgent>) -> Vec<String> {
    let mut lines = Vec::new();
    for desk in desks {
        let agent = desk.agent_id.clone();
        let stats = desk.stop().await;
        let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        lines.push(format!(
            "agent {agent}: {} offers, {} connected, {} completed, {} commands refused, {} reconnects",
            n(&stats.offers),
            n(&stats.connected),
            n(&stats.completed),
            n(&stats.refused),
            n(&stats.reconnects)
        ));
    }
    lines
}
