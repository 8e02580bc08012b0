//! Scenario tests of the domain's behaviour, one per rule: each routing strategy, each
//! escalation kind, offer expiry and rejection, missed offers, max wait and max length,
//! priorities and aging, idempotent retries, a contact's life cycle, site leases, snapshot
//! round trips, and that refused input changes nothing.
//!
//! Every test drives a fresh `State` through `State::apply` with explicitly stamped times
//! (no clock, no randomness) and asserts on both the events returned and the state left.

mod common;

use banyan_domain::agent::AgentState;
use banyan_domain::{
    Action, Channel, ContactInput, ContactState, EscalationAction, EscalationStep, Event, Presence,
    QueueInput, SiteMode, State, Strategy, Tier, WhenFull, WithdrawReason,
};

use common::*;

/// The break reason of an agent who let too many offers expire.
const MISSED_OFFERS_REASON: &str = "missed offers";

fn step(after_ms: i64, action: EscalationAction) -> EscalationStep {
    EscalationStep { after_ms, action }
}

/// The decision of the offer of `contact_id` in `events`.
#[track_caller]
fn decision_of(events: &[Event], contact_id: &str) -> banyan_domain::contact::Decision {
    events
        .iter()
        .find_map(|e| match e {
            Event::ContactOffered {
                contact_id: c,
                decision,
                ..
            } if c == contact_id => Some(decision.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{contact_id} not offered in {events:?}"))
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

// --- strategies ---

#[test]
fn longest_idle_offers_to_the_agent_idle_longest() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    for id in ["a1", "a2", "a3"] {
        sim.agent(agent(id, "emea", &[]));
    }
    // Agents become free in the order a2, a3, a1: ids do not decide, idle time does.
    sim.at(1_000).available("a2");
    sim.at(2_000).available("a3");
    sim.at(3_000).available("a1");

    sim.at(4_000);
    let (c1, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c1), Some(ids(&["a2"])));
    let decision = decision_of(&ev, &c1);
    assert_eq!(decision.strategy, Strategy::LongestIdle);
    assert_eq!(
        decision.score,
        T0 + 1_000,
        "score is the winner's idle-since"
    );

    let (c2, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c2), Some(ids(&["a3"])));
    let (c3, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c3), Some(ids(&["a1"])));
    assert_eq!(sim.contact(&c1).state, ContactState::Offered);
    assert_eq!(sim.agent_ref("a2").load.get(Channel::Voice), 1);
}

#[test]
fn round_robin_rotates_offers_among_agents_with_room() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::RoundRobin));
    for id in ["a1", "a2", "a3"] {
        sim.agent(agent(id, "emea", &[]));
        sim.available(id);
    }
    // Every agent can hold three chats, so each could take every one of these: the
    // rotation, not capacity, spreads them.
    let mut offered = Vec::new();
    for i in 0..5 {
        sim.at(1_000 * (i + 1));
        let (id, ev) = sim.create(chat("q"));
        let agents = offered_to(&ev, &id).expect("offered at once");
        assert_eq!(agents.len(), 1);
        offered.push(agents[0].clone());
    }
    assert_eq!(offered, ids(&["a1", "a2", "a3", "a1", "a2"]));
    assert_eq!(sim.agent_ref("a1").load.get(Channel::Chat), 2);
    assert_eq!(sim.agent_ref("a3").load.get(Channel::Chat), 1);
}

#[test]
fn fewest_contacts_offers_to_the_agent_holding_fewer_chats() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::FewestContacts));
    sim.agent(agent("a1", "emea", &[]));
    sim.agent(agent("a2", "emea", &[]));
    sim.at(1_000).available("a1");
    let (x, ev) = sim.create(chat("q"));
    assert_eq!(offered_to(&ev, &x), Some(ids(&["a1"])));
    let (y, ev) = sim.create(chat("q"));
    assert_eq!(offered_to(&ev, &y), Some(ids(&["a1"])));
    sim.accept("a1", &x);
    sim.accept("a1", &y);

    // a2 comes later, so a1 is idle longer, but a1 holds two chats.
    sim.at(5_000).available("a2");
    sim.at(6_000);
    let (z, ev) = sim.create(chat("q"));
    assert_eq!(offered_to(&ev, &z), Some(ids(&["a2"])));
    assert_eq!(decision_of(&ev, &z).score, 0);
    sim.accept("a2", &z);
    let (w, ev) = sim.create(chat("q"));
    assert_eq!(offered_to(&ev, &w), Some(ids(&["a2"])), "1 chat beats 2");
    assert_eq!(decision_of(&ev, &w).score, 1);
}

#[test]
fn least_talk_time_offers_to_the_agent_who_talked_least() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LeastTalkTime));
    sim.agent(agent("a1", "emea", &[]));
    sim.agent(agent("a2", "emea", &[]));
    sim.at(1_000).available("a1");
    sim.available("a2");
    let (c1, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c1), Some(ids(&["a1"])), "tie broken by id");
    sim.accept("a1", &c1);
    sim.at(61_000).apply(complete(&c1, "a1", ""));
    assert_eq!(sim.agent_ref("a1").talk_time_ms, 60_000);

    sim.at(70_000);
    let (c2, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c2), Some(ids(&["a2"])));
    sim.accept("a2", &c2);
    sim.at(80_000).apply(complete(&c2, "a2", ""));
    assert_eq!(sim.agent_ref("a2").talk_time_ms, 10_000);

    // a1 has been idle longer (since 61 s against 80 s) but talked six times as long.
    sim.at(90_000);
    let (c3, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c3), Some(ids(&["a2"])));
    assert_eq!(decision_of(&ev, &c3).score, 10_000);
}

#[test]
fn skill_weighted_offers_to_the_higher_skill_total() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::SkillWeighted);
    q.required_skills = skills_of(&[("sales", 3), ("billing", 2)]);
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[("sales", 5), ("billing", 2)])); // 7
    sim.agent(agent("a2", "emea", &[("sales", 4), ("billing", 9)])); // 13
    sim.agent(agent("a3", "emea", &[("sales", 10), ("french", 10)])); // lacks billing
    sim.at(1_000).available("a1");
    sim.available("a3");
    sim.at(2_000).available("a2");
    let (c, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c), Some(ids(&["a2"])));
    assert_eq!(decision_of(&ev, &c).score, -13);
    let (d, ev) = sim.create(voice("q"));
    assert_eq!(
        offered_to(&ev, &d),
        Some(ids(&["a1"])),
        "a3 is not qualified"
    );
    let (e, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &e), None);
    assert_eq!(sim.contact(&e).state, ContactState::Queued);
}

