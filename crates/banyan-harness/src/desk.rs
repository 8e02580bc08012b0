//! Simulated agents: each works through a real `AgentDesk` session the way an agent's
//! desktop would: logs in, accepts what is offered, talks for a while, ends the call and
//! completes it with a disposition. When its node goes away it reconnects to the next one
//! and logs in again; commands carry stable ids, so a command resent after a reconnect is
//! applied once.
//!
//! Used by cluster tests, drills and the demo.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banyan_client::Security;
use banyan_proto::v1::agent_command::Command as Cmd;
use banyan_proto::v1::agent_desk_client::AgentDeskClient;
use banyan_proto::v1::agent_event::Event as In;
use banyan_proto::v1::{self as pb, AgentCommand};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::Code;

/// What a simulated agent did, readable while it runs.
#[derive(Debug, Default)]
pub struct DeskStats {
    pub offers: AtomicU64,
    pub connected: AtomicU64,
    pub completed: AtomicU64,
    pub reconnects: AtomicU64,
    pub refused: AtomicU64,
}

/// How a simulated agent behaves.
#[derive(Debug, Clone)]
pub struct DeskBehaviour {
    /// How long it talks before ending a contact.
    pub talk: Duration,
    /// How long it spends in wrap-up before completing a contact.
    pub wrap_up: Duration,
    pub disposition: String,
    /// Takes a break after this many completed contacts, if set.
    pub breaks: Option<Breaks>,
}

