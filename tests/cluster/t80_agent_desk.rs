//! Agents work through `AgentDesk` sessions on different core nodes while contacts arrive;
//! the leader is killed mid-run. Afterwards every acknowledged contact exists exactly once
//! on every node with a legal history, and the event stream shows no agent over capacity
//! and no contact held by two agents.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use banyan_client::Client;
use banyan_harness::desk::DeskBehaviour;
use banyan_harness::{check_contacts, wait_until, ContactOp, DeskAgent};
use banyan_proto::v1 as pb;
use banyan_tests::{spread_clients, three_nodes, DEADLINE};

const AGENTS: usize = 6;
const CONTACTS: usize = 120;

fn queue() -> pb::Queue {
    pb::Queue {
        id: "support".into(),
        name: "Support".into(),
        channels: vec![pb::Channel::Voice.into(), pb::Channel::Chat.into()],
        required_skills: [("billing".to_owned(), 2)].into(),
        wrap_up_ms: Some(5_000),
        dispositions: vec!["resolved".into(), "escalated".into()],
        offer_timeout_ms: 4_000,
        ..Default::default()
    }
}

fn agent(i: usize) -> pb::Agent {
    pb::Agent {
        id: format!("agent-{i}"),
        name: format!("Agent {i}"),
        site: "hq".into(),
        skills: [("billing".to_owned(), 3 + (i % 5) as u32)].into(),
        capacity: Some(pb::Capacity {
            voice: 1,
            chat: 2,
            email: 0,
            callback: 1,
        }),
        ..Default::default()
    }
}

/// Creates contacts from several clients, recording what each learned.
async fn create_contacts(
    clients: Vec<Client>,
    ops: Arc<Mutex<Vec<ContactOp>>>,
    from: usize,
    to: usize,
) {
    let count = clients.len();
    let tasks = clients.into_iter().enumerate().map(|(worker, client)| {
        let ops = ops.clone();
        tokio::spawn(async move {
            for n in (from + worker..to).step_by(count) {
                let request_id = format!("ad-{n}");
                let channel = if n % 3 == 0 {
                    pb::Channel::Chat
                } else {
                    pb::Channel::Voice
                };
                let result = client
                    .create_contact(pb::CreateContactRequest {
                        request_id: request_id.clone(),
                        channel: channel.into(),
                        queue_id: "support".into(),
                        intent: "billing question".into(),
                        priority: (n % 4) as i64,
                        ..Default::default()
                    })
                    .await;
                ops.lock().unwrap().push(ContactOp::of(request_id, &result));
            }
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_agents_on_every_node_serve_contacts_through_a_leader_kill() {
    let (mut cluster, leader) = three_nodes(&[]).await;
    let client = cluster.client().unwrap();
    client
        .upsert_queue(pb::UpsertQueueRequest {
            queue: Some(queue()),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..AGENTS {
        client
            .upsert_agent(pb::UpsertAgentRequest {
                agent: Some(agent(i)),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Each agent's session starts on a different node; on a drop it moves to the next.
    let addrs: Vec<String> = [1, 2, 3].map(|id| cluster.addr(id).unwrap()).to_vec();
    let agents: Vec<DeskAgent> = (0..AGENTS)
        .map(|i| {
            let endpoints = (0..3).map(|k| addrs[(i + k) % 3].clone()).collect();
            DeskAgent::start(
                &format!("agent-{i}"),
                endpoints,
                DeskBehaviour::default(),
                cluster.agent_security(&format!("agent-{i}")).unwrap(),
            )
        })
        .collect();

    let ops = Arc::new(Mutex::new(Vec::new()));
    create_contacts(spread_clients(&cluster), ops.clone(), 0, CONTACTS / 2).await;
    // Mid-run: the leader dies while agents hold contacts.
    cluster.kill(leader).unwrap();
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    cluster.wait_for_leader(&survivors, DEADLINE).await.unwrap();
    create_contacts(
        spread_clients(&cluster),
        ops.clone(),
        CONTACTS / 2,
        CONTACTS,
    )
    .await;
    cluster.start(leader).unwrap();

    // Every acknowledged contact gets served to the end.
    let acknowledged: Vec<String> = ops
        .lock()
        .unwrap()
        .iter()
        .filter_map(|o| o.contact_id.clone())
        .collect();
    let reader = cluster.client().unwrap();
    wait_until("every acknowledged contact completed", DEADLINE * 2, || {
        let reader = reader.clone();
        let acknowledged = acknowledged.clone();
        async move {
            let contacts = reader.all_contacts(pb::ReadConsistency::Local).await.ok()?;
            let done = contacts
                .iter()
                .filter(|c| acknowledged.contains(&c.id))
                .filter(|c| c.state == pb::ContactState::Completed as i32)
                .count();
            (done == acknowledged.len()).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(30)));

    let mut stats = Vec::new();
    for agent in agents {
        stats.push((agent.agent_id.clone(), agent.stop().await));
    }
    let (nodes, index) = cluster.final_contacts(&[1, 2, 3], DEADLINE).await.unwrap();
    // A node that ran throughout has the whole event history.
    let witness = survivors[0];
    let events = cluster.events(witness, index, DEADLINE).await.unwrap();
    // Resuming from an index gives exactly the events from there on.
    let middle = events[events.len() / 2].index;
    let resumed = cluster
        .events_from(witness, middle, index, DEADLINE)
        .await
        .unwrap();
    let suffix: Vec<_> = events
        .iter()
        .filter(|e| e.index >= middle)
        .cloned()
        .collect();
    assert_eq!(resumed, suffix, "WatchEvents from index {middle}");
    let ops = ops.lock().unwrap().clone();
    let report = check_contacts(&ops, &nodes, &events, "ad-");
    assert!(report.is_ok(), "{report}");
    assert!(report.acknowledged >= CONTACTS * 9 / 10, "{report}");
    assert!(report.connected >= report.acknowledged, "{report}");
    // Agents on every node took part.
    for (agent, stats) in &stats {
        assert!(
            stats.completed.load(Ordering::Relaxed) > 0,
            "{agent} completed nothing"
        );
    }
    let completed = nodes[0]
        .contacts
        .iter()
        .filter(|c| c.disposition == "resolved")
        .count();
    assert!(
        completed >= report.acknowledged,
        "{completed} resolved; {report}"
    );
}
