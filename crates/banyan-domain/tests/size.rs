//! The request log's byte bound counts each record as Banyan's codec encodes it: the
//! counted size equals postcard's, for every command and event of a working day in small.

mod common;

use banyan_domain::size::encoded_len;
use banyan_domain::{Channel, Strategy};

use common::*;

#[test]
fn the_counted_size_is_the_encoded_size() {
    let mut sim = Sim::new();
    let mut checked = 0;
    let mut check = |value: &dyn erased::Check| {
        value.check();
        checked += 1;
    };
    let mut events = Vec::new();
    events.extend(sim.queue(queue("q", Strategy::LongestIdle)));
    events.extend(sim.site("emea"));
    events.extend(sim.agent(agent("a", "emea", &[("q", 5)])));
    events.extend(sim.available("a"));
    let (id, created) = sim.create(contact("q", Channel::Voice));
    events.extend(created);
    events.extend(sim.at(1_000).accept("a", &id));
    events.extend(sim.at(2_000).apply(end("a", &id)));
    events.extend(sim.at(3_000).apply(complete(&id, "a", "sold")));
    for event in &events {
        check(event);
    }
    check(sim.contact(&id));
    check(&complete(&id, "a", "sold"));
    check(&sim.stamp(transfer(&id, "q"), Some("r-1")));
    check(&sim.state);
    assert!(checked > 10);
}

/// Comparing a value's counted size with its encoding, behind one object-safe trait.
mod erased {
    pub trait Check {
        fn check(&self);
    }

    impl<T: serde::Serialize + std::fmt::Debug> Check for T {
        fn check(&self) {
            let encoded = postcard::to_allocvec(self).unwrap().len();
            assert_eq!(super::encoded_len(self), encoded, "{self:?}");
        }
    }
}