#[test]
fn ring_all_offers_to_every_eligible_agent_and_the_first_accept_wins() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::RingAll);
    q.required_skills = skills_of(&[("support", 2)]);
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[("support", 3)]));
    sim.agent(agent("a2", "apac", &[("support", 2)]));
    sim.agent(agent("a3", "emea", &[("support", 9)]));
    sim.agent(agent("a4", "emea", &[("sales", 9)]));
    for (i, id) in ["a3", "a1", "a4", "a2"].iter().enumerate() {
        sim.at(1_000 * (i as i64 + 1)).available(id);
    }
    sim.at(10_000);
    let (c, ev) = sim.create(voice("q"));
    assert_eq!(offers(&ev).len(), 1, "one offer that rings several agents");
    // Longest idle first, and never the unqualified a4.
    assert_eq!(offered_to(&ev, &c), Some(ids(&["a3", "a1", "a2"])));
    for id in ["a1", "a2", "a3"] {
        assert_eq!(
            sim.agent_ref(id).load.get(Channel::Voice),
            1,
            "{id} is rung"
        );
    }

    sim.at(12_000);
    let ev = sim.accept("a1", &c);
    assert_eq!(
        ev,
        vec![
            Event::OfferWithdrawn {
                contact_id: c.clone(),
                agent_id: "a3".into(),
                reason: WithdrawReason::TakenByOther,
            },
            Event::OfferWithdrawn {
                contact_id: c.clone(),
                agent_id: "a2".into(),
                reason: WithdrawReason::TakenByOther,
            },
            Event::ContactConnected {
                contact_id: c.clone(),
                agent_id: "a1".into(),
                waited_ms: 2_000,
            },
        ]
    );
    let contact = sim.contact(&c);
    assert_eq!(
        (contact.state, contact.agent_id.as_str()),
        (ContactState::Connected, "a1")
    );
    assert!(contact.offer.is_none());
    for id in ["a2", "a3"] {
        assert!(sim.agent_ref(id).held.is_empty(), "{id} released");
        assert_eq!(sim.agent_ref(id).load.get(Channel::Voice), 0);
    }
    // The losers cannot accept any more.
    let err = sim.refuse(accept("a2", &c));
    assert_eq!(
        (code_of(&err), field_of(&err)),
        ("FAILED_PRECONDITION", "contact_id")
    );
}

// --- escalation ---

#[test]
fn relax_skill_makes_a_lower_level_agent_eligible_after_the_step() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.required_skills = skills_of(&[("spanish", 7)]);
    q.escalation = vec![step(
        30_000,
        EscalationAction::RelaxSkill {
            skill: "spanish".into(),
            min_level: 4,
        },
    )];
    sim.queue(q);
    sim.agent(agent("novice", "emea", &[("spanish", 3)]));
    sim.agent(agent("fluent", "emea", &[("spanish", 5)]));
    sim.available("novice");
    sim.available("fluent");

    sim.at(1_000);
    let (c, ev) = sim.create(voice("q"));
    assert!(offers(&ev).is_empty(), "nobody has spanish 7");
    assert!(sim.tick_at(30_999).is_empty(), "not due yet");
    assert_eq!(sim.state.next_due_ms(), Some(T0 + 31_000));

    let ev = sim.tick_at(31_000);
    assert_eq!(
        ev[0],
        Event::ContactEscalated {
            contact_id: c.clone(),
            queue_id: "q".into(),
            step: 1,
            action: "relax spanish to 4".into(),
        }
    );
    assert_eq!(
        offered_to(&ev, &c),
        Some(ids(&["fluent"])),
        "level 3 still too low"
    );
    assert_eq!(decision_of(&ev, &c).step, 1);
    assert_eq!(sim.contact(&c).step, 1);
}

#[test]
fn drop_skill_stops_requiring_the_skill_after_the_step() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.required_skills = skills_of(&[("sales", 5), ("french", 5)]);
    q.escalation = vec![step(
        20_000,
        EscalationAction::DropSkill {
            skill: "french".into(),
        },
    )];
    sim.queue(q);
    sim.agent(agent("seller", "emea", &[("sales", 6)]));
    sim.agent(agent("linguist", "emea", &[("french", 9), ("sales", 2)]));
    sim.available("linguist");
    sim.available("seller");
    let (c, ev) = sim.create(voice("q"));
    assert!(offers(&ev).is_empty());
    assert!(offers(&sim.tick_at(19_999)).is_empty());
    let ev = sim.tick_at(20_000);
    assert_eq!(kinds(&ev), ["contact_escalated", "contact_offered"]);
    assert_eq!(
        offered_to(&ev, &c),
        Some(ids(&["seller"])),
        "sales 2 still too low"
    );
}

#[test]
fn allow_other_sites_opens_a_site_bound_contact_to_other_sites_after_the_step() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.escalation = vec![step(60_000, EscalationAction::AllowOtherSites)];
    sim.queue(q);
    sim.agent(agent("tokyo", "apac", &[]));
    sim.available("tokyo");

    sim.at(1_000);
    let bound = ContactInput {
        origin_site: "emea".into(),
        ..chat("q")
    };
    let (c, ev) = sim.create(bound);
    assert!(
        offers(&ev).is_empty(),
        "no emea agent; apac not allowed yet"
    );
    // A contact with no origin site goes to any site at once: the site rule is what waits.
    sim.at(2_000);
    let (free, ev) = sim.create(chat("q"));
    assert_eq!(offered_to(&ev, &free), Some(ids(&["tokyo"])));
    sim.accept("tokyo", &free);

    assert!(offers(&sim.tick_at(60_999)).is_empty());
    let ev = sim.tick_at(61_000);
    assert_eq!(offered_to(&ev, &c), Some(ids(&["tokyo"])));
    assert!(
        matches!(&ev[0], Event::ContactEscalated { action, .. } if action == "allow other sites")
    );
}

#[test]
fn overflow_moves_the_contact_to_another_queue_keeping_its_enqueue_time() {
    let mut sim = Sim::new();
    sim.queue(queue("q2", Strategy::LongestIdle));
    let mut q1 = queue("q1", Strategy::LongestIdle);
    q1.required_skills = skills_of(&[("rare", 1)]);
    q1.escalation = vec![step(
        45_000,
        EscalationAction::Overflow {
            queue_id: "q2".into(),
        },
    )];
    sim.queue(q1);
    sim.agent(agent("a1", "emea", &[]));

    sim.at(1_000);
    let (x, _) = sim.create(voice("q1"));
    sim.at(30_000);
    let (y, _) = sim.create(voice("q2"));
    let ev = sim.tick_at(46_000);
    assert_eq!(
        ev,
        vec![
            Event::ContactEscalated {
                contact_id: x.clone(),
                queue_id: "q1".into(),
                step: 1,
                action: "overflow to q2".into(),
            },
            Event::ContactOverflowed {
                contact_id: x.clone(),
                from_queue: "q1".into(),
                to_queue: "q2".into(),
            },
        ]
    );
    let moved = sim.contact(&x);
    assert_eq!(moved.queue_id, "q2");
    assert_eq!(
        moved.enqueued_ms,
        T0 + 1_000,
        "keeps its original enqueue time"
    );
    assert_eq!(moved.queue_entered_ms, T0 + 46_000);
    assert_eq!(moved.step, 0);
    assert_eq!(sim.state.waiting_in("q1"), 0);
    assert_eq!(sim.state.waiting_in("q2"), 2);

    // In q2 it stands ahead of y, which arrived there first but called later.
    let ev = sim.at(50_000).available("a1");
    assert_eq!(offer_pairs(&ev), vec![(x.clone(), "a1".to_owned())]);
    assert_eq!(decision_of(&ev, &x).queue_id, "q2");
    assert_eq!(sim.contact(&y).state, ContactState::Queued);
}

#[test]
fn a_callback_that_overflows_keeps_a_legal_timeline() {
    let mut sim = Sim::new();
    sim.queue(queue("q2", Strategy::LongestIdle));
    let mut q1 = queue("q1", Strategy::LongestIdle);
    q1.max_wait_ms = 30_000;
    q1.when_full = WhenFull::Callback;
    q1.escalation = vec![step(
        60_000,
        EscalationAction::Overflow {
            queue_id: "q2".into(),
        },
    )];
    sim.queue(q1);
    let (c, _) = sim.create(voice("q1"));
    sim.tick_at(30_000);
    assert_eq!(sim.contact(&c).state, ContactState::CallbackScheduled);
    let ev = sim.tick_at(60_000);
    assert_eq!(kinds(&ev), ["contact_escalated", "contact_overflowed"]);
    let moved = sim.contact(&c);
    assert_eq!(
        (moved.state, moved.queue_id.as_str()),
        (ContactState::CallbackScheduled, "q2")
    );
    assert!(moved.timeline_is_legal(), "{:?}", moved.timeline);
}

