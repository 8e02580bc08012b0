//! The contact invariants of DESIGN.md section 2, judged from a client history, every
//! node's final contacts, and the event stream of the run:
//!
//! * **no acknowledged contact lost**: every contact the cluster acknowledged exists on
//!   every node;
//! * **exactly once**: no request produced two contacts, no contact appears that no request
//!   created, a refused request created nothing;
//! * **legal history**: every contact's timeline follows the life cycle;
//! * **replicas agree**: every node holds the same contacts in the same states;
//! * **no double assignment** (from the events, in log order): no agent ever holds more
//!   contacts on a channel than its capacity, and no contact is connected to two agents.
//!
//! [`check_branch_sides`] judges a branch that was cut off from the core from both sides'
//! events: the fence (the core stops offering to the site's agents when its lease runs out,
//! the branch routes only after that) and the same capacity and double-assignment replay
//! over both streams merged in time order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use banyan_domain::ContactState;
use banyan_proto::v1::{self as pb, EventKind};

use crate::history::Outcome;

/// One `CreateContact` a workload sent.
#[derive(Debug, Clone)]
pub struct ContactOp {
    pub request_id: String,
    pub outcome: Outcome,
    /// The contact id the cluster answered with, when it answered.
    pub contact_id: Option<String>,
    /// The status the cluster answered with, when it did not create the contact.
    pub error: Option<String>,
}

impl ContactOp {
    /// Records the answer to the create with `request_id`.
    pub fn of(request_id: impl Into<String>, result: &Result<pb::Contact, tonic::Status>) -> Self {
        Self {
            request_id: request_id.into(),
            outcome: Outcome::of(result),
            contact_id: result.as_ref().ok().map(|c| c.id.clone()),
            error: result
                .as_ref()
                .err()
                .map(|s| format!("{:?}: {}", s.code(), s.message())),
        }
    }
}

