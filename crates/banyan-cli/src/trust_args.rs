//! `--certs-dir` and `--insecure`, shared by every command that serves or connects.
//!
//! One of the two is required: a node or a tool never falls back to plaintext by itself.

use std::path::PathBuf;

use anyhow::Context;
use banyan_trust::{CertsDir, ClientIdentity, Security};
use clap::Args;

#[derive(Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// The cluster's certificates directory (`ca.crt`, `node.N.crt`/`.key`,
    /// `client.NAME.crt`/`.key`, `token.pub`, made with `banyan certs`): TLS on every port
    /// and credentials on every call.
    #[arg(long, env = "BANYAN_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Run without TLS and without credentials: anyone who reaches a port can do
    /// anything. For experiments on loopback only.
    #[arg(long, env = "BANYAN_INSECURE", conflicts_with = "certs_dir")]
    pub insecure: bool,
}

const NEITHER: &str = "give --certs-dir DIR (the cluster's certificates, see `banyan certs`) \
                       or --insecure (no TLS, no credentials; loopback experiments only)";

impl TrustArgs {
    fn dir(&self) -> anyhow::Result<Option<CertsDir>> {
        match (&self.certs_dir, self.insecure) {
            (Some(dir), _) => Ok(Some(CertsDir::new(dir))),
            (None, true) => Ok(None),
            (None, false) => anyhow::bail!("{NEITHER}"),
        }
    }

    /// A node's security: its certificate `node.ID.crt`, or insecure (said loudly).
    pub fn node(&self, id: u64) -> anyhow::Result<Security> {
        match self.dir()? {
            Some(dir) => Security::node(&dir, id)
                .with_context(|| format!("--certs-dir {}", dir.path().display())),
            None => {
                tracing::warn!(
                    "running with --insecure: no TLS and no credentials; anyone who reaches \
                     this node's ports can read and change everything"
                );
                Ok(Security::Insecure)
            }
        }
    }

    /// A client's security: `client.USER.crt`, or the bearer token when one is given.
    pub fn client(&self, user: &str, token: Option<&str>) -> anyhow::Result<Security> {
        match self.dir()? {
            Some(dir) => {
                let identity = match token {
                    Some(token) => ClientIdentity::Token(token.to_owned()),
                    None => ClientIdentity::Certificate(user.to_owned()),
                };
                Security::client(&dir, identity)
                    .with_context(|| format!("--certs-dir {}", dir.path().display()))
            }
            None => Ok(Security::Insecure),
        }
    }
}