#[test]
fn a_timer_made_due_within_a_tick_fires_in_that_tick_on_a_restored_state_too() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.escalation = vec![step(20_000, EscalationAction::AllowOtherSites)];
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    // Offered at once; its escalation is due at 20 s, after the offer expires at 15 s.
    let (c, _) = sim.create(ContactInput {
        origin_site: "emea".into(),
        ..voice("q")
    });
    assert_eq!(sim.contact(&c).state, ContactState::Offered);
    let bytes = postcard::to_allocvec(&sim.state).unwrap();
    let mut restored = Sim {
        state: postcard::from_bytes(&bytes).unwrap(),
        now: sim.now,
    };

    // One late tick: the offer expires, the contact is back in the queue, and its
    // escalation (already due) fires in the same tick, on both states alike.
    let ev = sim.tick_at(25_000);
    assert_eq!(restored.tick_at(25_000), ev);
    assert_eq!(
        kinds(&ev),
        [
            "offer_withdrawn",
            "contact_requeued",
            "contact_escalated",
            "contact_offered"
        ]
    );
    assert_eq!(decision_of(&ev, &c).step, 1);
    assert!(sim.state == restored.state);
}

// --- offers: expiry, rejection, missed offers ---

#[test]
fn an_expired_offer_requeues_the_contact_at_its_original_place() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.agent(agent("a2", "emea", &[]));
    sim.available("a1");
    sim.at(1_000);
    let (c1, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c1), Some(ids(&["a1"])));
    sim.at(2_000);
    let (c2, _) = sim.create(voice("q"));
    sim.at(3_000);
    let (c3, _) = sim.create(voice("q"));

    assert!(sim.tick_at(15_999).is_empty());
    let ev = sim.tick_at(16_000);
    assert_eq!(
        ev,
        vec![
            Event::OfferWithdrawn {
                contact_id: c1.clone(),
                agent_id: "a1".into(),
                reason: WithdrawReason::Expired,
            },
            Event::ContactRequeued {
                contact_id: c1.clone(),
                state: ContactState::Queued,
                passed_by: "a1".into(),
            },
            // a1 just missed c1, so it gets the next one while c1 waits for someone else.
            Event::ContactOffered {
                contact_id: c2.clone(),
                channel: Channel::Voice,
                agent_ids: ids(&["a1"]),
                expires_ms: T0 + 31_000,
                decision: decision_of(&ev, &c2),
            },
        ]
    );
    assert_eq!(sim.agent_ref("a1").missed_in_row, 1);
    let requeued = sim.contact(&c1);
    assert_eq!(requeued.enqueued_ms, T0 + 1_000);
    assert!(
        requeued.passed_by.is_empty(),
        "the pass-over lasts one command"
    );

    // The next agent gets c1, the oldest, not c3.
    let ev = sim.at(17_000).available("a2");
    assert_eq!(offer_pairs(&ev), vec![(c1.clone(), "a2".to_owned())]);
    assert_eq!(sim.contact(&c3).state, ContactState::Queued);
    let states: Vec<ContactState> = sim.contact(&c1).timeline.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            ContactState::Queued,
            ContactState::Offered,
            ContactState::Queued,
            ContactState::Offered
        ]
    );
    assert!(sim.contact(&c1).timeline_is_legal());
}

#[test]
fn missed_offers_in_a_row_put_the_agent_on_break() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.max_missed_offers = 3;
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    let (c, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c), Some(ids(&["a1"])));

    // Nobody else can take it, so each miss hands it straight back to a1.
    for miss in 1..=2 {
        let ev = sim.tick_at(15_000 * miss);
        assert_eq!(
            kinds(&ev),
            ["offer_withdrawn", "contact_requeued", "contact_offered"]
        );
        assert_eq!(sim.agent_ref("a1").missed_in_row, miss as u32);
        assert_eq!(sim.agent_ref("a1").state(), AgentState::Available);
    }
    let ev = sim.tick_at(45_000);
    let on_break = AgentState::Break {
        reason: MISSED_OFFERS_REASON.into(),
    };
    assert_eq!(
        ev,
        vec![
            Event::OfferWithdrawn {
                contact_id: c.clone(),
                agent_id: "a1".into(),
                reason: WithdrawReason::Expired,
            },
            Event::AgentStateChanged {
                agent_id: "a1".into(),
                state: on_break.clone(),
            },
            Event::ContactRequeued {
                contact_id: c.clone(),
                state: ContactState::Queued,
                passed_by: "a1".into(),
            },
        ]
    );
    let a1 = sim.agent_ref("a1");
    assert_eq!(a1.state(), on_break);
    assert_eq!((a1.missed_in_row, a1.missed_total), (3, 3));
    assert!(a1.held.is_empty());
    assert_eq!(sim.contact(&c).state, ContactState::Queued);
    assert_eq!(sim.state.waiting_in("q"), 1);
}

#[test]
fn an_accepted_offer_resets_the_missed_count() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    let (c, _) = sim.create(voice("q"));
    sim.tick_at(15_000);
    sim.tick_at(30_000);
    assert_eq!(sim.agent_ref("a1").missed_in_row, 2);
    sim.at(31_000).accept("a1", &c);
    assert_eq!(sim.agent_ref("a1").missed_in_row, 0);
    sim.at(40_000).apply(complete(&c, "a1", ""));
    let (d, _) = sim.create(voice("q"));
    sim.tick_at(55_000);
    sim.tick_at(70_000);
    let a1 = sim.agent_ref("a1");
    assert_eq!((a1.missed_in_row, a1.missed_total), (2, 4));
    assert_eq!(a1.state(), AgentState::Available, "two in a row, not three");
    assert_eq!(sim.contact(&d).state, ContactState::Offered);
}

#[test]
fn a_rejected_offer_returns_the_contact_to_its_place_in_the_queue() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.agent(agent("a2", "emea", &[]));
    sim.available("a1");
    sim.at(1_000);
    let (c1, _) = sim.create(voice("q"));
    sim.at(2_000);
    let (c2, _) = sim.create(voice("q"));
    sim.at(2_500);
    let (c3, _) = sim.create(voice("q"));

    sim.at(3_000);
    let ev = sim.apply(reject("a1", &c1));
    assert_eq!(
        ev[..2],
        [
            Event::OfferWithdrawn {
                contact_id: c1.clone(),
                agent_id: "a1".into(),
                reason: WithdrawReason::Rejected,
            },
            Event::ContactRequeued {
                contact_id: c1.clone(),
                state: ContactState::Queued,
                passed_by: "a1".into(),
            },
        ]
    );
    assert_eq!(offer_pairs(&ev[2..]), vec![(c2.clone(), "a1".to_owned())]);
    assert_eq!(sim.contact(&c1).state, ContactState::Queued);
    assert_eq!(
        sim.agent_ref("a1").missed_in_row,
        0,
        "a reject is not a miss"
    );

    let ev = sim.at(4_000).available("a2");
    assert_eq!(offer_pairs(&ev), vec![(c1.clone(), "a2".to_owned())]);
    assert_eq!(sim.contact(&c3).state, ContactState::Queued);
}

