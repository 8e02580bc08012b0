//! Property tests: random command sequences against a small fixed contact center, with the
//! invariants of DESIGN.md §2 checked after every single step, and replay determinism at
//! the end.
//!
//! The setup has two sites (`emea`, served by the core directly, and `apac`, fenced by a
//! lease that the sequence may or may not keep renewing), three queues with different
//! strategies (`LONGEST_IDLE`, `RING_ALL`, `FEWEST_CONTACTS`) and escalation steps of every
//! kind, six agents with varied skills and capacities, and three customer tiers. The
//! sequence then creates contacts, changes presence, accepts, rejects, ends, completes,
//! abandons and transfers contacts, renews the lease, retries idempotent requests and ticks
//! time forward by random amounts. Many of these commands are refused; that is fine, and
//! a refused command must leave the state exactly as it was.
//!
//! # What "held" means here
//! An agent's `held` map is what counts against its capacity: every contact `OFFERED` to it
//! (a `RING_ALL` offer is in the `held` of each agent it rings) and every contact it is
//! `CONNECTED` to or wrapping up. A contact is *assigned* only once it is `CONNECTED` or in
//! `WRAP_UP`, and then to exactly one agent (`contact.agent_id`), in exactly that agent's
//! `held`. So a contact may appear in several agents' `held` only while it is an `OFFERED`
//! ring-all offer, and then in exactly the agents of its offer.
//!
//! # Invariants checked after every step
//! * capacity: per agent and channel, `load` equals the count of `held` on that channel and
//!   never exceeds the capacity; `held` is exactly what the contacts say (above);
//! * no double assignment (above), and every contact's timeline is legal and ends in its
//!   current state; waiting contacts (`QUEUED`, `CALLBACK_SCHEDULED`) and only those are
//!   counted by `State::waiting_in`;
//! * routing is work-conserving: after a command, no waiting contact has an eligible agent
//!   with room on its channel;
//! * no eligible waiting contact skipped: for each offer of contact C to agent A made in the
//!   step, every contact still waiting that A could have taken instead (eligible, and A had
//!   room on its channel before it received C) ranks below C, unless A passed it over
//!   (rejected or missed it) in the same step; offers go only to eligible agents with room;
//!   a ring-all rings every eligible agent, and any other offer goes to the best agent by
//!   the queue's strategy;
//! * refused commands and idempotent retries change nothing.
//!
//! At the end the whole log is replayed on a fresh state, and from a snapshot taken at a
//! random step: every step's result and the final state must be identical.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use banyan_domain::agent::Agent;
use banyan_domain::contact::{Contact, Decision};
use banyan_domain::{
    Action, Channel, Command, ContactInput, ContactState, CustomerInput, DomainError,
    EscalationAction, EscalationStep, Event, PerChannel, Presence, QueueInput, Stamped, State,
    Strategy as Routing, Tier, WhenFull,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use common::{agent, capacity, queue, skills_of, T0};

/// Priority points are scaled by this in ranking (one point = one minute of aging).
const PRIORITY_SCALE: i64 = 60_000;

const QUEUES: [&str; 3] = ["sales", "support", "general"];
const AGENTS: [&str; 6] = ["e1", "e2", "e3", "p1", "p2", "p3"];
const CUSTOMERS: [&str; 4] = ["", "std", "gold", "plat"];
const ORIGINS: [&str; 3] = ["", "emea", "apac"];
const DISPOSITIONS: [&str; 3] = ["", "won", "bogus"];

// --- the fixed setup ---

fn setup() -> Vec<Action> {
    let mut actions = Vec::new();
    for (id, tier) in [
        ("std", Tier::Standard),
        ("gold", Tier::Gold),
        ("plat", Tier::Platinum),
    ] {
        actions.push(Action::UpsertCustomer(CustomerInput {
            id: id.into(),
            name: format!("Customer {id}"),
            tier,
            ..Default::default()
        }));
    }
    for site in ["emea", "apac"] {
        actions.push(Action::UpsertSite(banyan_domain::SiteInput {
            id: site.into(),
            name: site.into(),
            region: String::new(),
        }));
    }
    actions.push(Action::RenewLease {
        site_id: "apac".into(),
        sent_at_ms: T0,
        ttl_ms: 30_000,
        report: Default::default(),
    });

    let general = QueueInput {
        aging_per_minute: 3,
        max_wait_ms: 240_000,
        wrap_up_ms: 0,
        offer_timeout_ms: 10_000,
        ..queue("general", Routing::FewestContacts)
    };
    let sales = QueueInput {
        channels: vec![Channel::Voice, Channel::Chat],
        required_skills: skills_of(&[("sales", 6)]),
        escalation: vec![
            EscalationStep {
                after_ms: 20_000,
                action: EscalationAction::RelaxSkill {
                    skill: "sales".into(),
                    min_level: 3,
                },
            },
            EscalationStep {
                after_ms: 40_000,
                action: EscalationAction::AllowOtherSites,
            },
            EscalationStep {
                after_ms: 90_000,
                action: EscalationAction::Overflow {
                    queue_id: "general".into(),
                },
            },
        ],
        max_wait_ms: 80_000,
        max_length: 6,
        when_full: WhenFull::Callback,
        wrap_up_ms: 5_000,
        dispositions: vec!["won".into(), "lost".into()],
        max_missed_offers: 2,
        ..queue("sales", Routing::LongestIdle)
    };
    let support = QueueInput {
        channels: vec![Channel::Voice, Channel::Chat, Channel::Email],
        required_skills: skills_of(&[("support", 2)]),
        escalation: vec![EscalationStep {
            after_ms: 30_000,
            action: EscalationAction::DropSkill {
                skill: "support".into(),
            },
        }],
        aging_per_minute: 2,
        platinum_boost: 40,
        offer_timeout_ms: 8_000,
        wrap_up_ms: 3_000,
        ..queue("support", Routing::RingAll)
    };
    for q in [general, sales, support] {
        actions.push(Action::UpsertQueue(q));
    }

    let agents = [
        (
            "e1",
            "emea",
            &[("sales", 7), ("support", 3)][..],
            PerChannel::DEFAULT_CAPACITY,
        ),
        ("e2", "emea", &[("sales", 4)][..], capacity(1, 2, 0, 1)),
        ("e3", "emea", &[("support", 5)][..], capacity(0, 3, 5, 0)),
        (
            "p1",
            "apac",
            &[("sales", 9), ("support", 2)][..],
            capacity(1, 1, 1, 1),
        ),
        ("p2", "apac", &[][..], PerChannel::DEFAULT_CAPACITY),
        (
            "p3",
            "apac",
            &[("sales", 3), ("support", 8)][..],
            capacity(2, 0, 0, 0),
        ),
    ];
    for (id, site, skills, cap) in agents {
        actions.push(Action::UpsertAgent(banyan_domain::AgentInput {
            capacity: cap,
            ..agent(id, site, skills)
        }));
    }
    for id in ["e1", "p1", "p3"] {
        actions.push(Action::SetAgentPresence {
            agent_id: id.into(),
            presence: Presence::Available,
        });
    }
    actions
}

// --- random operations ---

#[derive(Debug, Clone)]
enum Op {
    Create {
        channel: usize,
        queue: usize,
        priority: i64,
        customer: usize,
        origin: usize,
        request: Option<u8>,
    },
    Presence {
        agent: usize,
        kind: u8,
    },
    Disconnect {
        agent: usize,
    },
    Accept {
        agent: usize,
        pick: usize,
    },
    Reject {
        agent: usize,
        pick: usize,
    },
    End {
        agent: usize,
        pick: usize,
    },
    Complete {
        agent: Option<usize>,
        pick: usize,
        disposition: usize,
    },
    Abandon {
        pick: usize,
    },
    Transfer {
        pick: usize,
        queue: usize,
    },
    Renew {
        lag_ms: i64,
        ttl_ms: i64,
    },
    /// Sends again an earlier command that carried a request id.
    Retry {
        pick: usize,
    },
    Tick {
        advance_ms: i64,
    },
    /// An administrator changes a queue or an agent mid-run: steps dropped or restored,
    /// strategy switched, skills and capacity changed.
    Reconfigure {
        kind: u8,
    },
    /// A branch hands in its work: apac's real import, or one a faulty or hostile branch
    /// could send (see [`import_for`]).
    Import {
        site: usize,
        hostility: u8,
        pick: usize,
        seq: u8,
        extreme: usize,
    },
    /// A create or a lease renewal with values at the ends of their types.
    Extreme {
        kind: u8,
        extreme: usize,
    },
}

/// Values at and near the ends of `i64`, and zero.
const EXTREMES: [i64; 6] = [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX];

fn op() -> impl Strategy<Value = Op> {
    let agent = 0..AGENTS.len();
    prop_oneof![
        6 => (
            0..Channel::ALL.len(),
            0..QUEUES.len(),
            0i64..30,
            0..CUSTOMERS.len(),
            0..ORIGINS.len(),
            proptest::option::weighted(0.25, 0u8..6),
        )
            .prop_map(|(channel, queue, priority, customer, origin, request)| Op::Create {
                channel,
                queue,
                priority,
                customer,
                origin,
                request,
            }),
        3 => (agent.clone(), 0u8..5).prop_map(|(agent, kind)| Op::Presence { agent, kind }),
        1 => agent.clone().prop_map(|agent| Op::Disconnect { agent }),
        5 => (agent.clone(), any::<usize>()).prop_map(|(agent, pick)| Op::Accept { agent, pick }),
        1 => (agent.clone(), any::<usize>()).prop_map(|(agent, pick)| Op::Reject { agent, pick }),
        3 => (agent.clone(), any::<usize>()).prop_map(|(agent, pick)| Op::End { agent, pick }),
        2 => (
            proptest::option::of(agent.clone()),
            any::<usize>(),
            0..DISPOSITIONS.len(),
        )
            .prop_map(|(agent, pick, disposition)| Op::Complete {
                agent,
                pick,
                disposition,
            }),
        1 => any::<usize>().prop_map(|pick| Op::Abandon { pick }),
        1 => (any::<usize>(), 0..QUEUES.len()).prop_map(|(pick, queue)| Op::Transfer { pick, queue }),
        2 => (0i64..6_000, 500i64..40_000).prop_map(|(lag_ms, ttl_ms)| Op::Renew { lag_ms, ttl_ms }),
        1 => any::<usize>().prop_map(|pick| Op::Retry { pick }),
        5 => (0i64..40_000).prop_map(|advance_ms| Op::Tick { advance_ms }),
        1 => (0u8..5).prop_map(|kind| Op::Reconfigure { kind }),
    ]
}

/// Realistic operations with hostile ones mixed in.
fn hostile_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => op(),
        2 => (0..2usize, 0u8..HOSTILITIES, any::<usize>(), 0u8..12, 0..EXTREMES.len()).prop_map(
            |(site, hostility, pick, seq, extreme)| Op::Import {
                site,
                hostility,
                pick,
                seq,
                extreme,
            }
        ),
        1 => (0u8..4, 0..EXTREMES.len()).prop_map(|(kind, extreme)| Op::Extreme { kind, extreme }),
    ]
}

