//! The dependency rules of docs/ARCHITECTURE.md, read from every crate's `Cargo.toml`:
//! the layers run one way, the domain depends on nothing that does I/O, and only
//! banyan-raft names openraft or sled; and from banyan-raft's sources, that the event
//! feed is not Raft's (the state machine hands events through `ApplyHook` alone).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Each crate's layer: a crate may depend on Banyan crates of lower layers only.
const LAYERS: &[(&str, u8)] = &[
    ("banyan-env", 0),
    ("banyan-domain", 0),
    ("banyan-proto", 0),
    ("banyan-trust", 1),
    ("banyan-events", 1),
    ("banyan-client", 2),
    ("banyan-raft", 2),
    ("banyan-observe", 3),
    ("banyan-api", 4),
    ("banyan-core", 5),
    ("banyan-branch", 5),
    ("banyan-harness", 6),
    ("banyan-cli", 7),
];

/// The names under `[dependencies]` of every crate in `crates/`.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all = BTreeMap::new();
    for dir in std::fs::read_dir(&crates).unwrap() {
        let dir = dir.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let mut in_deps = false;
        let mut deps = Vec::new();
        for line in manifest.lines() {
            if line.starts_with('[') {
                in_deps = line.trim() == "[dependencies]";
                continue;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if in_deps && !name.is_empty() {
                deps.push(name);
            }
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        all.insert(name, deps);
    }
    all
}

#[test]
fn t01_the_layers_run_one_way_and_the_domain_does_no_io() {
    let all = dependencies();
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    assert_eq!(
        all.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut named: Vec<&str> = layer.keys().copied().collect();
            named.sort();
            named
        },
        "every crate has a layer in this test"
    );
    for (krate, deps) in &all {
        for dep in deps.iter().filter(|d| d.starts_with("banyan-")) {
            assert!(
                layer[dep.as_str()] < layer[krate.as_str()],
                "{krate} depends on {dep}, a crate of its own layer or above"
            );
        }
    }
    // The domain is plain data and functions (DESIGN.md §6).
    assert_eq!(all["banyan-domain"], ["serde", "serde_bytes", "thiserror"]);
    // A move to another openraft or another store touches one crate.
    for (krate, deps) in &all {
        for engine in ["openraft", "sled"] {
            assert!(
                krate == "banyan-raft" || !deps.iter().any(|d| d == engine),
                "{krate} names {engine}: only banyan-raft may"
            );
        }
    }
}

#[test]
fn t01_the_state_machine_hands_events_through_one_hook_and_owns_no_feed() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../banyan-raft/src");
    let mut hooked = false;
    for file in std::fs::read_dir(&src).unwrap() {
        let path = file.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for feed in ["EventFeed", "broadcast::", "detached"] {
            assert!(
                !text.contains(feed),
                "{} names {feed}: the feed and a branch's own state live outside Raft",
                path.display()
            );
        }
        hooked |= text.contains("hook.applied(");
    }
    assert!(
        hooked,
        "the state machine hands applied events to its ApplyHook"
    );
}
