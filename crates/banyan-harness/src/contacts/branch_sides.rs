//! A branch cut off from the core, judged from both sides' events: the fence, and the
//! assignment replay over both streams merged in time.

use std::collections::{BTreeMap, BTreeSet};

use banyan_proto::v1::{self as pb, EventKind};

use super::assignments::check_assignments;
use super::{ContactReport, ContactViolation};

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
