//! Who caused a command: the principal the edge authenticated (DESIGN.md §10).
//!
//! The node's trust layer proves a caller's identity once, from a certificate or a bearer
//! token, and every command the call leads to carries the result, through forwarding and
//! branch journals, so the audit trail can say who changed a queue or completed a contact.
//! The domain only records it; deciding what a principal may do is the edge's job.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a person or a program signed in as may do, besides what its scope allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Everything: membership, sites, queues, agents.
    Admin,
    /// Every read in scope; closes, abandons and transfers contacts; changes agents' states.
    Supervisor,
    /// What an IVR, telephony front end or CRM does: creates, abandons and transfers
    /// contacts; reads and writes customers.
    Integration,
    /// Reads, statistics, events and the wallboard.
    Viewer,
}

impl Role {
    /// Every role, for parsing and for tables that go role by role.
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Supervisor,
        Role::Integration,
        Role::Viewer,
    ];

    /// The lower-case name tokens, certificates and the audit trail use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Integration => "integration",
            Role::Viewer => "viewer",
        }
    }

    /// The role a token or certificate names, or `None` for an unknown name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Principal {
    /// A core voter, by node id (node certificate).
    Node(u64),
    /// The branch node `node` serving `site` (branch certificate).
    Branch {
        /// The branch's Raft node id (a learner of the core).
        node: u64,
        /// The site the branch serves; the branch may act for that site only.
        site: String,
    },
    /// A person or a program with a role, optionally limited to one site (client
    /// certificate or scoped token).
    User {
        /// Who signed in, as their token or certificate names them.
        name: String,
        /// What they may do.
        role: Role,
        /// The one site they are limited to, or `None` for every site.
        site: Option<String>,
    },
    /// An agent at their desk (bearer token).
    Agent(String),
    /// A node running with `--insecure`: nothing was proven, everything is allowed.
    Insecure,
}

impl Principal {
    /// The site this principal is limited to, if any.
    pub fn site_scope(&self) -> Option<&str> {
        match self {
            Principal::Branch { site, .. } => Some(site),
            Principal::User { site, .. } => site.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Principal {
    /// The form the audit trail shows and `ctl audit --principal` matches: `node:1`,
    /// `branch:emea`, `admin:alice`, `supervisor:bob@emea`, `agent:ada`, `insecure`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Node(id) => write!(f, "node:{id}"),
            Principal::Branch { site, .. } => write!(f, "branch:{site}"),
            Principal::User { name, role, site } => {
                write!(f, "{role}:{name}")?;
                if let Some(site) = site {
                    write!(f, "@{site}")?;
                }
                Ok(())
            }
            Principal::Agent(id) => write!(f, "agent:{id}"),
            Principal::Insecure => f.write_str("insecure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_the_audit_trail_shows_them() {
        let user = Principal::User {
            name: "bob".into(),
            role: Role::Supervisor,
            site: Some("emea".into()),
        };
        assert_eq!(user.to_string(), "supervisor:bob@emea");
        assert_eq!(user.site_scope(), Some("emea"));
        assert_eq!(Principal::Node(2).to_string(), "node:2");
        assert_eq!(Principal::Agent("ada".into()).to_string(), "agent:ada");
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
