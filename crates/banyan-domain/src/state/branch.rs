//! Branches that route on their own while cut off from the core, and the import of what
//! they did when they reconnect (DESIGN.md §2, invariants 2 and 4).
//!
//! A branch starts routing on its own only once its site's lease has certainly lapsed, so
//! from then on the core offers nothing to the site's agents. It routes with
//! [`State::branch_view`]: the replicated state narrowed to its site. Afterwards it hands
//! the core a [`BranchImport`]: its contacts as they ended up (or still are) and its agents'
//! presence, up to a journal sequence; the core applies each sequence at most once.

use std::collections::BTreeSet;

use super::State;
use crate::channel::PerChannel;
use crate::command::{
    Action, BranchImport, MAX_IMPORT_AGENTS, MAX_IMPORT_CLOCK_AHEAD_MS, MAX_IMPORT_CONTACTS,
    MAX_IMPORT_SPAN,
};
use crate::contact::{Contact, ContactState};
use crate::error::DomainError;
use crate::event::Event;
use crate::principal::Principal;
use crate::routing::Indexes;
use crate::validate::{validate_count, validate_id};

impl State {
    /// The state a branch of `site` routes with on its own: other sites' agents are left
    /// out, and so are the core's waiting and offered contacts (the core keeps routing
    /// them); what the site's agents hold connected or in wrap-up stays, so it counts
    /// against their capacity and they can finish it. The site needs no lease here.
    ///
    /// `accepts_in_doubt` are `(contact, agent)` accepts the branch sent to the core and
    /// never heard back about. While the contact is still on offer to that agent here, the
    /// core may have connected it after this state was replicated, so the view has it
    /// connected to that agent: the branch never books the agent twice, and the agent (who
    /// knows whether the call came through) ends and completes it as usual. At
    /// reconciliation the core settles it if it did connect it to that agent; if the accept
    /// never arrived, the core's own copy (back in its queue at the lapse) stands.
    pub fn branch_view(&self, site: &str, accepts_in_doubt: &[(String, String)]) -> State {
        let mut data = self.data.clone();
        data.agents.retain(|_, agent| agent.input.site == site);
        let kept: BTreeSet<String> = data
            .agents
            .values()
            .flat_map(|agent| agent.held.keys())
            .filter(|id| {
                data.contacts.get(*id).is_some_and(|c| {
                    matches!(c.state, ContactState::Connected | ContactState::WrapUp)
                })
            })
            .cloned()
            .collect();
        data.contacts.retain(|id, _| kept.contains(id));
        for agent in data.agents.values_mut() {
            agent.held.retain(|id, _| kept.contains(id));
            let mut load = PerChannel::default();
            for channel in agent.held.values() {
                *load.get_mut(*channel) += 1;
            }
            agent.load = load;
            agent.wrapping_up = agent
                .held
                .keys()
                .filter(|id| {
                    data.contacts
                        .get(*id)
                        .is_some_and(|c| c.state == ContactState::WrapUp)
                })
                .count() as u32;
        }
        for (contact_id, agent_id) in accepts_in_doubt {
            let on_offer = self.data.contacts.get(contact_id).filter(|c| {
                c.state == ContactState::Offered
                    && c.offer
                        .as_ref()
                        .is_some_and(|o| o.agents.contains(agent_id))
            });
            if let (Some(contact), Some(agent)) = (on_offer, data.agents.get_mut(agent_id)) {
                let now = self.data.clock_ms;
                let mut contact = contact.clone();
                contact.offer = None;
                contact.agent_id = agent_id.clone();
                contact.connected_ms = Some(now);
                contact.enter(now, ContactState::Connected, "accept in doubt at cut-off");
                if agent
                    .held
                    .insert(contact_id.clone(), contact.channel)
                    .is_none()
                {
                    *agent.load.get_mut(contact.channel) += 1;
                }
                data.contacts.insert(contact_id.clone(), contact);
            }
        }
        data.sites.retain(|id, _| id == site);
        for site in data.sites.values_mut() {
            site.lease_expires_ms = None;
            site.lapsed = false;
        }
        // A caller's retry of a create whose contact the view holds (its agent is on it)
        // is answered as the first time; any other request is the branch's to serve anew
        // (the import reconciles a create the core applied too).
        let held: BTreeSet<&String> = data.contacts.keys().collect();
        let mut requests = self.data.requests.clone();
        requests.retain(|_, record| {
            matches!(&record.command.action,
                Action::CreateContact(input) if held.contains(&input.id))
        });
        data.requests = requests;
        let mut view = State {
            data,
            idx: Indexes::default(),
        };
        view.rebuild_indexes();
        view
    }