/// Picks a contact for an operation: usually one the operation suits (so that many
/// commands succeed), sometimes (and when nothing suits) any contact at all, so that many
/// are refused.
// `usize::is_multiple_of` is newer (1.87) than the workspace's rust-version (1.85).
#[allow(clippy::manual_is_multiple_of)]
fn pick_contact(state: &State, pick: usize, suits: impl Fn(&Contact) -> bool) -> String {
    let suited: Vec<&Contact> = state.contacts().filter(|c| suits(c)).collect();
    if pick % 5 != 0 && !suited.is_empty() {
        return suited[pick % suited.len()].id.clone();
    }
    let all: Vec<&Contact> = state.contacts().collect();
    if all.is_empty() {
        "ct-0000000001".into()
    } else {
        all[pick % all.len()].id.clone()
    }
}

/// Picks an (agent, contact) pair for an agent's action: usually one `pairs` suits, the
/// given agent's if it has any; sometimes (and when nothing suits) the given agent and any
/// contact at all.
// `usize::is_multiple_of` is newer (1.87) than the workspace's rust-version (1.85).
#[allow(clippy::manual_is_multiple_of)]
fn pick_pair(
    state: &State,
    agent: usize,
    pick: usize,
    pairs: impl Fn(&Contact) -> Vec<String>,
) -> (String, String) {
    let agent_id = AGENTS[agent];
    let suited: Vec<(String, String)> = state
        .contacts()
        .flat_map(|c| pairs(c).into_iter().map(move |a| (a, c.id.clone())))
        .collect();
    let own: Vec<&(String, String)> = suited.iter().filter(|(a, _)| a == agent_id).collect();
    if pick % 5 != 0 {
        if !own.is_empty() {
            return own[pick % own.len()].clone();
        }
        if !suited.is_empty() {
            return suited[pick % suited.len()].clone();
        }
    }
    (agent_id.to_owned(), pick_contact(state, 0, |_| false))
}

