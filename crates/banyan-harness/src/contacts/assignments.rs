//! No agent over capacity and no contact with two agents, replayed from events in order.

use std::collections::{BTreeMap, BTreeSet};

use banyan_proto::v1::{self as pb, EventKind};

use super::{ContactReport, ContactViolation};

/// Replays the events in log order, tracking what every agent holds.
pub(super) fn check_assignments(events: &[pb::Event], report: &mut ContactReport) {
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
