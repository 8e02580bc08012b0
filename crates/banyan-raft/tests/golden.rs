//! Golden files of the binary format: log entries, a snapshot, the Raft RPC payloads and a
//! branch journal entry, as this release writes them, committed under `tests/golden/vN/`.
//!
//! A rolling upgrade has nodes of the next release read what this one wrote: its log, its
//! snapshots and its peers' RPCs. Each test decodes the committed files of every version
//! with today's code, so a change to the domain types that would break that read fails
//! here, not in a customer's upgrade. Files of the version this build writes must also
//! come out byte for byte as today's code encodes the same values: a change of the
//! encoding without a new version number fails too.
//!
//! After a deliberate format change (a new `FORMAT_VERSION` with a decoding arm for the old
//! one), write the new version's files with
//! `BANYAN_WRITE_GOLDEN=1 cargo test -p banyan-raft --test golden` and commit them beside
//! the old ones, which stay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use banyan_domain::{
    Action, AgentInput, BranchImport, BranchReport, Channel, ClusterAction, Command, CommandPart,
    ContactInput, CustomerInput, EscalationAction, EscalationStep, PerChannel, Presence, Principal,
    QueueInput, Role, SiteInput, Stamped, State, Strategy, Tier,
};
use banyan_raft::codec::{self, FORMAT_VERSION};
use banyan_raft::{
    Batch, BatchResponse, ClusterIdentity, Entry, LogId, SnapshotMeta, StoredMembership, Vote,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, EntryPayload, Membership};

/// A fixed start of time, so the files never change by themselves.
const T0: i64 = 1_780_000_000_000;

fn golden_dir(version: u8) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("v{version}"))
}

/// Every version whose files are committed.
fn versions() -> Vec<u8> {
    write_if_asked();
    let mut versions: Vec<u8> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"))
            .expect("tests/golden is committed")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_prefix('v')?.parse().ok()
            })
            .collect();
    versions.sort();
    versions
}

fn person(name: &str, role: Role) -> Principal {
    Principal::User {
        name: name.into(),
        role,
        site: None,
    }
}

