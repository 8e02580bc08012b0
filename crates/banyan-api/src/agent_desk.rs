//! `AgentDesk.Session`: one long-lived stream per logged-in agent.
//!
//! ```text
//!  agent ──AgentCommand──> session task ──submit──> leader (Raft) ──> every node applies
//!  agent <──AgentEvent──── session task <── this node's event feed (offers, withdrawals,
//!                                            contact and state changes for the agent)
//! ```
//!
//! The session can run on any node: commands are committed through the leader, and the
//! events come from this node's own copy of the log, so an offer reaches the agent as soon
//! as this node applied it. When the stream drops without a logout, the session submits
//! `AgentDisconnected`: offers go back to the queue and the agent takes no new contacts
//! until it logs in again (contacts it is handling stay with it).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use banyan_client::trace::{self, TraceContext};
use banyan_domain::{Action, Command, DomainError, Event, Presence, Principal};
use banyan_events::EventRecord;
use banyan_proto::v1::agent_command::Command as Cmd;
use banyan_proto::v1::agent_desk_server::{AgentDesk, AgentDeskServer};
use banyan_proto::v1::agent_event::Event as Out;
use banyan_proto::v1::{self as pb, AgentCommand, AgentEvent};
use banyan_trust::edge::token_of;
use banyan_trust::principal_of;
use banyan_trust::token::{seconds_left, TokenClaims};
use banyan_trust::Denied;
use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::errors::{invalid, ApiError};
use crate::{convert, Backend};

/// What an agent's session sends back, boxed so the service can name the stream's type.
pub type SessionStream = Pin<Box<dyn Stream<Item = Result<AgentEvent, Status>> + Send>>;

/// Events buffered per session between the node and the network.
const SESSION_BUFFER: usize = 256;
/// How long a dropped session keeps trying to record the disconnect (through an election).
const DISCONNECT_RETRY: Duration = Duration::from_secs(15);

/// The `AgentDesk` gRPC service over any node, core voter or branch: one session stream
/// per logged-in agent.
#[derive(Clone)]
pub struct AgentDeskService<B> {
    node: B,
}

impl<B: Backend> AgentDeskService<B> {
    /// Serves sessions from `node`'s events and commits the agents' commands through it.
    pub fn new(node: B) -> Self {
        Self { node }
    }

    /// The service as tonic serves it, for the node's one listener.
    pub fn into_server(self) -> AgentDeskServer<Self> {
        AgentDeskServer::new(self)
    }
}

