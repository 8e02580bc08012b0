//! Timers and dropped sessions through a real cluster: offers an agent lets expire go back
//! to the queue when the leader's `Tick` fires, missed offers in a row put the agent on
//! break, and a desk stream that drops returns its offers and takes the agent offline.

use banyan_client::Client;
use banyan_harness::wait_until;
use banyan_proto::v1 as pb;
use banyan_proto::v1::agent_command::Command as Cmd;
use banyan_proto::v1::agent_desk_client::AgentDeskClient;
use banyan_proto::v1::agent_event::Event as In;
use banyan_tests::{contact_now, other_than, three_nodes, DEADLINE};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

async fn setup(client: &Client) {
    let queue = pb::Queue {
        id: "q".into(),
        name: "Quick".into(),
        offer_timeout_ms: 1_000,
        max_missed_offers: 2,
        ..Default::default()
    };
    client
        .upsert_queue(pb::UpsertQueueRequest {
            queue: Some(queue),
            ..Default::default()
        })
        .await
        .unwrap();
    for id in ["sleepy", "leaver"] {
        let agent = pb::Agent {
            id: id.into(),
            name: id.into(),
            site: "hq".into(),
            ..Default::default()
        };
        client
            .upsert_agent(pb::UpsertAgentRequest {
                agent: Some(agent),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

/// A raw desk session: the sender of commands and the stream of what the node pushes.
async fn session(
    security: &banyan_client::Security,
    addr: &str,
    agent: &str,
) -> (
    mpsc::Sender<pb::AgentCommand>,
    tonic::Streaming<pb::AgentEvent>,
) {
    let (tx, rx) = mpsc::channel(16);
    let login = pb::AgentCommand {
        command_id: String::new(),
        command: Some(Cmd::Login(pb::Login {
            agent_id: agent.into(),
            ..Default::default()
        })),
    };
    tx.send(login).await.unwrap();
    let stream = AgentDeskClient::new(banyan_client::channel(security, addr).unwrap())
        .session(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

/// The next pushed event matching `want`, within the deadline.
async fn next_matching(
    stream: &mut tonic::Streaming<pb::AgentEvent>,
    want: impl Fn(&In) -> bool,
) -> In {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = stream
                .message()
                .await
                .unwrap()
                .expect("session open")
                .event
                .unwrap();
            if want(&event) {
                return event;
            }
        }
    })
    .await
    .expect("event within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t85_expired_offers_requeue_and_dropped_sessions_return_their_offers() {
    let (cluster, leader) = three_nodes(&[]).await;
    let client = cluster.client().unwrap();
    setup(&client).await;
    // The agent's session runs on a follower: offers come from its copy of the log.
    let follower = cluster.addr(other_than(&[1, 2, 3], leader)).unwrap();
    let (_keep, mut sleepy) = session(&cluster.security(), &follower, "sleepy").await;
    let create = |n: u32| pb::CreateContactRequest {
        request_id: format!("t85-{n}"),
        channel: pb::Channel::Voice.into(),
        queue_id: "q".into(),
        ..Default::default()
    };
    let first = client.create_contact(create(1)).await.unwrap();
    // Two offers in a row expire without an answer.
    for _ in 0..2 {
        next_matching(&mut sleepy, |e| matches!(e, In::Contact(c) if c.id == first.id && c.state == pb::ContactState::Offered as i32)).await;
        let withdrawn = next_matching(&mut sleepy, |e| matches!(e, In::OfferWithdrawn(_))).await;
        let In::OfferWithdrawn(w) = withdrawn else {
            unreachable!()
        };
        assert_eq!(
            (w.contact_id.as_str(), w.reason.as_str()),
            (first.id.as_str(), "EXPIRED")
        );
    }
    let benched = next_matching(
        &mut sleepy,
        |e| matches!(e, In::Agent(a) if a.state == pb::AgentState::Break as i32),
    )
    .await;
    let In::Agent(agent) = benched else {
        unreachable!()
    };
    assert_eq!(agent.break_reason, "missed offers");
    let requeued = contact_now(&client, &first.id).await;
    assert_eq!(
        requeued.state,
        pb::ContactState::Queued as i32,
        "{requeued:?}"
    );
    assert!(
        requeued
            .timeline
            .iter()
            .filter(|t| t.state == pb::ContactState::Offered as i32)
            .count()
            >= 2
    );

    // Another agent gets it, then drops its stream without logging out.
    let (leaver_tx, mut leaver) = session(&cluster.security(), &follower, "leaver").await;
    next_matching(
        &mut leaver,
        |e| matches!(e, In::Contact(c) if c.id == first.id && c.offered_to == ["leaver"]),
    )
    .await;
    drop(leaver_tx);
    drop(leaver);
    wait_until(
        "the dropped agent's offer returned and the agent offline",
        DEADLINE,
        || {
            let client = client.clone();
            let id = first.id.clone();
            async move {
                let contact = contact_now(&client, &id).await;
                let agents = client
                    .list_agents(pb::ListAgentsRequest::default())
                    .await
                    .ok()?
                    .agents;
                let leaver = agents.iter().find(|a| a.id == "leaver")?;
                (contact.state == pb::ContactState::Queued as i32
                    && contact.offered_to.is_empty()
                    && leaver.state == pb::AgentState::Offline as i32)
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();
}
