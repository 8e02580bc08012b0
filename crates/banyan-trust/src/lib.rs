//! Banyan's trust boundary (DESIGN.md §10): the cluster's own CA and the identities it
//! issues, TLS for every gRPC listener and channel, bearer tokens for agents' desks, and
//! the one layer and the one table that decide who may call what.
//!
//! ```text
//!  caller ── TLS (client certificate, or a bearer token) ──> Edge (tower layer)
//!                                   authenticate once: Principal ──┤
//!                                   policy::TABLE: may it call this method? ──┤ no: refused
//!                                                 yes: the principal rides in the
//!                                                 request's extensions to the service
//! ```
//!
//! Everything below the edge receives the [`Principal`], never re-derives it from the
//! transport. Commands carry it into the log, so the audit trail names it.
//!
//! # Layout
//! * [`files`]: the certificates directory, laid out as CockroachDB lays it out.
//! * [`issue`]: making the CA, node, branch and client certificates (`banyan certs`).
//! * [`identity`]: reading the principal out of a verified peer certificate.
//! * [`token`]: signing and checking bearer tokens.
//! * [`security`]: a node's or a client's TLS settings (or `--insecure`).
//! * [`policy`]: the authorization table: permissions, what each principal holds, and what
//!   each gRPC method, HTTP route and domain action needs.
//! * [`edge`]: the tower layer that authenticates and authorizes every gRPC call.

#![warn(missing_docs)]

pub mod edge;
pub mod files;
pub mod identity;
pub mod issue;
pub mod policy;
pub mod security;
pub mod token;

pub use banyan_domain::{Principal, Role};
pub use edge::{principal_of, EdgeLayer};
pub use files::CertsDir;
pub use policy::{Denied, Permission};
pub use security::{ClientIdentity, Security};
pub use token::{TokenClaims, TokenVerifier};

/// Why a trust operation failed: a file, a certificate or a token.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file of the certificates directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file, so the operator knows which one.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A file `banyan certs` would write exists already; nothing was written.
    #[error("{0} exists; pass --overwrite to replace it")]
    Exists(std::path::PathBuf),
    /// A certificate could not be made, parsed, or names no Banyan principal.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A flag, a key or a token is not acceptable; the message names which and why.
    #[error("{0}")]
    Invalid(String),
}

impl TrustError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrustError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl From<rcgen::Error> for TrustError {
    fn from(e: rcgen::Error) -> Self {
        TrustError::Certificate(e.to_string())
    }
}

/// Whether `name` may name a node, site, client or agent inside a certificate or token:
/// letters, digits, `.`, `_` and `-`, at most 64 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
