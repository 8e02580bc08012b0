//! The demo's contact center: its queues, customers and agents, and callers who arrive at
//! both sites with a realistic mix of channels and intents, some of whom give up waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use banyan_client::{Client, RetryPolicy};
use banyan_harness::desk::{Breaks, DeskBehaviour};
use banyan_harness::{ContactOp, DeskAgent};
use banyan_proto::v1::{self as pb, Channel, ReadConsistency, Tier};

/// A small deterministic generator (SplitMix64): the same `--seed` gives the same callers,
/// agents and timings.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    pub fn duration(&mut self, low: Duration, high: Duration) -> Duration {
        Duration::from_secs_f64(self.between(low.as_secs_f64(), high.as_secs_f64()))
    }

    /// Picks by weight.
    pub fn pick<'a, T>(&mut self, weighted: &'a [(T, u32)]) -> &'a T {
        let total: u32 = weighted.iter().map(|(_, w)| w).sum();
        let mut roll = (self.unit() * f64::from(total)) as u32;
        for (item, weight) in weighted {
            if roll < *weight {
                return item;
            }
            roll -= weight;
        }
        &weighted[weighted.len() - 1].0
    }
}

pub const SITES: [(u64, &str); 2] = [(101, "emea"), (102, "apac")];
/// Intents each branch answers itself (`--self-service`).
pub const SELF_SERVICE: [&str; 2] = [
    "hours=text:Open 8:00-18:00 on weekdays",
    "order=attr:order_status",
];

const QUEUES: [(&str, &str, &str, i64); 3] = [
    ("billing", "Billing", "billing", 20_000),
    ("support", "Technical support", "support", 30_000),
    ("sales", "Sales", "sales", 20_000),
];
const AGENT_NAMES: [&str; 12] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Leslie", "Donald", "Frances", "Ken", "Radia",
    "Tony", "Shafi",
];
const CUSTOMER_NAMES: [&str; 8] = [
    "Amelia", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hiroshi",
];
pub const CUSTOMERS: usize = 60;
pub const AGENTS_PER_SITE: usize = 6;

