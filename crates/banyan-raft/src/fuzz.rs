//! The body of the decoder-plus-apply fuzz target (`fuzz/`), kept here so the stable test
//! suite runs the same checks on mutated log entries.
//!
//! Bytes from the network or a damaged disk reach the state machine through the codec:
//! whatever decodes as a batch of commands is applied on every replica. So for any input
//! that decodes, applying it must not panic, must give the same answers and the same
//! state when applied again to the same start (replicas agree), and the state must
//! survive a snapshot round trip.

use banyan_domain::State;

use crate::codec::{self, FORMAT_VERSION};
use crate::Batch;

/// Decodes `body` as a batch of this format version and applies it to a copy of `base`,
/// checking determinism and the snapshot round trip. Panics (for the fuzzer to report) on
/// any violation; returns whether the input decoded.
pub fn decode_and_apply(base: &State, body: &[u8]) -> bool {
    let mut bytes = Vec::with_capacity(body.len() + 1);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(body);
    let Ok(Batch(commands)) = codec::decode::<Batch>(&bytes) else {
        return false;
    };
    let mut first = base.clone();
    let mut second = base.clone();
    for stamped in &commands {
        let a = first.apply(stamped);
        let b = second.apply(stamped);
        assert_eq!(a, b, "two replicas answered {stamped:?} differently");
    }
    assert!(first == second, "two replicas ended in different states");
    let restored: State = codec::decode(&codec::encode(&first)).expect("a snapshot decodes");
    assert!(
        restored == first,
        "the snapshot round trip changed the state"
    );
    true
}
