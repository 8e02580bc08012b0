//! Bad input on every contact-center RPC (contacts, queues, agents, events, the agent
//! desk) gets a clear status naming the field, through the leader and a follower alike,
//! and changes nothing.

use banyan_client::Client;
use banyan_proto::v1::agent_command::Command as Cmd;
use banyan_proto::v1::agent_desk_client::AgentDeskClient;
use banyan_proto::v1::agent_event::Event as In;
use banyan_proto::v1::contact_center_client::ContactCenterClient;
use banyan_proto::v1::{self as pb, ReadConsistency};
use banyan_tests::{expect_refused, other_than, pinned, three_nodes};
use tonic::Code;

fn queue(id: &str) -> pb::Queue {
    pb::Queue {
        id: id.into(),
        name: "Sales".into(),
        dispositions: vec!["sold".into()],
        ..Default::default()
    }
}

fn agent(id: &str) -> pb::Agent {
    pb::Agent {
        id: id.into(),
        name: "Ada".into(),
        site: "hq".into(),
        ..Default::default()
    }
}

fn contact(request_id: &str) -> pb::CreateContactRequest {
    pb::CreateContactRequest {
        request_id: request_id.into(),
        channel: pb::Channel::Voice.into(),
        queue_id: "sales".into(),
        intent: "buy".into(),
        ..Default::default()
    }
}