#[tonic::async_trait]
impl<B: Backend> AgentDesk for AgentDeskService<B> {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentCommand>>,
    ) -> Result<Response<SessionStream>, Status> {
        let principal = principal_of(&request)?;
        let token = token_of(&request).cloned();
        let (tx, rx) = mpsc::channel(SESSION_BUFFER);
        let session = Session {
            node: self.node.clone(),
            tx,
            agent_id: None,
            feed: None,
            session: session_name(self.node.node_id()),
            principal,
            token,
        };
        tokio::spawn(session.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Session<B> {
    node: B,
    tx: mpsc::Sender<Result<AgentEvent, Status>>,
    /// Set once a login succeeded.
    agent_id: Option<String>,
    feed: Option<broadcast::Receiver<Arc<EventRecord>>>,
    /// This session's name in the agent's record, so that only its own drop logs the
    /// agent out.
    session: String,
    /// Who opened the session: an agent's token logs in as that agent only; an admin (or
    /// an insecure node's caller) as anyone.
    principal: Principal,
    /// The bearer token the session was opened with: the session ends when it expires or
    /// when the agent's tokens are revoked.
    token: Option<TokenClaims>,
}

/// How a session ended.
enum End {
    LoggedOut,
    Dropped,
}

/// What the session does after a command.
enum Next {
    Continue,
    End(End),
}

/// A command turned into a domain action.
struct Planned {
    action: Action,
    request_id: Option<String>,
    kind: Kind,
}

enum Kind {
    /// The login that starts the session.
    FirstLogin(String),
    Logout,
    Other,
}

/// What a command did.
enum Done {
    Applied,
    LoggedOut,
}

impl<B: Backend> Session<B> {
    async fn run(mut self, mut inbound: Streaming<AgentCommand>) {
        let expiry = tokio::time::sleep(
            self.token
                .as_ref()
                .map_or(Duration::from_secs(u64::from(u32::MAX)), |t| {
                    Duration::from_secs(seconds_left(t))
                }),
        );
        tokio::pin!(expiry);
        let end = loop {
            tokio::select! {
                () = &mut expiry => {
                    let ended = ApiError::Unauthenticated("token expired: the session ends".into());
                    let _ = self.tx.send(Err(ended.into())).await;
                    break End::Dropped;
                }
                command = inbound.message() => match command {
                    Ok(Some(command)) => match self.handle(command).await {
                        Next::Continue => {}
                        Next::End(end) => break end,
                    },
                    Ok(None) | Err(_) => break End::Dropped,
                },
                record = next_record(&mut self.feed) => {
                    // A feed that lagged or restarted may have dropped the revocation:
                    // look at the agent's record instead.
                    let missed = record.is_err()
                        && self.agent_id.as_deref().is_some_and(|a| self.check_token(a).is_err());
                    if missed || self.revoked(&record) {
                        let ended = ApiError::Unauthenticated(
                            "the agent's tokens were revoked: the session ends".into(),
                        );
                        let _ = self.tx.send(Err(ended.into())).await;
                        break End::Dropped;
                    }
                    if !self.forward(record).await {
                        break End::Dropped;
                    }
                }
                () = self.tx.closed() => break End::Dropped,
            }
        };
        if let (End::Dropped, Some(agent_id)) = (end, self.agent_id.take()) {
            tokio::spawn(record_disconnect(
                self.node.clone(),
                agent_id,
                self.session.clone(),
                self.principal.clone(),
            ));
        }
    }

    /// Whether `record` revokes the token this session was opened with.
    fn revoked(&self, record: &Result<Arc<EventRecord>, RecvError>) -> bool {
        let (Ok(record), Some(_), Some(agent)) = (record, &self.token, &self.agent_id) else {
            return false;
        };
        matches!(&record.event, Event::AgentTokensRevoked { agent_id, .. } if agent_id == agent)
    }

    /// Whether the agent may log in with this session's credential.
    fn check_login(&self, agent_id: &str) -> Result<(), ApiError> {
        match &self.principal {
            Principal::Agent(own) if own != agent_id => {
                return Err(ApiError::Denied(Denied::new(
                    Some(&self.principal),
                    format!("log in as {agent_id}"),
                )))
            }
            Principal::Agent(_)
            | Principal::Insecure
            | Principal::User {
                role: banyan_domain::Role::Admin,
                ..
            } => {}
            // A branch serves its agents' desks itself and forwards their commands.
            other => {
                return Err(ApiError::Denied(Denied::new(
                    Some(other),
                    "log in as an agent",
                )))
            }
        }
        self.check_token(agent_id)?;
        Ok(())
    }

    /// Refuses a session whose token the agent's record has revoked since it was issued.
    fn check_token(&self, agent_id: &str) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let source = self.node.applied();
        let applied = source.read();
        let revoked = applied
            .domain
            .agent(agent_id)
            .map_or(0, |a| a.tokens_revoked_ms);
        if token.issued_at_ms() <= revoked {
            return Err(ApiError::Unauthenticated(format!(
                "token: agent {agent_id}'s tokens issued before {revoked} ms were revoked"
            )));
        }
        Ok(())
    }

    /// Runs one command and answers it.
    async fn handle(&mut self, command: AgentCommand) -> Next {
        let command_id = command.command_id.clone();
        // One span per desk command, so whatever is logged while serving it names the
        // agent, the contact and this node (and the trace the node's calls carry).
        let contact_id = match &command.command {
            Some(Cmd::Accept(r) | Cmd::Reject(r) | Cmd::End(r)) => r.contact_id.clone(),
            Some(Cmd::Complete(c)) => c.contact_id.clone(),
            _ => String::new(),
        };
        let agent_id = match (&command.command, &self.agent_id) {
            (_, Some(agent)) => agent.clone(),
            (Some(Cmd::Login(login)), None) => login.agent_id.clone(),
            _ => String::new(),
        };
        let context = TraceContext::new();
        let span = tracing::info_span!(
            "agent_command",
            trace_id = %context.trace_id,
            node_id = self.node.node_id(),
            agent_id = %agent_id,
            contact_id = %contact_id,
        );
        let result = match self.action(command) {
            Ok(planned) => {
                trace::scope(context, self.run_planned(planned).instrument(span.clone())).await
            }
            Err(status) => Err(status),
        };
        // The desk's edge: the command's answer as the agent's client reads it.
        let result = result.map_err(Status::from);
        if let Err(status) = &result {
            span.in_scope(|| {
                tracing::debug!(code = ?status.code(), message = status.message(), "desk command refused")
            });
        }
        let logged_out = matches!(result, Ok(Done::LoggedOut));
        let (code, message) = match &result {
            Ok(_) => (0, String::new()),
            Err(status) => (status.code() as i32, status.message().to_owned()),
        };
        let reply = Out::Result(pb::CommandResult {
            command_id,
            code,
            message,
        });
        if !self.send(reply).await {
            // The agent is gone before hearing the answer: that is a drop, not a logout.
            return Next::End(End::Dropped);
        }
        if logged_out {
            Next::End(End::LoggedOut)
        } else {
            Next::Continue
        }
    }

    async fn run_planned(&mut self, planned: Planned) -> Result<Done, ApiError> {
        let Planned {
            action,
            request_id,
            kind,
        } = planned;
        match kind {
            Kind::FirstLogin(agent_id) => {
                // Subscribe before logging in: the login itself may produce an offer, and
                // a revocation applied from here on reaches the session. One applied
                // before is in the agent's record, checked once more now.
                self.feed = Some(self.node.events().subscribe());
                if let Err(error) = self.check_token(&agent_id) {
                    self.feed = None;
                    return Err(error);
                }
                self.agent_id = Some(agent_id);
                if let Err(status) = self.submit(action, request_id).await {
                    self.agent_id = None;
                    self.feed = None;
                    return Err(status);
                }
                self.send_snapshot().await;
                Ok(Done::Applied)
            }
            Kind::Logout => self
                .submit(action, request_id)
                .await
                .map(|()| Done::LoggedOut),
            Kind::Other => self
                .submit(action, request_id)
                .await
                .map(|()| Done::Applied),
        }
    }

    /// The domain action a command asks for, its idempotency key, and what kind it is.
    fn action(&self, command: AgentCommand) -> Result<Planned, ApiError> {
        let request_id = convert::request_id(command.command_id).map_err(invalid)?;
        let Some(command) = command.command else {
            return Err(invalid(DomainError::invalid("command", "required")));
        };
        let agent_id = match (&command, &self.agent_id) {
            (Cmd::Login(login), None) => {
                let id =
                    convert::required_id("login.agent_id", &login.agent_id).map_err(invalid)?;
                self.check_login(&id)?;
                id
            }
            (Cmd::Login(login), Some(current)) if login.agent_id == *current => current.clone(),
            (Cmd::Login(_), Some(current)) => {
                return Err(invalid(DomainError::precondition(
                    "login",
                    format!("this session is already logged in as {current}"),
                )))
            }
            (_, Some(current)) => {
                self.check_token(current)?;
                current.clone()
            }
            (_, None) => {
                return Err(invalid(DomainError::precondition(
                    "command",
                    "log in first (send login)",
                )))
            }
        };
        // Command ids are the agent's own: two agents' desks may both number theirs 1, 2, …
        let request_id = request_id.map(|id| format!("desk/{agent_id}/{id}"));
        let first_login = self.agent_id.is_none();
        let contact = |r: &pb::ContactRef, field: &str| {
            convert::required_id(field, &r.contact_id).map_err(invalid)
        };
        let action = match command {
            Cmd::Login(login) => {
                let action = Action::AgentLogin {
                    agent_id: agent_id.clone(),
                    session: self.session.clone(),
                    presence: if login.break_reason.is_empty() {
                        Presence::Available
                    } else {
                        Presence::Break {
                            reason: login.break_reason,
                        }
                    },
                };
                let kind = if first_login {
                    Kind::FirstLogin(agent_id)
                } else {
                    Kind::Other
                };
                return Ok(Planned {
                    action,
                    request_id,
                    kind,
                });
            }
            Cmd::SetState(set) => Action::SetAgentPresence {
                agent_id,
                presence: convert::presence_from_proto("set_state.state", set.state, &set.reason)
                    .map_err(invalid)?,
            },
            Cmd::Accept(r) => Action::AcceptOffer {
                contact_id: contact(&r, "accept.contact_id")?,
                agent_id,
            },
            Cmd::Reject(r) => Action::RejectOffer {
                contact_id: contact(&r, "reject.contact_id")?,
                agent_id,
            },
            Cmd::End(r) => Action::EndContact {
                contact_id: contact(&r, "end.contact_id")?,
                agent_id,
            },
            Cmd::Complete(c) => Action::CompleteContact {
                contact_id: convert::required_id("complete.contact_id", &c.contact_id)
                    .map_err(invalid)?,
                agent_id,
                disposition: c.disposition,
                notes: c.notes,
            },
            Cmd::Logout(_) => {
                return Ok(Planned {
                    action: Action::SetAgentPresence {
                        agent_id,
                        presence: Presence::Offline,
                    },
                    request_id,
                    kind: Kind::Logout,
                })
            }
        };
        Ok(Planned {
            action,
            request_id,
            kind: Kind::Other,
        })
    }

    async fn submit(&self, action: Action, request_id: Option<String>) -> Result<(), ApiError> {
        self.node
            .submit(Command::with_request_id(action, request_id).by(self.principal.clone()))
            .await
            .map(drop)
    }

    async fn send(&self, event: Out) -> bool {
        self.tx
            .send(Ok(AgentEvent { event: Some(event) }))
            .await
            .is_ok()
    }

    /// The agent and every contact it holds, as this node has them now.
    async fn send_snapshot(&self) {
        let Some(agent_id) = &self.agent_id else {
            return;
        };
        let messages: Vec<Out> = {
            let source = self.node.applied();
            let applied = source.read();
            let state = &applied.domain;
            let Some(agent) = state.agent(agent_id) else {
                return;
            };
            std::iter::once(Out::Agent(convert::agent_to_proto(agent)))
                .chain(
                    agent
                        .held
                        .keys()
                        .filter_map(|id| state.contact(id))
                        .map(|c| Out::Contact(convert::contact_to_proto(c))),
                )
                .collect()
        };
        for message in messages {
            if !self.send(message).await {
                return;
            }
        }
    }

    /// Pushes one applied event to the agent if it concerns them. Returns false when the
    /// agent is gone.
    async fn forward(&mut self, record: Result<Arc<EventRecord>, RecvError>) -> bool {
        let record = match record {
            Ok(record) => record,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "agent session fell behind the event feed; resending its state"
                );
                self.send_snapshot().await;
                return true;
            }
            Err(RecvError::Closed) => {
                // The feed restarted (this node installed a snapshot): events in between
                // are not available, so start over from the agent's current state.
                tracing::info!("event feed restarted; resending the agent's state");
                self.feed = Some(self.node.events().subscribe());
                self.send_snapshot().await;
                return true;
            }
        };
        let Some(agent_id) = self.agent_id.as_deref() else {
            return true;
        };
        if !record.event.concerns_agent(agent_id) {
            return true;
        }
        let message = {
            let source = self.node.applied();
            let applied = source.read();
            let state = &applied.domain;
            match &record.event {
                Event::OfferWithdrawn {
                    contact_id, reason, ..
                } => Some(Out::OfferWithdrawn(pb::OfferWithdrawn {
                    contact_id: contact_id.clone(),
                    reason: convert::withdraw_reason_name(*reason).to_owned(),
                })),
                Event::AgentStateChanged { .. } | Event::AgentUpserted { .. } => state
                    .agent(agent_id)
                    .map(|a| Out::Agent(convert::agent_to_proto(a))),
                event => event
                    .contact_id()
                    .and_then(|id| state.contact(id))
                    .map(|c| Out::Contact(convert::contact_to_proto(c))),
            }
        };
        match message {
            Some(message) => self.send(message).await,
            None => true,
        }
    }
}

