//! Site leases through a real cluster: a branch's renewal (sent to a follower) makes the
//! site leased and shows the branch in the status; the core routes to the site's agents
//! only while the lease holds; a renewal older than its TTL is refused; after the lease
//! lapses the core stops offering, and a fresh renewal brings the agents back.

use banyan_env::wall_clock_ms;
use banyan_harness::desk::DeskBehaviour;
use banyan_harness::{wait_until, DeskAgent};
use banyan_proto::v1 as pb;
use banyan_tests::{
    contact_now, expect_refused, other_than, pinned, site_status, three_nodes, DEADLINE,
};
use tonic::Code;

fn renewal(sent_at_ms: i64, ttl_ms: i64) -> pb::RenewLeaseRequest {
    pb::RenewLeaseRequest {
        site_id: "emea".into(),
        node_id: 101,
        sent_at_ms,
        ttl_ms,
        mode: pb::BranchMode::Connected.into(),
        journal_backlog: 7,
        request_id: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t87_the_core_routes_to_a_branch_site_only_while_its_lease_holds() {
    let (cluster, leader) = three_nodes(&[]).await;
    let via_follower = pinned(&cluster, other_than(&[1, 2, 3], leader));
    let client = cluster.client().unwrap();
    let queue = pb::Queue {
        id: "q".into(),
        name: "Q".into(),
        allow_other_sites: true,
        ..Default::default()
    };
    client
        .upsert_queue(pb::UpsertQueueRequest {
            queue: Some(queue),
            ..Default::default()
        })
        .await
        .unwrap();
    let agent = pb::Agent {
        id: "eve".into(),
        name: "Eve".into(),
        site: "emea".into(),
        ..Default::default()
    };
    client
        .upsert_agent(pb::UpsertAgentRequest {
            agent: Some(agent),
            ..Default::default()
        })
        .await
        .unwrap();

    // Bad renewals change nothing.
    expect_refused(
        via_follower
            .renew_lease(renewal(wall_clock_ms() - 60_000, 5_000))
            .await,
        Code::FailedPrecondition,
        "sent_at_ms",
    );
    expect_refused(
        via_follower.renew_lease(renewal(wall_clock_ms(), 10)).await,
        Code::InvalidArgument,
        "ttl_ms",
    );
    expect_refused(
        via_follower
            .renew_lease(pb::RenewLeaseRequest {
                node_id: 0,
                ..renewal(wall_clock_ms(), 5_000)
            })
            .await,
        Code::InvalidArgument,
        "node_id",
    );
    assert!(
        site_status(&client, "emea").await.is_none(),
        "a refused renewal created the site"
    );

    // A short lease, renewed through a follower: the site is leased and its branch listed.
    let lease = via_follower
        .renew_lease(renewal(wall_clock_ms(), 3_000))
        .await
        .unwrap();
    assert!(lease.expires_ms > wall_clock_ms());
    let leased = site_status(&client, "emea").await.unwrap();
    assert_eq!(leased.mode, pb::SiteMode::Leased as i32, "{leased:?}");
    assert_eq!(
        (leased.branch_node_id, leased.journal_backlog, leased.agents),
        (101, 7, 1)
    );
    assert_eq!(leased.branch_mode, pb::BranchMode::Connected as i32);

    let addr = cluster.addr(leader).unwrap();
    let desk = DeskAgent::start(
        "eve",
        vec![addr],
        DeskBehaviour::default(),
        cluster.agent_security("eve").unwrap(),
    );
    let create = |n: u32| pb::CreateContactRequest {
        request_id: format!("t87-{n}"),
        channel: pb::Channel::Voice.into(),
        queue_id: "q".into(),
        ..Default::default()
    };
    let first = client.create_contact(create(1)).await.unwrap();
    wait_until(
        "the leased site's agent completed a contact",
        DEADLINE,
        || {
            let client = client.clone();
            let id = first.id.clone();
            async move {
                (contact_now(&client, &id).await.state == pb::ContactState::Completed as i32)
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();

    // Without renewals the lease lapses (the leader's Tick marks it).
    wait_until("the lease lapsed", DEADLINE, || {
        let client = client.clone();
        async move {
            (site_status(&client, "emea").await?.mode == pb::SiteMode::Lapsed as i32).then_some(())
        }
    })
    .await
    .unwrap();
    // The agent is available, but its site is fenced: routing (which runs inside the
    // create itself) leaves the contact waiting.
    let agents = client
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap()
        .agents;
    assert_eq!(
        agents[0].state,
        pb::AgentState::Available as i32,
        "{agents:?}"
    );
    let second = client.create_contact(create(2)).await.unwrap();
    assert_eq!(second.state, pb::ContactState::Queued as i32, "{second:?}");

    // A fresh renewal lets the core route to the site again.
    via_follower
        .renew_lease(renewal(wall_clock_ms(), 60_000))
        .await
        .unwrap();
    wait_until(
        "the waiting contact served after the renewal",
        DEADLINE,
        || {
            let client = client.clone();
            let id = second.id.clone();
            async move {
                (contact_now(&client, &id).await.state == pb::ContactState::Completed as i32)
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();
    desk.stop().await;
}
