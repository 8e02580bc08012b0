//! The openraft type configuration of Banyan and the aliases the rest of Banyan uses.

use std::io::Cursor;

use banyan_domain::{DomainError, Event, Stamped};

/// Identifies a node (core voter or branch learner) for its whole life.
pub type NodeId = u64;

/// What the state machine answers for one command: the domain's events, or why it refused
/// the command.
pub type Response = Result<Vec<Event>, DomainError>;

/// One Raft log entry's worth of commands. The leader packs commands that arrive together
/// into one entry, so one flush and one replication round cover all of them; they are
/// applied in order, each on its own (one refused command does not affect the others).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Batch(pub Vec<Stamped>);

/// The answers to a [`Batch`], in order. Blank and membership entries answer an empty one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchResponse(pub Vec<Response>);

openraft::declare_raft_types!(
    /// Banyan's Raft: leader-stamped domain commands in, domain events out.
    pub TypeConfig:
        D = Batch,
        R = BatchResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A node's handle on Raft: proposing, membership changes, metrics, shutdown.
pub type Raft = openraft::Raft<TypeConfig>;
/// What the membership records of a node: the address (`host:port`) its peers dial.
pub type Node = openraft::BasicNode;
/// A place in the log: the leader's term and the index.
pub type LogId = openraft::LogId<NodeId>;
/// One log entry: a [`Batch`] of commands, a membership change, or a new leader's blank entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// The term and candidate a node voted for, stored so that it never votes twice in one term.
pub type Vote = openraft::Vote<NodeId>;
/// The voters and learners, with the log id of the entry that set them.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// What a snapshot covers: its last log id and the membership at that point.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A snapshot with its data, as the state machine builds it and a lagging follower installs it.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// A failure of the log or the state machine store; openraft stops the node on it.
pub type StorageError = openraft::StorageError<NodeId>;
/// A node's view of Raft (state, leader, term, indexes, membership), for status and for tests that
/// wait on it.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Node>;
/// Whether a node is the leader, a candidate, a follower or a learner.
pub type ServerState = openraft::ServerState;
/// Why a proposal failed: this node is not the leader (with a hint), or a membership change was
/// refused.
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
/// Why a membership change was refused, such as another one still in progress.
pub type ChangeMembershipError = openraft::error::ChangeMembershipError<NodeId>;
/// Why a linearizable read could not be confirmed: not the leader, or no quorum answered.
pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, Node>;
/// A Raft call's error: the call's own `E`, or a fatal one (the node is shutting down).
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
/// A non-leader's answer: the leader's id and address if known, for the redirect hint to clients.
pub type ForwardToLeader = openraft::error::ForwardToLeader<NodeId, Node>;
/// A membership change: voters or learners to add, remove or replace.
pub type ChangeMembers = openraft::ChangeMembers<NodeId, Node>;
/// The leader part of a log id: the term (and node) that wrote the entry.
pub type CommittedLeaderId = openraft::CommittedLeaderId<NodeId>;
/// One chunk of a snapshot, sent to a follower too far behind to catch up from the log.
pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
