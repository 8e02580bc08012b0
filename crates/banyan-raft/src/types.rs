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

pub type Raft = openraft::Raft<TypeConfig>;
pub type Node = openraft::BasicNode;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Node>;
pub type ServerState = openraft::ServerState;
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
pub type ChangeMembershipError = openraft::error::ChangeMembershipError<NodeId>;
pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, Node>;
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
pub type ForwardToLeader = openraft::error::ForwardToLeader<NodeId, Node>;
pub type ChangeMembers = openraft::ChangeMembers<NodeId, Node>;
pub type CommittedLeaderId = openraft::CommittedLeaderId<NodeId>;
pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
