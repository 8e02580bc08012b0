//! Where a node listens and keeps its data: the same flags for `banyan core` and
//! `banyan branch`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// The node's addresses and data directory.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Address peers and clients use to reach this node (host:port).
    #[arg(long, env = "BANYAN_ADDR")]
    pub addr: String,
    /// Where to listen, when it differs from --addr (e.g. 0.0.0.0:7001 in a container).
    /// Default: --addr when it is an IP address, else 0.0.0.0 on --addr's port.
    #[arg(long, env = "BANYAN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HTTP address for /healthz, /readyz, /metrics and the wallboard (e.g.
    /// 127.0.0.1:8001); none when absent.
    #[arg(long, env = "BANYAN_HTTP")]
    pub http: Option<SocketAddr>,
    /// Directory for this node's database (created if missing): a core node's log and
    /// state, a branch's replica of them and its own journal.
    #[arg(long, env = "BANYAN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// How long this node keeps finished contacts in its history store on disk (GetContact,
    /// ListContacts over a time range, customer history); older ones are pruned every ten
    /// minutes.
    #[arg(long, env = "BANYAN_HISTORY_RETENTION", default_value = "90days", value_parser = humantime::parse_duration)]
    pub history_retention: std::time::Duration,
    /// How long this node keeps applied events on disk, for WatchEvents resuming from an
    /// earlier index (also across restarts); older ones are pruned every ten minutes.
    #[arg(long, env = "BANYAN_EVENT_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub event_retention: std::time::Duration,
    /// Directory for contact detail records: every finished contact this node holds, as
    /// JSON lines in hourly files (`cdr-n<ID>-<YYYYMMDD>T<HH>.jsonl`); none when absent.
    #[arg(long, env = "BANYAN_CDR_DIR")]
    pub cdr_dir: Option<PathBuf>,
}
