//! Every acknowledged contact on every node, exactly once, with a legal history, and the
//! replicas agreeing; then the assignment replay over the run's events.

use std::collections::{BTreeMap, BTreeSet};

use banyan_domain::ContactState;
use banyan_proto::v1 as pb;

use super::assignments::check_assignments;
use super::{ContactOp, ContactReport, ContactViolation, NodeContacts};
use crate::history::Outcome;

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

/// Whether a contact's recorded timeline follows the life cycle.
pub fn legal_timeline(contact: &pb::Contact) -> bool {
    // Through the one proto-to-domain conversion, then the domain's own rule.
    let state = |s: i32| {
        banyan_api::convert::contact_state_filter("state", s)
            .ok()
            .flatten()
    };
    let Some(now) = state(contact.state) else {
        return false;
    };
    let states: Option<Vec<ContactState>> =
        contact.timeline.iter().map(|t| state(t.state)).collect();
    states.is_some_and(|states| ContactState::is_legal_history(&states, now))
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