#[test]
fn a_rejected_contact_goes_back_to_the_rejecting_agent_when_nobody_else_can_take_it() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    let (c, _) = sim.create(voice("q"));
    let ev = sim.at(1_000).apply(reject("a1", &c));
    assert_eq!(
        kinds(&ev),
        ["offer_withdrawn", "contact_requeued", "contact_offered"]
    );
    assert_eq!(offered_to(&ev, &c), Some(ids(&["a1"])));
}

// --- max wait and max length ---

#[test]
fn max_wait_abandons_the_contact() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.max_wait_ms = 60_000;
    sim.queue(q);
    sim.at(1_000);
    let (c, _) = sim.create(voice("q"));
    assert_eq!(sim.state.next_due_ms(), Some(T0 + 61_000));
    assert!(sim.tick_at(60_999).is_empty());
    let ev = sim.tick_at(61_000);
    assert_eq!(
        ev,
        vec![Event::ContactAbandoned {
            contact_id: c.clone(),
            reason: "max wait".into(),
        }]
    );
    let contact = sim.contact(&c);
    assert_eq!(contact.state, ContactState::Abandoned);
    assert_eq!(contact.ended_ms, Some(T0 + 61_000));
    assert_eq!(sim.state.waiting_in("q"), 0);
    assert_eq!(sim.state.queue_stats("q").unwrap().counters.abandoned, 1);
}

#[test]
fn max_wait_with_callback_keeps_the_callers_place_and_is_offered_later() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.max_wait_ms = 60_000;
    q.when_full = WhenFull::Callback;
    sim.queue(q);
    // Takes callbacks only.
    sim.agent(agents_with_capacity("dialer", capacity(0, 0, 0, 1)));

    sim.at(1_000);
    let (c1, _) = sim.create(voice("q"));
    sim.at(2_000);
    let (talk, _) = sim.create(chat("q"));
    let ev = sim.tick_at(61_000);
    assert_eq!(
        ev,
        vec![Event::CallbackScheduled {
            contact_id: c1.clone()
        }]
    );
    let cb = sim.contact(&c1);
    assert_eq!(
        (cb.state, cb.channel, cb.enqueued_ms),
        (
            ContactState::CallbackScheduled,
            Channel::Callback,
            T0 + 1_000
        )
    );
    // Only voice turns into a callback; a chat abandons.
    let ev = sim.tick_at(62_000);
    assert_eq!(
        ev,
        vec![Event::ContactAbandoned {
            contact_id: talk,
            reason: "max wait".into(),
        }]
    );

    // A scheduled callback does not time out a second time.
    assert!(sim.tick_at(140_000).is_empty());
    // A callback requested later waits behind the one that kept its place.
    sim.at(150_000);
    let (later, _) = sim.create(contact("q", Channel::Callback));
    assert_eq!(sim.state.waiting_in("q"), 2, "callbacks count as waiting");

    let ev = sim.at(160_000).available("dialer");
    assert_eq!(offer_pairs(&ev), vec![(c1.clone(), "dialer".to_owned())]);
    assert!(matches!(
        &ev[..],
        [
            _,
            Event::ContactOffered {
                channel: Channel::Callback,
                ..
            }
        ]
    ));
    sim.accept("dialer", &c1);
    assert_eq!(sim.contact(&c1).state, ContactState::Connected);
    assert!(sim.contact(&c1).timeline_is_legal());
    assert_eq!(sim.contact(&later).state, ContactState::Queued);
}

fn agents_with_capacity(id: &str, cap: banyan_domain::PerChannel) -> banyan_domain::AgentInput {
    banyan_domain::AgentInput {
        capacity: cap,
        ..agent(id, "emea", &[])
    }
}

#[test]
fn a_full_queue_abandons_new_contacts_at_creation() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.max_length = 2;
    sim.queue(q);
    sim.create(voice("q"));
    sim.create(chat("q"));
    let (c, ev) = sim.create(voice("q"));
    assert!(matches!(
        &ev[..],
        [Event::ContactCreated {
            state: ContactState::Abandoned,
            ..
        }]
    ));
    assert_eq!(sim.contact(&c).state, ContactState::Abandoned);
    assert_eq!(sim.state.waiting_in("q"), 2);
    assert!(sim.contact(&c).timeline_is_legal());
}

#[test]
fn a_full_queue_offers_voice_callers_a_callback_at_creation() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.max_length = 2;
    q.when_full = WhenFull::Callback;
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[]));
    sim.at(1_000);
    let (first, _) = sim.create(voice("q"));
    sim.create(voice("q"));
    sim.at(2_000);
    let (cb, ev) = sim.create(voice("q"));
    assert!(matches!(
        &ev[..],
        [Event::ContactCreated {
            state: ContactState::CallbackScheduled,
            channel: Channel::Callback,
            ..
        }]
    ));
    assert_eq!(sim.state.waiting_in("q"), 3);
    let (lost, ev) = sim.create(chat("q"));
    assert!(matches!(
        &ev[..],
        [Event::ContactCreated {
            state: ContactState::Abandoned,
            ..
        }]
    ));
    assert_eq!(sim.contact(&lost).state, ContactState::Abandoned);

    // The agent takes the first voice caller and the callback at once: different channels.
    let ev = sim.at(3_000).available("a1");
    assert_eq!(
        offer_pairs(&ev),
        vec![(first, "a1".to_owned()), (cb.clone(), "a1".to_owned())]
    );
    assert_eq!(sim.contact(&cb).channel, Channel::Callback);
}

// --- priority ---

#[test]
fn a_platinum_customer_is_offered_before_an_older_standard_contact() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.customer("std", Tier::Standard);
    sim.customer("vip", Tier::Platinum);
    sim.agent(agent("a1", "emea", &[]));
    sim.at(1_000);
    let (old, _) = sim.create(ContactInput {
        customer_id: "std".into(),
        ..voice("q")
    });
    sim.at(5_000);
    let (vip, ev) = sim.create(ContactInput {
        customer_id: "vip".into(),
        ..voice("q")
    });
    assert!(matches!(
        &ev[..],
        [Event::ContactCreated { priority: 20, .. }]
    ));
    let ev = sim.at(10_000).available("a1");
    assert_eq!(offer_pairs(&ev), vec![(vip.clone(), "a1".to_owned())]);
    assert_eq!(decision_of(&ev, &vip).priority, 20);
    assert_eq!(sim.contact(&old).state, ContactState::Queued);
}

/// A standard contact waits `minutes` in a queue aging 2 points a minute; then one of
/// priority 10 arrives and an agent comes free. Returns which was offered.
fn aging_race(minutes: i64) -> &'static str {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.aging_per_minute = 2;
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[]));
    let (old, _) = sim.create(voice("q"));
    sim.at(minutes * 60_000);
    let (new, _) = sim.create(ContactInput {
        priority: 10,
        ..voice("q")
    });
    let ev = sim.available("a1");
    match offer_pairs(&ev).as_slice() {
        [(c, _)] if *c == old => "old",
        [(c, _)] if *c == new => "new",
        other => panic!("unexpected offers {other:?}"),
    }
}

#[test]
fn aging_lets_an_old_standard_contact_beat_a_newer_higher_priority_one() {
    assert_eq!(aging_race(4), "new", "8 points of aging < 10");
    assert_eq!(aging_race(5), "old", "10 = 10: the older wins the tie");
    assert_eq!(aging_race(6), "old", "12 points of aging > 10");
}

// --- idempotency ---

