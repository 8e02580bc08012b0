//! The authorization table: which principal may do what (DESIGN.md §10). The one place
//! that decides; the edge consults it for every gRPC method and HTTP route, and the leader
//! for every command a node or a branch hands it.
//!
//! Three parts, each a plain table a reader can check line by line:
//! * [`METHODS`]: the permission each gRPC method needs (an unlisted method needs
//!   [`Permission::Admin`], so a new method is closed until someone opens it here);
//! * [`holds`]: the permissions each kind of principal holds;
//! * [`action_permission`]: the permission each domain command needs, checked again by
//!   the leader for forwarded commands.
//!
//! Scope (a site-limited supervisor, a branch's own site, an agent's own desk) is about the
//! object, not the method: the services check it where they know the object, with
//! [`check_site`].

use banyan_domain::{Action, Principal, Role};

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Health checks: anyone who completed the TLS handshake, credentials or not.
    Open,
    /// gRPC reflection: any authenticated principal.
    Introspect,
    /// Contacts, queues, agents, statistics, events, cluster status, the wallboard,
    /// metrics.
    Read,
    /// Customer records (personal data): not for viewers.
    ReadCustomers,
    /// Create and update customers.
    WriteCustomers,
    /// Create contacts (IVR, telephony, chat front ends).
    CreateContact,
    /// Abandon a contact or transfer it to another queue.
    RouteContact,
    /// Close a contact with a disposition on an agent's behalf.
    CompleteContact,
    /// Queues, agents and sites.
    Configure,
    /// Add and remove voters and learners.
    Membership,
    /// A branch adds itself to the core as a learner.
    JoinAsLearner,
    /// Renew a site's lease.
    RenewLease,
    /// Hand the core a branch's journal.
    ImportBranch,
    /// An agent's desk: log in, change presence, accept, reject, end, complete.
    Desk,
    /// Raft traffic between core voters (votes, appends, snapshots).
    RaftPeer,
    /// Hand a command to the leader (CommandForwarding).
    Forward,
    /// Only an admin.
    Admin,
}

/// The permission each gRPC method needs. Methods not listed need [`Permission::Admin`].
pub const METHODS: &[(&str, Permission)] = &[
    ("/grpc.health.v1.Health/Check", Permission::Open),
    ("/grpc.health.v1.Health/Watch", Permission::Open),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Permission::Introspect,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Permission::Introspect,
    ),
    (
        "/banyan.v1.ContactCenter/CreateContact",
        Permission::CreateContact,
    ),
    ("/banyan.v1.ContactCenter/GetContact", Permission::Read),
    ("/banyan.v1.ContactCenter/ListContacts", Permission::Read),
    ("/banyan.v1.ContactCenter/ExportHistory", Permission::Read),
    (
        "/banyan.v1.ContactCenter/CompleteContact",
        Permission::CompleteContact,
    ),
    (
        "/banyan.v1.ContactCenter/AbandonContact",
        Permission::RouteContact,
    ),
    (
        "/banyan.v1.ContactCenter/TransferContact",
        Permission::RouteContact,
    ),
    (
        "/banyan.v1.ContactCenter/UpsertCustomer",
        Permission::WriteCustomers,
    ),
    (
        "/banyan.v1.ContactCenter/GetCustomer",
        Permission::ReadCustomers,
    ),
    (
        "/banyan.v1.ContactCenter/FindCustomers",
        Permission::ReadCustomers,
    ),
    (
        "/banyan.v1.ContactCenter/UpsertQueue",
        Permission::Configure,
    ),
    ("/banyan.v1.ContactCenter/ListQueues", Permission::Read),
    ("/banyan.v1.ContactCenter/GetQueueStats", Permission::Read),
    (
        "/banyan.v1.ContactCenter/UpsertAgent",
        Permission::Configure,
    ),
    ("/banyan.v1.ContactCenter/ListAgents", Permission::Read),
    ("/banyan.v1.ContactCenter/WatchEvents", Permission::Read),
    (
        "/banyan.v1.ContactCenter/RevokeAgentTokens",
        Permission::Configure,
    ),
    ("/banyan.v1.AgentDesk/Session", Permission::Desk),
    ("/banyan.v1.Cluster/Status", Permission::Read),
    ("/banyan.v1.Cluster/AddLearner", Permission::JoinAsLearner),
    ("/banyan.v1.Cluster/AddVoter", Permission::Membership),
    ("/banyan.v1.Cluster/RemoveNode", Permission::Membership),
    ("/banyan.v1.Cluster/RenewLease", Permission::RenewLease),
    ("/banyan.v1.Cluster/ReleaseLease", Permission::Membership),
    ("/banyan.v1.Branch/Status", Permission::Read),
    (
        "/banyan.v1.RaftTransport/AppendEntries",
        Permission::RaftPeer,
    ),
    ("/banyan.v1.RaftTransport/Vote", Permission::RaftPeer),
    (
        "/banyan.v1.RaftTransport/InstallSnapshot",
        Permission::RaftPeer,
    ),
    ("/banyan.v1.CommandForwarding/Propose", Permission::Forward),
];

