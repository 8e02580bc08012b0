//! Banyan's contact-center domain: plain data and pure functions.
//!
//! The replicated state machine of every Banyan node calls [`State::apply`] with commands
//! taken from the Raft log, in log order. `apply` does no I/O, reads no clock and draws no
//! random numbers: the time a command happened is stamped on it by the leader
//! ([`Stamped::at_ms`]), timers advance only through `Tick` commands, and ties break by
//! id, so replaying the same log on any replica gives the same state, the same routing
//! decisions and the same events.
//!
//! # Layout
//! * [`customer`], [`agent`], [`queue`], [`contact`], [`site`], [`channel`]: the objects,
//!   their inputs and validation.
//! * [`command`] and [`event`]: what can be asked of the state machine, and what it answers.
//! * [`principal`]: who caused a command, for the audit trail.
//! * [`error`]: why a command was refused; the service edge maps it to a gRPC status.
//! * [`requests`]: idempotency keys and the first result of each, bounded by time and bytes.
//! * [`size`]: a value's encoded size, computed without encoding it.
//! * [`routing`]: the ordered indexes that keep a routing decision flat in the queue size.
//! * [`stats`]: queue counters and customer history.
//! * [`cdr`]: the contact detail record of a finished contact, for data warehouses.
//! * [`state`]: the whole replicated state, `apply`, routing and timers.

#![warn(missing_docs)]

pub mod agent;
pub mod cdr;
pub mod channel;
pub mod command;
pub mod contact;
pub mod customer;
pub mod error;
pub mod event;
pub mod principal;
pub mod queue;
pub mod requests;
mod routing;
pub mod site;
pub mod size;
pub mod state;
pub mod stats;
pub mod validate;

pub use agent::{Agent, AgentInput, AgentState, Presence};
pub use channel::{Channel, PerChannel};
pub use command::{
    Action, BranchImport, ClusterAction, Command, CommandPart, Stamped, MAX_FORGET_PER_COMMAND,
};
pub use contact::{Contact, ContactInput, ContactState};
pub use customer::{Customer, CustomerInput, Tier};
pub use error::DomainError;
pub use event::{Event, WithdrawReason};
pub use principal::{Principal, Role};
pub use queue::{EscalationAction, EscalationStep, QueueInput, Strategy, WhenFull};
pub use site::{BranchMode, BranchReport, Site, SiteInput, SiteMode};
pub use state::State;
