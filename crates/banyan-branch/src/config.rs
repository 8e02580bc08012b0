//! A branch's configuration, validated once into [`BranchConfig`].

use std::path::PathBuf;
use std::time::Duration;

use banyan_domain::Principal;
use banyan_raft::{NodeId, RaftTimers};
use banyan_trust::Security;

use crate::triage::Triage;

/// Everything a branch needs to start. Built by [`BranchConfig::validate`].
#[derive(Debug, Clone)]
pub struct BranchConfig {
    /// The branch's node id in the core's membership (as a learner).
    pub id: NodeId,
    /// The site (regional center) the branch serves; its agents carry this site.
    pub site: String,
    /// Where the core and clients reach this branch (`host:port`).
    pub advertise_addr: String,
    /// Where the replica's sled stores and the branch's own logs (outbox, journal,
    /// accepts in doubt) survive restarts.
    pub data_dir: PathBuf,
    /// Core nodes to join and send writes to.
    pub core: Vec<String>,
    /// How long a lease renewal holds.
    pub lease_ttl: Duration,
    /// The largest clock difference assumed between the branch and the core: the branch
    /// treats its lease as certainly lapsed only after TTL plus this, from its last send.
    pub max_clock_skew: Duration,
    /// Heartbeat and election timeouts of the branch's Raft learner.
    pub timers: RaftTimers,
    /// Intents answered at the branch (self-service).
    pub triage: Triage,
    /// TLS with the branch's certificate (which names its site), or `--insecure`.
    pub security: Security,
}

/// Why a branch's settings were refused, each naming the flag to fix, so the branch
/// stops before it opens any storage or reaches the core.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `--id` was 0; node ids start at 1.
    #[error("--id: must be a positive integer")]
    ZeroId,
    /// `--site` is not a valid site id.
    #[error("--site: {0}")]
    Site(String),
    /// `--addr` is not `host:port`.
    #[error("--addr: expected host:port, got {0:?}")]
    Addr(String),
    /// `--core` names no core node, so the branch could neither join nor renew.
    #[error("--core: give at least one core node (host:port,...)")]
    NoCore,
    /// `--lease-ttl` is outside the range the core accepts for a lease.
    #[error("--lease-ttl: {0}")]
    Lease(String),
    /// `--max-clock-skew` is too small to cover the core's clock budget and network delay.
    #[error("--max-clock-skew: {0}")]
    Skew(String),
    /// `--data-dir` was empty.
    #[error("--data-dir: must not be empty")]
    DataDir,
    /// A `--self-service` rule does not parse as `intent=kind:value`.
    #[error("--self-service: {0}")]
    SelfService(String),
    /// The branch's certificate does not name this branch id and site.
    #[error("--certs-dir: {0}")]
    Certs(String),
}

impl BranchConfig {
    /// Checks the raw flags together (the skew against the lease, the certificate against
    /// id and site) and builds the typed configuration.
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per flag, validated together"
    )]
    pub fn validate(
        id: NodeId,
        site: &str,
        advertise_addr: &str,
        data_dir: PathBuf,
        core: Vec<String>,
        lease_ttl: Duration,
        max_clock_skew: Duration,
        timers: RaftTimers,
        triage: &[String],
        security: Security,
    ) -> Result<Self, ConfigError> {
        let triage = Triage::parse(triage).map_err(ConfigError::SelfService)?;
        if id == 0 {
            return Err(ConfigError::ZeroId);
        }
        banyan_domain::validate::validate_id("site", site)
            .map_err(|e| ConfigError::Site(e.to_string()))?;
        let port_ok = advertise_addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(ConfigError::Addr(advertise_addr.to_owned()));
        }
        let core: Vec<String> = core
            .into_iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        if core.is_empty() {
            return Err(ConfigError::NoCore);
        }
        let ttl_ms = lease_ttl.as_millis() as i64;
        if !(banyan_domain::site::MIN_LEASE_MS..=banyan_domain::site::MAX_LEASE_MS)
            .contains(&ttl_ms)
        {
            return Err(ConfigError::Lease(format!(
                "{lease_ttl:?} is outside {} ms..={} ms",
                banyan_domain::site::MIN_LEASE_MS,
                banyan_domain::site::MAX_LEASE_MS
            )));
        }
        let budget = 2 * banyan_domain::site::MAX_CLOCK_OFFSET_MS;
        if (max_clock_skew.as_millis() as i64) < budget {
            return Err(ConfigError::Skew(format!(
                "{max_clock_skew:?} is less than {budget} ms: it must cover the core's clock \
                 offset budget ({} ms) and a renewal's network delay",
                banyan_domain::site::MAX_CLOCK_OFFSET_MS
            )));
        }
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::DataDir);
        }
        match security.principal() {
            None if !security.is_secure() => {}
            Some(Principal::Branch { node, site: own }) if *node == id && own == site => {}
            other => {
                return Err(ConfigError::Certs(format!(
                    "node.{id}.crt names {}, not branch {id} of site {site}",
                    other.map_or_else(|| "nobody".to_owned(), ToString::to_string)
                )))
            }
        }
        Ok(Self {
            id,
            site: site.to_owned(),
            advertise_addr: advertise_addr.to_owned(),
            data_dir,
            core,
            lease_ttl,
            max_clock_skew,
            timers,
            triage,
            security,
        })
    }
}
