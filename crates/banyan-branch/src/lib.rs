//! A Banyan branch node: one per regional center. It is an openraft learner of the core (a
//! full, asynchronously updated replica), serves `ContactCenter` and `AgentDesk` for its
//! region from that replica, sends writes to the core, and holds its site's lease.
//!
//! ```text
//!  agents, IVR ──gRPC──> branch (banyan-api services over BranchNode)
//!                          │ reads: local replica (learner)  <── Raft log from the core leader
//!                          │ writes: CommandForwarding ──────> core leader
//!                          └ lease: Cluster.RenewLease every TTL/3 ──> core
//!  cut off, lease certainly lapsed: own site's state + journal on disk ──> ImportBranch
//! ```
//!
//! The branch imports no core internals: it shares `banyan-domain`, `banyan-events`, `banyan-raft`,
//! `banyan-api` and `banyan-client` with the core (DESIGN.md §6).
//!
//! # Layout
//! * [`config`]: the branch's configuration, validated once.
//! * [`node`]: the learner, joining the core, the `Backend` the services run on.
//! * [`lease`]: renewing the site's lease and knowing when it has certainly lapsed.
//! * [`autonomy`]: the mode; routing the site alone when cut off, reconciliation.
//! * `alone.rs`: the site's own state and event feed while it routes alone.
//! * `journal.rs`: the journal of work done alone, and the state of its hand-over.
//! * `accepts.rs`: the accepts in doubt (on disk before sent to the core).
//! * `self_service.rs`: recording a self-served contact in the outbox.
//! * [`server`]: serves the branch's gRPC services on one listener.
//! * [`status`]: `Branch.Status`, the branch's own account of its mode and backlogs.
//! * [`triage`]: intents the branch answers itself (self-service).
//! * [`ship`]: delivers the branch's outbox (self-served contacts) to the core.
//! * [`outbox`]: the durable logs on the branch's disk (outbox, journal, accepts in doubt).

#![warn(missing_docs)]

mod accepts;
mod alone;
pub mod autonomy;
pub mod config;
mod journal;
pub mod lease;
pub mod node;
pub mod outbox;
mod self_service;
pub mod server;
pub mod ship;
pub mod status;
pub mod triage;

pub use autonomy::Mode;
pub use config::{BranchConfig, ConfigError};
pub use node::BranchNode;
pub use outbox::{Appended, Outbox};
pub use server::{serve, RunningBranch};
