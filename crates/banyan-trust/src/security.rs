//! A node's or a client's transport security: TLS with the cluster's certificates, or an
//! explicit `--insecure`. Built once from the command line and passed to everything that
//! listens or connects.

use std::sync::Arc;

use banyan_domain::Principal;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::files::CertsDir;
use crate::identity::principal_of_certificate;
use crate::token::TokenVerifier;
use crate::TrustError;

/// How a process talks to Banyan nodes and, for a node, how it serves.
#[derive(Clone, Debug)]
pub enum Security {
    /// TLS with the cluster's certificates; every caller is authenticated and authorized.
    Secure(Arc<Credentials>),
    /// Plaintext, nothing verified, every caller allowed everything (`--insecure`).
    Insecure,
}

/// Which credential a client presents.
#[derive(Clone, Debug)]
pub enum ClientIdentity {
    /// `client.NAME.crt`/`.key` from the certificates directory.
    Certificate(String),
    /// A bearer token (an agent's desk, a scoped tool).
    Token(String),
    /// The CA only: the caller proves nothing (tests of refusals).
    Anonymous,
}

/// The loaded certificates of a secure process.
pub struct Credentials {
    dir: CertsDir,
    ca_pem: String,
    /// The certificate and key this process presents (a node's, or a client's).
    identity: Option<(String, String)>,
    /// Whom that certificate names.
    principal: Option<Principal>,
    /// A bearer token sent with every call, for clients without a certificate.
    token: Option<String>,
    /// Checks bearer tokens; a node has it, a client need not.
    verifier: Option<TokenVerifier>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("dir", &self.dir)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// A node's security: `ca.crt`, `node.ID.crt`/`.key` and `token.pub` from `dir`.
    pub fn node(dir: &CertsDir, id: u64) -> Result<Self, TrustError> {
        let ca_pem = dir.read(&dir.ca_cert())?;
        let cert = dir.read(&dir.node_cert(id))?;
        let key = dir.read(&dir.node_key(id))?;
        let principal = principal_of_pem(&cert)?;
        let own_id = match &principal {
            Principal::Node(n) => *n,
            Principal::Branch { node, .. } => *node,
            other => {
                return Err(TrustError::Invalid(format!(
                    "{}: names {other}, not a node",
                    dir.node_cert(id).display()
                )))
            }
        };
        if own_id != id {
            return Err(TrustError::Invalid(format!(
                "{}: is node {own_id}'s certificate, not node {id}'s",
                dir.node_cert(id).display()
            )));
        }
        Ok(Security::Secure(Arc::new(Credentials {
            dir: dir.clone(),
            ca_pem,
            identity: Some((cert, key)),
            principal: Some(principal),
            token: None,
            verifier: Some(TokenVerifier::load(dir)?),
        })))
    }

    /// A client's security: `ca.crt` and the chosen credential.
    pub fn client(dir: &CertsDir, identity: ClientIdentity) -> Result<Self, TrustError> {
        let ca_pem = dir.read(&dir.ca_cert())?;
        let (pair, principal, token) = match identity {
            ClientIdentity::Certificate(name) => {
                let cert = dir.read(&dir.client_cert(&name))?;
                let key = dir.read(&dir.client_key(&name))?;
                let principal = principal_of_pem(&cert)?;
                (Some((cert, key)), Some(principal), None)
            }
            ClientIdentity::Token(token) => (None, None, Some(token)),
            ClientIdentity::Anonymous => (None, None, None),
        };
        Ok(Security::Secure(Arc::new(Credentials {
            dir: dir.clone(),
            ca_pem,
            identity: pair,
            principal,
            token,
            verifier: None,
        })))
    }

    /// Whether TLS is on; `false` only under `--insecure`.
    pub fn is_secure(&self) -> bool {
        matches!(self, Security::Secure(_))
    }

    /// The certificates directory, when secure.
    pub fn certs_dir(&self) -> Option<&CertsDir> {
        match self {
            Security::Secure(c) => Some(&c.dir),
            Security::Insecure => None,
        }
    }

    /// Whom this process's own certificate names.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Security::Secure(c) => c.principal.as_ref(),
            Security::Insecure => None,
        }
    }

    /// The bearer token to send with every call, if this client uses one.
    pub fn bearer(&self) -> Option<&str> {
        match self {
            Security::Secure(c) => c.token.as_deref(),
            Security::Insecure => None,
        }
    }

    /// Checks bearer tokens (nodes only).
    pub fn verifier(&self) -> Option<&TokenVerifier> {
        match self {
            Security::Secure(c) => c.verifier.as_ref(),
            Security::Insecure => None,
        }
    }

    /// The TLS settings of a node's listener: its certificate, client certificates
    /// verified against the cluster's CA when presented (an agent's desk presents a token
    /// instead, checked at the edge). `None` when insecure.
    pub fn server_tls(&self) -> Option<ServerTlsConfig> {
        let Security::Secure(c) = self else {
            return None;
        };
        let (cert, key) = c.identity.as_ref()?;
        Some(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(cert, key))
                .client_ca_root(Certificate::from_pem(&c.ca_pem))
                .client_auth_optional(true)
                .timeout(std::time::Duration::from_secs(5)),
        )
    }

    /// An endpoint for `addr` (`host:port` or a URI): `https` with the cluster's CA and
    /// this process's certificate when secure, `http` otherwise.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        self.endpoint_within(addr, std::time::Duration::from_secs(5))
    }

    /// Like [`endpoint`](Self::endpoint), with the TLS handshake bounded by `handshake`.
    pub fn endpoint_within(
        &self,
        addr: &str,
        handshake: std::time::Duration,
    ) -> Result<Endpoint, tonic::transport::Error> {
        let host_port = addr
            .split_once("://")
            .map_or(addr, |(_, rest)| rest)
            .to_owned();
        match self {
            Security::Insecure => Endpoint::from_shared(format!("http://{host_port}")),
            Security::Secure(c) => {
                let mut tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&c.ca_pem))
                    .timeout(handshake);
                if let Some((cert, key)) = &c.identity {
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                Endpoint::from_shared(format!("https://{host_port}"))?.tls_config(tls)
            }
        }
    }
}

fn principal_of_pem(pem: &str) -> Result<Principal, TrustError> {
    let der = pem_to_der(pem)?;
    principal_of_certificate(&der)
        .ok_or_else(|| TrustError::Certificate("names no Banyan principal".into()))
}

/// The DER bytes of the first certificate in `pem`.
fn pem_to_der(pem: &str) -> Result<Vec<u8>, TrustError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| TrustError::Certificate(format!("unreadable PEM: {e}")))?;
    Ok(parsed.contents)
}