/// The agents a contact is offered to.
fn offer_agents(c: &Contact) -> Vec<String> {
    match (&c.offer, c.state) {
        (Some(offer), ContactState::Offered) => offer.agents.clone(),
        _ => Vec::new(),
    }
}

/// The agent a connected contact is with.
fn connected_agent(c: &Contact) -> Vec<String> {
    if c.state == ContactState::Connected {
        vec![c.agent_id.clone()]
    } else {
        Vec::new()
    }
}

/// The command an operation stands for in the current state.
fn command_for(state: &State, op: &Op, earlier: &[Command]) -> Command {
    let action = match op {
        Op::Create {
            channel,
            queue,
            priority,
            customer,
            origin,
            request,
        } => {
            let input = ContactInput {
                channel: Channel::ALL[*channel],
                customer_id: CUSTOMERS[*customer].into(),
                queue_id: QUEUES[*queue].into(),
                intent: "help".into(),
                priority: *priority,
                origin_site: ORIGINS[*origin].into(),
                ..Default::default()
            };
            return Command::with_request_id(
                Action::CreateContact(input),
                request.map(|r| format!("req-{r}")),
            );
        }
        Op::Presence { agent, kind } => Action::SetAgentPresence {
            agent_id: AGENTS[*agent].into(),
            presence: match kind {
                0..=2 => Presence::Available,
                3 => Presence::Break {
                    reason: "lunch".into(),
                },
                _ => Presence::Offline,
            },
        },
        Op::Disconnect { agent } => Action::AgentDisconnected {
            agent_id: AGENTS[*agent].into(),
            session: String::new(),
        },
        Op::Accept { agent, pick } => {
            let (agent_id, contact_id) = pick_pair(state, *agent, *pick, offer_agents);
            Action::AcceptOffer {
                agent_id,
                contact_id,
            }
        }
        Op::Reject { agent, pick } => {
            let (agent_id, contact_id) = pick_pair(state, *agent, *pick, offer_agents);
            Action::RejectOffer {
                agent_id,
                contact_id,
            }
        }
        Op::End { agent, pick } => {
            let (agent_id, contact_id) = pick_pair(state, *agent, *pick, connected_agent);
            Action::EndContact {
                agent_id,
                contact_id,
            }
        }
        Op::Complete {
            agent,
            pick,
            disposition,
        } => {
            let agent_id = agent.map_or("", |a| AGENTS[a]);
            Action::CompleteContact {
                contact_id: pick_contact(state, *pick, |c| {
                    matches!(c.state, ContactState::Connected | ContactState::WrapUp)
                        && (agent_id.is_empty() || c.agent_id == agent_id)
                }),
                agent_id: agent_id.into(),
                disposition: DISPOSITIONS[*disposition].into(),
                notes: String::new(),
            }
        }
        Op::Abandon { pick } => Action::AbandonContact {
            contact_id: pick_contact(state, *pick, |c| {
                c.state.is_waiting() || c.state == ContactState::Offered
            }),
        },
        Op::Transfer { pick, queue } => Action::TransferContact {
            contact_id: pick_contact(state, *pick, |c| !c.state.is_final()),
            queue_id: QUEUES[*queue].into(),
        },
        Op::Renew { lag_ms, ttl_ms } => Action::RenewLease {
            site_id: "apac".into(),
            sent_at_ms: state.clock_ms() - lag_ms,
            ttl_ms: *ttl_ms,
            report: Default::default(),
        },
        Op::Retry { pick } => {
            if earlier.is_empty() {
                Action::Tick
            } else {
                return earlier[pick % earlier.len()].clone();
            }
        }
        Op::Tick { .. } => Action::Tick,
        Op::Reconfigure { kind } => reconfigure(state, *kind),
        Op::Import {
            site,
            hostility,
            pick,
            seq,
            extreme,
        } => {
            let sender = ["apac", "emea"][*site];
            let import = import_for(state, sender, *hostility, *pick, *seq, EXTREMES[*extreme]);
            let mut command = Command::with_request_id(
                Action::ImportBranch(import),
                Some(format!("reconcile/{sender}/{seq}/{hostility}")),
            );
            command.principal = Some(banyan_domain::Principal::Branch {
                node: 9,
                site: sender.into(),
            });
            return command;
        }
        Op::Extreme { kind, extreme } => {
            let value = EXTREMES[*extreme];
            match kind {
                0 => Action::CreateContact(ContactInput {
                    queue_id: "sales".into(),
                    priority: value,
                    ..Default::default()
                }),
                1 => Action::RenewLease {
                    site_id: "apac".into(),
                    sent_at_ms: value,
                    ttl_ms: 10_000,
                    report: Default::default(),
                },
                2 => Action::RenewLease {
                    site_id: "apac".into(),
                    sent_at_ms: state.clock_ms(),
                    ttl_ms: value,
                    report: Default::default(),
                },
                _ => Action::UpsertAgent(banyan_domain::AgentInput {
                    capacity: capacity(u32::MAX, 0, u32::MAX, 1),
                    ..agent("p2", "apac", &[("sales", 9)])
                }),
            }
        }
    };
    Command::new(action)
}

