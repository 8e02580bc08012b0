//! The cluster's certificates for clusters the harness starts: a CA made in the cluster's
//! temporary directory, a certificate per node as it is started, an admin client, and
//! bearer tokens for agents' desks. Everything the harness starts runs secure unless a
//! test asks for `--insecure` explicitly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use banyan_trust::issue;
use banyan_trust::token::TokenSigner;
use banyan_trust::{CertsDir, ClientIdentity, Role, Security};

/// The name of the admin client certificate every harness cluster has.
pub const ADMIN: &str = "admin";

/// Hosts every harness node certificate is valid for: the loopback address all nodes,
/// relays and clients use.
const HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

/// A certificates directory with its CA.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: CertsDir,
}

impl Pki {
    /// Makes a CA and an admin client certificate in `path` (created if missing).
    pub fn create(path: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let dir = CertsDir::new(path.into());
        issue::create_ca(&dir, false).context("making the cluster's CA")?;
        issue::issue_client(&dir, ADMIN, Role::Admin, None, false)?;
        Ok(Self { dir })
    }

    /// A directory made earlier (by `banyan certs` or [`create`](Self::create)).
    pub fn open(path: impl Into<PathBuf>) -> Self {
        Self {
            dir: CertsDir::new(path.into()),
        }
    }

    /// The directory itself, to hand to a node or tool as its certificates directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory's file layout, for callers that read a certificate or key directly.
    pub fn certs_dir(&self) -> &CertsDir {
        &self.dir
    }

    /// Issues core node `id`'s certificate unless it exists.
    pub fn node(&self, id: u64) -> anyhow::Result<()> {
        if self.dir.node_cert(id).exists() {
            return Ok(());
        }
        issue::issue_node(&self.dir, id, &hosts(), false)?;
        Ok(())
    }

    /// Issues branch node `id`'s certificate for `site` unless it exists.
    pub fn branch(&self, id: u64, site: &str) -> anyhow::Result<()> {
        if self.dir.node_cert(id).exists() {
            return Ok(());
        }
        issue::issue_branch(&self.dir, id, site, &hosts(), false)?;
        Ok(())
    }

    /// Node `id`'s own security (its certificate must exist).
    pub fn node_security(&self, id: u64) -> anyhow::Result<Security> {
        Ok(Security::node(&self.dir, id)?)
    }

    /// The admin client.
    pub fn admin(&self) -> anyhow::Result<Security> {
        self.client(ADMIN)
    }

    /// A client presenting `client.NAME.crt`.
    pub fn client(&self, name: &str) -> anyhow::Result<Security> {
        Ok(Security::client(
            &self.dir,
            ClientIdentity::Certificate(name.to_owned()),
        )?)
    }

    /// Issues a client certificate with `role` (and optional site scope) and returns its
    /// security.
    pub fn new_client(
        &self,
        name: &str,
        role: Role,
        site: Option<&str>,
    ) -> anyhow::Result<Security> {
        if !self.dir.client_cert(name).exists() {
            issue::issue_client(&self.dir, name, role, site, false)?;
        }
        self.client(name)
    }

    /// A desk token for `agent`, valid for `ttl`.
    pub fn agent_token(&self, agent: &str, ttl: Duration) -> anyhow::Result<String> {
        Ok(TokenSigner::load(&self.dir)?.agent(agent, ttl)?)
    }

    /// The security of agent `agent`'s desk: the CA and a 12-hour token.
    pub fn agent(&self, agent: &str) -> anyhow::Result<Security> {
        let token = self.agent_token(agent, Duration::from_secs(12 * 3600))?;
        Ok(Security::client(&self.dir, ClientIdentity::Token(token))?)
    }

    /// A client with a scoped token.
    pub fn token_client(
        &self,
        name: &str,
        role: Role,
        site: Option<&str>,
    ) -> anyhow::Result<Security> {
        let token =
            TokenSigner::load(&self.dir)?.scoped(name, role, site, Duration::from_secs(3600))?;
        Ok(Security::client(&self.dir, ClientIdentity::Token(token))?)
    }
}

fn hosts() -> Vec<String> {
    HOSTS.iter().map(|h| (*h).to_owned()).collect()
}