    /// The last journal sequence of `site`'s branch imported here.
    pub fn reconciled_seq(&self, site: &str) -> u64 {
        self.data.reconciled.get(site).copied().unwrap_or(0)
    }

    pub(super) fn import_branch(
        &mut self,
        import: &BranchImport,
        by: Option<&Principal>,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let site = import.site.as_str();
        validate_id("site", site)?;
        if let Some(scope) = by.and_then(Principal::site_scope) {
            if scope != site {
                return Err(DomainError::precondition(
                    "site",
                    format!("a branch of site {scope} cannot import for site {site}"),
                ));
            }
        }
        // The journal to import is the lease holder's: a second branch node of the site
        // (started on an empty directory under a new id while the first still holds the
        // lease) has routed nothing alone, and must not overwrite what the holder did.
        if let Some(Principal::Branch { node, .. }) = by {
            let holder = self
                .data
                .sites
                .get(site)
                .filter(|s| s.lease_expires_ms.is_some())
                .and_then(|s| s.branch)
                .map(|b| b.node_id)
                .filter(|h| *h != 0);
            if let Some(holder) = holder.filter(|h| h != node) {
                return Err(DomainError::precondition(
                    "site",
                    format!(
                        "site {site}'s lease is held by branch node {holder}; branch node                          {node} cannot hand over a journal for it"
                    ),
                ));
            }
        }
        validate_count("contacts", import.contacts.len(), MAX_IMPORT_CONTACTS)?;
        validate_count("created", import.created.len(), MAX_IMPORT_CONTACTS)?;
        validate_count("agents", import.agents.len(), MAX_IMPORT_AGENTS)?;
        let done = self.reconciled_seq(site);
        if import.upto_seq == 0 {
            return Err(DomainError::invalid(
                "upto_seq",
                "journal sequences start at 1",
            ));
        }
        if done >= import.upto_seq {
            // Applied before: a replay changes nothing.
            return Ok(());
        }
        if import.upto_seq - done > MAX_IMPORT_SPAN {
            return Err(DomainError::invalid(
                "upto_seq",
                format!(
                    "{} is {} journal entries past the {done} reconciled for site {site}, \
                     more than {MAX_IMPORT_SPAN} a branch can have journalled",
                    import.upto_seq,
                    import.upto_seq - done
                ),
            ));
        }
        // A set, not the list: an import after a long outage carries thousands.
        let created: BTreeSet<&str> = import.created.iter().map(String::as_str).collect();
        self.check_import(import, &created)?;
        // Checks done; from here on nothing fails.
        let now = self.data.clock_ms;
        // What the branch's agents finished of the core's contacts first, then what the
        // branch took in itself: an agent who finished a call and then took the next one
        // reads that way in the events too, never as holding both.
        let (settled, taken_in): (Vec<&Contact>, Vec<&Contact>) =
            import.contacts.iter().partition(|c| {
                self.data.contacts.contains_key(&c.id) && !created.contains(c.id.as_str())
            });
        for contact in settled.into_iter().chain(taken_in) {
            // A write the branch sent just before it was cut off may have committed here
            // after all; the branch then made the same request again on its own. The
            // request is already served here: the branch's copy would be a duplicate.
            let served_here = contact
                .request_id
                .as_deref()
                .is_some_and(|id| self.data.requests.live(id, now).is_some());
            match self.data.contacts.get(&contact.id) {
                None if served_here || forgotten_here(self, contact, &created) => {}
                None => self.insert_imported(contact, true, ev),
                // Only a contact of the site itself is the branch's to stand in for (the
                // check above validated exactly those as new contacts).
                Some(existing)
                    if created.contains(contact.id.as_str()) && existing.origin_site == site =>
                {
                    self.adopt_imported(existing.clone(), contact, ev)
                }
                Some(existing) => self.settle_imported(existing.clone(), contact, ev),
            }
        }
        for (agent_id, presence) in &import.agents {
            if *presence != crate::agent::Presence::Available {
                self.withdraw_offers_of(
                    agent_id,
                    crate::event::WithdrawReason::AgentUnavailable,
                    ev,
                );
            }
            self.change_presence(agent_id, presence.clone(), ev);
        }
        self.data
            .reconciled
            .insert(site.to_owned(), import.upto_seq);
        Ok(())
    }

