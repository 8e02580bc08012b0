//! Simulated agents: each works through a real `AgentDesk` session the way an agent's
//! desktop would: logs in, accepts what is offered, talks for a while, ends the call and
//! completes it with a disposition. When its node goes away it reconnects to the next one
//! and logs in again; commands carry stable ids, so a command resent after a reconnect is
//! applied once.
//!
//! Used by cluster tests, drills and the demo.

use banyan_env::{BeginOnDrop, Shutdown};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_client::Security;
use banyan_proto::v1::agent_command::Command as Cmd;
use banyan_proto::v1::agent_desk_client::AgentDeskClient;
use banyan_proto::v1::agent_event::Event as In;
use banyan_proto::v1::{self as pb, AgentCommand};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::Code;

/// What a simulated agent did, readable while it runs.
#[derive(Debug, Default)]
pub struct DeskStats {
    /// Distinct contacts offered to the agent, counted once across reconnects.
    pub offers: AtomicU64,
    /// Distinct contacts the agent was connected to.
    pub connected: AtomicU64,
    /// Distinct contacts the agent completed: the work a test expects to see done.
    pub completed: AtomicU64,
    /// Sessions opened after the first: how often the agent lost its node.
    pub reconnects: AtomicU64,
    /// Commands refused for good (not a passing failure worth resending).
    pub refused: AtomicU64,
}

/// How a simulated agent behaves.
#[derive(Debug, Clone)]
pub struct DeskBehaviour {
    /// How long it talks before ending a contact.
    pub talk: Duration,
    /// How long it spends in wrap-up before completing a contact.
    pub wrap_up: Duration,
    /// The disposition it completes each contact with.
    pub disposition: String,
    /// Takes a break after this many completed contacts, if set.
    pub breaks: Option<Breaks>,
}

/// An agent's breaks: after every `after` contacts, `length` away.
#[derive(Debug, Clone)]
pub struct Breaks {
    /// Completed contacts between breaks.
    pub after: u64,
    /// How long each break lasts before the agent is available again.
    pub length: Duration,
    /// The break reason the agent gives, as a real agent picks one.
    pub reason: String,
}

impl Default for DeskBehaviour {
    fn default() -> Self {
        Self {
            talk: Duration::from_millis(100),
            wrap_up: Duration::ZERO,
            disposition: "resolved".into(),
            breaks: None,
        }
    }
}

/// A running simulated agent, so tests and drills get contacts worked without a person.
pub struct DeskAgent {
    /// The agent it logs in as.
    pub agent_id: String,
    /// Its counters, shared with the running task so they can be read while it works.
    pub stats: Arc<DeskStats>,
    stop: Shutdown,
    /// A desk dropped without [`stop`](Self::stop) ends too.
    _stop_on_drop: BeginOnDrop,
    task: JoinHandle<()>,
}

impl DeskAgent {
    /// Starts an agent whose session runs on `endpoints[0]`, moving to the next endpoint
    /// whenever its session drops. `security` is the agent's credential (its desk token).
    pub fn start(
        agent_id: &str,
        endpoints: Vec<String>,
        behaviour: DeskBehaviour,
        security: Security,
    ) -> Self {
        let stats = Arc::new(DeskStats::default());
        let stop = Shutdown::new();
        let task = tokio::spawn(run(
            agent_id.to_owned(),
            endpoints,
            security,
            behaviour,
            stats.clone(),
            stop.clone(),
        ));
        Self {
            agent_id: agent_id.to_owned(),
            stats,
            _stop_on_drop: stop.begin_on_drop(),
            stop,
            task,
        }
    }

    /// Logs out (when connected) and ends the agent.
    pub async fn stop(self) -> Arc<DeskStats> {
        self.stop.begin();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        self.stats
    }
}

fn command(id: String, command: Cmd) -> AgentCommand {
    AgentCommand {
        command_id: id,
        command: Some(command),
    }
}

fn contact_ref(id: &str) -> pb::ContactRef {
    pb::ContactRef {
        contact_id: id.to_owned(),
    }
}

/// The agent's whole run: a session at a time, until it is stopped.
async fn run(
    agent_id: String,
    endpoints: Vec<String>,
    security: Security,
    behaviour: DeskBehaviour,
    stats: Arc<DeskStats>,
    stopped: Shutdown,
) {
    let mut desk = Desk {
        agent_id,
        endpoints,
        security,
        behaviour,
        stats,
        run_id: banyan_client::new_request_id(),
        attempt: 0,
        sessions: 0,
        seen_offers: BTreeSet::new(),
        seen_connected: BTreeSet::new(),
        seen_completed: BTreeSet::new(),
        away_until: None,
    };
    while !stopped.is_begun() {
        let Some(mut session) = desk.connect().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if !desk.log_in(&mut session).await {
            continue;
        }
        if let SessionEnd::Stopped = desk.serve(&mut session, &stopped).await {
            return;
        }
    }
}