#[test]
fn a_retry_with_the_same_request_id_returns_the_first_events_and_changes_nothing() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    let create = Action::CreateContact(voice("q"));
    sim.at(1_000);
    let first = sim.try_apply_with_id(create.clone(), "req-1").unwrap();
    let id = created_id(&first);
    assert_eq!(offered_to(&first, &id), Some(ids(&["a1"])));
    assert_eq!(sim.contact(&id).request_id.as_deref(), Some("req-1"));

    // The retry comes later, after the contact moved on.
    sim.at(2_000).accept("a1", &id);
    sim.at(5_000);
    let before = sim.state.clone();
    let retry = sim.try_apply_with_id(create, "req-1").unwrap();
    assert_eq!(retry, first);
    assert!(sim.state == before, "a retry changes nothing");
    assert_eq!(sim.state.contact_count(), 1);
    assert_eq!(sim.contact(&id).state, ContactState::Connected);

    // The same key with another command is refused, and changes nothing either.
    sim.at(6_000);
    let other = Action::CreateContact(chat("q"));
    let err = sim.try_apply_with_id(other, "req-1").unwrap_err();
    assert_eq!(
        (code_of(&err), field_of(&err)),
        ("FAILED_PRECONDITION", "request_id")
    );
    assert!(sim.state == before);
}

// --- life cycle ---

#[test]
fn a_contact_goes_through_connected_wrap_up_and_completed() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.wrap_up_ms = 10_000;
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    sim.at(1_000);
    let (c, _) = sim.create(voice("q"));

    let ev = sim.at(3_000).accept("a1", &c);
    assert_eq!(
        ev,
        vec![Event::ContactConnected {
            contact_id: c.clone(),
            agent_id: "a1".into(),
            waited_ms: 2_000,
        }]
    );
    assert_eq!(sim.contact(&c).state, ContactState::Connected);
    assert_eq!(sim.contact(&c).agent_id, "a1");

    let ev = sim.at(63_000).apply(end("a1", &c));
    assert_eq!(
        ev,
        vec![
            Event::ContactWrapUp {
                contact_id: c.clone(),
                agent_id: "a1".into(),
                until_ms: T0 + 73_000,
            },
            Event::AgentStateChanged {
                agent_id: "a1".into(),
                state: AgentState::WrapUp,
            },
        ]
    );
    assert_eq!(sim.contact(&c).state, ContactState::WrapUp);
    let a1 = sim.agent_ref("a1");
    assert_eq!(a1.state(), AgentState::WrapUp);
    assert_eq!(a1.state_since_ms, T0 + 63_000);
    assert_eq!(a1.talk_time_ms, 60_000);

    // In wrap-up the agent takes nothing new.
    sim.at(64_000);
    let (next, ev) = sim.create(voice("q"));
    assert!(offers(&ev).is_empty());

    assert!(sim.tick_at(72_999).is_empty());
    let ev = sim.tick_at(73_000);
    assert_eq!(
        ev[..2],
        [
            Event::ContactCompleted {
                contact_id: c.clone(),
                agent_id: "a1".into(),
                disposition: String::new(),
            },
            Event::AgentStateChanged {
                agent_id: "a1".into(),
                state: AgentState::Available,
            },
        ]
    );
    assert_eq!(offer_pairs(&ev[2..]), vec![(next, "a1".to_owned())]);
    let done = sim.contact(&c);
    assert_eq!(done.state, ContactState::Completed);
    assert_eq!(done.ended_ms, Some(T0 + 73_000));
    assert!(done.timeline_is_legal());
    let a1 = sim.agent_ref("a1");
    assert_eq!((a1.handled, a1.wrapping_up), (1, 0));
    assert_eq!(sim.state.queue_stats("q").unwrap().counters.handled, 1);
}

#[test]
fn complete_checks_the_disposition_against_the_queue() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.dispositions = vec!["sale".into(), "no-sale".into()];
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    let (c, _) = sim.create(voice("q"));
    sim.at(1_000).accept("a1", &c);

    sim.at(2_000);
    let err = sim.refuse(complete(&c, "a1", "refund"));
    assert_eq!(
        (code_of(&err), field_of(&err)),
        ("INVALID_ARGUMENT", "disposition")
    );
    let err = sim.refuse(complete(&c, "a1", ""));
    assert_eq!(
        field_of(&err),
        "disposition",
        "a queue with codes needs one"
    );

    let ev = sim.apply(complete(&c, "a1", "sale"));
    assert!(matches!(
        &ev[0],
        Event::ContactCompleted { disposition, .. } if disposition == "sale"
    ));
    assert_eq!(sim.contact(&c).disposition, "sale");
    assert_eq!(sim.contact(&c).state, ContactState::Completed);
}

#[test]
fn completing_a_queued_contact_is_refused_and_changes_nothing() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    let (c, _) = sim.create(voice("q"));
    sim.at(1_000);
    let err = sim.refuse(complete(&c, "", ""));
    assert_eq!(
        (code_of(&err), field_of(&err)),
        ("FAILED_PRECONDITION", "contact_id")
    );
    let err = sim.refuse(complete(&c, "a1", ""));
    assert_eq!(code_of(&err), "FAILED_PRECONDITION");
    assert_eq!(sim.contact(&c).state, ContactState::Queued);
}

#[test]
fn transfer_continues_the_contact_as_a_new_one_in_the_target_queue() {
    let mut sim = Sim::new();
    let mut sales = queue("sales", Strategy::LongestIdle);
    sales.required_skills = skills_of(&[("sales", 1)]);
    sim.queue(sales);
    let mut billing = queue("billing", Strategy::LongestIdle);
    billing.required_skills = skills_of(&[("billing", 1)]);
    sim.queue(billing);
    sim.agent(agent("seller", "emea", &[("sales", 5)]));
    sim.agent(agent("clerk", "emea", &[("billing", 5)]));
    sim.available("seller");
    sim.available("clerk");
    sim.at(1_000);
    let (c, ev) = sim.create(voice("sales"));
    assert_eq!(offered_to(&ev, &c), Some(ids(&["seller"])));
    sim.at(2_000).accept("seller", &c);

    let ev = sim.at(20_000).apply(transfer(&c, "billing"));
    let new = created_id(&ev);
    assert_ne!(new, c);
    assert_eq!(
        ev,
        vec![
            Event::ContactTransferred {
                contact_id: c.clone(),
                agent_id: "seller".into(),
                new_contact_id: new.clone(),
                queue_id: "billing".into(),
            },
            Event::ContactCreated {
                contact_id: new.clone(),
                channel: Channel::Voice,
                queue_id: "billing".into(),
                state: ContactState::Queued,
                priority: 0,
                enqueued_ms: T0 + 1_000,
            },
            Event::ContactOffered {
                contact_id: new.clone(),
                channel: Channel::Voice,
                agent_ids: ids(&["clerk"]),
                expires_ms: T0 + 35_000,
                decision: decision_of(&ev, &new),
            },
        ]
    );
    let old = sim.contact(&c);
    assert_eq!(old.state, ContactState::Transferred);
    assert_eq!(old.transferred_to, new);
    assert!(old.timeline_is_legal());
    let moved = sim.contact(&new);
    assert_eq!(moved.transferred_from, c);
    assert_eq!(moved.queue_id, "billing");
    assert!(moved.timeline_is_legal());
    let seller = sim.agent_ref("seller");
    assert!(seller.held.is_empty());
    assert_eq!(seller.talk_time_ms, 18_000);
    assert_eq!(sim.state.waiting_in("sales"), 0);
}

// --- site leases ---