/// The permission each HTTP route needs. Unlisted paths need [`Permission::Read`].
pub const ROUTES: &[(&str, Permission)] = &[
    ("/healthz", Permission::Open),
    ("/readyz", Permission::Open),
    ("/", Permission::Read),
    ("/wallboard.css", Permission::Read),
    ("/wallboard.js", Permission::Read),
    ("/api/wallboard", Permission::Read),
    ("/api/wallboard/stream", Permission::Read),
    ("/metrics", Permission::Read),
];

/// The permission HTTP route `path` needs.
pub fn route_permission(path: &str) -> Permission {
    ROUTES
        .iter()
        .find(|(route, _)| *route == path)
        .map_or(Permission::Read, |(_, permission)| *permission)
}

/// The permission `path` (a gRPC method, `/package.Service/Method`) needs.
pub fn method_permission(path: &str) -> Permission {
    METHODS
        .iter()
        .find(|(method, _)| *method == path)
        .map_or(Permission::Admin, |(_, permission)| *permission)
}

/// Whether `principal` holds `permission` (before scope: a site-limited supervisor holds
/// `CompleteContact`, for its own site's contacts only). `None` is an unauthenticated
/// caller.
pub fn holds(principal: Option<&Principal>, permission: Permission) -> bool {
    use Permission::*;
    let Some(principal) = principal else {
        return permission == Open;
    };
    if matches!(permission, Open | Introspect) {
        return true;
    }
    match principal {
        // --insecure: nothing was proven, so nothing can be refused.
        Principal::Insecure => true,
        Principal::User {
            role: Role::Admin, ..
        } => !matches!(permission, RaftPeer | Forward),
        Principal::User {
            role: Role::Supervisor,
            ..
        } => matches!(
            permission,
            Read | ReadCustomers | RouteContact | CompleteContact
        ),
        Principal::User {
            role: Role::Integration,
            ..
        } => matches!(
            permission,
            Read | ReadCustomers | WriteCustomers | CreateContact | RouteContact
        ),
        Principal::User {
            role: Role::Viewer, ..
        } => permission == Read,
        // An agent's customer reads are limited to the customers of its own contacts.
        Principal::Agent(_) => matches!(permission, Desk | ReadCustomers),
        // A core voter: Raft between voters, forwarding, and everything it forwards on a
        // caller's behalf (the caller is checked too, see `effective`).
        Principal::Node(_) => true,
        // A branch: its site's work, forwarded; never configuration or membership, and no
        // Raft traffic of its own (a learner only receives).
        // Its agents' desk commands travel as commands it forwards (never as a desk
        // session of its own at the core).
        Principal::Branch { .. } => matches!(
            permission,
            Read | ReadCustomers
                | WriteCustomers
                | CreateContact
                | RouteContact
                | CompleteContact
                | JoinAsLearner
                | RenewLease
                | ImportBranch
                | Forward
        ),
    }
}

