//! The principal a certificate proves, written into it as a URI subject alternative name
//! when it is issued, and read back from the peer's certificate once TLS has verified it
//! against the cluster's CA:
//!
//! * `banyan://node/N` — core voter N
//! * `banyan://branch/SITE/N` — branch node N serving SITE
//! * `banyan://client/NAME/ROLE[/SITE]` — a client with a role, optionally scoped to SITE
//!
//! A certificate with none of these (or two) proves nothing, even if the CA signed it.

use banyan_domain::{Principal, Role};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::valid_name;

const SCHEME: &str = "banyan://";

/// The URI that names `principal` in a certificate.
pub fn principal_uri(principal: &Principal) -> Option<String> {
    match principal {
        Principal::Node(id) => Some(format!("{SCHEME}node/{id}")),
        Principal::Branch { node, site } => Some(format!("{SCHEME}branch/{site}/{node}")),
        Principal::User { name, role, site } => Some(match site {
            Some(site) => format!("{SCHEME}client/{name}/{role}/{site}"),
            None => format!("{SCHEME}client/{name}/{role}"),
        }),
        Principal::Agent(_) | Principal::Insecure => None,
    }
}

/// Parses a principal URI; `None` for anything else.
pub fn parse_principal_uri(uri: &str) -> Option<Principal> {
    let rest = uri.strip_prefix(SCHEME)?;
    let parts: Vec<&str> = rest.split('/').collect();
    if !parts[1..].iter().all(|p| valid_name(p)) {
        return None;
    }
    match parts.as_slice() {
        ["node", id] => id.parse().ok().filter(|id| *id > 0).map(Principal::Node),
        ["branch", site, node] => Some(Principal::Branch {
            node: node.parse().ok().filter(|id| *id > 0)?,
            site: (*site).to_owned(),
        }),
        ["client", name, role] => Some(Principal::User {
            name: (*name).to_owned(),
            role: Role::parse(role)?,
            site: None,
        }),
        ["client", name, role, site] => Some(Principal::User {
            name: (*name).to_owned(),
            role: Role::parse(role)?,
            site: Some((*site).to_owned()),
        }),
        _ => None,
    }
}

/// The principal a DER certificate names, if exactly one.
pub fn principal_of_certificate(der: &[u8]) -> Option<Principal> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => parse_principal_uri(uri),
            _ => None,
        });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_principal_round_trips_through_its_uri() {
        for principal in [
            Principal::Node(3),
            Principal::Branch {
                node: 101,
                site: "emea".into(),
            },
            Principal::User {
                name: "ops".into(),
                role: Role::Admin,
                site: None,
            },
            Principal::User {
                name: "sup-1".into(),
                role: Role::Supervisor,
                site: Some("apac".into()),
            },
        ] {
            let uri = principal_uri(&principal).unwrap();
            assert_eq!(parse_principal_uri(&uri), Some(principal), "{uri}");
        }
    }

    #[test]
    fn anything_else_names_nobody() {
        for uri in [
            "banyan://node/0",
            "banyan://node/x",
            "banyan://node/1/2",
            "banyan://client/a/root",
            "banyan://client/a b/admin",
            "banyan://branch/emea",
            "https://node/1",
            "banyan://client//admin",
        ] {
            assert_eq!(parse_principal_uri(uri), None, "{uri}");
        }
    }
}