/// How many kinds of import [`import_for`] makes.
const HOSTILITIES: u8 = 12;

/// The import a branch of `sender` would send now: its site's view with a contact it took
/// in alone (its agent on the call when one is free), and its agents' presence, up to a
/// journal sequence. `hostility` 0 leaves it real; the others break it as a faulty or
/// hostile branch could, most of them in a way the core must refuse.
fn import_for(
    state: &State,
    sender: &str,
    hostility: u8,
    pick: usize,
    seq: u8,
    extreme: i64,
) -> banyan_domain::BranchImport {
    let mut view = state.branch_view(sender, &[]);
    let id = format!("{sender}-{}", state.contact_count() + pick % 3);
    let created = view.apply(&Stamped {
        at_ms: state.clock_ms(),
        command: Command::new(Action::CreateContact(ContactInput {
            id: id.clone(),
            channel: Channel::Chat,
            queue_id: QUEUES[pick % QUEUES.len()].into(),
            intent: "alone".into(),
            origin_site: sender.into(),
            ..Default::default()
        })),
    });
    if let Ok(events) = created {
        let offered = events.iter().find_map(|e| match e {
            Event::ContactOffered { agent_ids, .. } => agent_ids.first().cloned(),
            _ => None,
        });
        if let Some(agent_id) = offered {
            let _ = view.apply(&Stamped {
                at_ms: state.clock_ms(),
                command: Command::new(Action::AcceptOffer {
                    agent_id,
                    contact_id: id.clone(),
                }),
            });
        }
    }
    let done = state.reconciled_seq(sender);
    let upto_seq = match seq {
        0 => 0,
        1 => done,
        2 => u64::MAX,
        3 => done.saturating_add(banyan_domain::command::MAX_IMPORT_SPAN + 1),
        _ => done.saturating_add(u64::from(seq)),
    };
    let mut import = banyan_domain::BranchImport {
        site: sender.into(),
        upto_seq,
        contacts: view.contacts().cloned().collect(),
        agents: view
            .agents()
            .map(|a| (a.input.id.clone(), a.presence.clone()))
            .collect(),
        created: vec![id.clone()],
    };
    let core_contacts: Vec<&Contact> = state.contacts().collect();
    let some_core = core_contacts
        .get(pick % core_contacts.len().max(1))
        .copied()
        .cloned();
    let mine = import.contacts.iter_mut().find(|c| c.id == id);
    match (hostility, mine) {
        // An existing contact of the core, "finished" by an agent that does not exist.
        (1, _) => {
            if let Some(mut c) = some_core {
                c.agent_id = "ghost".into();
                c.state = ContactState::Completed;
                import.contacts.push(c);
            }
        }
        // The branch's contact connected to another site's agent.
        (2, Some(c)) => {
            c.agent_id = if sender == "apac" { "e1" } else { "p1" }.into();
            c.state = ContactState::Connected;
        }
        // Claims the core's contacts as its own creations.
        (3, _) => import
            .created
            .extend(core_contacts.iter().map(|c| c.id.clone())),
        // The same contact twice.
        (4, Some(c)) => {
            let twice = c.clone();
            import.contacts.push(twice);
        }
        // Times at the ends of i64.
        (5, Some(c)) => {
            c.enqueued_ms = extreme;
            c.queue_entered_ms = extreme;
            if let Some(step) = c.timeline.first_mut() {
                step.at_ms = extreme;
            }
        }
        // Priorities at the ends of i64.
        (6, Some(c)) => {
            c.priority = extreme;
            c.base_priority = extreme;
        }
        // A huge string and a huge map.
        (7, Some(c)) => {
            c.intent = "i".repeat(300_000);
            c.attributes = (0..2_000).map(|i| (format!("k{i}"), "v".into())).collect();
        }
        // For the other site than the sender's.
        (8, _) => import.site = if sender == "apac" { "emea" } else { "apac" }.into(),
        // A connected contact at an agent beyond its capacity: the branch's contact
        // connected to every agent's full load.
        (9, Some(c)) => {
            let c = c.clone();
            for i in 0..4 {
                let mut copy = c.clone();
                copy.id = format!("{}-{i}", c.id);
                copy.agent_id = if sender == "apac" { "p3" } else { "e2" }.into();
                copy.state = ContactState::Connected;
                copy.timeline.push(banyan_domain::contact::Transition {
                    at_ms: c.enqueued_ms,
                    state: ContactState::Offered,
                    detail: String::new(),
                    by: None,
                });
                copy.timeline.push(banyan_domain::contact::Transition {
                    at_ms: c.enqueued_ms,
                    state: ContactState::Connected,
                    detail: String::new(),
                    by: None,
                });
                import.contacts.push(copy);
            }
        }
        // An agent of another site set on a break.
        (10, _) => import.agents.push((
            if sender == "apac" { "e1" } else { "p1" }.into(),
            Presence::Break {
                reason: "hostile".into(),
            },
        )),
        // A core contact no agent took yet, claimed as the branch's own and on a call at
        // the branch with an agent that does not exist.
        (11, _) => {
            let untaken = core_contacts
                .iter()
                .filter(|c| c.state.is_waiting() || c.state == ContactState::Offered)
                .nth(pick % 4);
            if let Some(c) = untaken {
                let mut copy = (*c).clone();
                copy.offer = None;
                copy.agent_id = "ghost".into();
                copy.connected_ms = Some(state.clock_ms());
                if copy.state != ContactState::Offered {
                    copy.timeline.push(banyan_domain::contact::Transition {
                        at_ms: state.clock_ms(),
                        state: ContactState::Offered,
                        detail: String::new(),
                        by: None,
                    });
                }
                copy.timeline.push(banyan_domain::contact::Transition {
                    at_ms: state.clock_ms(),
                    state: ContactState::Connected,
                    detail: "ghost".into(),
                    by: None,
                });
                copy.state = ContactState::Connected;
                import.created.push(copy.id.clone());
                import.contacts.push(copy);
            }
        }
        _ => {}
    }
    import
}

