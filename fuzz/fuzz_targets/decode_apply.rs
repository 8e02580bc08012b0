//! Arbitrary bytes through the codec into `State::apply`, starting from the state of the
//! committed golden log (a small contact center mid-day). See `docs/testing.md`.
#![no_main]

use std::sync::OnceLock;

use banyan_domain::State;
use libfuzzer_sys::fuzz_target;

fn base() -> &'static State {
    static BASE: OnceLock<State> = OnceLock::new();
    BASE.get_or_init(|| {
        banyan_raft::codec::decode(include_bytes!(
            "../../crates/banyan-raft/tests/golden/v3/snapshot.bin"
        ))
        .expect("the golden snapshot decodes")
    })
}

fuzz_target!(|body: &[u8]| {
    banyan_raft::fuzz::decode_and_apply(base(), body);
});