/// What a simulated agent carries from one session to the next.
struct Desk {
    agent_id: String,
    endpoints: Vec<String>,
    security: Security,
    behaviour: DeskBehaviour,
    stats: Arc<DeskStats>,
    /// Command ids are idempotency keys: unique to this simulated agent's run.
    run_id: String,
    /// Connection attempts so far: the next one goes to the next endpoint.
    attempt: usize,
    /// Sessions opened so far: names each session's login, logout and ready commands.
    sessions: u64,
    /// Contacts counted once each, across reconnects: offered to the agent, connected
    /// to it, completed by it.
    seen_offers: BTreeSet<String>,
    seen_connected: BTreeSet<String>,
    seen_completed: BTreeSet<String>,
    /// Until when the agent is away on a break of its own choosing.
    away_until: Option<tokio::time::Instant>,
}

/// One session on a node: the commands going out, the events coming in.
struct Session {
    tx: mpsc::Sender<AgentCommand>,
    inbound: tonic::Streaming<pb::AgentEvent>,
    /// Commands awaiting their result, by id, to resend after a retryable failure.
    pending: BTreeMap<String, AgentCommand>,
}

/// How a session ended: the agent was stopped (logged out), or the session dropped.
enum SessionEnd {
    Stopped,
    Dropped,
}

impl Session {
    /// Sends `cmd` after `delay`, kept until its result so that a passing failure resends it.
    fn send_tracked(&mut self, delay: Duration, cmd: AgentCommand) {
        self.pending.insert(cmd.command_id.clone(), cmd.clone());
        send_later(&self.tx, delay, cmd);
    }
}

impl Desk {
    /// Opens a session on the next endpoint in turn; `None` when it cannot be had.
    async fn connect(&mut self) -> Option<Session> {
        let endpoint = &self.endpoints[self.attempt % self.endpoints.len()];
        self.attempt += 1;
        let (tx, rx) = mpsc::channel::<AgentCommand>(64);
        let channel = banyan_client::channel(&self.security, endpoint).ok()?;
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        banyan_client::authorize(&self.security, &mut request);
        let inbound = AgentDeskClient::new(channel)
            .session(request)
            .await
            .ok()?
            .into_inner();
        Some(Session {
            tx,
            inbound,
            pending: BTreeMap::new(),
        })
    }