/// The next event of the feed, or never when the session has none yet.
async fn next_record(
    feed: &mut Option<broadcast::Receiver<Arc<EventRecord>>>,
) -> Result<Arc<EventRecord>, RecvError> {
    match feed {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}

/// A name for a new session, unique across the cluster: the node, the time, a counter.
fn session_name(node: u64) -> String {
    banyan_env::ids::unique(&format!("n{node}-"))
}

/// Records that an agent's session dropped, retrying through a leader election. The
/// command carries the session, so it changes nothing once the agent logged in again
/// elsewhere, and an id, so a retry of it applies once.
async fn record_disconnect(
    node: impl Backend,
    agent_id: String,
    session: String,
    principal: Principal,
) {
    let command = Command::with_request_id(
        Action::AgentDisconnected {
            agent_id: agent_id.clone(),
            session: session.clone(),
        },
        Some(format!("desk/{agent_id}/drop/{session}")),
    )
    .by(principal);
    let deadline = tokio::time::Instant::now() + DISCONNECT_RETRY;
    let mut pause = Duration::from_millis(100);
    loop {
        match node.submit(command.clone()).await {
            Ok(_) => {
                tracing::info!(
                    agent_id,
                    "agent session dropped; offers returned to the queue"
                );
                return;
            }
            Err(status)
                if status.code() == tonic::Code::Unavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(status) => {
                tracing::warn!(agent_id, %status, "could not record a dropped agent session");
                return;
            }
        }
    }
}
