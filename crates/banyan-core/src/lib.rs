//! A Banyan core node: one Raft voter of the core cluster and the gRPC services it serves.
//!
//! ```text
//!  gRPC client ──> ContactCenter / Cluster ──(leader?)──> Raft::client_write ──> log, quorum
//!                        │ no: forward once to the leader, or UNAVAILABLE + leader address
//!  peer nodes  <──> RaftTransport (banyan-raft)
//! ```
//!
//! # Layout
//! * [`config`]: the node's configuration, validated once.
//! * [`node`]: starts Raft over the sled stores, bootstraps, proposes (and hands commands to
//!   the leader), proposes `Tick`s when timers are due, reads, shuts down.
//! * [`proposer`]: packs concurrent commands into one Raft entry.
//! * [`server`]: serves every gRPC service of the node on one listener.
//! * [`contact_center`]: the public `ContactCenter` service.
//! * [`agent_desk`]: `AgentDesk.Session`, one stream per logged-in agent.
//! * [`forwarding`]: the leader's side of commands handed over by other nodes.
//! * [`cluster`]: the `Cluster` service: status and membership.
//! * [`forward`]: sends a request that needs the leader on to the leader.
//! * [`convert`]: proto ↔ domain conversions, the only place that knows both.
//! * [`errors`]: the one mapping from node and domain errors to gRPC statuses.

#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod errors;
pub mod forwarding;
pub mod node;
pub mod proposer;
pub mod server;

pub use banyan_api::{convert, forward, AgentDeskService, ContactCenterService};
pub use banyan_raft::{LinkControl, RaftTimers};
pub use config::{ConfigError, CoreConfig};
pub use node::CoreNode;
pub use server::{serve, RunningNode};