    fn check_import(
        &self,
        import: &BranchImport,
        created: &BTreeSet<&str>,
    ) -> Result<(), DomainError> {
        let site = import.site.as_str();
        // What each of the site's agents holds once the import lands: what it holds here,
        // less the calls its agent finished at the branch, plus the branch's new holds.
        let mut room: std::collections::BTreeMap<&str, PerChannel> = Default::default();
        for contact in &import.contacts {
            let Some(existing) = self.data.contacts.get(&contact.id) else {
                continue;
            };
            let settled = matches!(
                existing.state,
                ContactState::Connected | ContactState::WrapUp
            ) && existing.agent_id == contact.agent_id
                && contact.state == ContactState::Completed;
            if let Some(agent) = self.data.agents.get(&existing.agent_id).filter(|_| settled) {
                let used = room.entry(agent.id()).or_insert(agent.load);
                let slot = used.get_mut(existing.channel);
                *slot = slot.saturating_sub(1);
            }
        }
        let latest_ms = self.data.clock_ms.saturating_add(MAX_IMPORT_CLOCK_AHEAD_MS);
        let mut seen = BTreeSet::new();
        for (i, contact) in import.contacts.iter().enumerate() {
            let field = |name: &str| format!("contacts[{i}].{name}");
            contact.validate_record(field, latest_ms)?;
            if !seen.insert(contact.id.as_str()) {
                return Err(DomainError::invalid(
                    field("id"),
                    format!("contact {} is in the import twice", contact.id),
                ));
            }
            if forgotten_here(self, contact, created) {
                continue;
            }
            if let Some(existing) = self.data.contacts.get(&contact.id) {
                // A branch settles only its own site's contacts: ones that came in there,
                // carry no site, or are held by or offered to its agents.
                let of_site = |agent: &str| {
                    self.data
                        .agents
                        .get(agent)
                        .is_some_and(|a| a.input.site == site)
                };
                let ours = existing.origin_site == site
                    || existing.origin_site.is_empty()
                    || of_site(&existing.agent_id)
                    || existing
                        .offer
                        .as_ref()
                        .is_some_and(|o| o.agents.iter().any(|a| of_site(a)));
                if !ours {
                    return Err(DomainError::precondition(
                        field("id"),
                        format!(
                            "contact {} belongs to site {}, not {site}",
                            contact.id, existing.origin_site
                        ),
                    ));
                }
                // A copy that replaces the core's untaken one (see `adopt_imported`) lands
                // like a new contact: its queue, its agent and that agent's room are
                // checked below. Any other copy only settles what the same agent did.
                let adopted = created.contains(contact.id.as_str())
                    && existing.origin_site == site
                    && (existing.state.is_waiting() || existing.state == ContactState::Offered);
                if !adopted {
                    let settles =
                        !existing.agent_id.is_empty() && existing.agent_id == contact.agent_id;
                    if settles && !of_site(&existing.agent_id) {
                        return Err(DomainError::precondition(
                            field("agent_id"),
                            format!("agent {} is not at site {site}", existing.agent_id),
                        ));
                    }
                    continue;
                }
            }
            if contact.origin_site != site {
                return Err(DomainError::invalid(
                    field("origin_site"),
                    format!("a new contact must come from site {site}"),
                ));
            }
            let waiting = contact.state.is_waiting() || contact.state == ContactState::Offered;
            if waiting && !self.data.queues.contains_key(&contact.queue_id) {
                return Err(DomainError::not_found(field("queue_id"), &contact.queue_id));
            }
            if matches!(
                contact.state,
                ContactState::Connected | ContactState::WrapUp
            ) {
                let agent = self
                    .data
                    .agents
                    .get(&contact.agent_id)
                    .filter(|a| a.input.site == site)
                    .ok_or_else(|| DomainError::not_found(field("agent_id"), &contact.agent_id))?;
                let used = room.entry(agent.id()).or_insert(agent.load);
                *used.get_mut(contact.channel) += 1;
                if used.get(contact.channel) > agent.input.capacity.get(contact.channel) {
                    return Err(DomainError::precondition(
                        field("agent_id"),
                        format!(
                            "agent {} would hold more {} contacts than its capacity",
                            agent.id(),
                            contact.channel
                        ),
                    ));
                }
            }
        }
        for (i, id) in import.created.iter().enumerate() {
            validate_id(&format!("created[{i}]"), id)?;
        }
        for (i, (agent_id, presence)) in import.agents.iter().enumerate() {
            presence.validate()?;
            let agent = self
                .data
                .agents
                .get(agent_id)
                .ok_or_else(|| DomainError::not_found(format!("agents[{i}]"), agent_id))?;
            if agent.input.site != site {
                return Err(DomainError::invalid(
                    format!("agents[{i}]"),
                    format!("agent {agent_id} is not at site {site}"),
                ));
            }
        }
        Ok(())
    }

