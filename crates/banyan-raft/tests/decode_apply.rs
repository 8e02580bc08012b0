//! The fuzz target's checks (`banyan_raft::fuzz`) on the stable toolchain: the committed
//! golden log's batches, with bytes flipped, cut and inserted at random, decoded and
//! applied to the golden snapshot's state. A longer, coverage-guided run is the
//! `decode_apply` target under `fuzz/` (see `docs/testing.md`).

use banyan_domain::State;
use banyan_raft::{codec, Batch, Entry};
use openraft::EntryPayload;
use proptest::prelude::*;

fn golden(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/golden/v3/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Each golden batch as the fuzz target takes it: the encoding without its version byte.
fn seeds() -> Vec<Vec<u8>> {
    let entries: Vec<Entry> = codec::decode(&golden("log-entries")).unwrap();
    entries
        .into_iter()
        .filter_map(|entry| match entry.payload {
            EntryPayload::Normal(batch) => Some(codec::encode(&batch)[1..].to_vec()),
            _ => None,
        })
        .collect()
}

fn base() -> State {
    codec::decode(&golden("snapshot")).unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Set { at: usize, byte: u8 },
    Cut { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        3 => (any::<usize>(), prop::sample::select(vec![0u8, 1, 0x7f, 0x80, 0xff]))
            .prop_map(|(at, byte)| Mutation::Set { at, byte }),
        1 => any::<usize>().prop_map(|at| Mutation::Cut { at }),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip { at, bits } => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= bits;
                }
            }
            Mutation::Set { at, byte } => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b = *byte;
                }
            }
            Mutation::Cut { at } => bytes.truncate(at % len),
            Mutation::Insert { at, bytes: more } => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, more.iter().copied());
            }
        }
    }
    bytes
}

#[test]
fn every_golden_batch_decodes_and_applies() {
    let base = base();
    for seed in seeds() {
        assert!(banyan_raft::fuzz::decode_and_apply(&base, &seed));
    }
    // Several batches at once, as a leader packs them.
    let all: Vec<_> = seeds()
        .iter()
        .flat_map(|seed| {
            codec::decode::<Batch>(&[&[codec::FORMAT_VERSION][..], seed].concat())
                .unwrap()
                .0
        })
        .collect();
    let packed = codec::encode(&Batch(all));
    assert!(banyan_raft::fuzz::decode_and_apply(
        &State::default(),
        &packed[1..]
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn mutated_batches_never_panic_apply(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let bytes = mutate(seeds[seed.index(seeds.len())].clone(), &mutations);
        banyan_raft::fuzz::decode_and_apply(&base(), &bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_apply(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        banyan_raft::fuzz::decode_and_apply(&base(), &bytes);
    }
}
