//! Administration and presence: queues, agents, sites and their leases, and the agent's
//! own choice of state.

use super::State;
use crate::agent::{Agent, AgentInput, Presence};
use crate::contact::ContactState;
use crate::error::DomainError;
use crate::event::{Event, WithdrawReason};
use crate::principal::Principal;
use crate::queue::{EscalationAction, QueueInput};
use crate::site::{BranchReport, Site, SiteInput, MAX_LEASE_MS, MIN_LEASE_MS};
use crate::validate::validate_id;

impl State {
    pub(super) fn upsert_queue(
        &mut self,
        input: &QueueInput,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        input.validate()?;
        for (i, step) in input.escalation.iter().enumerate() {
            if let EscalationAction::Overflow { queue_id } = &step.action {
                if !self.data.queues.contains_key(queue_id) {
                    return Err(DomainError::not_found(
                        format!("queue.escalation[{i}].queue_id"),
                        queue_id,
                    ));
                }
            }
        }
        self.data.queues.insert(input.id.clone(), input.clone());
        self.data.counters.entry(input.id.clone()).or_default();
        // Who qualifies, and in which order agents and contacts stand, may have changed.
        let agent_ids: Vec<String> = self.data.agents.keys().cloned().collect();
        for agent_id in &agent_ids {
            if let Some(agent) = self.data.agents.get(agent_id) {
                self.idx.qualify(agent, &self.data.queues);
            }
            self.repool(agent_id);
        }
        let steps = input.escalation.len() as u32;
        let waiting: Vec<String> = self
            .idx
            .waiting
            .get(&input.id)
            .map(|w| w.iter().map(|(_, id)| id.clone()).collect())
            .unwrap_or_default();
        for id in waiting {
            if let Some(contact) = self.contact_mut(&id) {
                contact.step = contact.step.min(steps);
            }
            self.reschedule(&id);
        }
        ev.push(Event::QueueUpserted {
            queue_id: input.id.clone(),
        });
        Ok(())
    }

    pub(super) fn upsert_agent(
        &mut self,
        input: &AgentInput,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        input.validate()?;
        // An agent never holds more than its capacity, and its held contacts stay fenced by
        // the lease of the site they were offered at: both changes wait until they end.
        if let Some(agent) = self.data.agents.get(&input.id) {
            for channel in crate::channel::Channel::ALL {
                let (load, capacity) = (agent.load.get(channel), input.capacity.get(channel));
                if load > capacity {
                    return Err(DomainError::precondition(
                        format!("agent.capacity.{channel}"),
                        format!(
                            "agent {} holds {load} {channel} contact(s); lower the capacity to {capacity} once they end",
                            input.id
                        ),
                    ));
                }
            }
            if agent.input.site != input.site && !agent.held.is_empty() {
                return Err(DomainError::precondition(
                    "agent.site",
                    format!(
                        "agent {} holds contacts; move it to another site once they end",
                        input.id
                    ),
                ));
            }
        }
        let now = self.data.clock_ms;
        self.data
            .agents
            .entry(input.id.clone())
            .and_modify(|agent| agent.input = input.clone())
            .or_insert_with(|| Agent::new(input.clone(), now));
        if let Some(agent) = self.data.agents.get(&input.id) {
            self.idx.qualify(agent, &self.data.queues);
        }
        self.repool(&input.id);
        ev.push(Event::AgentUpserted {
            agent_id: input.id.clone(),
            site: input.site.clone(),
            capacity: input.capacity,
        });
        Ok(())
    }

    pub(super) fn upsert_site(
        &mut self,
        input: &SiteInput,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        input.validate()?;
        self.data
            .sites
            .entry(input.id.clone())
            .and_modify(|site| site.input = input.clone())
            .or_insert_with(|| Site::new(input.clone()));
        ev.push(Event::SiteUpserted {
            site_id: input.id.clone(),
        });
        Ok(())
    }