#[test]
fn a_lapsed_lease_fences_the_sites_agents() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.site("emea");
    sim.agent(agent("e1", "emea", &[]));
    sim.available("e1");
    let ev = sim.apply(renew("emea", T0, 10_000));
    assert_eq!(
        ev,
        vec![Event::LeaseRenewed {
            site_id: "emea".into(),
            expires_ms: T0 + 10_000,
        }]
    );
    assert_eq!(
        sim.state.site("emea").unwrap().mode(sim.now),
        SiteMode::Leased
    );
    sim.at(1_000);
    let (x, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &x), Some(ids(&["e1"])));

    // The lease ran out at 10 s; no Tick has acted on it yet.
    sim.at(12_000);
    let err = sim.refuse(accept("e1", &x));
    assert_eq!(
        (code_of(&err), field_of(&err)),
        ("FAILED_PRECONDITION", "agent.site")
    );
    let (y, ev) = sim.create(chat("q"));
    assert!(
        offers(&ev).is_empty(),
        "no offers to a lapsed site's agents"
    );

    let ev = sim.tick();
    assert_eq!(
        ev,
        vec![
            Event::LeaseLapsed {
                site_id: "emea".into()
            },
            Event::OfferWithdrawn {
                contact_id: x.clone(),
                agent_id: "e1".into(),
                reason: WithdrawReason::LeaseLapsed,
            },
            Event::ContactRequeued {
                contact_id: x.clone(),
                state: ContactState::Queued,
                passed_by: String::new(),
            },
        ]
    );
    assert_eq!(
        sim.state.site("emea").unwrap().mode(sim.now),
        SiteMode::Lapsed
    );
    assert!(sim.agent_ref("e1").held.is_empty());

    // A renewal sent more than a TTL ago cannot revive the lease...
    let err = sim.refuse(renew("emea", T0 + 1_000, 10_000));
    assert_eq!(
        (code_of(&err), field_of(&err)),
        ("FAILED_PRECONDITION", "sent_at_ms")
    );
    // ...a fresh one does, and routing resumes.
    let ev = sim.apply(renew("emea", T0 + 11_500, 10_000));
    assert_eq!(
        ev[0],
        Event::LeaseRenewed {
            site_id: "emea".into(),
            expires_ms: T0 + 21_500,
        }
    );
    assert_eq!(
        offer_pairs(&ev[1..]),
        vec![(x.clone(), "e1".to_owned()), (y.clone(), "e1".to_owned())]
    );
    sim.accept("e1", &x);
    assert_eq!(sim.contact(&x).state, ContactState::Connected);
}

#[test]
fn a_site_that_never_held_a_lease_is_routed_by_the_core() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.site("hq");
    sim.agent(agent("h1", "hq", &[]));
    sim.available("h1");
    sim.at(24 * 60 * 60 * 1000);
    let (c, ev) = sim.create(voice("q"));
    assert_eq!(offered_to(&ev, &c), Some(ids(&["h1"])));
    assert_eq!(sim.state.site("hq").unwrap().mode(sim.now), SiteMode::Core);
}

// --- snapshots ---

/// The first agent offered anything in `events`, and the contact.
#[track_caller]
fn first_offer(events: &[Event]) -> (String, String) {
    let (contact, agent) = offer_pairs(events)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no offer in {events:?}"));
    (agent, contact)
}

/// A state with something in every corner: sites with and without a lease, queues with
/// escalation, agents busy and idle, contacts in every state, customers and request ids.
fn busy() -> Sim {
    let mut sim = Sim::new();
    sim.site("emea");
    sim.site("apac");
    sim.customer("gold", Tier::Gold);
    sim.customer("plat", Tier::Platinum);
    sim.queue(queue("general", Strategy::FewestContacts));
    let mut sales = queue("sales", Strategy::SkillWeighted);
    sales.required_skills = skills_of(&[("sales", 6)]);
    sales.escalation = vec![
        step(
            20_000,
            EscalationAction::RelaxSkill {
                skill: "sales".into(),
                min_level: 3,
            },
        ),
        step(40_000, EscalationAction::AllowOtherSites),
        step(
            90_000,
            EscalationAction::Overflow {
                queue_id: "general".into(),
            },
        ),
    ];
    sales.max_wait_ms = 150_000;
    sales.when_full = WhenFull::Callback;
    sim.queue(sales);
    let mut ring = queue("ring", Strategy::RingAll);
    ring.wrap_up_ms = 60_000;
    sim.queue(ring);
    // Nobody qualifies until its only step drops the skill.
    let mut legal = queue("legal", Strategy::LeastTalkTime);
    legal.required_skills = skills_of(&[("law", 5)]);
    legal.escalation = vec![step(
        100_000,
        EscalationAction::DropSkill {
            skill: "law".into(),
        },
    )];
    sim.queue(legal);
    sim.agent(agent("e1", "emea", &[("sales", 7)]));
    sim.agent(agent("e2", "emea", &[("sales", 4)]));
    sim.agent(agent("p1", "apac", &[("sales", 9)]));
    sim.agent(agent("p2", "apac", &[]));
    sim.apply(renew("apac", T0, 120_000));
    for id in ["e1", "e2", "p1"] {
        sim.available(id);
    }

    sim.at(1_000);
    let (a, ev) = sim.create(voice("sales"));
    let (taker, _) = first_offer(&ev);
    sim.accept(&taker, &a);
    let ev = sim
        .try_apply_with_id(
            Action::CreateContact(ContactInput {
                customer_id: "gold".into(),
                origin_site: "emea".into(),
                ..voice("sales")
            }),
            "req-b",
        )
        .unwrap();
    assert_eq!(offers(&ev).len(), 1, "b is left on offer");
    sim.at(2_000);
    sim.create(ContactInput {
        customer_id: "plat".into(),
        origin_site: "emea".into(),
        ..voice("sales")
    });
    let (d, ev) = sim.create(chat("ring"));
    let (ringer, _) = first_offer(&ev);
    sim.at(3_000).accept(&ringer, &d);
    sim.at(4_000);
    let (e, _) = sim.create(contact("general", Channel::Email));
    sim.apply(abandon(&e));
    sim.at(5_000).apply(end(&ringer, &d));
    sim.at(6_000);
    sim.create(chat("sales"));
    sim.create(contact("legal", Channel::Email));
    sim.tick_at(25_000);
    sim.tick_at(45_000);
    sim.at(46_000).apply(transfer(&a, "general"));
    sim
}

