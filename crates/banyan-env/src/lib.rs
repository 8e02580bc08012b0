//! What a Banyan process takes from its surroundings that differs from one call to the
//! next: the wall clock and fresh ids; and the one signal its tasks stop on.
//!
//! Read in this one crate and nowhere else (clippy's `disallowed-methods` in `clippy.toml`
//! keeps `SystemTime::now` here), so that code which needs the time takes it as a value or
//! an injected [`Clock`], and tests can hold it still. The domain never reads either: its
//! time is the stamp a leader put on each command.
//!
//! # Layout
//! * [`clock`]: the wall clock in milliseconds, and the [`Clock`] type nodes are given.
//! * [`ids`]: random ids (incarnations, cluster and trace ids) and process-unique names
//!   (request ids, sessions, contacts made at a branch).
//! * [`shutdown`]: the [`Shutdown`] every task of a node is given and ends on.

pub mod clock;
pub mod ids;
pub mod shutdown;

pub use clock::{system_clock, wall_clock_ms, Clock};
pub use shutdown::{BeginOnDrop, Shutdown};