    /// Extends a site's lease to `sent_at_ms + ttl_ms`. A renewal that arrives after that
    /// time is refused: the branch may already be routing on its own.
    pub(super) fn renew_lease(
        &mut self,
        site_id: &str,
        sent_at_ms: i64,
        ttl_ms: i64,
        report: BranchReport,
        by: Option<&Principal>,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        validate_id("site_id", site_id)?;
        crate::validate::validate_range("ttl_ms", ttl_ms, MIN_LEASE_MS, MAX_LEASE_MS)?;
        let now = self.data.clock_ms;
        let expires_ms = sent_at_ms.saturating_add(ttl_ms);
        if expires_ms <= now {
            return Err(DomainError::precondition(
                "sent_at_ms",
                format!("renewal sent at {sent_at_ms} is older than its TTL of {ttl_ms} ms"),
            ));
        }
        // The clock-offset budget (MAX_CLOCK_OFFSET_MS) is enforced where a renewal comes
        // in, against that node's clock (`check_clock_offset`): here, in the replicated
        // apply, only what the first release refused, so that its logs replay the same.
        if sent_at_ms > now.saturating_add(MAX_LEASE_MS) {
            return Err(DomainError::invalid(
                "sent_at_ms",
                format!("{sent_at_ms} is too far ahead of the cluster clock {now}"),
            ));
        }
        if let Some(Principal::Branch { node, .. }) = by {
            if report.node_id != *node {
                return Err(DomainError::invalid(
                    "node_id",
                    format!("branch node {node} cannot renew as node {}", report.node_id),
                ));
            }
        }
        // A lease is bound to the branch node that holds it, lapsed or not: another node
        // of the same site (a second branch, or a replacement) waits until an
        // administrator releases it. A lapsed holder may be cut off and routing the site
        // alone; giving the lease to another node then would have both route.
        if let Some(site) = self.data.sites.get(site_id) {
            let holder = site
                .branch
                .map(|b| b.node_id)
                .filter(|_| site.lease_expires_ms.is_some());
            if let Some(holder) = holder.filter(|h| *h != 0 && report.node_id != 0) {
                if holder != report.node_id {
                    return Err(DomainError::precondition(
                        "site_id",
                        format!(
                            "site {site_id}'s lease is held by branch node {holder}; node {} \
                             may take it once `banyan ctl sites release {site_id}` releases \
                             it (only when node {holder} is gone)",
                            report.node_id
                        ),
                    ));
                }
            }
        }
        let site = self
            .data
            .sites
            .entry(site_id.to_owned())
            .or_insert_with(|| {
                Site::new(SiteInput {
                    id: site_id.to_owned(),
                    name: site_id.to_owned(),
                    region: String::new(),
                })
            });
        let expires_ms = site
            .lease_expires_ms
            .map_or(expires_ms, |e| e.max(expires_ms));
        site.lease_expires_ms = Some(expires_ms);
        site.lapsed = false;
        site.branch = Some(report);
        site.last_renewal_ms = Some(now);
        ev.push(Event::LeaseRenewed {
            site_id: site_id.to_owned(),
            expires_ms,
        });
        Ok(())
    }

    /// An administrator releases a site's lease: it lapses now (the core stops routing to
    /// the site's agents at once) and no branch node holds it any more, so the next
    /// renewal of any branch node of the site takes it.
    pub(super) fn release_lease(
        &mut self,
        site_id: &str,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        validate_id("site_id", site_id)?;
        let now = self.data.clock_ms;
        let site = self
            .data
            .sites
            .get_mut(site_id)
            .ok_or_else(|| DomainError::not_found("site_id", site_id))?;
        if site.lease_expires_ms.is_none() {
            return Err(DomainError::precondition(
                "site_id",
                format!("site {site_id} holds no lease"),
            ));
        }
        site.lease_expires_ms = Some(site.lease_expires_ms.map_or(now, |end| end.min(now)));
        if let Some(report) = site.branch.as_mut() {
            report.node_id = 0;
        }
        ev.push(Event::LeaseReleased {
            site_id: site_id.to_owned(),
        });
        // The lapse itself (offers to the site's agents taken back) as a tick does it.
        self.tick(ev);
        Ok(())
    }

