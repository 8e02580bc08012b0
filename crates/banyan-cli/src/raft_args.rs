//! The Raft timers, shared by `banyan core` and `banyan branch`: a branch replicates from
//! the core as a learner, and its timers must match the core's.

use std::time::Duration;

use banyan_raft::RaftTimers;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct RaftArgs {
    /// Raft heartbeat interval; across sites, above the round trip plus a disk flush.
    #[arg(long, env = "BANYAN_HEARTBEAT", default_value = "50ms", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Minimum election timeout (the maximum is twice this).
    #[arg(long, env = "BANYAN_ELECTION_TIMEOUT", default_value = "150ms", value_parser = humantime::parse_duration)]
    pub election_timeout: Duration,
    /// Log entries applied between snapshots.
    #[arg(long, env = "BANYAN_SNAPSHOT_EVERY", default_value_t = 20_000)]
    pub snapshot_every: u64,
}

impl RaftArgs {
    pub fn timers(&self) -> RaftTimers {
        RaftTimers {
            heartbeat: self.heartbeat,
            election_timeout: self.election_timeout,
            snapshot_every: self.snapshot_every,
        }
    }
}