/// A day in a small contact center: one command of every kind, several principals, a
/// branch's lease and its import, refusals included.
fn commands() -> Vec<Stamped> {
    let admin = person("alice", Role::Admin);
    let branch = Principal::Branch {
        node: 11,
        site: "apac".into(),
    };
    let sales = QueueInput {
        id: "sales".into(),
        name: "Sales".into(),
        channels: vec![Channel::Voice, Channel::Chat],
        required_skills: BTreeMap::from([("sales".to_owned(), 5)]),
        strategy: Strategy::LongestIdle,
        escalation: vec![
            EscalationStep {
                after_ms: 20_000,
                action: EscalationAction::RelaxSkill {
                    skill: "sales".into(),
                    min_level: 2,
                },
            },
            EscalationStep {
                after_ms: 40_000,
                action: EscalationAction::AllowOtherSites,
            },
            EscalationStep {
                after_ms: 60_000,
                action: EscalationAction::Overflow {
                    queue_id: "general".into(),
                },
            },
        ],
        dispositions: vec!["won".into(), "lost".into()],
        max_wait_ms: 300_000,
        ..QueueInput::default()
    };
    let general = QueueInput {
        id: "general".into(),
        name: "General".into(),
        strategy: Strategy::RingAll,
        ..QueueInput::default()
    };
    let agent = |id: &str, site: &str| AgentInput {
        id: id.into(),
        name: format!("Agent {id}"),
        site: site.into(),
        skills: BTreeMap::from([("sales".to_owned(), 7)]),
        capacity: PerChannel::DEFAULT_CAPACITY,
    };
    let contact = |id: &str, queue: &str, channel: Channel| ContactInput {
        id: id.into(),
        channel,
        customer_id: "cust-1".into(),
        queue_id: queue.into(),
        intent: "billing".into(),
        priority: 10,
        attributes: BTreeMap::from([("lang".to_owned(), "en".to_owned())]),
        origin_site: "emea".into(),
        self_served: false,
    };
    let actions: Vec<(Action, Option<Principal>)> = vec![
        (
            Action::UpsertCustomer(CustomerInput {
                id: "cust-1".into(),
                name: "Ada Lovelace".into(),
                phones: vec!["+44 20 7946 0000".into()],
                emails: vec!["ada@example.com".into()],
                tier: Tier::Gold,
                language: "en-GB".into(),
                attributes: BTreeMap::from([("segment".to_owned(), "smb".to_owned())]),
            }),
            Some(admin.clone()),
        ),
        (
            Action::UpsertSite(SiteInput {
                id: "emea".into(),
                name: "London".into(),
                region: "eu".into(),
            }),
            Some(admin.clone()),
        ),
        (
            Action::UpsertSite(SiteInput {
                id: "apac".into(),
                name: "Singapore".into(),
                region: "ap".into(),
            }),
            Some(admin.clone()),
        ),
        (Action::UpsertQueue(general), Some(admin.clone())),
        (Action::UpsertQueue(sales), Some(admin.clone())),
        (
            Action::UpsertAgent(agent("ada", "emea")),
            Some(admin.clone()),
        ),
        (
            Action::UpsertAgent(agent("bo", "emea")),
            Some(admin.clone()),
        ),
        (
            Action::UpsertAgent(agent("cy", "apac")),
            Some(admin.clone()),
        ),
        (
            Action::RenewLease {
                site_id: "apac".into(),
                sent_at_ms: T0 + 9_000,
                ttl_ms: 10_000,
                report: BranchReport {
                    node_id: 11,
                    ..BranchReport::default()
                },
            },
            Some(branch.clone()),
        ),
        (
            Action::AgentLogin {
                agent_id: "ada".into(),
                session: "desk-1".into(),
                presence: Presence::Available,
            },
            Some(Principal::Agent("ada".into())),
        ),
        (
            Action::SetAgentPresence {
                agent_id: "bo".into(),
                presence: Presence::Available,
            },
            Some(Principal::Agent("bo".into())),
        ),
        (
            Action::CreateContact(contact("c-1", "sales", Channel::Voice)),
            Some(Principal::Node(1)),
        ),
        (
            Action::AcceptOffer {
                agent_id: "ada".into(),
                contact_id: "c-1".into(),
            },
            Some(Principal::Agent("ada".into())),
        ),
        (
            Action::CreateContact(contact("c-2", "sales", Channel::Chat)),
            None,
        ),
        (
            Action::RejectOffer {
                agent_id: "bo".into(),
                contact_id: "c-2".into(),
            },
            Some(Principal::Agent("bo".into())),
        ),
        (
            Action::EndContact {
                agent_id: "ada".into(),
                contact_id: "c-1".into(),
            },
            Some(Principal::Agent("ada".into())),
        ),
        (
            Action::CompleteContact {
                contact_id: "c-1".into(),
                agent_id: "ada".into(),
                disposition: "won".into(),
                notes: "renewed the plan".into(),
            },
            Some(Principal::Agent("ada".into())),
        ),
        (
            Action::CreateContact(contact("c-3", "general", Channel::Email)),
            None,
        ),
        (
            Action::AbandonContact {
                contact_id: "c-3".into(),
            },
            None,
        ),
        (
            Action::TransferContact {
                contact_id: "c-2".into(),
                queue_id: "general".into(),
            },
            Some(person("sam", Role::Supervisor)),
        ),
        // Refused: the contact is finished. Refusals are answers too.
        (
            Action::AcceptOffer {
                agent_id: "bo".into(),
                contact_id: "c-1".into(),
            },
            Some(Principal::Agent("bo".into())),
        ),
        (Action::Tick, Some(Principal::Node(1))),
        (
            Action::AgentDisconnected {
                agent_id: "ada".into(),
                session: "desk-1".into(),
            },
            Some(Principal::Node(1)),
        ),
        (
            Action::RevokeAgentTokens {
                agent_id: "bo".into(),
            },
            Some(admin.clone()),
        ),
        (
            Action::ImportBranch(BranchImport {
                site: "apac".into(),
                upto_seq: 3,
                contacts: Vec::new(),
                agents: vec![(
                    "cy".into(),
                    Presence::Break {
                        reason: "lunch".into(),
                    },
                )],
                created: Vec::new(),
            }),
            Some(branch),
        ),
    ];
    actions
        .into_iter()
        .enumerate()
        .map(|(i, (action, principal))| {
            let request_id = matches!(action, Action::CreateContact(_)).then(|| format!("req-{i}"));
            let mut command = Command::with_request_id(action, request_id);
            command.principal = principal;
            Stamped {
                at_ms: T0 + 1_000 * i as i64,
                command,
            }
        })
        .collect()
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entries() -> Vec<Entry> {
    let members = Membership::new(
        vec![[1u64, 2, 3].into_iter().collect()],
        [(1u64, banyan_raft::Node::new("node-1:7001"))]
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
    );
    let mut entries = vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Membership(members),
        },
        Entry {
            log_id: log_id(2, 2),
            payload: EntryPayload::Blank,
        },
    ];
    for (i, stamped) in commands().into_iter().enumerate() {
        entries.push(Entry {
            log_id: log_id(2, 3 + i as u64),
            payload: EntryPayload::Normal(Batch(vec![stamped])),
        });
    }
    entries
}

