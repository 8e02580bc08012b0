//! Commands the replicated state machine applies.

use serde::{Deserialize, Serialize};

use crate::agent::{AgentInput, Presence};
use crate::contact::{Contact, ContactInput};
use crate::customer::CustomerInput;
use crate::principal::Principal;
use crate::queue::QueueInput;
use crate::site::{BranchReport, SiteInput};

/// A command as it sits in the Raft log: the leader stamps the time once, so every replica
/// applies the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    /// Leader's wall clock when it proposed the command, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What to apply, as the caller sent it.
    pub command: Command,
}

/// A command and its optional idempotency key: a retry with the same key and the same
/// command gets the first result; the same key with another command is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The idempotency key a client chose for this call, if any; retries reuse it.
    pub request_id: Option<String>,
    /// What the command changes.
    pub action: Action,
    /// Who caused it, as the edge authenticated the caller; kept through forwarding and
    /// branch journals for the audit trail. `None` for the cluster's own commands (timer
    /// ticks, lease renewals are a branch's).
    pub principal: Option<Principal>,
}

impl Command {
    /// A command with no idempotency key and no principal, such as the cluster's own `Tick`.
    pub fn new(action: Action) -> Self {
        Self {
            request_id: None,
            action,
            principal: None,
        }
    }

    /// A command that a retry with the same `request_id` answers from the first result.
    pub fn with_request_id(action: Action, request_id: Option<String>) -> Self {
        Self {
            request_id,
            action,
            principal: None,
        }
    }

    /// The same command, caused by `principal`.
    pub fn by(mut self, principal: Principal) -> Self {
        self.principal = Some(principal);
        self
    }

    /// The idempotency key, if the caller gave one.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

/// Most contacts one import may carry: far more than a site takes in during any outage (the
/// message limit binds first); a bound on what a hostile import can make a replica
/// allocate.
pub const MAX_IMPORT_CONTACTS: usize = 1_000_000;
/// Most agents (and their presences) one import may carry.
pub const MAX_IMPORT_AGENTS: usize = 100_000;
/// How far ahead of the cluster clock an imported time may be: far more than the clock
/// offset a branch's renewals are accepted with, so that a branch whose clock drifted
/// while it was cut off still hands its work over.
pub const MAX_IMPORT_CLOCK_AHEAD_MS: i64 = crate::site::MAX_LEASE_MS;
/// Most journal entries one import may cover: a site that claims more cannot have
/// journalled them, and recording such a sequence would skip every later import of it.
pub const MAX_IMPORT_SPAN: u64 = 1 << 32;

/// What a branch hands the core after routing on its own: every contact it handled (as it
/// ended up, or as it still is), its agents' presence, and the last journal sequence this
/// covers. Applied at most once per sequence: an import at or below the site's recorded
/// sequence changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchImport {
    /// The site whose branch did the work; only that site's branch may import it.
    pub site: String,
    /// The branch journal's last sequence number this import covers: the core records it so that
    /// each entry is applied once.
    pub upto_seq: u64,
    /// Every contact the branch handled, as it ended up or as it still is.
    pub contacts: Vec<Contact>,
    /// Each of the site's agents (by id) and the presence the branch left them in.
    pub agents: Vec<(String, Presence)>,
    /// The contacts the branch created on its own (from its journal). One of them may
    /// exist at the core too, under the same id: a create the branch forwarded just before
    /// it was cut off, which committed after all, and which its caller then retried at the
    /// branch (a branch gives a contact the same id wherever it creates it).
    pub created: Vec<String>,
}