/// Queues, customers of every tier, and agents at both sites, written through the core.
pub async fn populate(core: &Client, rng: &mut Rng) -> anyhow::Result<()> {
    for (id, name, skill, target_ms) in QUEUES {
        let channels: Vec<i32> = if id == "sales" {
            vec![Channel::Voice.into(), Channel::Chat.into()]
        } else {
            vec![
                Channel::Voice.into(),
                Channel::Chat.into(),
                Channel::Email.into(),
                Channel::Callback.into(),
            ]
        };
        let queue = pb::Queue {
            id: id.into(),
            name: name.into(),
            channels,
            required_skills: [(skill.to_owned(), 1)].into(),
            strategy: pb::Strategy::LongestIdle.into(),
            service_level_ms: target_ms,
            service_level_goal_pct: 80,
            wrap_up_ms: Some(10_000),
            ..Default::default()
        };
        core.upsert_queue(pb::UpsertQueueRequest {
            queue: Some(queue),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("creating queue {id}: {}", s.message()))?;
    }
    for n in 0..CUSTOMERS {
        let tier = *rng.pick(&[(Tier::Standard, 6), (Tier::Gold, 3), (Tier::Platinum, 1)]);
        let status = *rng.pick(&[("shipped", 2), ("processing", 1), ("delivered", 2)]);
        let customer = pb::Customer {
            id: customer_id(n),
            name: format!("{} {n}", CUSTOMER_NAMES[n % CUSTOMER_NAMES.len()]),
            phones: vec![format!("+44 20 7946 {n:04}")],
            emails: vec![format!("customer{n}@example.com")],
            tier: tier.into(),
            language: "en".into(),
            attributes: [("order_status".to_owned(), status.to_owned())].into(),
            ..Default::default()
        };
        core.upsert_customer(customer, Some(format!("demo-customer-{n}")))
            .await
            .map_err(|s| anyhow::anyhow!("creating customer {n}: {}", s.message()))?;
    }
    for (_, site) in SITES {
        for n in 0..AGENTS_PER_SITE {
            // Everyone takes two of the three skills, so every queue is served at both sites.
            let skills = [
                ("billing", n % 3 != 2),
                ("support", n % 3 != 0),
                ("sales", n % 3 != 1),
            ]
            .into_iter()
            .filter(|(_, has)| *has)
            .map(|(skill, _)| (skill.to_owned(), 1 + (rng.next_u64() % 9) as u32))
            .collect();
            let agent = pb::Agent {
                id: agent_id(site, n),
                name: format!("{} ({site})", AGENT_NAMES[n % AGENT_NAMES.len()]),
                site: site.into(),
                skills,
                capacity: Some(pb::Capacity {
                    voice: 1,
                    chat: 2,
                    email: 1,
                    callback: 1,
                }),
                ..Default::default()
            };
            core.upsert_agent(pb::UpsertAgentRequest {
                agent: Some(agent),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("creating agents: {}", s.message()))?;
        }
    }
    Ok(())
}

pub fn customer_id(n: usize) -> String {
    format!("cust-{n:03}")
}

pub fn agent_id(site: &str, n: usize) -> String {
    format!("{site}-agent-{}", n + 1)
}

/// Logs every agent in at its site's branch: each talks, wraps up and takes breaks at its
/// own pace.
pub fn start_agents(
    branches: &[(String, String)],
    pki: &banyan_harness::Pki,
    rng: &mut Rng,
) -> anyhow::Result<Vec<DeskAgent>> {
    let mut desks = Vec::new();
    for (site, addr) in branches {
        for n in 0..AGENTS_PER_SITE {
            let behaviour = DeskBehaviour {
                talk: rng.duration(Duration::from_secs(2), Duration::from_secs(6)),
                wrap_up: rng.duration(Duration::from_millis(500), Duration::from_millis(2_000)),
                disposition: "resolved".into(),
                breaks: Some(Breaks {
                    after: 4 + rng.next_u64() % 5,
                    length: rng.duration(Duration::from_secs(4), Duration::from_secs(10)),
                    reason: "coffee".into(),
                }),
            };
            let id = agent_id(site, n);
            // Each agent logs in with its own desk token, as a home agent would.
            let security = pki.agent(&id)?;
            desks.push(DeskAgent::start(
                &id,
                vec![addr.clone()],
                behaviour,
                security,
            ));
        }
    }
    Ok(desks)
}

/// What a caller wants, and where it goes.
struct Kind {
    channel: Channel,
    queue: &'static str,
    intent: &'static str,
}

fn kind(rng: &mut Rng) -> Kind {
    let (channel, self_service) = *rng.pick(&[
        ((Channel::Voice, false), 40),
        ((Channel::Chat, false), 25),
        ((Channel::Email, false), 10),
        ((Channel::Callback, false), 8),
        ((Channel::Chat, true), 17),
    ]);
    if self_service {
        let intent = *rng.pick(&[("hours", 1), ("order", 2)]);
        return Kind {
            channel,
            queue: "support",
            intent,
        };
    }
    let (queue, intent) = *rng.pick(&[
        (("billing", "refund"), 3),
        (("billing", "invoice"), 2),
        (("support", "outage"), 3),
        (("support", "password"), 2),
        (("sales", "upgrade"), 2),
    ]);
    let channel = if queue == "sales" && matches!(channel, Channel::Email | Channel::Callback) {
        Channel::Voice
    } else {
        channel
    };
    Kind {
        channel,
        queue,
        intent,
    }
}

/// Every create the callers sent, as the checker needs it.
pub type Ops = Arc<Mutex<Vec<ContactOp>>>;

/// Callers arriving at `rate` per second over both sites until stopped, their requests
/// numbered after `prefix`; voice and chat callers who wait longer than their patience
/// hang up.
pub fn start_callers(
    branches: Vec<(String, String)>,
    security: banyan_client::Security,
    rate: f64,
    mut rng: Rng,
    prefix: String,
    ops: Ops,
    stop: banyan_env::Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let clients: Vec<(String, Client)> = branches
            .iter()
            .filter_map(|(site, addr)| {
                Client::new([addr], RetryPolicy::default(), &security)
                    .ok()
                    .map(|c| (site.clone(), c))
            })
            .collect();
        let mut n = 0u64;
        while !stop.is_begun() {
            // Poisson arrivals: exponential gaps with mean 1 / rate.
            let gap = -(1.0 - rng.unit()).ln() / rate.max(0.01);
            tokio::time::sleep(Duration::from_secs_f64(gap.min(30.0))).await;
            if stop.is_begun() {
                break;
            }
            n += 1;
            let which = *rng.pick(&[(0usize, 55), (1, 45)]);
            let Some((site, client)) = clients.get(which).cloned() else {
                continue;
            };
            let kind = kind(&mut rng);
            let customer = customer_id((rng.next_u64() % CUSTOMERS as u64) as usize);
            let patience = rng.duration(Duration::from_secs(15), Duration::from_secs(90));
            let request = pb::CreateContactRequest {
                request_id: format!("{prefix}{n}"),
                channel: kind.channel.into(),
                customer_id: customer,
                queue_id: kind.queue.into(),
                intent: kind.intent.into(),
                site: site.clone(),
                ..Default::default()
            };
            let ops = ops.clone();
            tokio::spawn(async move {
                let result = client.create_contact(request.clone()).await;
                let op = ContactOp::of(request.request_id.clone(), &result);
                ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
                let Ok(contact) = result else {
                    return;
                };
                let impatient = matches!(kind.channel, Channel::Voice | Channel::Chat);
                if impatient && contact.state == pb::ContactState::Queued as i32 {
                    hang_up_if_still_waiting(&client, &contact.id, patience).await;
                }
            });
        }
    })
}

async fn hang_up_if_still_waiting(client: &Client, contact_id: &str, patience: Duration) {
    tokio::time::sleep(patience).await;
    let get = pb::GetContactRequest {
        id: contact_id.to_owned(),
        consistency: ReadConsistency::Local.into(),
    };
    let waiting = client
        .get_contact(get)
        .await
        .is_ok_and(|c| c.state == pb::ContactState::Queued as i32);
    if waiting {
        // The agent may take it meanwhile: then the refusal is the right answer.
        let _ = client
            .abandon_contact(pb::AbandonContactRequest {
                contact_id: contact_id.to_owned(),
                request_id: format!("hang-up-{contact_id}"),
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_demo() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..20).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut rng = Rng::new(1);
        for _ in 0..1_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn picks_follow_their_weights() {
        let mut rng = Rng::new(3);
        let picks = (0..10_000)
            .filter(|_| *rng.pick(&[(true, 1), (false, 3)]))
            .count();
        assert!((2_000..3_000).contains(&picks), "{picks}");
    }
}