/// A refusal: who asked, and what it lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not {what}")]
pub struct Denied {
    /// The caller as the audit trail names it, or `an unauthenticated caller`.
    pub principal: String,
    /// What it tried to do, in words (`call /banyan.v1.Cluster/AddLearner`, `propose timer ticks`).
    pub what: String,
}

impl Denied {
    /// The refusal of `principal` (`None` when the caller proved nothing) for `what`.
    pub fn new(principal: Option<&Principal>, what: impl Into<String>) -> Self {
        Self {
            principal: principal
                .map_or_else(|| "an unauthenticated caller".into(), |p| p.to_string()),
            what: what.into(),
        }
    }
}

/// `Ok` if `principal` holds `permission`, else the refusal naming what it lacks.
pub fn check(
    principal: Option<&Principal>,
    permission: Permission,
    what: &str,
) -> Result<(), Denied> {
    if holds(principal, permission) {
        Ok(())
    } else {
        Err(Denied::new(
            principal,
            format!("{what} (needs {permission:?})"),
        ))
    }
}

/// Whether `principal` may act on an object of `site`: unscoped principals may; a
/// site-limited one only on its own site.
pub fn check_site(principal: Option<&Principal>, site: &str, what: &str) -> Result<(), Denied> {
    match principal.and_then(Principal::site_scope) {
        Some(scope) if scope != site => Err(Denied::new(
            principal,
            format!("{what} of site {site:?} (limited to site {scope:?})"),
        )),
        _ => Ok(()),
    }
}

/// Whether `forwarder` may relay a call needing `permission` on behalf of `original` (the
/// `x-banyan-on-behalf-of` header). Only reads and the membership calls a core follower
/// passes to its leader are relayed: writes travel as commands over CommandForwarding
/// (checked by [`check_forwarded`]), and desks, leases, imports and Raft are never relayed.
/// A core node relays people, agents and branches; a branch relays only the reads of
/// people and agents; nobody relays a node or an unproven caller.
pub fn check_relay(
    forwarder: &Principal,
    original: &Principal,
    permission: Permission,
    path: &str,
) -> Result<(), Denied> {
    use Permission::*;
    let refuse = |why: &str| {
        Err(Denied::new(
            Some(forwarder),
            format!("relay {path} for {original} ({why})"),
        ))
    };
    if *forwarder == Principal::Insecure {
        return Ok(());
    }
    if !matches!(
        permission,
        Read | ReadCustomers | Membership | JoinAsLearner
    ) {
        return refuse("only reads and membership calls are relayed");
    }
    match (forwarder, original) {
        (_, Principal::Node(_) | Principal::Insecure) => refuse("nodes are never relayed"),
        (
            Principal::Node(_),
            Principal::User { .. } | Principal::Agent(_) | Principal::Branch { .. },
        ) => check(Some(forwarder), permission, &format!("relay {path}")),
        (Principal::Branch { .. }, Principal::User { .. } | Principal::Agent(_))
            if matches!(permission, Read | ReadCustomers) =>
        {
            check(Some(forwarder), permission, &format!("relay {path}"))
        }
        _ => refuse("a branch relays only the reads of people and agents"),
    }
}

/// The permission a domain command needs.
pub fn action_permission(action: &Action) -> Permission {
    use Permission::*;
    match action {
        Action::UpsertCustomer(_) => WriteCustomers,
        Action::UpsertQueue(_) | Action::UpsertAgent(_) | Action::UpsertSite(_) => Configure,
        Action::RenewLease { .. } => RenewLease,
        Action::CreateContact(_) => CreateContact,
        Action::SetAgentPresence { .. }
        | Action::AgentLogin { .. }
        | Action::AgentDisconnected { .. }
        | Action::AcceptOffer { .. }
        | Action::RejectOffer { .. }
        | Action::EndContact { .. } => Desk,
        // An agent completes its own contact from its desk; anyone else needs
        // CompleteContact.
        Action::CompleteContact { .. } => CompleteContact,
        Action::AbandonContact { .. } | Action::TransferContact { .. } => RouteContact,
        Action::ImportBranch(_) => ImportBranch,
        Action::Tick | Action::ForgetFinished { .. } => Admin,
        Action::RevokeAgentTokens { .. } => Configure,
        Action::ReleaseLease { .. } => Membership,
        Action::Cluster(_) | Action::Part(_) => Admin,
    }
}