#[test]
fn a_snapshot_round_trip_restores_an_equal_state_that_behaves_the_same() {
    let mut original = busy();
    let states: Vec<ContactState> = original.state.contacts().map(|c| c.state).collect();
    for expected in [
        ContactState::Queued,
        ContactState::Offered,
        ContactState::WrapUp,
        ContactState::Abandoned,
        ContactState::Transferred,
    ] {
        assert!(
            states.contains(&expected),
            "busy state has no {expected:?}: {states:?}"
        );
    }

    let bytes = postcard::to_allocvec(&original.state).expect("serialize");
    let restored: State = postcard::from_bytes(&bytes).expect("deserialize");
    assert!(restored == original.state, "round trip changed the state");
    assert_eq!(postcard::to_allocvec(&restored).unwrap(), bytes);
    // (Timers are derived too, but not compared: the original may still hold stale
    // entries that fire as no-ops, a rebuilt state only the live ones.)
    for q in ["general", "sales", "ring", "legal"] {
        assert_eq!(restored.waiting_in(q), original.state.waiting_in(q));
    }

    // The same commands give the same events on both: routing runs on rebuilt indexes.
    let mut copy = Sim {
        state: restored,
        now: original.now,
    };
    let mut script: Vec<(i64, Action)> = vec![
        (47_000, Action::Tick),
        (48_000, set_presence("p2", Presence::Available)),
        (49_000, Action::CreateContact(chat("general"))),
        (50_000, Action::CreateContact(voice("sales"))),
        (60_000, Action::Tick),
        (95_000, Action::Tick),
        (100_000, set_presence("e1", Presence::Available)),
        (130_000, Action::Tick),
        (160_000, Action::Tick),
        (170_000, renew("apac", T0 + 169_000, 60_000)),
        (250_000, Action::Tick),
    ];
    // Accept whatever is on offer in between, the same way on both.
    for contact in original.state.contacts() {
        if let Some(offer) = &contact.offer {
            script.insert(0, (46_500, accept(&offer.agents[0], &contact.id)));
        }
    }
    let mut events_seen = 0;
    for (at, action) in script {
        original.at(at);
        copy.at(at);
        let a = original.try_apply(action.clone());
        let b = copy.try_apply(action.clone());
        assert_eq!(a, b, "{action:?} at {at} differs after the round trip");
        events_seen += a.map_or(0, |e| e.len());
        assert!(original.state == copy.state);
    }
    assert!(
        events_seen > 10,
        "the script exercised routing: {events_seen} events"
    );
}

// --- refused input ---

#[test]
fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let mut sim = Sim::new();
    sim.site("emea");
    sim.customer("cust", Tier::Gold);
    let mut q = queue("q", Strategy::LongestIdle);
    q.channels = vec![Channel::Voice, Channel::Chat];
    q.dispositions = vec!["done".into()];
    sim.queue(q);
    sim.queue(queue("other", Strategy::RoundRobin));
    sim.agent(agent("a1", "emea", &[("sales", 5)]));
    sim.agent(agent("a2", "emea", &[]));
    sim.available("a1");
    let (connected, _) = sim.create(voice("q"));
    sim.at(1_000).accept("a1", &connected);
    sim.available("a2");
    let (offered, _) = sim.create(voice("q"));
    assert_eq!(sim.contact(&offered).state, ContactState::Offered);
    let (queued, _) = sim.create(voice("q"));
    assert_eq!(sim.contact(&queued).state, ContactState::Queued);
    let (gone, _) = sim.create(chat("q"));
    // `gone` was offered to a1's free chat slot; abandon it.
    sim.apply(abandon(&gone));

    let long = "x".repeat(300);
    let create = |f: fn(&mut ContactInput)| {
        let mut input = voice("q");
        f(&mut input);
        Action::CreateContact(input)
    };
    let upsert_agent = |f: fn(&mut banyan_domain::AgentInput)| {
        let mut input = agent("a3", "emea", &[]);
        f(&mut input);
        Action::UpsertAgent(input)
    };
    let upsert_queue = |f: fn(&mut QueueInput)| {
        let mut input = queue("q3", Strategy::LongestIdle);
        f(&mut input);
        Action::UpsertQueue(input)
    };
    let cases: Vec<(&str, Action, &str, &str)> = vec![
        // Unknown objects.
        (
            "unknown queue",
            create(|c| c.queue_id = "nope".into()),
            "NOT_FOUND",
            "contact.queue_id",
        ),
        (
            "unknown customer",
            create(|c| c.customer_id = "nobody".into()),
            "NOT_FOUND",
            "contact.customer_id",
        ),
        (
            "unknown agent",
            set_presence("ghost", Presence::Available),
            "NOT_FOUND",
            "agent_id",
        ),
        (
            "unknown agent accepts",
            accept("ghost", &offered),
            "NOT_FOUND",
            "agent_id",
        ),
        (
            "unknown contact",
            accept("a2", "ct-9999"),
            "NOT_FOUND",
            "contact_id",
        ),
        (
            "abandon unknown",
            abandon("ct-9999"),
            "NOT_FOUND",
            "contact_id",
        ),
        (
            "transfer to unknown queue",
            transfer(&queued, "nope"),
            "NOT_FOUND",
            "queue_id",
        ),
        (
            "disconnect unknown agent",
            Action::AgentDisconnected {
                agent_id: "ghost".into(),
                session: String::new(),
            },
            "NOT_FOUND",
            "agent_id",
        ),
        (
            "complete by unknown agent",
            complete(&connected, "ghost", "done"),
            "NOT_FOUND",
            "agent_id",
        ),
        (
            "overflow to unknown queue",
            upsert_queue(|q| {
                q.escalation = vec![EscalationStep {
                    after_ms: 1_000,
                    action: EscalationAction::Overflow {
                        queue_id: "nope".into(),
                    },
                }]
            }),
            "NOT_FOUND",
            "queue.escalation[0].queue_id",
        ),
        // Malformed fields.
        (
            "negative priority",
            create(|c| c.priority = -1),
            "INVALID_ARGUMENT",
            "contact.priority",
        ),
        (
            "priority too high",
            create(|c| c.priority = 1_001),
            "INVALID_ARGUMENT",
            "contact.priority",
        ),
        (
            "oversize intent",
            create(|c| c.intent = "i".repeat(257)),
            "INVALID_ARGUMENT",
            "contact.intent",
        ),
        (
            "bad contact id",
            create(|c| c.id = "has space".into()),
            "INVALID_ARGUMENT",
            "contact.id",
        ),
        (
            "empty queue id",
            create(|c| c.queue_id.clear()),
            "INVALID_ARGUMENT",
            "contact.queue_id",
        ),
        (
            "oversize attribute",
            create(|c| {
                c.attributes.insert("k".into(), "v".repeat(2_000));
            }),
            "INVALID_ARGUMENT",
            "contact.attributes[k]",
        ),
        (
            "absurd capacity",
            upsert_agent(|a| a.capacity = capacity(51, 3, 5, 1)),
            "INVALID_ARGUMENT",
            "agent.capacity.voice",
        ),
        (
            "skill level 11",
            upsert_agent(|a| {
                a.skills.insert("sales".into(), 11);
            }),
            "INVALID_ARGUMENT",
            "agent.skills[sales]",
        ),
        (
            "skill level 0",
            upsert_agent(|a| {
                a.skills.insert("sales".into(), 0);
            }),
            "INVALID_ARGUMENT",
            "agent.skills[sales]",
        ),
        (
            "oversize agent name",
            upsert_agent(|a| a.name = "n".repeat(257)),
            "INVALID_ARGUMENT",
            "agent.name",
        ),
        (
            "agent without site",
            upsert_agent(|a| a.site.clear()),
            "INVALID_ARGUMENT",
            "agent.site",
        ),
        (
            "queue skill level 11",
            upsert_queue(|q| {
                q.required_skills.insert("sales".into(), 11);
            }),
            "INVALID_ARGUMENT",
            "queue.required_skills[sales]",
        ),
        (
            "offer timeout too short",
            upsert_queue(|q| q.offer_timeout_ms = 10),
            "INVALID_ARGUMENT",
            "queue.offer_timeout_ms",
        ),
        (
            "negative max wait",
            upsert_queue(|q| q.max_wait_ms = -5),
            "INVALID_ARGUMENT",
            "queue.max_wait_ms",
        ),
        (
            "steps out of order",
            upsert_queue(|q| {
                q.escalation = vec![
                    EscalationStep {
                        after_ms: 5_000,
                        action: EscalationAction::AllowOtherSites,
                    },
                    EscalationStep {
                        after_ms: 1_000,
                        action: EscalationAction::AllowOtherSites,
                    },
                ]
            }),
            "INVALID_ARGUMENT",
            "queue.escalation[1].after_ms",
        ),
        (
            "oversize break reason",
            set_presence(
                "a2",
                Presence::Break {
                    reason: "r".repeat(300),
                },
            ),
            "INVALID_ARGUMENT",
            "state.reason",
        ),
        (
            "oversize notes",
            Action::CompleteContact {
                contact_id: connected.clone(),
                agent_id: "a1".into(),
                disposition: "done".into(),
                notes: "n".repeat(5_000),
            },
            "INVALID_ARGUMENT",
            "notes",
        ),
        (
            "bad disposition",
            complete(&connected, "a1", "shrug"),
            "INVALID_ARGUMENT",
            "disposition",
        ),
        (
            "lease too short",
            renew("emea", T0, 100),
            "INVALID_ARGUMENT",
            "ttl_ms",
        ),
        (
            "lease sent in the future",
            renew("emea", T0 + 3_600_000, 10_000),
            "INVALID_ARGUMENT",
            "sent_at_ms",
        ),
        (
            "bad customer email",
            Action::UpsertCustomer(banyan_domain::CustomerInput {
                id: "c2".into(),
                name: "Bo".into(),
                emails: vec!["nobody".into()],
                ..Default::default()
            }),
            "INVALID_ARGUMENT",
            "customer.emails[0]",
        ),
        (
            "site without id",
            Action::UpsertSite(banyan_domain::SiteInput::default()),
            "INVALID_ARGUMENT",
            "site.id",
        ),
        (
            "oversize site name",
            Action::UpsertSite(banyan_domain::SiteInput {
                id: "s".into(),
                name: long.clone(),
                region: String::new(),
            }),
            "INVALID_ARGUMENT",
            "site.name",
        ),
        // Illegal transitions.
        (
            "existing contact id",
            create(|c| c.id = "ct-0000000001".into()),
            "ALREADY_EXISTS",
            "contact.id",
        ),
        (
            "channel the queue does not take",
            create(|c| c.channel = Channel::Email),
            "FAILED_PRECONDITION",
            "contact.channel",
        ),
        (
            "accept a queued contact",
            accept("a2", &queued),
            "FAILED_PRECONDITION",
            "contact_id",
        ),
        (
            "accept someone else's offer",
            accept("a1", &offered),
            "FAILED_PRECONDITION",
            "contact_id",
        ),
        (
            "reject a connected contact",
            reject("a1", &connected),
            "FAILED_PRECONDITION",
            "contact_id",
        ),
        (
            "end a queued contact",
            end("a1", &queued),
            "FAILED_PRECONDITION",
            "contact_id",
        ),
        (
            "end another agent's contact",
            end("a2", &connected),
            "FAILED_PRECONDITION",
            "agent_id",
        ),
        (
            "complete an offered contact",
            complete(&offered, "", "done"),
            "FAILED_PRECONDITION",
            "contact_id",
        ),
        (
            "complete an abandoned contact",
            complete(&gone, "", "done"),
            "FAILED_PRECONDITION",
            "contact_id",
        ),
        (
            "abandon a connected contact",
            abandon(&connected),
            "FAILED_PRECONDITION",
            "contact_id",
        ),
        (
            "abandon twice",
            abandon(&gone),
            "FAILED_PRECONDITION",
            "contact_id",
        ),
        (
            "transfer into its own queue",
            transfer(&queued, "q"),
            "FAILED_PRECONDITION",
            "queue_id",
        ),
        (
            "transfer an abandoned contact",
            transfer(&gone, "other"),
            "FAILED_PRECONDITION",
            "contact_id",
        ),
        (
            "offline while connected",
            set_presence("a1", Presence::Offline),
            "FAILED_PRECONDITION",
            "state",
        ),
        (
            "renewal older than its TTL",
            renew("emea", T0 - 60_000, 10_000),
            "FAILED_PRECONDITION",
            "sent_at_ms",
        ),
    ];
    assert_eq!(sim.contact("ct-0000000001").id, connected);
    for (name, action, code, field) in cases {
        // Each bad command comes later than the last, as it would in a log.
        sim.now += 1_000;
        let before = sim.state.clone();
        let err = sim
            .try_apply(action)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(
            (code_of(&err), field_of(&err)),
            (code, field),
            "{name}: {err}"
        );
        assert!(sim.state == before, "{name}: refused but changed the state");
    }
    // And the state still works.
    let ev = sim.apply(end("a1", &connected));
    assert_eq!(kinds(&ev)[0], "contact_wrap_up");
}

