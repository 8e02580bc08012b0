//! Banyan's contact-center domain: plain data and pure functions.
//!
//! The replicated state machine of every Banyan node calls [`State::apply`] with commands
//! taken from the Raft log, in log order. `apply` does no I/O, reads no clock and draws no
//! random numbers: the time a command happened is stamped on it by the leader
//! ([`Stamped::at_ms`]), so replaying the same log on any replica gives the same state and
//! the same events.
//!
//! # Layout
//! * [`customer`]: customers, their validation and the lookup indexes.
//! * [`command`]: what can be asked of the state machine, and what it answers.
//! * [`error`]: why a command was refused; the service edge maps it to a gRPC status.
//! * [`requests`]: idempotency keys and the first result of each.
//! * [`state`]: the whole replicated state and `apply`.

pub mod command;
pub mod customer;
pub mod error;
pub mod requests;
pub mod state;

pub use command::{Command, Event, Stamped};
pub use customer::{Customer, CustomerInput, Tier};
pub use error::DomainError;
pub use state::State;
