//! Runs Banyan clusters made of real `banyan` processes on loopback, each with its own data
//! directory under one temporary root, and breaks them on purpose: kill -9, graceful stop,
//! restart on the same directory, wipe. Shared by the cluster tests, `banyan bench` and
//! the drills, so each failure is injected the same way everywhere.
//!
//! # Layout
//! * [`local`]: [`LocalCluster`], the process cluster.
//! * [`inproc`]: [`InProcessCluster`], nodes inside this process with cuttable links.
//! * [`link`]: TCP links between a branch and the core that a test can cut, for nodes in
//!   this process and for processes alike.
//! * [`nodes`]: reads against any nodes by address (status, leader, final state, events).
//! * [`tap`]: the core's event history, followed live across node failures.
//! * [`history`]: client operations recorded as ok, failed or unknown; a write workload.
//! * [`checker`]: the invariants of DESIGN.md section 2, judged on every node's final state.
//! * [`contacts`]: the same for contacts: lost, duplicated, illegal histories, and double
//!   assignment or over-capacity replayed from the event stream.
//! * [`desk`]: simulated agents working through `AgentDesk` sessions.
//! * [`feed`]: a steady stream of contacts into one entry point, recorded for the checker.
//! * [`wait`]: waiting on a condition with a deadline (never a bare sleep).

#![warn(missing_docs)]

pub mod checker;
pub mod contacts;
pub mod desk;
pub mod feed;
pub mod history;
pub mod inproc;
pub mod link;
pub mod local;
pub mod nodes;
pub mod pki;
pub mod ports;
pub mod tap;
pub mod wait;

pub use checker::{check_customers, CheckReport, NodeState, Violation};
pub use contacts::{
    check_branch_sides, check_contacts, ContactOp, ContactReport, ContactViolation, NodeContacts,
};
pub use desk::{DeskAgent, DeskStats};
pub use feed::ContactFeed;
pub use history::{History, Operation, Outcome, Sample, WriteLoad};
pub use inproc::InProcessCluster;
pub use link::{BranchLinks, Link};
pub use local::{http_get, http_get_as, LocalCluster};
pub use nodes::Nodes;
pub use pki::Pki;
pub use ports::{bind_loopback, free_ports};
pub use tap::EventTap;
pub use wait::wait_until;
