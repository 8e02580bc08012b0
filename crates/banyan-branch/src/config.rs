//! A branch's configuration, validated once into [`BranchConfig`].

use std::path::PathBuf;
use std::time::Duration;

use banyan_domain::Principal;
use banyan_raft::{NodeId, RaftTimers};
use banyan_trust::Security;

use crate::triage::Triage;

#[derive(Debug, Clone)]
pub struct BranchConfig {
    /// The branch's node id in the core's membership (as a learner).
    pub id: NodeId,
    /// The site (regional center) the branch serves; its agents carry this site.
    pub site: String,
    /// Where the core and clients reach this branch (`host:port`).
    pub advertise_addr: String,
    pub data_dir: PathBuf,
    /// Core nodes to join and send writes to.
    pub core: Vec<String>,
    /// How long a lease renewal holds.
    pub lease_ttl: Duration,
    /// The largest clock difference assumed between the branch and the core: the branch
    /// treats its lease as certainly lapsed only after TTL plus this, from its last send.
    pub max_clock_skew: Duration,
    pub timers: RaftTimers,
    /// Intents answered at the branch (self-service).
    pub triage: Triage,
    /// TLS with the branch's certificate (which names its site), or `--insecure`.
    pub security: Security,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--id: must be a positive integer")]
    ZeroId,
    #[error("--site: {0}")]
    Site(String),
    #[error("--addr: expected host:port, got {0:?}")]
    Addr(String),
    #[error("--core: give at least one core node (host:port,...)")]
    NoCore,
    #[error("--lease-ttl: {0}")]
    Lease(String),
    #[error("--max-clock-skew: {0}")]
    Skew(String),
    #[error("--data-dir: must not be empty")]
    DataDir,
    #[error("--self-service: {0}")]
    SelfService(String),
    #[error("--certs-dir: {0}")]
    Certs(String),
}

impl BranchConfig {
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