/// The administrative change `kind` stands for, made to the current configuration.
fn reconfigure(state: &State, kind: u8) -> Action {
    let original = |id: &str| {
        setup()
            .into_iter()
            .find_map(|a| match a {
                Action::UpsertQueue(q) if q.id == id => Some(q),
                _ => None,
            })
            .expect("queue in the setup")
    };
    let current = |id: &str| state.queue(id).cloned().unwrap_or_else(|| original(id));
    match kind {
        0 => Action::UpsertQueue(QueueInput {
            escalation: Vec::new(),
            ..current("sales")
        }),
        1 => Action::UpsertQueue(original("sales")),
        2 => Action::UpsertQueue(QueueInput {
            strategy: Routing::RoundRobin,
            ..current("support")
        }),
        3 => Action::UpsertQueue(original("support")),
        _ => {
            let e2 = state.agent("e2").map(|a| a.input.clone());
            let mut input = e2.unwrap_or_else(|| agent("e2", "emea", &[]));
            let raised = input.skills.get("sales") == Some(&4);
            input
                .skills
                .insert("sales".into(), if raised { 8 } else { 4 });
            input.capacity = if raised {
                capacity(2, 3, 1, 1)
            } else {
                capacity(1, 2, 0, 1)
            };
            Action::UpsertAgent(input)
        }
    }
}

// --- the invariants ---

/// Whether `agent` may take `contact` now, its room on the contact's channel aside: the
/// same rules the router applies (presence, wrap-up, skills at the contact's escalation
/// step, the site rule, the site's lease).
fn could_take(state: &State, agent: &Agent, contact: &Contact) -> bool {
    let now = state.clock_ms();
    let Some(queue) = state.queue(&contact.queue_id) else {
        return false;
    };
    let step = contact.step as usize;
    agent.presence == Presence::Available
        && agent.wrapping_up == 0
        && agent.meets(&queue.requirements_at(step))
        && (contact.origin_site.is_empty()
            || queue.other_sites_at(step)
            || agent.input.site == contact.origin_site)
        && state
            .site(&agent.input.site)
            .is_none_or(|s| s.routable(now))
}

/// A waiting order key: smaller goes first (higher effective priority, then older, then
/// lower id).
fn wait_rank(state: &State, contact: &Contact) -> (i64, i64, String) {
    let now = state.clock_ms();
    let aging = state
        .queue(&contact.queue_id)
        .map_or(0, |q| q.aging_per_minute);
    let effective = contact.priority * PRIORITY_SCALE + aging * (now - contact.enqueued_ms);
    (-effective, contact.enqueued_ms, contact.id.clone())
}

/// The state's own consistency: holdings, capacity, timelines, waiting counts, and that
/// routing left no waiting contact with an agent free to take it.
fn check_state(state: &State) -> Result<(), TestCaseError> {
    let mut expected: BTreeMap<String, BTreeMap<String, Channel>> = BTreeMap::new();
    let mut waiting: BTreeMap<String, usize> = BTreeMap::new();
    for c in state.contacts() {
        prop_assert!(
            c.timeline_is_legal(),
            "illegal timeline of {}: {:?}",
            c.id,
            c.timeline
        );
        prop_assert!(
            c.passed_by.is_empty(),
            "{} still passed over by {}",
            c.id,
            c.passed_by
        );
        prop_assert_eq!(
            c.state.is_final(),
            c.ended_ms.is_some(),
            "ended_ms of {}",
            &c.id
        );
        match c.state {
            ContactState::Offered => {
                let offer = c.offer.as_ref();
                prop_assert!(offer.is_some(), "{} offered without an offer", c.id);
                let offer = offer.unwrap();
                let distinct: BTreeSet<&String> = offer.agents.iter().collect();
                prop_assert!(!offer.agents.is_empty() && distinct.len() == offer.agents.len());
                if offer.decision.strategy != Routing::RingAll {
                    prop_assert_eq!(offer.agents.len(), 1, "{} offered to several", &c.id);
                }
                prop_assert!(c.agent_id.is_empty(), "{} offered yet assigned", c.id);
                for a in &offer.agents {
                    expected
                        .entry(a.clone())
                        .or_default()
                        .insert(c.id.clone(), c.channel);
                    let agent = state.agent(a);
                    prop_assert!(agent.is_some_and(|a| a.presence == Presence::Available));
                }
            }
            ContactState::Connected | ContactState::WrapUp => {
                prop_assert!(c.offer.is_none());
                prop_assert!(!c.agent_id.is_empty(), "{} assigned to nobody", c.id);
                prop_assert_eq!(
                    c.state == ContactState::WrapUp,
                    c.wrap_until_ms.is_some(),
                    "wrap_until_ms of {}",
                    &c.id
                );
                expected
                    .entry(c.agent_id.clone())
                    .or_default()
                    .insert(c.id.clone(), c.channel);
            }
            state_now => {
                prop_assert!(
                    c.offer.is_none(),
                    "{} is {:?} with an offer",
                    c.id,
                    state_now
                );
                if state_now.is_waiting() {
                    *waiting.entry(c.queue_id.clone()).or_default() += 1;
                }
            }
        }
    }
    for agent in state.agents() {
        let id = agent.id();
        let empty = BTreeMap::new();
        let should = expected.get(id).unwrap_or(&empty);
        prop_assert_eq!(
            &agent.held,
            should,
            "held of {} disagrees with the contacts",
            id
        );
        for channel in Channel::ALL {
            let count = agent.held.values().filter(|c| **c == channel).count() as u32;
            prop_assert_eq!(
                agent.load.get(channel),
                count,
                "load of {} on {}",
                id,
                channel
            );
            prop_assert!(
                count <= agent.input.capacity.get(channel),
                "{} holds {} on {} above its capacity {}",
                id,
                count,
                channel,
                agent.input.capacity.get(channel)
            );
        }
        let wrapping = agent
            .held
            .keys()
            .filter(|c| {
                state
                    .contact(c)
                    .is_some_and(|c| c.state == ContactState::WrapUp)
            })
            .count() as u32;
        prop_assert_eq!(agent.wrapping_up, wrapping, "wrapping_up of {}", id);
    }
    let mut total = 0;
    for q in state.queues() {
        let count = waiting.get(&q.id).copied().unwrap_or(0);
        prop_assert_eq!(state.waiting_in(&q.id), count, "waiting_in({})", &q.id);
        total += count;
    }
    prop_assert_eq!(
        total,
        waiting.values().sum::<usize>(),
        "waiting outside any queue"
    );

    // Work-conserving: routing ran to its fixpoint.
    for w in state.contacts().filter(|c| c.state.is_waiting()) {
        for agent in state.agents() {
            let room = agent.load.get(w.channel) < agent.input.capacity.get(w.channel);
            prop_assert!(
                !(room && could_take(state, agent, w)),
                "{} waits while {} could take it",
                w.id,
                agent.id()
            );
        }
    }
    Ok(())
}

