//! Configuration of a core node, parsed by the CLI and validated once here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use banyan_domain::Principal;
use banyan_raft::{NodeId, RaftTimers};
use banyan_trust::Security;

/// Everything a core node needs to start. Built by [`CoreConfig::validate`].
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This node's Raft id: never 0, and the id its certificate must name.
    pub id: NodeId,
    /// Where peers and clients reach this node (`host:port`); recorded in the membership.
    pub advertise_addr: String,
    /// Where the node's sled stores (log, state machine, identity) live across restarts.
    pub data_dir: PathBuf,
    /// Voters of a new cluster; ignored once this node is initialized.
    pub init: Option<BTreeMap<NodeId, String>>,
    /// Heartbeat and election timeouts, the election timeout over twice the heartbeat.
    pub timers: RaftTimers,
    /// TLS with the node's certificate, or `--insecure`.
    pub security: Security,
    /// How long a finished contact stays in the routing state before this node, leading,
    /// proposes that it leave ([`DEFAULT_RETAIN_FINISHED`] unless set).
    pub retain_finished: Duration,
}

/// How long finished contacts stay in the routing state by default: an hour, long enough
/// for the wallboard's live views, agents' follow-ups and a branch's short outage.
pub const DEFAULT_RETAIN_FINISHED: Duration = Duration::from_secs(60 * 60);

/// Why a core node's settings were refused, each naming the flag to fix, so the node
/// stops before it opens any storage.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `--id` was 0; node ids start at 1.
    #[error("--id: must be a positive integer")]
    ZeroId,
    /// `--addr` is not `host:port` with a port above 0.
    #[error("--addr: {0}")]
    Addr(String),
    /// `--init` does not parse as `ID=HOST:PORT,...`, or leaves this node out.
    #[error("--init: {0}")]
    Init(String),
    /// `--data-dir` was empty.
    #[error("--data-dir: must not be empty")]
    DataDir,
    /// The Raft timers contradict each other, or openraft refuses them.
    #[error("timers: {0}")]
    Timers(String),
    /// The node's certificate names someone other than this core node.
    #[error("--certs-dir: {0}")]
    Certs(String),
}

impl CoreConfig {
    /// Checks the raw settings and builds the typed configuration.
    pub fn validate(
        id: NodeId,
        advertise_addr: &str,
        data_dir: PathBuf,
        init: Option<&str>,
        timers: RaftTimers,
        security: Security,
    ) -> Result<Self, ConfigError> {
        if id == 0 {
            return Err(ConfigError::ZeroId);
        }
        check_addr(advertise_addr).map_err(ConfigError::Addr)?;
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::DataDir);
        }
        let init = init
            .map(parse_init)
            .transpose()
            .map_err(ConfigError::Init)?;
        if let Some(voters) = &init {
            if !voters.contains_key(&id) {
                return Err(ConfigError::Init(format!(
                    "does not name this node (--id {id})"
                )));
            }
        }
        if timers.election_timeout <= timers.heartbeat * 2 {
            return Err(ConfigError::Timers(
                "the election timeout must be more than twice the heartbeat".into(),
            ));
        }
        timers.to_openraft("banyan").map_err(ConfigError::Timers)?;
        match security.principal() {
            None if !security.is_secure() => {}
            Some(Principal::Node(node)) if *node == id => {}
            other => {
                return Err(ConfigError::Certs(format!(
                    "node.{id}.crt names {}, not core node {id}",
                    other.map_or_else(|| "nobody".to_owned(), ToString::to_string)
                )))
            }
        }
        Ok(Self {
            id,
            advertise_addr: advertise_addr.to_owned(),
            data_dir,
            init,
            timers,
            security,
            retain_finished: DEFAULT_RETAIN_FINISHED,
        })
    }

    /// The same configuration keeping finished contacts in the routing state for `retain`.
    pub fn with_retain_finished(mut self, retain: Duration) -> Self {
        self.retain_finished = retain;
        self
    }
}

/// `host:port` with a usable port; the host may be a name (containers) or an IP.
pub fn check_addr(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!("expected host:port, got {addr:?}")),
    }
}

/// Parses `1=host:port,2=host:port,...`.
pub fn parse_init(spec: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut voters = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("expected ID=HOST:PORT, got {part:?}"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("node id {id:?} is not a positive integer"))?;
        check_addr(addr.trim())?;
        if voters.insert(id, addr.trim().to_owned()).is_some() {
            return Err(format!("node {id} named twice"));
        }
    }
    if voters.is_empty() {
        return Err("names no voters".into());
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(id: NodeId, addr: &str, init: Option<&str>) -> Result<CoreConfig, ConfigError> {
        CoreConfig::validate(
            id,
            addr,
            "d".into(),
            init,
            RaftTimers::default(),
            Security::Insecure,
        )
    }

    #[test]
    fn accepts_the_documented_forms() {
        let config = validate(
            2,
            "127.0.0.1:7002",
            Some("1=127.0.0.1:7001,2=127.0.0.1:7002,3=core-3:7003"),
        )
        .unwrap();
        assert_eq!(config.init.unwrap().len(), 3);
        validate(1, "core-1:7001", None).unwrap();
    }

    #[test]
    fn rejects_bad_settings_with_the_flag_named() {
        assert_eq!(
            validate(0, "127.0.0.1:1", None).unwrap_err(),
            ConfigError::ZeroId
        );
        assert!(matches!(
            validate(1, "nohost", None),
            Err(ConfigError::Addr(_))
        ));
        assert!(matches!(
            validate(1, "h:0", None),
            Err(ConfigError::Addr(_))
        ));
        for init in ["", "1", "x=h:1", "1=h:1,1=h:2", "2=h:1"] {
            assert!(
                matches!(validate(1, "h:1", Some(init)), Err(ConfigError::Init(_))),
                "{init:?}"
            );
        }
    }
}