/// Everything the domain can be asked to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Create a customer, or replace every field of an existing one.
    UpsertCustomer(CustomerInput),
    /// Create a queue, or replace its configuration.
    UpsertQueue(QueueInput),
    /// Create an agent, or replace their skills, capacity and site.
    UpsertAgent(AgentInput),
    /// Create a site (regional center), or rename it.
    UpsertSite(SiteInput),
    /// A branch renews its site's lease; it runs `ttl_ms` from `sent_at_ms`, the branch's
    /// clock when it sent the renewal.
    RenewLease {
        /// The site whose lease is renewed.
        site_id: String,
        /// The branch's clock when it sent the renewal, ms since the Unix epoch: the lease runs
        /// from here, so a delayed renewal cannot stretch it.
        sent_at_ms: i64,
        /// How long the lease runs, in ms, between [`MIN_LEASE_MS`](crate::site::MIN_LEASE_MS) and
        /// [`MAX_LEASE_MS`](crate::site::MAX_LEASE_MS).
        ttl_ms: i64,
        /// How the renewing branch is doing, shown in the cluster status.
        report: BranchReport,
    },
    /// A contact arrives: it is queued (or self-served, abandoned, or given a callback when the
    /// queue is full) and routed.
    CreateContact(ContactInput),
    /// The agent chooses a presence: available, on break, or offline.
    SetAgentPresence {
        /// The agent whose presence changes.
        agent_id: String,
        /// Available, on break (with a reason), or offline.
        presence: Presence,
    },
    /// A desk session logs the agent in with a presence. `session` names the session, so
    /// a late disconnect of an older session does not log out a newer one.
    AgentLogin {
        /// The agent logging in.
        agent_id: String,
        /// The desk session's name; only the latest session's disconnect counts.
        session: String,
        /// The presence the agent starts the session in.
        presence: Presence,
    },
    /// The agent's desk session ended without a logout: outstanding offers go back to the
    /// queue and the agent takes no new contacts until they return. Ignored unless
    /// `session` is the agent's latest login (empty matches any).
    AgentDisconnected {
        /// The agent whose desk went away.
        agent_id: String,
        /// The session that ended; empty matches whichever is current.
        session: String,
    },
    /// The agent takes an offered contact: it connects, and the same offer to other agents
    /// (`RING_ALL`) is withdrawn.
    AcceptOffer {
        /// The agent accepting; must be one the contact is offered to.
        agent_id: String,
        /// The offered contact.
        contact_id: String,
    },
    /// The agent turns an offer down: the contact goes back to its place in the queue and to other
    /// agents first.
    RejectOffer {
        /// The agent declining; must be one the contact is offered to.
        agent_id: String,
        /// The offered contact.
        contact_id: String,
    },
    /// The conversation ended; the agent wraps up.
    EndContact {
        /// The agent holding the contact.
        agent_id: String,
        /// The connected contact whose conversation ended.
        contact_id: String,
    },
    /// Close a connected or wrapping-up contact with a disposition code.
    CompleteContact {
        /// The contact to close.
        contact_id: String,
        /// Empty when a supervisor closes it; else must be the holding agent.
        agent_id: String,
        /// The outcome code, checked against the queue's allowed dispositions.
        disposition: String,
        /// Free-text notes on the contact, kept in the customer's history.
        notes: String,
    },
    /// The caller hung up while waiting.
    AbandonContact {
        /// The waiting or offered contact the caller left.
        contact_id: String,
    },
    /// Move a contact into another queue; it continues as a new contact there.
    TransferContact {
        /// The contact to move; it ends as `TRANSFERRED`.
        contact_id: String,
        /// The queue the new contact waits in.
        queue_id: String,
    },
    /// A branch's work while it was cut off, applied once (see [`BranchImport`]).
    ImportBranch(BranchImport),
    /// Refuse every desk token of the agent issued up to the stamped time, and end its
    /// open desk sessions.
    RevokeAgentTokens {
        /// The agent whose tokens are refused from now on.
        agent_id: String,
    },
    /// Advance timers to the stamped time: offer expiry, escalation, max wait, wrap-up end,
    /// site lease expiry. The leader proposes it when something is due.
    Tick,
    /// An administrator releases a site's lease: it lapses now and no branch node holds
    /// it, so another node of the site may take it (a branch replaced under a new id).
    ReleaseLease {
        /// The site whose lease is released.
        site_id: String,
    },
    /// The cluster's own identity, kept by the state machine beside the domain (which
    /// refuses it): see [`ClusterAction`].
    Cluster(ClusterAction),
    /// One part of a command too large for one log entry (a branch's import after a long
    /// outage), kept by the state machine until the last part arrives; then the whole
    /// command is applied, once. The leader's proposer alone writes parts.
    Part(CommandPart),
    /// Finished contacts (completed, abandoned, transferred, self-served) that finished
    /// before `before_ms` leave the routing state, at most [`MAX_FORGET_PER_COMMAND`] per
    /// command, oldest first; the history store keeps them. The leader proposes it once
    /// the oldest finished contact is past its retention window. Counters and figures do
    /// not change.
    /// Last of the variants: a new variant goes at the end, so that older log entries
    /// decode unchanged.
    ForgetFinished {
        /// Contacts that finished before this time leave; not after the command's stamp.
        before_ms: i64,
    },
}

/// The most finished contacts one [`Action::ForgetFinished`] removes, so that one entry's
/// apply stays short after a long time without one; the leader proposes another while
/// more are due.
pub const MAX_FORGET_PER_COMMAND: usize = 10_000;

/// Part `part` (from 0) of `parts` of the encoded command `id`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandPart {
    /// The whole command's request id and a digest of its bytes: a resend of the same
    /// command continues where the parts applied so far end.
    pub id: String,
    /// Which part this is, from 0; parts are applied in order.
    pub part: u32,
    /// How many parts the whole command was cut into.
    pub parts: u32,
    /// Postcard writes these as its `Vec<u8>` (a length, then the bytes), in one copy.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for CommandPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CommandPart {{ id: {:?}, part: {} of {}, {} bytes }}",
            self.id,
            self.part,
            self.parts,
            self.bytes.len()
        )
    }
}

/// Who the cluster is: its id, chosen once when it is founded, and the data directory
/// (incarnation) each node id runs on. Peers refuse a node whose data directory is not
/// the one registered for its id: a voter whose directory was wiped has forgotten its
/// votes and acknowledged entries and must rejoin under a new id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterAction {
    /// The first leader names the cluster; later ones are refused.
    Found {
        /// The id every member and branch of the cluster checks its peers against.
        cluster_id: String,
    },
    /// The leader records the data directory a member runs on, as the member told it.
    Register {
        /// The member's Raft node id.
        node_id: u64,
        /// The random id its data directory got the first time the member ran on it.
        incarnation: String,
    },
}
