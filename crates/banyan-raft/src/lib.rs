//! Banyan's consensus layer: the openraft type configuration, Raft storage on sled, and the
//! gRPC Raft transport. Every other crate reaches openraft through this one, so a move to
//! a later openraft line touches only this crate.
//!
//! ```text
//!  client write ──> Raft (openraft) ──append──> LogStore ──> sled tree "log" ─┐
//!                        │                         └─ one flusher task: flush()┘
//!                        │ committed entries
//!                        v
//!                   StateMachine ──apply──> banyan_domain::State (in memory)
//!                        ├─ applied events ──> ApplyHook (banyan-events; the node's feed)
//!                        └─ snapshots ──> sled tree "snapshot" (generation, then switch)
//!  peers <── RaftTransport gRPC (network.rs client, service.rs server) ──> peers
//! ```
//!
//! # Layout
//! * [`types`]: the openraft type configuration and aliases used across Banyan.
//! * [`codec`]: the versioned binary encoding of log entries, snapshots and RPC payloads.
//! * [`durable`]: sled plus `fdatasync`, the one way Banyan makes writes durable.
//! * [`log_store`]: `RaftLogStorage` on sled; appends are flushed before they are reported.
//! * [`state_machine`]: `RaftStateMachine`: the domain state, snapshots on sled.
//! * [`network`]: the gRPC client side of the transport, with per-link fault injection.
//! * [`service`]: the gRPC server side of the transport.
//! * [`store`]: opens one node's sled database and both stores over it.
//! * [`start`]: starts a node's Raft over its stores, the same on a voter and a branch.
//! * [`parts`]: commands too large for one entry, in parts applied once the last is in.
//! * [`config`]: Raft timers as configuration.
//! * [`fuzz`]: the checks of the decoder-plus-apply fuzz target.
//! * [`event_log`]: every applied event on the node's disk, for watchers resuming from far back.
//! * [`history`]: every finished contact on the node's disk, written as it is applied.
//! * [`identity`]: the cluster's id and each node's data directory, checked on every Raft call.

#![warn(missing_docs)]
#![allow(
    clippy::result_large_err,
    reason = "openraft's traits dictate StorageError, a large type, as the error of every storage call"
)]

pub mod codec;
pub mod config;
pub mod durable;
pub mod event_log;
pub mod fuzz;
pub mod history;
pub mod identity;
pub mod log_store;
pub mod network;
pub mod parts;
pub mod service;
pub mod start;
pub mod state_machine;
pub mod store;
pub mod types;

pub use config::RaftTimers;
pub use event_log::EventLog;
pub use history::{History, HistoryCursor, HistoryError};
pub use identity::{ClusterIdentity, Identity};
pub use log_store::LogStore;
pub use network::{LinkControl, NetworkFactory};
pub use service::RaftTransportService;
pub use start::{start_raft, StartError, Started};
pub use state_machine::{Applied, AppliedState, ClockOffset, RefusedImport, StateMachineStore};
pub use store::{open_stores, Database, DurableTree, StoreError};
pub use types::*;