    /// A contact the branch created: into the core's state as the branch left it. One on
    /// offer at the branch goes back to waiting (its offer was the branch's), keeping its
    /// original enqueue time and so its place.
    /// `new` says whether the contact is new here (counted as entering its queue) or
    /// replaces the core's own copy of it.
    fn insert_imported(&mut self, contact: &Contact, new: bool, ev: &mut Vec<Event>) {
        let now = self.data.clock_ms;
        let mut contact = contact.clone();
        contact.passed_by.clear();
        if contact.state == ContactState::Offered {
            contact.offer = None;
            let waiting = if contact.channel == crate::channel::Channel::Callback {
                ContactState::CallbackScheduled
            } else {
                ContactState::Queued
            };
            contact.enter(now, waiting, "requeued at reconciliation");
        }
        let id = contact.id.clone();
        let (state, agent_id, channel, queue_id) = (
            contact.state,
            contact.agent_id.clone(),
            contact.channel,
            contact.queue_id.clone(),
        );
        if !queue_id.is_empty() {
            let counters = self.data.counters.entry(queue_id.clone()).or_default();
            if new {
                counters.entered += 1;
            }
            match state {
                ContactState::SelfServed => counters.self_served += 1,
                ContactState::Abandoned => counters.abandoned += 1,
                ContactState::Completed => counters.handled += 1,
                _ => {}
            }
        }
        self.data.contacts.insert(id.clone(), contact);
        let held = matches!(state, ContactState::Connected | ContactState::WrapUp);
        if held {
            self.hold(&agent_id, &id, channel);
            if state == ContactState::WrapUp {
                if let Some(agent) = self.agent_mut(&agent_id) {
                    agent.wrapping_up += 1;
                }
                self.repool(&agent_id);
            }
        }
        ev.push(Event::ContactImported {
            contact_id: id.clone(),
            channel,
            queue_id,
            state,
            agent_id: if held { agent_id } else { String::new() },
        });
        if state.is_final() {
            self.record_history(&id);
        } else {
            self.reschedule(&id);
        }
    }

    /// A contact the branch created on its own that the core has too: the create the
    /// branch forwarded before the cut committed after all, and the caller's retry reached
    /// the branch once it was alone. One caller, one contact, one id: if no agent has taken
    /// the core's copy yet, the branch's copy (the caller the branch actually served) takes
    /// its place; if an agent here already has it, the core's copy stands.
    ///
    /// The core's copy may also be the branch's own, carried by an earlier import of the
    /// same outage: then the same agent holds it here and what it did since is settled.
    fn adopt_imported(&mut self, existing: Contact, contact: &Contact, ev: &mut Vec<Event>) {
        let untaken = existing.state.is_waiting() || existing.state == ContactState::Offered;
        if !untaken {
            self.settle_imported(existing, contact, ev);
            return;
        }
        self.withdraw_all(
            &existing.id,
            crate::event::WithdrawReason::ServedAtBranch,
            ev,
        );
        self.idx.unplace(&existing.id);
        self.insert_imported(contact, false, ev);
    }

    /// A core contact a site agent held when the branch was cut off: the branch's agent
    /// may have finished it meanwhile.
    fn settle_imported(&mut self, existing: Contact, contact: &Contact, ev: &mut Vec<Event>) {
        let same_agent = existing.agent_id == contact.agent_id && !existing.agent_id.is_empty();
        if !same_agent {
            return;
        }
        match (existing.state, contact.state) {
            (ContactState::Connected | ContactState::WrapUp, ContactState::Completed) => {
                self.finish(&existing.id, &contact.disposition, &contact.notes, ev);
            }
            (ContactState::Connected, ContactState::WrapUp) => {
                // Infallible here: the contact is connected to this agent.
                let _ = self.end_contact(&existing.agent_id, &existing.id, ev);
            }
            _ => {}
        }
    }
}

/// Whether an imported contact is one of the core's that finished here and has left the
/// routing state since (retention, after an outage longer than its window): the branch
/// held it from before the cut and did not create it, and its copy is final. Its record
/// is the core's, in the history store; the branch's copy changes nothing.
fn forgotten_here(state: &State, contact: &Contact, created: &BTreeSet<&str>) -> bool {
    contact.state.is_final()
        && !created.contains(contact.id.as_str())
        && !state.data.contacts.contains_key(&contact.id)
}