/// The state after the whole log, and every command's answer.
fn applied(entries: &[Entry]) -> (State, BatchResponse) {
    let mut state = State::default();
    let mut answers = Vec::new();
    for entry in entries {
        if let EntryPayload::Normal(Batch(commands)) = &entry.payload {
            for stamped in commands {
                answers.push(state.apply(stamped));
            }
        }
    }
    (state, BatchResponse(answers))
}

/// One golden file: what it holds and how to check a decoded copy of it.
struct Golden {
    name: &'static str,
    /// Today's encoding of the file's values.
    encoded: Vec<u8>,
    /// Decodes bytes of any committed version with today's code.
    decode: fn(&[u8]) -> Result<Vec<u8>, codec::CodecError>,
}

/// Decodes with today's code and encodes again in today's format.
fn through<T: serde::Serialize + serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<Vec<u8>, codec::CodecError> {
    Ok(codec::encode(&codec::decode::<T>(bytes)?))
}

fn goldens() -> Vec<Golden> {
    let entries = entries();
    let (state, answers) = applied(&entries);
    let vote = Vote::new_committed(2, 1);
    let last = entries.last().map(|e| e.log_id);
    let meta = SnapshotMeta {
        last_log_id: last,
        last_membership: StoredMembership::default(),
        snapshot_id: "2-27-1".into(),
    };
    let snapshot = codec::encode(&state);
    vec![
        Golden {
            name: "log-entries",
            encoded: codec::encode(&entries),
            decode: through::<Vec<Entry>>,
        },
        Golden {
            name: "snapshot",
            encoded: snapshot.clone(),
            decode: through::<State>,
        },
        Golden {
            name: "batch-responses",
            encoded: codec::encode(&answers),
            decode: through::<BatchResponse>,
        },
        Golden {
            name: "append-entries",
            encoded: codec::encode(&AppendEntriesRequest::<banyan_raft::TypeConfig> {
                vote,
                prev_log_id: Some(log_id(2, 2)),
                entries: entries[2..5].to_vec(),
                leader_commit: Some(log_id(2, 4)),
            }),
            decode: through::<AppendEntriesRequest<banyan_raft::TypeConfig>>,
        },
        Golden {
            name: "append-entries-response",
            encoded: codec::encode(&AppendEntriesResponse::<u64>::Conflict),
            decode: through::<AppendEntriesResponse<u64>>,
        },
        Golden {
            name: "vote",
            encoded: codec::encode(&VoteRequest::new(vote, last)),
            decode: through::<VoteRequest<u64>>,
        },
        Golden {
            name: "vote-response",
            encoded: codec::encode(&VoteResponse::new(vote, last, true)),
            decode: through::<VoteResponse<u64>>,
        },
        Golden {
            name: "install-snapshot",
            encoded: codec::encode(&InstallSnapshotRequest::<banyan_raft::TypeConfig> {
                vote,
                meta,
                offset: 0,
                data: snapshot,
                done: true,
            }),
            decode: through::<InstallSnapshotRequest<banyan_raft::TypeConfig>>,
        },
        Golden {
            name: "install-snapshot-response",
            encoded: codec::encode(&InstallSnapshotResponse { vote }),
            decode: through::<InstallSnapshotResponse<u64>>,
        },
        Golden {
            name: "journal-entry",
            encoded: codec::encode(&commands()[11]),
            decode: through::<Stamped>,
        },
        // Snapshots carry the cluster's identity after the domain state; one without it
        // (`snapshot`, as written before the identity existed) reads with an empty one.
        Golden {
            name: "snapshot-with-identity",
            encoded: codec::encode_snapshot(&state, &cluster_identity(), &Default::default()),
            decode: |bytes| {
                let (domain, cluster, parts) = codec::decode_snapshot(bytes)?;
                Ok(codec::encode_snapshot(&domain, &cluster, &parts))
            },
        },
        Golden {
            name: "cluster-entries",
            encoded: codec::encode(&cluster_entries()),
            decode: through::<Vec<Entry>>,
        },
        Golden {
            name: "part-entries",
            encoded: codec::encode(&part_entries()),
            decode: through::<Vec<Entry>>,
        },
    ]
}

/// A command in two parts, as the leader proposes an import too large for one entry.
fn part_entries() -> Vec<Entry> {
    let whole = codec::encode(&commands()[11].command);
    let (first, second) = whole.split_at(whole.len() / 2);
    [first, second]
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| Entry {
            log_id: log_id(3, 31 + i as u64),
            payload: EntryPayload::Normal(Batch(vec![Stamped {
                at_ms: 1_764_000_000_000,
                command: Command {
                    request_id: None,
                    action: Action::Part(CommandPart {
                        id: "reconcile/emea/101/9#00000000000000aa".into(),
                        part: i as u32,
                        parts: 2,
                        bytes: bytes.to_vec(),
                    }),
                    principal: None,
                },
            }])),
        })
        .collect()
}