    pub(super) fn set_presence(
        &mut self,
        agent_id: &str,
        presence: &Presence,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let agent = self.find_agent(agent_id)?;
        presence.validate()?;
        if *presence == Presence::Offline {
            let active = agent.held.keys().find(|id| {
                self.data
                    .contacts
                    .get(*id)
                    .is_some_and(|c| c.state != ContactState::Offered)
            });
            if let Some(contact) = active {
                return Err(DomainError::precondition(
                    "state",
                    format!("agent {agent_id} still handles contact {contact}; complete it first"),
                ));
            }
        }
        if *presence != Presence::Available {
            self.withdraw_offers_of(agent_id, WithdrawReason::AgentUnavailable, ev);
        }
        self.change_presence(agent_id, presence.clone(), ev);
        Ok(())
    }

    /// Refuses the agent's desk tokens issued up to now; its sessions end when they see
    /// the event.
    pub(super) fn revoke_agent_tokens(
        &mut self,
        agent_id: &str,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        self.find_agent(agent_id)?;
        let now = self.data.clock_ms;
        if let Some(agent) = self.data.agents.get_mut(agent_id) {
            agent.tokens_revoked_ms = now;
        }
        ev.push(Event::AgentTokensRevoked {
            agent_id: agent_id.to_owned(),
            revoked_ms: now,
        });
        Ok(())
    }

    /// A desk session logs the agent in: like choosing a presence, and the session becomes
    /// the agent's current one.
    pub(super) fn login_agent(
        &mut self,
        agent_id: &str,
        session: &str,
        presence: &Presence,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        crate::validate::validate_len("session", session, crate::validate::MAX_ID_LEN)?;
        self.set_presence(agent_id, presence, ev)?;
        if let Some(agent) = self.agent_mut(agent_id) {
            agent.session = session.to_owned();
        }
        Ok(())
    }

    /// The agent's session dropped: offers go back to the queue; the agent goes offline,
    /// or on break while it still handles contacts it can come back to. A disconnect of a
    /// session other than the agent's latest login changes nothing.
    pub(super) fn disconnect_agent(
        &mut self,
        agent_id: &str,
        session: &str,
        ev: &mut Vec<Event>,
    ) -> Result<(), DomainError> {
        let agent = self.find_agent(agent_id)?;
        if !session.is_empty() && agent.session != session {
            return Ok(());
        }
        self.withdraw_offers_of(agent_id, WithdrawReason::AgentUnavailable, ev);
        let Some(agent) = self.agent_mut(agent_id) else {
            return Ok(());
        };
        let presence = if agent.held.is_empty() {
            Presence::Offline
        } else {
            Presence::Break {
                reason: "disconnected".into(),
            }
        };
        self.change_presence(agent_id, presence, ev);
        Ok(())
    }

    pub(super) fn change_presence(
        &mut self,
        agent_id: &str,
        presence: Presence,
        ev: &mut Vec<Event>,
    ) {
        let now = self.data.clock_ms;
        let Some(agent) = self.agent_mut(agent_id) else {
            return;
        };
        if agent.presence == presence {
            return;
        }
        let before = agent.state();
        if presence == Presence::Available {
            agent.missed_in_row = 0;
            if agent.held.is_empty() {
                agent.idle_since_ms = now;
            }
        }
        agent.presence = presence;
        let after = agent.state();
        if after != before {
            agent.state_since_ms = now;
            ev.push(Event::AgentStateChanged {
                agent_id: agent_id.to_owned(),
                state: after,
            });
        }
        self.repool(agent_id);
    }

    /// Takes back every outstanding offer to an agent; each contact returns to its place.
    pub(super) fn withdraw_offers_of(
        &mut self,
        agent_id: &str,
        reason: WithdrawReason,
        ev: &mut Vec<Event>,
    ) {
        let offered: Vec<String> = self
            .data
            .agents
            .get(agent_id)
            .map(|a| {
                a.held
                    .keys()
                    .filter(|id| {
                        self.data
                            .contacts
                            .get(*id)
                            .is_some_and(|c| c.state == ContactState::Offered)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for contact_id in offered {
            self.withdraw(&contact_id, agent_id, reason, ev);
            self.requeue_if_unoffered(&contact_id, "", ev);
        }
    }
}