/// The contacts one node holds after the faults healed.
#[derive(Debug, Clone)]
pub struct NodeContacts {
    pub node: u64,
    pub contacts: Vec<pb::Contact>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactViolation {
    Lost {
        node: u64,
        contact_id: String,
    },
    Duplicated {
        node: u64,
        request_id: String,
        contacts: Vec<String>,
    },
    Phantom {
        node: u64,
        contact_id: String,
    },
    RefusedButCreated {
        node: u64,
        request_id: String,
        refusal: String,
    },
    IllegalHistory {
        node: u64,
        contact_id: String,
        states: Vec<String>,
    },
    Diverged {
        node: u64,
        other: u64,
        contact_id: String,
    },
    OverCapacity {
        index: u64,
        agent_id: String,
        channel: i32,
        held: u32,
        capacity: u32,
    },
    DoubleAssigned {
        index: u64,
        contact_id: String,
        agents: Vec<String>,
    },
    /// The core offered a contact to a site's agent after the site's lease ran out.
    OfferedAfterLapse {
        index: u64,
        contact_id: String,
        agent_id: String,
        at_ms: i64,
        lease_until_ms: i64,
    },
    /// The branch routed a contact on its own while the core may still have routed to its
    /// site's agents.
    RoutedBeforeLapse {
        seq: u64,
        contact_id: String,
        at_ms: i64,
        lease_until_ms: i64,
    },
}

impl fmt::Display for ContactViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lost { node, contact_id } => {
                write!(f, "node {node}: acknowledged contact {contact_id} is missing")
            }
            Self::Duplicated { node, request_id, contacts } => {
                write!(f, "node {node}: request {request_id} created {contacts:?}")
            }
            Self::Phantom { node, contact_id } => {
                write!(f, "node {node}: contact {contact_id} was never requested")
            }
            Self::RefusedButCreated { node, request_id, refusal } => write!(
                f,
                "node {node}: request {request_id} was refused ({refusal}) yet created a contact"
            ),
            Self::IllegalHistory { node, contact_id, states } => {
                write!(f, "node {node}: contact {contact_id} went {}", states.join(" -> "))
            }
            Self::Diverged { node, other, contact_id } => {
                write!(f, "nodes {node} and {other} disagree on contact {contact_id}")
            }
            Self::OverCapacity { index, agent_id, channel, held, capacity } => write!(
                f,
                "log index {index}: agent {agent_id} holds {held} contacts on channel {channel}, capacity {capacity}"
            ),
            Self::DoubleAssigned { index, contact_id, agents } => {
                write!(f, "log index {index}: contact {contact_id} assigned to {agents:?}")
            }
            Self::OfferedAfterLapse { index, contact_id, agent_id, at_ms, lease_until_ms } => write!(
                f,
                "log index {index}: the core offered {contact_id} to {agent_id} at {at_ms}, after the site's lease ran out at {lease_until_ms}"
            ),
            Self::RoutedBeforeLapse { seq, contact_id, at_ms, lease_until_ms } => write!(
                f,
                "branch journal {seq}: the branch offered {contact_id} at {at_ms}, before the site's lease ran out at {lease_until_ms}"
            ),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ContactReport {
    pub acknowledged: usize,
    pub refused: usize,
    pub unknown: usize,
    /// Offers and connections seen in the events.
    pub offers: usize,
    pub connected: usize,
    pub violations: Vec<ContactViolation>,
}

impl ContactReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for ContactReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acknowledged, {} refused, {} unknown; {} offers, {} connected; {} violations",
            self.acknowledged,
            self.refused,
            self.unknown,
            self.offers,
            self.connected,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(20) {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

fn domain_state(state: i32) -> Option<ContactState> {
    Some(match pb::ContactState::try_from(state).ok()? {
        pb::ContactState::Unspecified => return None,
        pb::ContactState::SelfServed => ContactState::SelfServed,
        pb::ContactState::Queued => ContactState::Queued,
        pb::ContactState::Offered => ContactState::Offered,
        pb::ContactState::Connected => ContactState::Connected,
        pb::ContactState::WrapUp => ContactState::WrapUp,
        pb::ContactState::Completed => ContactState::Completed,
        pb::ContactState::Abandoned => ContactState::Abandoned,
        pb::ContactState::CallbackScheduled => ContactState::CallbackScheduled,
        pb::ContactState::Transferred => ContactState::Transferred,
    })
}

/// Whether a contact's recorded timeline follows the life cycle.
pub fn legal_timeline(contact: &pb::Contact) -> bool {
    let states: Vec<Option<ContactState>> = contact
        .timeline
        .iter()
        .map(|t| domain_state(t.state))
        .collect();
    let Some(Some(first)) = states.first() else {
        return false;
    };
    let starts = matches!(
        first,
        ContactState::Queued
            | ContactState::SelfServed
            | ContactState::Abandoned
            | ContactState::CallbackScheduled
    );
    starts
        && states.windows(2).all(|w| match (w[0], w[1]) {
            (Some(a), Some(b)) => a.may_become(b),
            _ => false,
        })
        && contact.timeline.last().map(|t| t.state) == Some(contact.state)
}

/// Judges the final contacts of every node (and the events of one) against `ops`.
/// Contacts whose request id does not start with `prefix` belong to someone else and are
/// only checked for legality and agreement.
pub fn check_contacts(
    ops: &[ContactOp],
    nodes: &[NodeContacts],
    events: &[pb::Event],
    prefix: &str,
) -> ContactReport {
    let mut report = ContactReport {
        acknowledged: ops.iter().filter(|o| o.outcome == Outcome::Ok).count(),
        refused: ops.iter().filter(|o| o.outcome == Outcome::Failed).count(),
        unknown: ops.iter().filter(|o| o.outcome == Outcome::Unknown).count(),
        ..Default::default()
    };
    let sent: BTreeMap<&str, &ContactOp> = ops.iter().map(|o| (o.request_id.as_str(), o)).collect();
    for node in nodes {
        let by_id: BTreeMap<&str, &pb::Contact> =
            node.contacts.iter().map(|c| (c.id.as_str(), c)).collect();
        for op in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
            let id = op.contact_id.as_deref().unwrap_or_default();
            if !by_id.contains_key(id) {
                report.violations.push(ContactViolation::Lost {
                    node: node.node,
                    contact_id: id.to_owned(),
                });
            }
        }
        let mut by_request: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for contact in &node.contacts {
            if !legal_timeline(contact) {
                report.violations.push(ContactViolation::IllegalHistory {
                    node: node.node,
                    contact_id: contact.id.clone(),
                    states: contact
                        .timeline
                        .iter()
                        .map(|t| format!("{:?}", pb::ContactState::try_from(t.state)))
                        .collect(),
                });
            }
            if contact.request_id.starts_with(prefix) && !prefix.is_empty() {
                by_request
                    .entry(contact.request_id.as_str())
                    .or_default()
                    .push(contact.id.clone());
                match sent.get(contact.request_id.as_str()) {
                    None => report.violations.push(ContactViolation::Phantom {
                        node: node.node,
                        contact_id: contact.id.clone(),
                    }),
                    Some(op) if op.outcome == Outcome::Failed => {
                        report.violations.push(ContactViolation::RefusedButCreated {
                            node: node.node,
                            request_id: contact.request_id.clone(),
                            refusal: op.error.clone().unwrap_or_default(),
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        for (request_id, contacts) in by_request {
            if contacts.len() > 1 {
                report.violations.push(ContactViolation::Duplicated {
                    node: node.node,
                    request_id: request_id.to_owned(),
                    contacts,
                });
            }
        }
    }
    check_agreement(nodes, &mut report);
    check_assignments(events, &mut report);
    report
}

/// Judges a branch of `site` cut off from the core, from the core's events and the
/// branch's own while it routed alone (its journal's events, read before it reconciled):
///
/// * the core offers nothing to the site's agents from the moment the site's current lease
///   (the last renewal it applied) runs out;
/// * the branch offers nothing before the lease the core last renewed has run out;
/// * both streams merged in time order (the core's imports of the branch's work left out:
///   the branch's own events already hold them) never put an agent over capacity or a
///   contact with two agents.
///
/// Both sides stamp events with their own wall clock, so the streams must come from nodes
/// that share one (one machine, or clocks kept within a few milliseconds).
pub fn check_branch_sides(core: &[pb::Event], branch: &[pb::Event], site: &str) -> ContactReport {
    let mut report = ContactReport::default();
    let site_agents: BTreeSet<&str> = core
        .iter()
        .filter(|e| e.kind == EventKind::AgentUpserted as i32 && e.site_id == site)
        .filter_map(|e| e.agent_ids.first().map(String::as_str))
        .collect();
    let renewals: Vec<(i64, i64)> = core
        .iter()
        .filter(|e| e.kind == EventKind::LeaseRenewed as i32 && e.site_id == site)
        .map(|e| (e.at_ms, e.until_ms))
        .collect();
    // The lease the core had most recently renewed at `at_ms`.
    let lease_at = |at_ms: i64| {
        renewals
            .iter()
            .take_while(|(renewed, _)| *renewed <= at_ms)
            .map(|(_, until)| *until)
            .max()
    };
    for e in core
        .iter()
        .filter(|e| e.kind == EventKind::ContactOffered as i32)
    {
        let Some(lease_until_ms) = lease_at(e.at_ms) else {
            continue;
        };
        for agent in e
            .agent_ids
            .iter()
            .filter(|a| site_agents.contains(a.as_str()))
        {
            if e.at_ms >= lease_until_ms {
                report.violations.push(ContactViolation::OfferedAfterLapse {
                    index: e.index,
                    contact_id: e.contact_id.clone(),
                    agent_id: agent.clone(),
                    at_ms: e.at_ms,
                    lease_until_ms,
                });
            }
        }
    }
    for e in branch
        .iter()
        .filter(|e| e.kind == EventKind::ContactOffered as i32)
    {
        let lease_until_ms = lease_at(e.at_ms).unwrap_or(i64::MIN);
        if e.at_ms < lease_until_ms {
            report.violations.push(ContactViolation::RoutedBeforeLapse {
                seq: e.index,
                contact_id: e.contact_id.clone(),
                at_ms: e.at_ms,
                lease_until_ms,
            });
        }
    }
    // An offer the core made to the site's agents cannot be taken once the lease it was
    // made under has run out (the core's accept is fenced on the lease); the core records
    // the withdrawal at its next tick, which may come much later when the core itself was
    // down. The replay takes the offer back when the lease ran out.
    let mut offered_at: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut core_side: Vec<pb::Event> = Vec::with_capacity(core.len());
    for e in core {
        if e.kind == EventKind::ContactImported as i32 {
            continue;
        }
        let mut e = e.clone();
        if e.kind == EventKind::ContactOffered as i32 {
            for agent in &e.agent_ids {
                offered_at.insert((e.contact_id.clone(), agent.clone()), e.at_ms);
            }
        }
        let lapsed = e.kind == EventKind::OfferWithdrawn as i32
            && e.reason == "LEASE_LAPSED"
            && e.agent_ids
                .first()
                .is_some_and(|a| site_agents.contains(a.as_str()));
        if lapsed {
            let key = (e.contact_id.clone(), e.agent_ids[0].clone());
            if let Some(until) = offered_at.get(&key).and_then(|at| lease_at(*at)) {
                e.at_ms = e.at_ms.min(until);
            }
        }
        core_side.push(e);
    }
    // An offer the branch still had out when it handed over goes back to waiting at the
    // core (inside the import, which the replay leaves out): the ringing stops there.
    let mut ringing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in branch {
        match EventKind::try_from(e.kind) {
            Ok(EventKind::ContactOffered) => {
                ringing.insert(e.contact_id.clone(), e.agent_ids.clone());
            }
            Ok(EventKind::OfferWithdrawn) => {
                if let Some(agents) = ringing.get_mut(&e.contact_id) {
                    agents.retain(|a| !e.agent_ids.contains(a));
                }
            }
            Ok(
                EventKind::ContactConnected
                | EventKind::ContactCompleted
                | EventKind::ContactAbandoned
                | EventKind::ContactTransferred,
            ) => {
                ringing.remove(&e.contact_id);
            }
            _ => {}
        }
    }
    let handed_over = |contact: &str| {
        core.iter()
            .find(|e| e.kind == EventKind::ContactImported as i32 && e.contact_id == contact)
            .map(|e| e.at_ms)
    };
    for (contact, agents) in ringing {
        let Some(at_ms) = handed_over(&contact) else {
            continue;
        };
        for agent in agents {
            core_side.push(pb::Event {
                at_ms,
                kind: EventKind::OfferWithdrawn.into(),
                contact_id: contact.clone(),
                agent_ids: vec![agent],
                reason: "HANDED_OVER".into(),
                ..Default::default()
            });
        }
    }
    let mut merged: Vec<pb::Event> = core_side
        .into_iter()
        .chain(branch.iter().cloned())
        .collect();
    // Stable: at equal stamps each side keeps its own order, the core's first.
    merged.sort_by_key(|e| e.at_ms);
    check_assignments(&merged, &mut report);
    report
}

fn check_agreement(nodes: &[NodeContacts], report: &mut ContactReport) {
    let Some((first, rest)) = nodes.split_first() else {
        return;
    };
    let key = |c: &pb::Contact| (c.state, c.agent_id.clone(), c.timeline.len());
    let reference: BTreeMap<&str, _> = first
        .contacts
        .iter()
        .map(|c| (c.id.as_str(), key(c)))
        .collect();
    for node in rest {
        let theirs: BTreeMap<&str, _> = node
            .contacts
            .iter()
            .map(|c| (c.id.as_str(), key(c)))
            .collect();
        let ids: BTreeSet<&str> = reference.keys().chain(theirs.keys()).copied().collect();
        for id in ids {
            if reference.get(id) != theirs.get(id) {
                report.violations.push(ContactViolation::Diverged {
                    node: first.node,
                    other: node.node,
                    contact_id: id.to_owned(),
                });
            }
        }
    }
}

/// Replays the events in log order, tracking what every agent holds.
fn check_assignments(events: &[pb::Event], report: &mut ContactReport) {
    // agent → channel → contacts held (offered, connected or wrapping up).
    let mut held: BTreeMap<String, BTreeMap<i32, BTreeSet<String>>> = BTreeMap::new();
    let mut capacity: BTreeMap<String, [u32; 5]> = BTreeMap::new();
    // contact → (channel, offered agents); contact → connected agent.
    let mut offered: BTreeMap<String, (i32, BTreeSet<String>)> = BTreeMap::new();
    let mut connected: BTreeMap<String, String> = BTreeMap::new();
    let mut channel_of: BTreeMap<String, i32> = BTreeMap::new();
    for e in events {
        let Ok(kind) = EventKind::try_from(e.kind) else {
            continue;
        };
        let agent = e.agent_ids.first().cloned().unwrap_or_default();
        match kind {
            EventKind::AgentUpserted => {
                if let Some(c) = &e.capacity {
                    capacity.insert(agent, [0, c.voice, c.chat, c.email, c.callback]);
                }
            }
            EventKind::ContactCreated => {
                channel_of.insert(e.contact_id.clone(), e.channel);
            }
            EventKind::ContactOffered => {
                report.offers += 1;
                channel_of.insert(e.contact_id.clone(), e.channel);
                for a in &e.agent_ids {
                    let set = held
                        .entry(a.clone())
                        .or_default()
                        .entry(e.channel)
                        .or_default();
                    set.insert(e.contact_id.clone());
                    let cap = capacity
                        .get(a)
                        .and_then(|c| c.get(e.channel as usize).copied())
                        .unwrap_or(u32::MAX);
                    if set.len() as u32 > cap {
                        report.violations.push(ContactViolation::OverCapacity {
                            index: e.index,
                            agent_id: a.clone(),
                            channel: e.channel,
                            held: set.len() as u32,
                            capacity: cap,
                        });
                    }
                }
                offered.insert(
                    e.contact_id.clone(),
                    (e.channel, e.agent_ids.iter().cloned().collect()),
                );
            }
            EventKind::OfferWithdrawn => {
                if let Some((channel, agents)) = offered.get_mut(&e.contact_id) {
                    agents.remove(&agent);
                    release(&mut held, &agent, *channel, &e.contact_id);
                }
            }
            EventKind::ContactConnected => {
                report.connected += 1;
                if let Some(other) = connected.get(&e.contact_id) {
                    report.violations.push(ContactViolation::DoubleAssigned {
                        index: e.index,
                        contact_id: e.contact_id.clone(),
                        agents: vec![other.clone(), agent.clone()],
                    });
                }
                let holders = offered
                    .remove(&e.contact_id)
                    .map(|(_, a)| a)
                    .unwrap_or_default();
                if holders.len() != 1 || !holders.contains(&agent) {
                    report.violations.push(ContactViolation::DoubleAssigned {
                        index: e.index,
                        contact_id: e.contact_id.clone(),
                        agents: holders.into_iter().chain([agent.clone()]).collect(),
                    });
                }
                connected.insert(e.contact_id.clone(), agent);
            }
            EventKind::ContactImported if !agent.is_empty() => {
                // A branch's contact that one of its agents holds: a hold like any other.
                channel_of.insert(e.contact_id.clone(), e.channel);
                let set = held
                    .entry(agent.clone())
                    .or_default()
                    .entry(e.channel)
                    .or_default();
                set.insert(e.contact_id.clone());
                let cap = capacity
                    .get(&agent)
                    .and_then(|c| c.get(e.channel as usize).copied())
                    .unwrap_or(u32::MAX);
                if set.len() as u32 > cap {
                    report.violations.push(ContactViolation::OverCapacity {
                        index: e.index,
                        agent_id: agent.clone(),
                        channel: e.channel,
                        held: set.len() as u32,
                        capacity: cap,
                    });
                }
                if let Some(other) = connected.insert(e.contact_id.clone(), agent.clone()) {
                    report.violations.push(ContactViolation::DoubleAssigned {
                        index: e.index,
                        contact_id: e.contact_id.clone(),
                        agents: vec![other, agent.clone()],
                    });
                }
            }
            EventKind::ContactCompleted | EventKind::ContactTransferred => {
                if let Some(a) = connected.remove(&e.contact_id) {
                    let channel = channel_of.get(&e.contact_id).copied().unwrap_or_default();
                    release(&mut held, &a, channel, &e.contact_id);
                }
            }
            _ => {}
        }
    }
}

fn release(
    held: &mut BTreeMap<String, BTreeMap<i32, BTreeSet<String>>>,
    agent: &str,
    channel: i32,
    contact: &str,
) {
    if let Some(set) = held.get_mut(agent).and_then(|c| c.get_mut(&channel)) {
        set.remove(contact);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str, request_id: &str, states: &[pb::ContactState]) -> pb::Contact {
        pb::Contact {
            id: id.into(),
            request_id: request_id.into(),
            state: states.last().copied().unwrap_or_default().into(),
            timeline: states
                .iter()
                .map(|s| pb::Transition {
                    state: (*s).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn op(request_id: &str, outcome: Outcome, contact_id: &str) -> ContactOp {
        ContactOp {
            request_id: request_id.into(),
            outcome,
            contact_id: Some(contact_id.into()),
            error: None,
        }
    }

    fn offered(index: u64, contact: &str, agents: &[&str], channel: pb::Channel) -> pb::Event {
        pb::Event {
            index,
            kind: EventKind::ContactOffered.into(),
            contact_id: contact.into(),
            agent_ids: agents.iter().map(|a| a.to_string()).collect(),
            channel: channel.into(),
            ..Default::default()
        }
    }

    fn agent(id: &str, voice: u32) -> pb::Event {
        pb::Event {
            kind: EventKind::AgentUpserted.into(),
            agent_ids: vec![id.into()],
            capacity: Some(pb::Capacity {
                voice,
                chat: 3,
                email: 5,
                callback: 1,
            }),
            ..Default::default()
        }
    }

    fn connected(index: u64, contact: &str, agent: &str) -> pb::Event {
        pb::Event {
            index,
            kind: EventKind::ContactConnected.into(),
            contact_id: contact.into(),
            agent_ids: vec![agent.into()],
            ..Default::default()
        }
    }

    use pb::ContactState as S;

    #[test]
    fn a_clean_run_passes() {
        let c = contact(
            "k1",
            "t-1",
            &[S::Queued, S::Offered, S::Connected, S::Completed],
        );
        let nodes = [1, 2].map(|node| NodeContacts {
            node,
            contacts: vec![c.clone()],
        });
        let events = [
            agent("a", 1),
            offered(2, "k1", &["a"], pb::Channel::Voice),
            connected(3, "k1", "a"),
        ];
        let report = check_contacts(&[op("t-1", Outcome::Ok, "k1")], &nodes, &events, "t-");
        assert!(report.is_ok(), "{report}");
    }

    #[test]
    fn catches_a_lost_contact_a_duplicate_and_a_refused_one() {
        let ops = [
            op("t-1", Outcome::Ok, "k1"),
            op("t-2", Outcome::Ok, "k2"),
            op("t-3", Outcome::Failed, "k3"),
        ];
        let node = NodeContacts {
            node: 1,
            contacts: vec![
                contact("k2", "t-2", &[S::Queued]),
                contact("k2b", "t-2", &[S::Queued]),
                contact("k3", "t-3", &[S::Queued]),
            ],
        };
        let report = check_contacts(&ops, &[node], &[], "t-");
        let v = &report.violations;
        assert!(v
            .iter()
            .any(|v| matches!(v, ContactViolation::Lost { contact_id, .. } if contact_id == "k1")));
        assert!(v.iter().any(
            |v| matches!(v, ContactViolation::Duplicated { request_id, .. } if request_id == "t-2")
        ));
        assert!(v.iter().any(|v| matches!(v, ContactViolation::RefusedButCreated { request_id, .. } if request_id == "t-3")));
    }

    #[test]
    fn catches_an_illegal_history_and_diverged_nodes() {
        let bad = contact("k1", "t-1", &[S::Queued, S::Completed]);
        let good = contact("k1", "t-1", &[S::Queued]);
        let nodes = [
            NodeContacts {
                node: 1,
                contacts: vec![bad],
            },
            NodeContacts {
                node: 2,
                contacts: vec![good],
            },
        ];
        let report = check_contacts(&[op("t-1", Outcome::Ok, "k1")], &nodes, &[], "t-");
        assert!(report
            .violations
            .iter()
            .any(|v| matches!(v, ContactViolation::IllegalHistory { .. })));
        assert!(report
            .violations
            .iter()
            .any(|v| matches!(v, ContactViolation::Diverged { .. })));
    }

    #[test]
    fn catches_over_capacity_and_double_assignment() {
        let events = [
            agent("a", 1),
            agent("b", 1),
            offered(2, "k1", &["a"], pb::Channel::Voice),
            offered(3, "k2", &["a"], pb::Channel::Voice),
            connected(4, "k1", "a"),
            connected(5, "k1", "b"),
        ];
        let report = check_contacts(&[], &[], &events, "t-");
        let v = &report.violations;
        assert!(
            v.iter().any(
                |v| matches!(v, ContactViolation::OverCapacity { agent_id, .. } if agent_id == "a")
            ),
            "{report}"
        );
        assert!(v.iter().any(|v| matches!(v, ContactViolation::DoubleAssigned { contact_id, .. } if contact_id == "k1")), "{report}");
    }

    fn at(mut e: pb::Event, at_ms: i64) -> pb::Event {
        e.at_ms = at_ms;
        e
    }

    fn renewed(until_ms: i64) -> pb::Event {
        pb::Event {
            kind: EventKind::LeaseRenewed.into(),
            site_id: "emea".into(),
            until_ms,
            ..Default::default()
        }
    }

    fn emea_agent(id: &str) -> pb::Event {
        pb::Event {
            site_id: "emea".into(),
            ..agent(id, 1)
        }
    }

    #[test]
    fn both_sides_of_a_clean_cut_pass() {
        let core = [
            at(emea_agent("a"), 0),
            at(renewed(2_000), 1_000),
            at(offered(3, "k1", &["a"], pb::Channel::Voice), 1_500),
            at(connected(4, "k1", "a"), 1_600),
        ];
        let branch = [
            at(completed(1, "k1"), 2_600),
            at(offered(2, "k2", &["a"], pb::Channel::Voice), 2_700),
            at(connected(3, "k2", "a"), 2_800),
        ];
        let report = check_branch_sides(&core, &branch, "emea");
        assert!(report.is_ok(), "{report}");
    }

    #[test]
    fn both_sides_catch_a_broken_fence_and_an_agent_booked_by_both() {
        let core = [
            at(emea_agent("a"), 0),
            at(renewed(2_000), 1_000),
            // The core offers after the lease ran out...
            at(offered(3, "k1", &["a"], pb::Channel::Voice), 2_100),
        ];
        // ...and the branch routes before it did, to the same agent.
        let branch = [at(offered(1, "k2", &["a"], pb::Channel::Voice), 1_900)];
        let report = check_branch_sides(&core, &branch, "emea");
        let v = &report.violations;
        assert!(
            v.iter()
                .any(|v| matches!(v, ContactViolation::OfferedAfterLapse { contact_id, .. } if contact_id == "k1")),
            "{report}"
        );
        assert!(
            v.iter()
                .any(|v| matches!(v, ContactViolation::RoutedBeforeLapse { contact_id, .. } if contact_id == "k2")),
            "{report}"
        );
        assert!(
            v.iter().any(
                |v| matches!(v, ContactViolation::OverCapacity { agent_id, .. } if agent_id == "a")
            ),
            "{report}"
        );
    }

    fn lease_withdrawn(index: u64, contact: &str, agent: &str, reason: &str) -> pb::Event {
        pb::Event {
            index,
            kind: EventKind::OfferWithdrawn.into(),
            contact_id: contact.into(),
            agent_ids: vec![agent.into()],
            reason: reason.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_offer_the_core_made_ends_with_its_lease_even_when_recorded_later() {
        // The core offers k1 under the lease to 2 000, goes down, and records the
        // withdrawal only when it is back at 9 000; the branch routed k2 at 2 700.
        let core = |reason: &str| {
            [
                at(emea_agent("a"), 0),
                at(renewed(2_000), 1_000),
                at(offered(3, "k1", &["a"], pb::Channel::Voice), 1_500),
                at(lease_withdrawn(4, "k1", "a", reason), 9_000),
            ]
        };
        let branch = [
            at(offered(1, "k2", &["a"], pb::Channel::Voice), 2_700),
            at(connected(2, "k2", "a"), 2_800),
            at(completed(3, "k2"), 3_100),
        ];
        let report = check_branch_sides(&core("LEASE_LAPSED"), &branch, "emea");
        assert!(report.is_ok(), "{report}");
        // Any other withdrawal is taken when the core recorded it: the agent held both.
        let report = check_branch_sides(&core("EXPIRED"), &branch, "emea");
        assert!(
            report.violations.iter().any(
                |v| matches!(v, ContactViolation::OverCapacity { agent_id, .. } if agent_id == "a")
            ),
            "{report}"
        );
    }

    #[test]
    fn an_offer_the_branch_had_out_when_it_handed_over_rings_no_more() {
        let core = [
            at(emea_agent("a"), 0),
            at(emea_agent("b"), 0),
            at(renewed(2_000), 1_000),
            // Renewed once the branch is back; the import puts k1 back in the queue, the core
            // offers it to b, then a takes k2.
            at(renewed(20_000), 3_900),
            at(
                pb::Event {
                    index: 5,
                    kind: EventKind::ContactImported.into(),
                    contact_id: "k1".into(),
                    channel: pb::Channel::Voice.into(),
                    ..Default::default()
                },
                4_000,
            ),
            at(offered(6, "k1", &["b"], pb::Channel::Voice), 4_100),
            at(connected(7, "k1", "b"), 4_200),
            at(offered(8, "k2", &["a"], pb::Channel::Voice), 4_300),
        ];
        // Alone, the branch rang a with k1 and handed over before a answered.
        let branch = [at(offered(1, "k1", &["a"], pb::Channel::Voice), 3_000)];
        let report = check_branch_sides(&core, &branch, "emea");
        assert!(report.is_ok(), "{report}");
    }

    fn completed(index: u64, contact: &str) -> pb::Event {
        pb::Event {
            index,
            kind: EventKind::ContactCompleted.into(),
            contact_id: contact.into(),
            ..Default::default()
        }
    }
}