/// Everything a bad request could have touched, as the leader sees it.
async fn snapshot(
    client: &Client,
) -> (
    Vec<pb::Contact>,
    Vec<pb::Queue>,
    Vec<pb::Agent>,
    pb::QueueStats,
) {
    let contacts = client
        .all_contacts(ReadConsistency::Linearizable)
        .await
        .unwrap();
    let queues = client
        .list_queues(pb::ListQueuesRequest::default())
        .await
        .unwrap()
        .queues;
    let agents = client
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap()
        .agents;
    let mut stats = client
        .get_queue_stats(pb::GetQueueStatsRequest {
            queue_id: "sales".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The figures refer to the cluster clock, which reads may see advance.
    stats.at_ms = 0;
    stats.longest_wait_ms = 0;
    (contacts, queues, agents, stats)
}

async fn bad_contacts(client: &Client, queued: &str) {
    use Code::*;
    let cases: Vec<(pb::CreateContactRequest, Code, &str)> = vec![
        (
            pb::CreateContactRequest {
                queue_id: "nope".into(),
                ..contact("")
            },
            NotFound,
            "contact.queue_id",
        ),
        (
            pb::CreateContactRequest {
                channel: 0,
                ..contact("")
            },
            InvalidArgument,
            "channel",
        ),
        (
            pb::CreateContactRequest {
                channel: 42,
                ..contact("")
            },
            InvalidArgument,
            "channel",
        ),
        (
            pb::CreateContactRequest {
                priority: -1,
                ..contact("")
            },
            InvalidArgument,
            "contact.priority",
        ),
        (
            pb::CreateContactRequest {
                priority: 1 << 40,
                ..contact("")
            },
            InvalidArgument,
            "contact.priority",
        ),
        (
            pb::CreateContactRequest {
                intent: "i".repeat(10_000),
                ..contact("")
            },
            InvalidArgument,
            "contact.intent",
        ),
        (
            pb::CreateContactRequest {
                customer_id: "ghost".into(),
                ..contact("")
            },
            NotFound,
            "contact.customer_id",
        ),
        (
            pb::CreateContactRequest {
                contact_id: queued.into(),
                ..contact("")
            },
            AlreadyExists,
            "contact.id",
        ),
        (
            pb::CreateContactRequest {
                contact_id: "has space".into(),
                ..contact("")
            },
            InvalidArgument,
            "contact_id",
        ),
        (
            pb::CreateContactRequest {
                site: "x".repeat(500),
                ..contact("")
            },
            InvalidArgument,
            "contact.origin_site",
        ),
        // The first contact's key with another payload.
        (
            pb::CreateContactRequest {
                intent: "other".into(),
                ..contact("first")
            },
            FailedPrecondition,
            "request_id",
        ),
    ];
    for (request, code, field) in cases {
        expect_refused(client.create_contact(request).await, code, field);
    }
    let get = |id: &str| pb::GetContactRequest {
        id: id.into(),
        ..Default::default()
    };
    expect_refused(client.get_contact(get("")).await, InvalidArgument, "id");
    expect_refused(client.get_contact(get("ghost")).await, NotFound, "id");
    let list = |f: fn(&mut pb::ListContactsRequest)| {
        let mut r = pb::ListContactsRequest::default();
        f(&mut r);
        r
    };
    expect_refused(
        client.list_contacts(list(|r| r.limit = 5000)).await,
        InvalidArgument,
        "limit",
    );
    expect_refused(
        client.list_contacts(list(|r| r.state = 99)).await,
        InvalidArgument,
        "state",
    );
    expect_refused(
        client
            .list_contacts(list(|r| r.page_token = "a b".into()))
            .await,
        InvalidArgument,
        "page_token",
    );
    expect_refused(
        client.list_contacts(list(|r| r.consistency = 9)).await,
        InvalidArgument,
        "consistency",
    );
    let complete = |contact_id: &str, agent_id: &str| pb::CompleteContactRequest {
        contact_id: contact_id.into(),
        agent_id: agent_id.into(),
        disposition: "sold".into(),
        ..Default::default()
    };
    // Illegal transition: a queued contact cannot be completed.
    expect_refused(
        client.complete_contact(complete(queued, "")).await,
        FailedPrecondition,
        "contact_id",
    );
    expect_refused(
        client.complete_contact(complete("ghost", "")).await,
        NotFound,
        "contact_id",
    );
    expect_refused(
        client.complete_contact(complete(queued, "ghost")).await,
        NotFound,
        "agent_id",
    );
    let mut noisy = complete(queued, "");
    noisy.notes = "n".repeat(10_000);
    expect_refused(
        client.complete_contact(noisy).await,
        InvalidArgument,
        "notes",
    );
    let abandon = |id: &str| pb::AbandonContactRequest {
        contact_id: id.into(),
        ..Default::default()
    };
    expect_refused(
        client.abandon_contact(abandon("ghost")).await,
        NotFound,
        "contact_id",
    );
    expect_refused(
        client.abandon_contact(abandon("")).await,
        InvalidArgument,
        "contact_id",
    );
    let transfer = |queue_id: &str| pb::TransferContactRequest {
        contact_id: queued.into(),
        queue_id: queue_id.into(),
        ..Default::default()
    };
    expect_refused(
        client.transfer_contact(transfer("ghost")).await,
        NotFound,
        "queue_id",
    );
    expect_refused(
        client.transfer_contact(transfer("sales")).await,
        FailedPrecondition,
        "queue_id",
    );
}

async fn bad_queues_and_agents(client: &Client) {
    use Code::*;
    type QueueCase = (fn(&mut pb::Queue), Code, &'static str);
    let queue_cases: Vec<QueueCase> = vec![
        (|q| q.id.clear(), InvalidArgument, "queue.id"),
        (|q| q.name = "n".repeat(1000), InvalidArgument, "queue.name"),
        (|q| q.strategy = 99, InvalidArgument, "queue.strategy"),
        (
            |q| {
                q.required_skills.insert("billing".into(), 11);
            },
            InvalidArgument,
            "queue.required_skills[billing]",
        ),
        (
            |q| q.offer_timeout_ms = 10,
            InvalidArgument,
            "queue.offer_timeout_ms",
        ),
        (|q| q.max_wait_ms = -5, InvalidArgument, "queue.max_wait_ms"),
        (
            |q| q.channels = vec![77],
            InvalidArgument,
            "queue.channels[0]",
        ),
        (
            |q| {
                q.escalation = vec![pb::EscalationStep {
                    after_ms: 1000,
                    action: None,
                }]
            },
            InvalidArgument,
            "queue.escalation[0].action",
        ),
        (
            |q| {
                q.escalation = vec![pb::EscalationStep {
                    after_ms: 1000,
                    action: Some(pb::escalation_step::Action::OverflowQueueId("ghost".into())),
                }]
            },
            NotFound,
            "queue.escalation[0].queue_id",
        ),
    ];
    for (mutate, code, field) in queue_cases {
        let mut q = queue("sales");
        mutate(&mut q);
        let request = pb::UpsertQueueRequest {
            queue: Some(q),
            ..Default::default()
        };
        expect_refused(client.upsert_queue(request).await, code, field);
    }
    expect_refused(
        client.upsert_queue(pb::UpsertQueueRequest::default()).await,
        InvalidArgument,
        "queue",
    );
    expect_refused(
        client
            .list_queues(pb::ListQueuesRequest { consistency: 9 })
            .await,
        InvalidArgument,
        "consistency",
    );
    let stats = |id: &str| pb::GetQueueStatsRequest {
        queue_id: id.into(),
        ..Default::default()
    };
    expect_refused(
        client.get_queue_stats(stats("ghost")).await,
        NotFound,
        "queue_id",
    );
    expect_refused(
        client.get_queue_stats(stats("")).await,
        InvalidArgument,
        "queue_id",
    );

    type AgentCase = (fn(&mut pb::Agent), &'static str);
    let agent_cases: Vec<AgentCase> = vec![
        (|a| a.id = "bad id".into(), "agent.id"),
        (|a| a.site.clear(), "agent.site"),
        (|a| a.name = "n".repeat(1000), "agent.name"),
        (
            |a| {
                a.skills.insert("billing".into(), 0);
            },
            "agent.skills[billing]",
        ),
        (
            |a| {
                a.capacity = Some(pb::Capacity {
                    voice: 1000,
                    ..Default::default()
                })
            },
            "agent.capacity.voice",
        ),
    ];
    for (mutate, field) in agent_cases {
        let mut a = agent("a1");
        mutate(&mut a);
        let request = pb::UpsertAgentRequest {
            agent: Some(a),
            ..Default::default()
        };
        expect_refused(client.upsert_agent(request).await, InvalidArgument, field);
    }
    expect_refused(
        client
            .list_agents(pb::ListAgentsRequest {
                state: 99,
                ..Default::default()
            })
            .await,
        InvalidArgument,
        "state",
    );
}

async fn bad_watch(security: &banyan_client::Security, addr: &str) {
    let mut cc = ContactCenterClient::new(banyan_client::channel(security, addr).unwrap());
    let request = pb::WatchEventsRequest {
        contact_id: "bad id".into(),
        ..Default::default()
    };
    expect_refused(
        cc.watch_events(request).await.map(drop),
        Code::InvalidArgument,
        "contact_id",
    );
}

/// Sends `commands` on one desk session and returns the results, in order.
async fn desk_results(
    security: &banyan_client::Security,
    addr: &str,
    commands: Vec<pb::AgentCommand>,
) -> Vec<pb::CommandResult> {
    let mut desk = AgentDeskClient::new(banyan_client::channel(security, addr).unwrap());
    let expected = commands.len();
    let mut inbound = desk
        .session(futures::stream::iter(commands))
        .await
        .unwrap()
        .into_inner();
    let mut results = Vec::new();
    while results.len() < expected {
        match inbound.message().await.unwrap() {
            Some(pb::AgentEvent {
                event: Some(In::Result(r)),
            }) => results.push(r),
            Some(_) => {}
            None => break,
        }
    }
    results
}

async fn bad_desk(security: &banyan_client::Security, addr: &str, queued: &str) {
    let cmd = |id: &str, c: Cmd| pb::AgentCommand {
        command_id: id.into(),
        command: Some(c),
    };
    let contact = |id: &str| pb::ContactRef {
        contact_id: id.into(),
    };
    // Before a login nothing is accepted; an unknown agent cannot log in.
    let results = desk_results(
        security,
        addr,
        vec![
            cmd("d1", Cmd::Accept(contact(queued))),
            cmd(
                "d2",
                Cmd::Login(pb::Login {
                    agent_id: "ghost".into(),
                    ..Default::default()
                }),
            ),
            cmd(
                "d3",
                Cmd::Login(pb::Login {
                    agent_id: "bad id".into(),
                    ..Default::default()
                }),
            ),
            pb::AgentCommand {
                command_id: "d4".into(),
                command: None,
            },
        ],
    )
    .await;
    let codes: Vec<(i32, &str)> = results
        .iter()
        .map(|r| (r.code, r.message.as_str()))
        .collect();
    assert_eq!(codes[0].0, Code::FailedPrecondition as i32, "{codes:?}");
    assert!(codes[0].1.contains("login"), "{codes:?}");
    assert_eq!(codes[1].0, Code::NotFound as i32, "{codes:?}");
    assert!(codes[1].1.contains("agent_id"), "{codes:?}");
    assert_eq!(codes[2].0, Code::InvalidArgument as i32, "{codes:?}");
    assert!(codes[2].1.contains("login.agent_id"), "{codes:?}");
    assert_eq!(codes[3].0, Code::InvalidArgument as i32, "{codes:?}");
    assert!(codes[3].1.contains("command"), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t75_contact_center_bad_input_is_refused_and_changes_nothing() {
    let (cluster, leader) = three_nodes(&[]).await;
    let follower = other_than(&[1, 2, 3], leader);
    let setup = pinned(&cluster, leader);
    setup
        .upsert_queue(pb::UpsertQueueRequest {
            queue: Some(queue("sales")),
            ..Default::default()
        })
        .await
        .unwrap();
    setup
        .upsert_queue(pb::UpsertQueueRequest {
            queue: Some(queue("service")),
            ..Default::default()
        })
        .await
        .unwrap();
    // The agent stays offline, so the contact stays queued and no timer runs.
    setup
        .upsert_agent(pb::UpsertAgentRequest {
            agent: Some(agent("a1")),
            ..Default::default()
        })
        .await
        .unwrap();
    let queued = setup.create_contact(contact("first")).await.unwrap().id;
    let before = snapshot(&setup).await;

    for id in [leader, follower] {
        let client = pinned(&cluster, id);
        bad_contacts(&client, &queued).await;
        bad_queues_and_agents(&client).await;
        let addr = cluster.addr(id).unwrap();
        bad_watch(&cluster.security(), &addr).await;
        bad_desk(&cluster.security(), &addr, &queued).await;
    }
    let after = snapshot(&setup).await;
    assert_eq!(before, after, "refused requests changed the state");
}