#[test]
fn a_contact_offered_at_a_step_its_queue_no_longer_has_is_still_routed() {
    let mut sim = Sim::new();
    let mut q = queue("q", Strategy::LongestIdle);
    q.required_skills = skills_of(&[("french", 8)]);
    q.escalation = vec![EscalationStep {
        after_ms: 1_000,
        action: EscalationAction::RelaxSkill {
            skill: "french".into(),
            min_level: 2,
        },
    }];
    sim.queue(q);
    sim.agent(agent("a1", "emea", &[("french", 3)]));
    sim.agent(agent("a2", "emea", &[("french", 9)]));
    sim.available("a1");
    let (c, _) = sim.create(voice("q"));
    // After the step a1 qualifies and gets the offer.
    let ev = sim.tick_at(1_000);
    assert_eq!(offer_pairs(&ev), vec![(c.clone(), "a1".to_owned())]);
    // The queue loses its step while the contact is on offer; then a1 rejects.
    let mut strict = queue("q", Strategy::LongestIdle);
    strict.required_skills = skills_of(&[("french", 8)]);
    sim.at(1_500).queue(strict);
    sim.at(1_600).apply(reject("a1", &c));
    assert_eq!(sim.contact(&c).step, 0, "capped to the steps the queue has");
    // A later agent takes it: the contact is not stranded at a step nobody qualifies for.
    let ev = sim.at(2_000).available("a2");
    assert_eq!(offer_pairs(&ev), vec![(c.clone(), "a2".to_owned())]);
}

#[test]
fn a_late_disconnect_of_an_old_session_does_not_log_out_a_newer_one() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::LongestIdle));
    sim.agent(agent("a1", "emea", &[]));
    let login = |session: &str| Action::AgentLogin {
        agent_id: "a1".into(),
        session: session.into(),
        presence: Presence::Available,
    };
    let disconnect = |session: &str| Action::AgentDisconnected {
        agent_id: "a1".into(),
        session: session.into(),
    };
    sim.apply(login("s1"));
    sim.at(1_000).apply(login("s2"));
    // Session s1's node noticed its dead stream only now.
    let ev = sim.at(2_000).apply(disconnect("s1"));
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(sim.agent_ref("a1").presence, Presence::Available);
    sim.at(3_000).apply(disconnect("s2"));
    assert_eq!(sim.agent_ref("a1").presence, Presence::Offline);
}

#[test]
fn a_connected_contact_keeps_the_decision_that_routed_it() {
    let mut sim = Sim::new();
    sim.queue(queue("q", Strategy::RoundRobin));
    sim.agent(agent("a1", "emea", &[]));
    sim.available("a1");
    let (c, _) = sim.create(voice("q"));
    sim.at(500).accept("a1", &c);
    let contact = sim.contact(&c);
    assert_eq!(contact.state, ContactState::Connected);
    let decision = contact.decision.as_ref().expect("decision kept");
    assert_eq!(
        (decision.queue_id.as_str(), decision.strategy),
        ("q", Strategy::RoundRobin)
    );
}
