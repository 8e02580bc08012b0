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

use std::fmt;

use banyan_proto::v1 as pb;

use crate::history::Outcome;

mod acknowledged;
mod assignments;
mod branch_sides;

pub use acknowledged::{check_contacts, legal_timeline};
pub use branch_sides::check_branch_sides;

/// One `CreateContact` a workload sent.
#[derive(Debug, Clone)]
pub struct ContactOp {
    /// The idempotency key sent, which ties the answer to the contacts it created.
    pub request_id: String,
    /// Whether the client saw the create succeed, fail or stay unknown.
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
    /// The node's id, so a violation names the replica that broke.
    pub node: u64,
    /// Every contact the node holds, with its recorded timeline.
    pub contacts: Vec<pb::Contact>,
}

/// A broken contact invariant, with enough detail to find it in the logs and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactViolation {
    /// A contact the cluster acknowledged is missing from a node.
    Lost {
        /// The node that lost it.
        node: u64,
        /// The contact id the cluster answered with.
        contact_id: String,
    },
    /// One create request produced more than one contact: exactly-once broke.
    Duplicated {
        /// The node holding the duplicates.
        node: u64,
        /// The request id they share.
        request_id: String,
        /// The ids of every contact created for it.
        contacts: Vec<String>,
    },
    /// A contact no request of the workload created.
    Phantom {
        /// The node holding it.
        node: u64,
        /// The unexpected contact's id.
        contact_id: String,
    },
    /// A create the cluster refused still produced a contact, so the refusal lied.
    RefusedButCreated {
        /// The node holding the contact.
        node: u64,
        /// The refused request's id.
        request_id: String,
        /// The status the client was given, to compare with what happened.
        refusal: String,
    },
    /// A contact's timeline breaks the life cycle (a state it cannot reach from the last).
    IllegalHistory {
        /// The node holding the contact.
        node: u64,
        /// The contact whose timeline is illegal.
        contact_id: String,
        /// The states it went through, in order.
        states: Vec<String>,
    },
    /// Two replicas disagree on a contact's presence or state.
    Diverged {
        /// The reference node (the first one read).
        node: u64,
        /// The node that differs from it.
        other: u64,
        /// The contact they disagree on.
        contact_id: String,
    },
    /// An agent held more contacts on a channel than its capacity allows.
    OverCapacity {
        /// The log index of the event that put the agent over, to find it in the stream.
        index: u64,
        /// The overloaded agent.
        agent_id: String,
        /// The channel, as the wire enum's number.
        channel: i32,
        /// How many contacts the agent held on that channel at that point.
        held: u32,
        /// The most the agent's capacity allowed on that channel.
        capacity: u32,
    },
    /// A contact connected to two agents, or connected while another agent held its offer.
    DoubleAssigned {
        /// The log index of the event that made the second assignment.
        index: u64,
        /// The contact assigned twice.
        contact_id: String,
        /// The agents it was assigned to.
        agents: Vec<String>,
    },
    /// The core offered a contact to a site's agent after the site's lease ran out.
    OfferedAfterLapse {
        /// The core's log index of the offending offer.
        index: u64,
        /// The contact offered.
        contact_id: String,
        /// The site's agent it was offered to.
        agent_id: String,
        /// When the core offered it, by the core's wall clock.
        at_ms: i64,
        /// When the site's lease had run out, so the gap shows how late the offer was.
        lease_until_ms: i64,
    },
    /// The branch routed a contact on its own while the core may still have routed to its
    /// site's agents.
    RoutedBeforeLapse {
        /// The branch journal's sequence number of the offending offer.
        seq: u64,
        /// The contact the branch offered.
        contact_id: String,
        /// When the branch offered it, by the branch's wall clock.
        at_ms: i64,
        /// When the lease the core last renewed runs out; the branch had to wait for it.
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

/// What the contact checks found, with counts that show the run exercised something.
#[derive(Debug, Clone, Default)]
pub struct ContactReport {
    /// Creates the client saw succeed; each contact must be on every node.
    pub acknowledged: usize,
    /// Creates the cluster refused; none may have created a contact.
    pub refused: usize,
    /// Creates whose outcome the client never learned.
    pub unknown: usize,
    /// Offers seen in the events.
    pub offers: usize,
    /// Connections (an agent accepting an offer) seen in the events.
    pub connected: usize,
    /// Every broken invariant found; empty means the run passed.
    pub violations: Vec<ContactViolation>,
}

impl ContactReport {
    /// Whether the run kept every contact invariant, for tests to assert on.
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

#[cfg(test)]
mod tests {
    use super::*;
    use banyan_proto::v1::EventKind;

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