fn cluster_actions() -> Vec<ClusterAction> {
    vec![
        ClusterAction::Found {
            cluster_id: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
        },
        ClusterAction::Register {
            node_id: 1,
            incarnation: "00112233445566778899aabbccddeeff".into(),
        },
        ClusterAction::Register {
            node_id: 2,
            incarnation: "ffeeddccbbaa99887766554433221100".into(),
        },
    ]
}

fn cluster_identity() -> ClusterIdentity {
    let mut identity = ClusterIdentity::default();
    for action in cluster_actions() {
        identity.apply(&action, |_| true).unwrap();
    }
    identity
}

/// The leader's entry that names the cluster and registers its members.
fn cluster_entries() -> Vec<Entry> {
    let batch = cluster_actions()
        .into_iter()
        .map(|action| Stamped {
            at_ms: 1_764_000_000_000,
            command: Command {
                request_id: None,
                action: Action::Cluster(action),
                principal: None,
            },
        })
        .collect();
    vec![Entry {
        log_id: log_id(3, 30),
        payload: EntryPayload::Normal(Batch(batch)),
    }]
}

/// A snapshot without the identity still reads, with an empty one.
#[test]
fn a_snapshot_written_before_the_identity_reads_with_an_empty_one() {
    for version in versions() {
        let bytes = std::fs::read(path(version, "snapshot")).unwrap();
        let (domain, cluster, parts) = codec::decode_snapshot(&bytes).unwrap();
        assert_eq!(cluster, ClusterIdentity::default());
        assert!(parts.pending.is_empty());
        assert!(domain == codec::decode::<State>(&bytes).unwrap());
    }
}

/// With `BANYAN_WRITE_GOLDEN` set, writes this version's files (once per test run).
fn write_if_asked() {
    static WRITE: std::sync::Once = std::sync::Once::new();
    WRITE.call_once(|| {
        if std::env::var_os("BANYAN_WRITE_GOLDEN").is_some() {
            std::fs::create_dir_all(golden_dir(FORMAT_VERSION)).unwrap();
            for golden in goldens() {
                std::fs::write(path(FORMAT_VERSION, golden.name), &golden.encoded).unwrap();
            }
        }
    });
}

fn path(version: u8, name: &str) -> PathBuf {
    golden_dir(version).join(format!("{name}.bin"))
}

#[test]
fn every_committed_version_decodes_with_todays_code() {
    let goldens = goldens();
    let versions = versions();
    assert!(
        versions.contains(&FORMAT_VERSION),
        "no golden files of format version {FORMAT_VERSION}, the one this build writes: \
         write them with BANYAN_WRITE_GOLDEN=1 and commit them"
    );
    for version in versions {
        for golden in &goldens {
            let file = path(version, golden.name);
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let decoded = (golden.decode)(&bytes)
                .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", file.display()));
            if version == FORMAT_VERSION {
                assert!(
                    bytes == golden.encoded && decoded == golden.encoded,
                    "{}: today's code encodes these values differently, yet the format \
                     version is still {FORMAT_VERSION}: give the change a new version, \
                     keep decoding this one, and write the new version's golden files",
                    file.display()
                );
            }
        }
    }
}

/// What an upgraded node does with an old log: replays it. The replay of every version's
/// log entries must reach exactly the state of that version's snapshot, and give the same
/// answers.
#[test]
fn every_committed_log_replays_to_its_snapshot() {
    for version in versions() {
        let read = |name: &str| std::fs::read(path(version, name)).unwrap();
        let entries: Vec<Entry> = codec::decode(&read("log-entries")).unwrap();
        let snapshot: State = codec::decode(&read("snapshot")).unwrap();
        let answers: BatchResponse = codec::decode(&read("batch-responses")).unwrap();
        let (replayed, replayed_answers) = applied(&entries);
        assert!(
            replayed == snapshot,
            "v{version}: the replayed log differs from the snapshot"
        );
        assert_eq!(
            replayed_answers, answers,
            "v{version}: the replayed log answers differently"
        );
        // The log is a real day: contacts were created, handled and refused.
        assert!(snapshot.contact_count() >= 3);
        assert!(answers.0.iter().any(|a| a.is_err()));
        assert!(answers.0.iter().filter(|a| a.is_ok()).count() > 20);
    }
}