    /// Counts the new session and logs in on it; false when the session is gone already.
    async fn log_in(&mut self, session: &mut Session) -> bool {
        self.sessions += 1;
        if self.sessions > 1 {
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let login = command(
            format!("login-{}-{}", self.run_id, self.sessions),
            Cmd::Login(pb::Login {
                agent_id: self.agent_id.clone(),
                break_reason: String::new(),
            }),
        );
        session
            .pending
            .insert(login.command_id.clone(), login.clone());
        session.tx.send(login).await.is_ok()
    }

    /// Works through one session's events until it drops or the agent is stopped.
    async fn serve(&mut self, session: &mut Session, stopped: &Shutdown) -> SessionEnd {
        loop {
            tokio::select! {
                () = stopped.begun() => {
                    self.log_out(session).await;
                    return SessionEnd::Stopped;
                }
                message = session.inbound.message() => {
                    let Ok(Some(event)) = message else {
                        return SessionEnd::Dropped;
                    };
                    self.handle(event.event, session);
                }
            }
        }
    }

    /// Logs out, then waits briefly for the logout's result (or the stream's end).
    async fn log_out(&self, session: &mut Session) {
        let logout = command(
            format!("logout-{}-{}", self.run_id, self.sessions),
            Cmd::Logout(pb::Logout {}),
        );
        let _ = session.tx.send(logout).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(Some(event)) = session.inbound.message().await {
                let Some(In::Result(result)) = event.event else {
                    continue;
                };
                if result.command_id.starts_with("logout-") {
                    return;
                }
            }
        })
        .await;
    }

    /// Acts on one message from the server.
    fn handle(&mut self, event: Option<In>, session: &mut Session) {
        match event {
            Some(In::Contact(contact)) => {
                if let Some((delay, cmd)) = self.next_step(&contact, session) {
                    session.send_tracked(delay, cmd);
                }
            }
            Some(In::Agent(agent)) => self.back_to_work(&agent, session),
            Some(In::Result(result)) => self.on_result(&result, session),
            Some(In::OfferWithdrawn(_)) | None => {}
        }
    }

    /// What the agent does about a contact it was shown, and after how long.
    fn next_step(
        &mut self,
        contact: &pb::Contact,
        session: &mut Session,
    ) -> Option<(Duration, AgentCommand)> {
        let me = self.agent_id.as_str();
        match pb::ContactState::try_from(contact.state) {
            Ok(pb::ContactState::Offered) if contact.offered_to.iter().any(|a| a == me) => {
                Some(self.accept(contact))
            }
            Ok(pb::ContactState::Connected) if contact.agent_id == me => Some(self.end(contact)),
            Ok(pb::ContactState::WrapUp) if contact.agent_id == me => Some(self.complete(contact)),
            Ok(pb::ContactState::Completed) if contact.agent_id == me => {
                self.after_completed(contact, session)
            }
            _ => None,
        }
    }

    /// Counts an offer (once per contact) and accepts it at once.
    fn accept(&mut self, contact: &pb::Contact) -> (Duration, AgentCommand) {
        count_once(&mut self.seen_offers, &self.stats.offers, &contact.id);
        let accept = command(
            format!("accept-{}-{}", self.agent_id, contact.id),
            Cmd::Accept(contact_ref(&contact.id)),
        );
        (Duration::ZERO, accept)
    }

    /// Counts a connected contact (once) and ends the conversation after the talk time.
    fn end(&mut self, contact: &pb::Contact) -> (Duration, AgentCommand) {
        count_once(&mut self.seen_connected, &self.stats.connected, &contact.id);
        let end = command(
            format!("end-{}-{}", self.agent_id, contact.id),
            Cmd::End(contact_ref(&contact.id)),
        );
        (self.behaviour.talk, end)
    }

    /// Completes a contact in wrap-up, with the disposition, after the wrap-up time.
    fn complete(&self, contact: &pb::Contact) -> (Duration, AgentCommand) {
        let complete = command(
            format!("complete-{}-{}", self.agent_id, contact.id),
            Cmd::Complete(pb::Complete {
                contact_id: contact.id.clone(),
                disposition: self.behaviour.disposition.clone(),
                notes: String::new(),
            }),
        );
        (self.behaviour.wrap_up, complete)
    }

    /// Counts a completed contact (once); when a break is due, takes it and plans the return.
    fn after_completed(
        &mut self,
        contact: &pb::Contact,
        session: &mut Session,
    ) -> Option<(Duration, AgentCommand)> {
        let done = count_once(&mut self.seen_completed, &self.stats.completed, &contact.id)?;
        let breaks = self
            .behaviour
            .breaks
            .as_ref()
            .filter(|b| b.after > 0 && done.is_multiple_of(b.after))?;
        self.away_until = Some(tokio::time::Instant::now() + breaks.length);
        let back = command(format!("back-{}-{done}", self.run_id), available());
        session.send_tracked(breaks.length, back);
        let away = command(
            format!("break-{}-{done}", self.run_id),
            Cmd::SetState(pb::SetState {
                state: pb::AgentState::Break.into(),
                reason: breaks.reason.clone(),
            }),
        );
        Some((Duration::ZERO, away))
    }

    /// Back to work after being benched by missed offers or a drop, unless away on a break.
    fn back_to_work(&self, agent: &pb::Agent, session: &mut Session) {
        let away = self
            .away_until
            .is_some_and(|until| tokio::time::Instant::now() < until);
        let benched = agent.state == pb::AgentState::Break as i32 && !away;
        if !benched {
            return;
        }
        let ready = command(
            format!(
                "ready-{}-{}-{}",
                self.run_id, self.sessions, agent.state_since_ms
            ),
            available(),
        );
        session.send_tracked(Duration::ZERO, ready);
    }

    /// Resends a command that failed for a passing reason; counts one refused for good.
    fn on_result(&self, result: &pb::CommandResult, session: &mut Session) {
        let Some(cmd) = session.pending.remove(&result.command_id) else {
            return;
        };
        match Code::from_i32(result.code) {
            Code::Ok => {}
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted => session.send_tracked(Duration::from_millis(250), cmd),
            _ => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Counts `id` the first time only, as a reconnect shows contacts again; the new count.
fn count_once(seen: &mut BTreeSet<String>, counter: &AtomicU64, id: &str) -> Option<u64> {
    seen.insert(id.to_owned())
        .then(|| counter.fetch_add(1, Ordering::Relaxed) + 1)
}

/// The command that makes the agent available again.
fn available() -> Cmd {
    Cmd::SetState(pb::SetState {
        state: pb::AgentState::Available.into(),
        reason: String::new(),
    })
}

/// Sends `cmd` on the session after `delay`; dropped if the session ended meanwhile (the
/// next session's login snapshot brings the contact back).
fn send_later(tx: &mpsc::Sender<AgentCommand>, delay: Duration, cmd: AgentCommand) {
    let tx = tx.clone();
    tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let _ = tx.send(cmd).await;
    });
}