struct Offered<'a> {
    contact_id: &'a str,
    channel: Channel,
    agent_ids: &'a [String],
    decision: &'a Decision,
}

/// The routing decisions of one step, judged against the state after it. Routing runs last
/// in a command and only offers, so the offers are the tail of the events and nothing but
/// an agent's load changed between one offer and the end of the step: an agent's load
/// before offer `i` is its final load minus the offers it received from `i` on.
fn check_offers(before: &State, after: &State, events: &[Event]) -> Result<(), TestCaseError> {
    let first = events
        .iter()
        .position(|e| matches!(e, Event::ContactOffered { .. }));
    if let Some(first) = first {
        prop_assert!(
            events[first..]
                .iter()
                .all(|e| matches!(e, Event::ContactOffered { .. })),
            "offers are not the tail of the events: {:?}",
            events
        );
    }
    let offers: Vec<Offered> = events
        .iter()
        .filter_map(|e| match e {
            Event::ContactOffered {
                contact_id,
                channel,
                agent_ids,
                decision,
                ..
            } => Some(Offered {
                contact_id,
                channel: *channel,
                agent_ids,
                decision,
            }),
            _ => None,
        })
        .collect();
    // (contact, agent) pairs where the agent passed the contact over in this step.
    let passed: BTreeSet<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            Event::ContactRequeued {
                contact_id,
                passed_by,
                ..
            } if !passed_by.is_empty() => Some((contact_id.as_str(), passed_by.as_str())),
            _ => None,
        })
        .collect();
    // Offers to `agent` from offer `i` on, on `channel` (any channel when `None`).
    let offers_from = |agent: &str, i: usize, channel: Option<Channel>| -> u32 {
        offers[i..]
            .iter()
            .filter(|o| channel.is_none_or(|c| c == o.channel))
            .filter(|o| o.agent_ids.iter().any(|a| a == agent))
            .count() as u32
    };
    let room_before = |agent: &Agent, i: usize, channel: Channel| -> bool {
        i64::from(agent.load.get(channel)) - i64::from(offers_from(agent.id(), i, Some(channel)))
            < i64::from(agent.input.capacity.get(channel))
    };

    for (i, offer) in offers.iter().enumerate() {
        let c = after.contact(offer.contact_id);
        prop_assert!(c.is_some());
        let c = c.unwrap();
        prop_assert_eq!(c.state, ContactState::Offered);
        prop_assert_eq!(c.channel, offer.channel);
        let queue = after.queue(&c.queue_id).unwrap();
        prop_assert_eq!(&offer.decision.queue_id, &c.queue_id);
        prop_assert_eq!(offer.decision.step, c.step);
        prop_assert_eq!(offer.decision.strategy, queue.strategy);
        let c_rank = wait_rank(after, c);

        for agent_id in offer.agent_ids {
            let a = after.agent(agent_id).unwrap();
            prop_assert!(
                could_take(after, a, c) && room_before(a, i, c.channel),
                "{} offered to {}, who could not take it",
                c.id,
                agent_id
            );
            // No contact the agent could have taken instead ranks above the one it got.
            for w in after.contacts().filter(|w| w.state.is_waiting()) {
                if passed.contains(&(w.id.as_str(), agent_id.as_str())) {
                    continue;
                }
                if could_take(after, a, w) && room_before(a, i, w.channel) {
                    prop_assert!(
                        c_rank < wait_rank(after, w),
                        "{} offered {} while {} ranks higher and waits: {:?} vs {:?}",
                        agent_id,
                        c.id,
                        w.id,
                        c_rank,
                        wait_rank(after, w)
                    );
                }
            }
        }

        // The agents chosen: every eligible one for a ring-all, else the strategy's best.
        let others: Vec<&Agent> = after
            .agents()
            .filter(|b| !offer.agent_ids.iter().any(|a| a == b.id()))
            .filter(|b| !passed.contains(&(c.id.as_str(), b.id())))
            .filter(|b| could_take(after, b, c) && room_before(b, i, c.channel))
            .collect();
        if queue.strategy == Routing::RingAll {
            prop_assert!(
                others.is_empty(),
                "ring-all of {} left out {:?}",
                c.id,
                others.iter().map(|b| b.id()).collect::<Vec<_>>()
            );
            continue;
        }
        let key = |agent: &Agent| -> (i64, i64, String) {
            let idle = agent.idle_since_ms;
            let id = agent.id().to_owned();
            match queue.strategy {
                Routing::LongestIdle | Routing::RingAll => (idle, 0, id),
                Routing::RoundRobin => {
                    // Offer sequence numbers only grow: an offer earlier in this step beats
                    // any number from before it.
                    let earlier = offers[..i].iter().enumerate().rev().find_map(|(j, o)| {
                        o.agent_ids.iter().position(|a| *a == id).map(|p| (j, p))
                    });
                    let seq = match earlier {
                        Some((j, p)) => i64::MAX / 2 + (j * 100 + p) as i64,
                        None => before.agent(&id).map_or(0, |a| a.last_offer_seq as i64),
                    };
                    (seq, 0, id)
                }
                Routing::FewestContacts => {
                    let total =
                        i64::from(agent.load.total()) - i64::from(offers_from(&id, i, None));
                    (total, idle, id)
                }
                Routing::LeastTalkTime => (agent.talk_time_ms, idle, id),
                Routing::SkillWeighted => {
                    let total: i64 = queue
                        .required_skills
                        .keys()
                        .filter_map(|s| agent.input.skills.get(s))
                        .map(|l| i64::from(*l))
                        .sum();
                    (-total, idle, id)
                }
            }
        };
        let chosen = after.agent(&offer.agent_ids[0]).unwrap();
        for b in others {
            prop_assert!(
                key(chosen) < key(b),
                "{} went to {} {:?} though {} {:?} is better under {:?}",
                c.id,
                chosen.id(),
                key(chosen),
                b.id(),
                key(b),
                queue.strategy
            );
        }
    }
    Ok(())
}

