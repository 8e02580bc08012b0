//! Raft timers and policies as configuration.

use std::time::Duration;

/// Timers that decide how fast a Banyan core notices a lost leader. Within one site the
/// defaults (openraft's own: heartbeat 50 ms, election timeout 150–300 ms) elect a new
/// leader well within a second of the old one dying: in openraft 0.9 a follower that
/// heard a leader waits out that leader's lease (the maximum election timeout, 300 ms)
/// plus its own election timeout, so the first candidate campaigns 450–600 ms after the
/// last heartbeat, when the other followers' leases have run out too. Across sites, the
/// heartbeat must exceed the round trip plus a follower's log flush: in openraft 0.9 an
/// append RPC times out after one heartbeat interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimers {
    /// How often the leader sends heartbeats; across sites it must exceed the round trip plus a
    /// follower's flush.
    pub heartbeat: Duration,
    /// Lower bound of the randomized election timeout; the upper bound is twice this.
    pub election_timeout: Duration,
    /// Entries applied between snapshots.
    pub snapshot_every: u64,
}

impl Default for RaftTimers {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(150),
            snapshot_every: 20_000,
        }
    }
}

impl RaftTimers {
    /// The openraft configuration for these timers, validated.
    pub fn to_openraft(&self, cluster_name: &str) -> Result<openraft::Config, String> {
        let millis = |d: Duration| d.as_millis().max(1) as u64;
        let config = openraft::Config {
            cluster_name: cluster_name.to_owned(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_timeout),
            election_timeout_max: 2 * millis(self.election_timeout),
            // Large enough for a multi-megabyte snapshot chunk on a busy machine.
            install_snapshot_timeout: 10_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            snapshot_max_chunk_size: 1024 * 1024,
            // Keep some log behind the snapshot, so a briefly lagging follower catches up
            // from the log instead of a full snapshot.
            max_in_snapshot_log_to_keep: self.snapshot_every.min(5_000),
            max_payload_entries: 64,
            ..Default::default()
        };
        config.validate().map_err(|e| e.to_string())
    }
}
