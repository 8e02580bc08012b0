//! The openraft type configuration of Banyan and the aliases the rest of Banyan uses.

use std::io::Cursor;

use banyan_domain::{DomainError, Event, Stamped};

/// Identifies a node (core voter or branch learner) for its whole life.
pub type NodeId = u64;

/// What the state machine answers for one applied entry: the domain's events, or why it
/// refused the command. Blank and membership entries answer `Ok(vec![])`.
pub type Response = Result<Vec<Event>, DomainError>;

openraft::declare_raft_types!(
    /// Banyan's Raft: leader-stamped domain commands in, domain events out.
    pub TypeConfig:
        D = Stamped,
        R = Response,
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