/// Checks a command a node or a branch (`forwarder`) hands the leader on behalf of
/// `principal`: the principal must hold the command's permission, the forwarder must be
/// allowed to forward it, and a branch only acts for its own site.
pub fn check_forwarded(
    forwarder: &Principal,
    principal: Option<&Principal>,
    action: &Action,
) -> Result<(), Denied> {
    let needed = action_permission(action);
    let what = action_name(action);
    // The leader's own timers and retention: only a voter proposes them.
    if matches!(action, Action::Tick | Action::ForgetFinished { .. }) {
        return match forwarder {
            Principal::Node(_) | Principal::Insecure => Ok(()),
            _ if matches!(action, Action::Tick) => {
                Err(Denied::new(Some(forwarder), "propose timer ticks"))
            }
            _ => Err(Denied::new(Some(forwarder), what)),
        };
    }
    // The cluster's identity and commands in parts are written by its leader alone,
    // never handed to it.
    if matches!(action, Action::Cluster(_) | Action::Part(_)) {
        return Err(Denied::new(Some(forwarder), format!("forward {what}")));
    }
    if !may_forward(forwarder, needed) {
        return Err(Denied::new(
            Some(forwarder),
            format!("forward {what} (needs {needed:?})"),
        ));
    }
    if let Principal::Branch { .. } = forwarder {
        // A branch acts for the people and agents it serves, and for itself; it never
        // names a core node, another branch or an unproven caller.
        match principal {
            Some(Principal::User { .. } | Principal::Agent(_)) => {}
            Some(own) if own == forwarder => {}
            other => {
                return Err(Denied::new(
                    Some(forwarder),
                    format!(
                        "forward {what} for {}",
                        other.map_or_else(|| "nobody".to_owned(), ToString::to_string)
                    ),
                ))
            }
        }
        match action {
            Action::RenewLease { site_id, .. } => check_site(Some(forwarder), site_id, what)?,
            Action::ImportBranch(import) => check_site(Some(forwarder), &import.site, what)?,
            _ => {}
        }
    }
    let agent_desk = needed == Permission::Desk
        || (matches!(action, Action::CompleteContact { agent_id, .. } if !agent_id.is_empty()));
    match principal {
        Some(Principal::Agent(own)) if agent_desk => {
            if action_agent(action) != Some(own.as_str()) {
                return Err(Denied::new(principal, format!("{what} for another agent")));
            }
            Ok(())
        }
        _ => check(principal, needed, what),
    }
}

/// Whether `forwarder` may hand the leader a command needing `needed`: what it holds
/// itself, and for a branch also its agents' desk commands (a branch serves its agents'
/// desks and forwards what they do).
pub fn may_forward(forwarder: &Principal, needed: Permission) -> bool {
    holds(Some(forwarder), needed)
        || (matches!(forwarder, Principal::Branch { .. }) && needed == Permission::Desk)
}

/// The agent a desk command is about.
pub fn action_agent(action: &Action) -> Option<&str> {
    match action {
        Action::SetAgentPresence { agent_id, .. }
        | Action::AgentLogin { agent_id, .. }
        | Action::AgentDisconnected { agent_id, .. }
        | Action::AcceptOffer { agent_id, .. }
        | Action::RejectOffer { agent_id, .. }
        | Action::EndContact { agent_id, .. }
        | Action::CompleteContact { agent_id, .. } => Some(agent_id),
        _ => None,
    }
}