// --- the run ---

type Outcome = Result<Vec<Event>, DomainError>;

/// Applies commands, checks every step, and keeps the log for the replay.
struct Run {
    state: State,
    now: i64,
    log: Vec<(Stamped, Outcome)>,
    /// Commands that carried a request id and succeeded, and their first events.
    first_results: BTreeMap<String, (Command, Vec<Event>)>,
    with_request_id: Vec<Command>,
}

impl Run {
    fn new() -> Self {
        Self {
            state: State::default(),
            now: T0,
            log: Vec::new(),
            first_results: BTreeMap::new(),
            with_request_id: Vec::new(),
        }
    }

    fn step(&mut self, command: Command) -> Result<(), TestCaseError> {
        let stamped = Stamped {
            at_ms: self.now,
            command,
        };
        let before = self.state.clone();
        // Whether the state machine answered from its request log: a retry within the
        // retention window. (A command whose id expired is applied anew, even when it
        // changes nothing but the log, such as an import already applied.)
        let (outcome, fresh) = self.state.apply_traced(&stamped);
        let step = self.log.len();
        match &outcome {
            Err(err) => {
                prop_assert!(
                    self.state == before,
                    "step {}: refused {:?} ({}) changed the state",
                    step,
                    stamped.command,
                    err
                );
            }
            Ok(events) => {
                if !fresh {
                    let first = stamped
                        .command
                        .request_id()
                        .and_then(|id| self.first_results.get(id));
                    prop_assert!(
                        first
                            .is_some_and(|(cmd, first)| *cmd == stamped.command && first == events),
                        "step {}: a retry was not answered with its first result",
                        step
                    );
                    prop_assert!(
                        self.state == before,
                        "step {}: a retry changed the state",
                        step
                    );
                } else {
                    if let Some(id) = stamped.command.request_id() {
                        self.first_results
                            .insert(id.to_owned(), (stamped.command.clone(), events.clone()));
                        self.with_request_id.push(stamped.command.clone());
                    }
                    check_offers(&before, &self.state, events)
                        .map_err(|e| at_step(e, step, &stamped, events))?;
                }
            }
        }
        check_state(&self.state).map_err(|e| at_step(e, step, &stamped, &[]))?;
        self.log.push((stamped, outcome));
        Ok(())
    }
}

fn at_step(err: TestCaseError, step: usize, stamped: &Stamped, events: &[Event]) -> TestCaseError {
    TestCaseError::fail(format!(
        "step {step} ({:?} at {}): {err}\nevents: {events:?}",
        stamped.command.action, stamped.at_ms
    ))
}

/// Applies `log[start..]` to `state`, checking every result against the log.
fn replay(
    mut state: State,
    log: &[(Stamped, Outcome)],
    start: usize,
) -> Result<State, TestCaseError> {
    for (i, (stamped, expected)) in log.iter().enumerate().skip(start) {
        let got = state.apply(stamped);
        prop_assert_eq!(&got, expected, "step {} differs on replay", i);
    }
    Ok(state)
}

/// Runs the setup and `ops`, checking every step, and calls `after_op` after each op.
fn drive(ops: &[(i64, Op)], mut after_op: impl FnMut(&Run)) -> Result<Run, TestCaseError> {
    let mut run = Run::new();
    for action in setup() {
        run.step(Command::new(action))?;
    }
    for (gap_ms, op) in ops {
        run.now += gap_ms;
        if let Op::Tick { advance_ms } = op {
            run.now += advance_ms;
        }
        let command = command_for(&run.state, op, &run.with_request_id);
        run.step(command)?;
        after_op(&run);
    }
    Ok(run)
}

/// Runs the setup and `ops`, checking every step; snapshots the state after the op at
/// `snapshot_after` (an index into `ops`) and replays from there and from scratch.
fn run(ops: &[(i64, Op)], snapshot_after: usize) -> Result<(), TestCaseError> {
    let snapshot_step = setup().len() + snapshot_after;
    let mut snapshot = None;
    let run = drive(ops, |run| {
        if run.log.len() == snapshot_step + 1 {
            snapshot = Some((
                run.log.len(),
                postcard::to_allocvec(&run.state).expect("serialize"),
            ));
        }
    })?;
    // Replay from scratch.
    let replayed = replay(State::default(), &run.log, 0)?;
    prop_assert!(replayed == run.state, "replay from scratch ends elsewhere");

    // Replay from a snapshot taken mid-run: the indexes are rebuilt from the source of truth.
    let (from, bytes) = snapshot.expect("snapshot taken");
    let restored: State = postcard::from_bytes(&bytes).expect("deserialize");
    let continued = replay(restored, &run.log, from)?;
    prop_assert!(
        continued == run.state,
        "replay from the snapshot ends elsewhere"
    );
    check_state(&continued)?;

    // And the final state survives a round trip.
    let bytes = postcard::to_allocvec(&run.state).expect("serialize");
    let back: State = postcard::from_bytes(&bytes).expect("deserialize");
    prop_assert!(back == run.state);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_commands_keep_the_invariants_and_replay_identically(
        ops in prop::collection::vec((0i64..3_000, op()), 1..200),
        snapshot_at in any::<prop::sample::Index>(),
    ) {
        run(&ops, snapshot_at.index(ops.len()))?;
    }

    /// The same checks with faulty and hostile commands mixed into realistic sequences:
    /// imports naming unknown and other sites' agents, the core's contacts claimed as the
    /// branch's, contacts twice, times and priorities at the ends of `i64`, huge strings and
    /// maps, other sites' names, stale, replayed and silencing sequences; creates and lease
    /// renewals with extreme values. No step may panic, every invariant holds after each
    /// one, and the log replays identically.
    #[test]
    fn hostile_commands_never_break_the_invariants_or_replay(
        ops in prop::collection::vec((0i64..3_000, hostile_op()), 1..120),
        snapshot_at in any::<prop::sample::Index>(),
    ) {
        run(&ops, snapshot_at.index(ops.len()))?;
    }
}

