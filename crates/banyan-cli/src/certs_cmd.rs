//! `banyan certs`: the cluster's CA and the identities it issues (DESIGN.md §10).
//!
//! The contract scripts, images and other tools rely on:
//! * `ca --certs-dir DIR` → `ca.crt`, `ca.key`, `token.key`, `token.pub`
//! * `node --certs-dir DIR --id N --host H…` → `node.N.crt`, `node.N.key`
//! * `branch --certs-dir DIR --id N --site SITE --host H…` → `node.N.crt`, `node.N.key`
//! * `client --certs-dir DIR --name NAME --role ROLE [--site S]` → `client.NAME.crt`/`.key`
//! * `token --certs-dir DIR --agent ID [--ttl 12h]` prints an agent's desk token;
//!   `--role R [--site S]` prints a scoped token instead.
//!
//! Nothing is overwritten without `--overwrite`; keys are written mode 0600.

use std::path::PathBuf;
use std::time::Duration;

use banyan_trust::issue;
use banyan_trust::token::TokenSigner;
use banyan_trust::{CertsDir, Role};
use clap::{Args, Subcommand, ValueEnum};

#[derive(Args, Debug)]
pub struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Args, Debug)]
struct Common {
    /// The certificates directory (created if missing).
    #[arg(long, env = "BANYAN_CERTS_DIR")]
    certs_dir: PathBuf,
    /// Replace files that exist.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// The cluster's CA (`ca.crt`, `ca.key`) and the token key pair (`token.key`, `token.pub`).
    Ca {
        #[command(flatten)]
        common: Common,
    },
    /// A core node's certificate, for serving and for connecting to its peers.
    Node {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: u64,
        /// An IP address or DNS name the node is reached at (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
    /// A branch node's certificate: names its site, which is all it may act for.
    Branch {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        id: u64,
        #[arg(long)]
        site: String,
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
    },
    /// A client certificate with a role, optionally scoped to one site.
    Client {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        #[arg(long)]
        site: Option<String>,
    },
    /// Prints a bearer token: an agent's desk token (`--agent`), or a scoped one (`--role`).
    Token {
        #[arg(long, env = "BANYAN_CERTS_DIR")]
        certs_dir: PathBuf,
        #[arg(long, conflicts_with = "role", required_unless_present = "role")]
        agent: Option<String>,
        #[arg(long, value_enum)]
        role: Option<TokenRole>,
        /// The name a scoped token acts as (default: the role).
        #[arg(long, requires = "role")]
        name: Option<String>,
        #[arg(long, requires = "role")]
        site: Option<String>,
        /// How long the token holds.
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum RoleArg {
    Admin,
    Supervisor,
    Integration,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Supervisor => Role::Supervisor,
            RoleArg::Integration => Role::Integration,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

/// Tokens never carry admin: an admin holds a client certificate.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum TokenRole {
    Supervisor,
    Integration,
    Viewer,
}

impl From<TokenRole> for Role {
    fn from(role: TokenRole) -> Self {
        match role {
            TokenRole::Supervisor => Role::Supervisor,
            TokenRole::Integration => Role::Integration,
            TokenRole::Viewer => Role::Viewer,
        }
    }
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommand::Ca { common } => {
            let dir = CertsDir::new(&common.certs_dir);
            issue::create_ca(&dir, common.overwrite)?;
            println!(
                "wrote {}/ca.crt, ca.key, token.key, token.pub",
                common.certs_dir.display()
            );
        }
        CertsCommand::Node { common, id, hosts } => {
            issue::issue_node(
                &CertsDir::new(&common.certs_dir),
                id,
                &hosts,
                common.overwrite,
            )?;
            println!(
                "wrote {}/node.{id}.crt, node.{id}.key",
                common.certs_dir.display()
            );
        }
        CertsCommand::Branch {
            common,
            id,
            site,
            hosts,
        } => {
            let dir = CertsDir::new(&common.certs_dir);
            issue::issue_branch(&dir, id, &site, &hosts, common.overwrite)?;
            println!(
                "wrote {}/node.{id}.crt, node.{id}.key",
                common.certs_dir.display()
            );
        }
        CertsCommand::Client {
            common,
            name,
            role,
            site,
        } => {
            let dir = CertsDir::new(&common.certs_dir);
            issue::issue_client(&dir, &name, role.into(), site.as_deref(), common.overwrite)?;
            println!(
                "wrote {}/client.{name}.crt, client.{name}.key",
                common.certs_dir.display()
            );
        }
        CertsCommand::Token {
            certs_dir,
            agent,
            role,
            name,
            site,
            ttl,
        } => {
            let signer = TokenSigner::load(&CertsDir::new(&certs_dir))?;
            let token = match (agent, role) {
                (Some(agent), _) => signer.agent(&agent, ttl)?,
                (None, Some(role)) => {
                    let role: Role = role.into();
                    let name = name.unwrap_or_else(|| role.to_string());
                    signer.scoped(&name, role, site.as_deref(), ttl)?
                }
                (None, None) => anyhow::bail!("give --agent ID or --role ROLE"),
            };
            println!("{token}");
        }
    }
    Ok(())
}