/// An agent's breaks: after every `after` contacts, `length` away.
#[derive(Debug, Clone)]
pub struct Breaks {
    pub after: u64,
    pub length: Duration,
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

pub struct DeskAgent {
    pub agent_id: String,
    pub stats: Arc<DeskStats>,
    stop: watch::Sender<bool>,
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
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(
            agent_id.to_owned(),
            endpoints,
            security,
            behaviour,
            stats.clone(),
            stopped,
        ));
        Self {
            agent_id: agent_id.to_owned(),
            stats,
            stop,
            task,
        }
    }

    /// Logs out (when connected) and ends the agent.
    pub async fn stop(self) -> Arc<DeskStats> {
        let _ = self.stop.send(true);
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

async fn run(
    agent_id: String,
    endpoints: Vec<String>,
    security: Security,
    behaviour: DeskBehaviour,
    stats: Arc<DeskStats>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut attempt = 0usize;
    let mut sessions = 0u64;
    // Command ids are idempotency keys: unique to this simulated agent's run.
    let run_id = banyan_client::new_request_id();
    // Contacts counted once each, across reconnects.
    let mut seen_offers: BTreeSet<String> = BTreeSet::new();
    let mut seen_connected: BTreeSet<String> = BTreeSet::new();
    let mut seen_completed: BTreeSet<String> = BTreeSet::new();
    // Until when the agent is away on a break of its own choosing.
    let mut away_until: Option<tokio::time::Instant> = None;
    while !*stopped.borrow() {
        let endpoint = &endpoints[attempt % endpoints.len()];
        attempt += 1;
        let (tx, rx) = mpsc::channel::<AgentCommand>(64);
        let session = async {
            let channel = banyan_client::channel(&security, endpoint).ok()?;
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            banyan_client::authorize(&security, &mut request);
            AgentDeskClient::new(channel)
                .session(request)
                .await
                .ok()
                .map(|r| r.into_inner())
        };
        let Some(mut inbound) = session.await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        sessions += 1;
        if sessions > 1 {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let login = command(
            format!("login-{run_id}-{sessions}"),
            Cmd::Login(pb::Login {
                agent_id: agent_id.clone(),
                break_reason: String::new(),
            }),
        );
        // Commands awaiting their result, by id, to resend after a retryable failure.
        let mut pending: BTreeMap<String, AgentCommand> = BTreeMap::new();
        pending.insert(login.command_id.clone(), login.clone());
        if tx.send(login).await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                _ = stopped.changed() => {
                    let logout = command(format!("logout-{run_id}-{sessions}"), Cmd::Logout(pb::Logout {}));
                    let _ = tx.send(logout).await;
                    // Wait for the logout's result (or the stream's end), briefly.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Ok(Some(event)) = inbound.message().await {
                            if matches!(event.event, Some(In::Result(ref r)) if r.command_id.starts_with("logout-")) {
                                return;
                            }
                        }
                    }).await;
                    return;
                }
                message = inbound.message() => {
                    let Ok(Some(event)) = message else {
                        break;
                    };
                    match event.event {
                        Some(In::Contact(contact)) => {
                            let me = agent_id.as_str();
                            let next = match pb::ContactState::try_from(contact.state) {
                                Ok(pb::ContactState::Offered) if contact.offered_to.iter().any(|a| a == me) => {
                                    if seen_offers.insert(contact.id.clone()) {
                                        stats.offers.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Some((Duration::ZERO, command(format!("accept-{me}-{}", contact.id), Cmd::Accept(contact_ref(&contact.id)))))
                                }
                                Ok(pb::ContactState::Connected) if contact.agent_id == me => {
                                    if seen_connected.insert(contact.id.clone()) {
                                        stats.connected.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Some((behaviour.talk, command(format!("end-{me}-{}", contact.id), Cmd::End(contact_ref(&contact.id)))))
                                }
                                Ok(pb::ContactState::WrapUp) if contact.agent_id == me => {
                                    Some((behaviour.wrap_up, command(format!("complete-{me}-{}", contact.id), Cmd::Complete(pb::Complete {
                                        contact_id: contact.id.clone(),
                                        disposition: behaviour.disposition.clone(),
                                        notes: String::new(),
                                    }))))
                                }
                                Ok(pb::ContactState::Completed) if contact.agent_id == me => {
                                    let mut next = None;
                                    if seen_completed.insert(contact.id.clone()) {
                                        let done = stats.completed.fetch_add(1, Ordering::Relaxed) + 1;
                                        if let Some(breaks) = behaviour.breaks.as_ref().filter(|b| b.after > 0 && done.is_multiple_of(b.after)) {
                                            away_until = Some(tokio::time::Instant::now() + breaks.length);
                                            let back = command(
                                                format!("back-{run_id}-{done}"),
                                                Cmd::SetState(pb::SetState { state: pb::AgentState::Available.into(), reason: String::new() }),
                                            );
                                            pending.insert(back.command_id.clone(), back.clone());
                                            send_later(&tx, breaks.length, back);
                                            next = Some((Duration::ZERO, command(
                                                format!("break-{run_id}-{done}"),
                                                Cmd::SetState(pb::SetState { state: pb::AgentState::Break.into(), reason: breaks.reason.clone() }),
                                            )));
                                        }
                                    }
                                    next
                                }
                                _ => None,
                            };
                            if let Some((delay, cmd)) = next {
                                pending.insert(cmd.command_id.clone(), cmd.clone());
                                send_later(&tx, delay, cmd);
                            }
                        }
                        Some(In::Agent(agent)) => {
                            // Back to work after being benched by missed offers or a drop.
                            let away = away_until.is_some_and(|until| tokio::time::Instant::now() < until);
                            let benched = agent.state == pb::AgentState::Break as i32 && !away;
                            if benched {
                                let cmd = command(
                                    format!("ready-{run_id}-{sessions}-{}", agent.state_since_ms),
                                    Cmd::SetState(pb::SetState { state: pb::AgentState::Available.into(), reason: String::new() }),
                                );
                                pending.insert(cmd.command_id.clone(), cmd.clone());
                                send_later(&tx, Duration::ZERO, cmd);
                            }
                        }
                        Some(In::Result(result)) => {
                            let Some(cmd) = pending.remove(&result.command_id) else { continue };
                            let code = Code::from_i32(result.code);
                            match code {
                                Code::Ok => {}
                                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Aborted => {
                                    pending.insert(cmd.command_id.clone(), cmd.clone());
                                    send_later(&tx, Duration::from_millis(250), cmd);
                                }
                                _ => {
                                    stats.refused.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Some(In::OfferWithdrawn(_)) | None => {}
                    }
                }
            }
        }
    }
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