/// A fixed, long sequence exercising the same checks without shrinking noise: one of each
/// operation in turn, with time advancing steadily. Guards against the random runs
/// happening to miss whole areas.
#[test]
fn a_round_of_every_operation_keeps_the_invariants() {
    let ops = rounds_of_every_operation();
    let total = ops.len();
    run(&ops, total / 2).unwrap();
}

/// Forty rounds of every operation in turn, with time advancing steadily.
fn rounds_of_every_operation() -> Vec<(i64, Op)> {
    let mut ops = Vec::new();
    for round in 0..40usize {
        let r = round as i64;
        ops.push((
            500,
            Op::Create {
                channel: round % 4,
                queue: round % 3,
                priority: r % 7,
                customer: round % 4,
                origin: round % 3,
                request: (round % 5 == 0).then_some((round % 3) as u8),
            },
        ));
        ops.push((
            300,
            Op::Presence {
                agent: round % 6,
                kind: (round % 4) as u8,
            },
        ));
        ops.push((
            200,
            Op::Accept {
                agent: round % 6,
                pick: round * 7 + 1,
            },
        ));
        ops.push((
            100,
            Op::Accept {
                agent: (round + 3) % 6,
                pick: round * 3 + 2,
            },
        ));
        ops.push((
            100,
            Op::End {
                agent: round % 6,
                pick: round + 1,
            },
        ));
        if round % 3 == 0 {
            ops.push((
                100,
                Op::Reject {
                    agent: (round + 1) % 6,
                    pick: round + 1,
                },
            ));
            ops.push((
                100,
                Op::Transfer {
                    pick: round + 2,
                    queue: round % 3,
                },
            ));
        }
        if round % 4 == 0 {
            ops.push((
                100,
                Op::Complete {
                    agent: None,
                    pick: round + 1,
                    disposition: round % 3,
                },
            ));
            ops.push((100, Op::Abandon { pick: round + 3 }));
            ops.push((
                100,
                Op::Renew {
                    lag_ms: 1_000,
                    ttl_ms: 20_000,
                },
            ));
            ops.push((100, Op::Retry { pick: round }));
        }
        if round % 7 == 0 {
            ops.push((
                100,
                Op::Disconnect {
                    agent: (round + 2) % 6,
                },
            ));
        }
        ops.push((
            0,
            Op::Tick {
                advance_ms: 4_000 + (r % 5) * 3_000,
            },
        ));
    }
    ops
}

/// Runs `ops` as [`run`] does, and beside it a second state that after every step lets
/// every contact finished so far leave (the most eager retention there is).
/// Returns how many finished contacts left the second state.
fn run_with_and_without_retention(ops: &[(i64, Op)]) -> Result<usize, TestCaseError> {
    let run = drive(ops, |_| {})?;
    let mut lean = State::default();
    let mut forgotten = 0;
    for (i, (stamped, expected)) in run.log.iter().enumerate() {
        let got = lean.apply(stamped);
        match (&got, expected) {
            (Ok(got), Ok(expected)) => {
                prop_assert_eq!(got, expected, "step {} decided otherwise with retention", i)
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(
                false,
                "step {} ({:?}): {:?} without retention, {:?} with",
                i,
                stamped.command.action,
                expected,
                got
            ),
        }
        let before = lean.finished_count();
        // Stamped with the state's own clock, which it leaves where it is: the figures
        // that read the clock (the longest wait) are compared at the same time.
        let now = lean.clock_ms();
        let forget = Stamped {
            at_ms: now,
            command: Command::new(Action::ForgetFinished { before_ms: now }),
        };
        prop_assert!(lean.apply(&forget).expect("forgets").is_empty());
        forgotten += before - lean.finished_count();
        check_state(&lean).map_err(|e| at_step(e, i, stamped, &[]))?;
    }
    for queue in run.state.queues() {
        prop_assert_eq!(
            lean.queue_stats(&queue.id),
            run.state.queue_stats(&queue.id),
            "queue {}'s figures",
            &queue.id
        );
    }
    prop_assert!(lean.agents().eq(run.state.agents()), "agents differ");
    let finished = run.state.finished_count();
    prop_assert!(
        lean.finished_count() <= finished && forgotten + lean.finished_count() >= finished,
        "the finished contacts left: {forgotten} forgotten, {finished} finished"
    );
    Ok(forgotten)
}

/// The fixed rounds finish contacts of every kind: with retention they leave, and nothing
/// else differs.
#[test]
fn a_round_of_every_operation_decides_alike_with_retention() {
    let forgotten = run_with_and_without_retention(&rounds_of_every_operation()).unwrap();
    assert!(forgotten >= 10, "only {forgotten} finished contacts left");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Retention changes memory, never outcomes: the same command sequence decides every
    /// offer, answer and figure alike whether finished contacts leave the state at once
    /// or never.
    #[test]
    fn retention_changes_memory_never_outcomes(
        ops in prop::collection::vec((0i64..3_000, op()), 1..200),
    ) {
        run_with_and_without_retention(&ops)?;
    }
}