/// A command's name in refusals and the audit trail.
pub fn action_name(action: &Action) -> &'static str {
    match action {
        Action::UpsertCustomer(_) => "upsert a customer",
        Action::UpsertQueue(_) => "upsert a queue",
        Action::UpsertAgent(_) => "upsert an agent",
        Action::UpsertSite(_) => "upsert a site",
        Action::RenewLease { .. } => "renew a lease",
        Action::CreateContact(_) => "create a contact",
        Action::SetAgentPresence { .. } => "set an agent's presence",
        Action::AgentLogin { .. } => "log an agent in",
        Action::AgentDisconnected { .. } => "disconnect an agent",
        Action::AcceptOffer { .. } => "accept an offer",
        Action::RejectOffer { .. } => "reject an offer",
        Action::EndContact { .. } => "end a contact",
        Action::CompleteContact { .. } => "complete a contact",
        Action::AbandonContact { .. } => "abandon a contact",
        Action::TransferContact { .. } => "transfer a contact",
        Action::ImportBranch(_) => "import a branch's journal",
        Action::Tick => "advance timers",
        Action::RevokeAgentTokens { .. } => "revoke an agent's tokens",
        Action::ReleaseLease { .. } => "release a site's lease",
        Action::Cluster(_) => "change the cluster's identity",
        Action::Part(_) => "propose part of a command",
        Action::ForgetFinished { .. } => "let finished contacts leave the routing state",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, site: Option<&str>) -> Principal {
        Principal::User {
            name: "u".into(),
            role,
            site: site.map(str::to_owned),
        }
    }

    /// Every principal kind, in the order of the columns below.
    fn principals() -> Vec<(&'static str, Option<Principal>)> {
        vec![
            ("nobody", None),
            ("admin", Some(user(Role::Admin, None))),
            ("supervisor", Some(user(Role::Supervisor, Some("emea")))),
            ("integration", Some(user(Role::Integration, None))),
            ("viewer", Some(user(Role::Viewer, None))),
            ("agent", Some(Principal::Agent("ada".into()))),
            ("node", Some(Principal::Node(1))),
            (
                "branch",
                Some(Principal::Branch {
                    node: 101,
                    site: "emea".into(),
                }),
            ),
        ]
    }

    /// The table, row by row: for each method, which principals may call it
    /// (columns: nobody admin supervisor integration viewer agent node branch).
    #[test]
    fn the_method_table_row_by_row() {
        let expected: &[(&str, &str)] = &[
            ("/grpc.health.v1.Health/Check", "YYYYYYYY"),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                "-YYYYYYY",
            ),
            ("/banyan.v1.ContactCenter/CreateContact", "-Y-Y--YY"),
            ("/banyan.v1.ContactCenter/GetContact", "-YYYY-YY"),
            ("/banyan.v1.ContactCenter/ListContacts", "-YYYY-YY"),
            ("/banyan.v1.ContactCenter/ExportHistory", "-YYYY-YY"),
            ("/banyan.v1.ContactCenter/CompleteContact", "-YY---YY"),
            ("/banyan.v1.ContactCenter/AbandonContact", "-YYY--YY"),
            ("/banyan.v1.ContactCenter/TransferContact", "-YYY--YY"),
            ("/banyan.v1.ContactCenter/UpsertCustomer", "-Y-Y--YY"),
            ("/banyan.v1.ContactCenter/GetCustomer", "-YYY-YYY"),
            ("/banyan.v1.ContactCenter/FindCustomers", "-YYY-YYY"),
            ("/banyan.v1.ContactCenter/UpsertQueue", "-Y----Y-"),
            ("/banyan.v1.ContactCenter/ListQueues", "-YYYY-YY"),
            ("/banyan.v1.ContactCenter/GetQueueStats", "-YYYY-YY"),
            ("/banyan.v1.ContactCenter/UpsertAgent", "-Y----Y-"),
            ("/banyan.v1.ContactCenter/ListAgents", "-YYYY-YY"),
            ("/banyan.v1.ContactCenter/WatchEvents", "-YYYY-YY"),
            ("/banyan.v1.ContactCenter/RevokeAgentTokens", "-Y----Y-"),
            ("/banyan.v1.AgentDesk/Session", "-Y---YY-"),
            ("/banyan.v1.Cluster/Status", "-YYYY-YY"),
            ("/banyan.v1.Cluster/AddLearner", "-Y----YY"),
            ("/banyan.v1.Cluster/AddVoter", "-Y----Y-"),
            ("/banyan.v1.Cluster/RemoveNode", "-Y----Y-"),
            ("/banyan.v1.Cluster/RenewLease", "-Y----YY"),
            ("/banyan.v1.Cluster/ReleaseLease", "-Y----Y-"),
            ("/banyan.v1.Branch/Status", "-YYYY-YY"),
            ("/banyan.v1.RaftTransport/AppendEntries", "------Y-"),
            ("/banyan.v1.RaftTransport/Vote", "------Y-"),
            ("/banyan.v1.RaftTransport/InstallSnapshot", "------Y-"),
            ("/banyan.v1.CommandForwarding/Propose", "------YY"),
            ("/banyan.v1.Unknown/Method", "-Y----Y-"),
        ];
        let principals = principals();
        for (method, row) in expected {
            let permission = method_permission(method);
            let got: String = principals
                .iter()
                .map(|(_, p)| {
                    if holds(p.as_ref(), permission) {
                        'Y'
                    } else {
                        '-'
                    }
                })
                .collect();
            assert_eq!(&got, row, "{method} ({permission:?})");
        }
        // Every method of the table is in the expectations above.
        for (method, _) in METHODS {
            assert!(
                expected.iter().any(|(m, _)| m == method)
                    || method.contains("v1alpha")
                    || method.ends_with("Health/Watch"),
                "{method} has no row in this test"
            );
        }
    }

    #[test]
    fn insecure_callers_may_do_everything_and_http_reads_need_read() {
        for (method, _) in METHODS {
            assert!(holds(Some(&Principal::Insecure), method_permission(method)));
        }
        assert_eq!(route_permission("/readyz"), Permission::Open);
        assert_eq!(route_permission("/metrics"), Permission::Read);
        assert!(!holds(None, route_permission("/api/wallboard")));
    }

    #[test]
    fn scope_limits_a_site_bound_principal_to_its_site() {
        let sup = user(Role::Supervisor, Some("emea"));
        assert!(check_site(Some(&sup), "emea", "transfer").is_ok());
        let refusal = check_site(Some(&sup), "apac", "transfer").unwrap_err();
        assert!(
            refusal.to_string().contains("supervisor:u@emea"),
            "{refusal}"
        );
        assert!(check_site(Some(&user(Role::Admin, None)), "apac", "transfer").is_ok());
    }

    #[test]
    fn a_forwarded_command_is_checked_for_its_caller_and_its_forwarder() {
        let emea = Principal::Branch {
            node: 101,
            site: "emea".into(),
        };
        let agent = Principal::Agent("ada".into());
        let accept = |agent_id: &str| Action::AcceptOffer {
            agent_id: agent_id.into(),
            contact_id: "c".into(),
        };
        // A branch forwards its agent's own desk command.
        assert!(check_forwarded(&emea, Some(&agent), &accept("ada")).is_ok());
        // Not one for another agent, nor configuration, nor another site's lease.
        assert!(check_forwarded(&emea, Some(&agent), &accept("bob")).is_err());
        let queue = Action::UpsertQueue(banyan_domain::QueueInput::default());
        assert!(check_forwarded(&emea, Some(&user(Role::Admin, None)), &queue).is_err());
        let lease = |site: &str| Action::RenewLease {
            site_id: site.into(),
            sent_at_ms: 0,
            ttl_ms: 1000,
            report: Default::default(),
        };
        assert!(check_forwarded(&emea, Some(&emea), &lease("emea")).is_ok());
        assert!(check_forwarded(&emea, Some(&emea), &lease("apac")).is_err());
        // A core node forwards what its caller may do, and only that.
        let node = Principal::Node(2);
        assert!(check_forwarded(&node, Some(&user(Role::Admin, None)), &queue).is_ok());
        assert!(check_forwarded(&node, Some(&user(Role::Viewer, None)), &queue).is_err());
        // Only voters propose timer ticks.
        assert!(check_forwarded(&node, Some(&node), &Action::Tick).is_ok());
        assert!(check_forwarded(&emea, Some(&emea), &Action::Tick).is_err());
    }
}
