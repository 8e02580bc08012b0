//! Three core nodes and two branches: a contact that enters at one branch is served by an
//! agent at the other when its queue allows other sites, the offer reaching that agent
//! through the second branch's replica.

use std::time::Duration;

use banyan_client::{Client, RetryPolicy};
use banyan_harness::desk::DeskBehaviour;
use banyan_harness::{wait_until, DeskAgent};
use banyan_proto::v1::{self as pb, ReadConsistency};
use banyan_tests::{put_queue, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_a_contact_at_one_branch_is_served_by_an_agent_at_the_other() {
    let (mut cluster, _) = three_nodes(&[]).await;
    let emea = cluster.start_branch(101, "emea", &[]).unwrap();
    let apac = cluster.start_branch(102, "apac", &[]).unwrap();
    let core = cluster.client().unwrap();
    wait_until("both branches joined and leased", DEADLINE, || {
        let core = core.clone();
        async move {
            let status = core.status().await.ok()?;
            let leased = status
                .sites
                .iter()
                .filter(|s| s.mode == pb::SiteMode::Leased as i32)
                .count();
            (leased == 2 && status.nodes.len() == 5).then_some(())
        }
    })
    .await
    .unwrap();
    let queue = pb::Queue {
        id: "follow-the-sun".into(),
        name: "Follow the sun".into(),
        allow_other_sites: true,
        ..Default::default()
    };
    put_queue(&core, queue).await;
    let agent = pb::Agent {
        id: "bo".into(),
        name: "Bo".into(),
        site: "apac".into(),
        ..Default::default()
    };
    core.upsert_agent(pb::UpsertAgentRequest {
        agent: Some(agent),
        ..Default::default()
    })
    .await
    .unwrap();
    let desk = DeskAgent::start(
        "bo",
        vec![apac],
        DeskBehaviour {
            talk: Duration::from_millis(50),
            ..Default::default()
        },
        cluster.agent_security("bo").unwrap(),
    );

    let policy = RetryPolicy {
        follow_leader: false,
        ..RetryPolicy::default()
    };
    let at_emea = Client::new([&emea], policy, &cluster.security()).unwrap();
    let created = at_emea
        .create_contact(pb::CreateContactRequest {
            request_id: "t93-1".into(),
            channel: pb::Channel::Chat.into(),
            queue_id: "follow-the-sun".into(),
            site: "emea".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_until(
        "the apac agent completed the emea contact",
        DEADLINE,
        || {
            let core = core.clone();
            let id = created.id.clone();
            async move {
                let c = core
                    .get_contact(pb::GetContactRequest {
                        id,
                        consistency: ReadConsistency::Linearizable.into(),
                    })
                    .await
                    .ok()?;
                (c.state == pb::ContactState::Completed as i32 && c.agent_id == "bo").then_some(c)
            }
        },
    )
    .await
    .unwrap();
    // The desk hears of the completion from the apac branch's replica, which may apply it
    // a moment after the core answered the read above.
    let stats = desk.stats.clone();
    wait_until("the desk saw its contact completed", DEADLINE, || {
        let done = stats.completed.load(std::sync::atomic::Ordering::Relaxed);
        async move { (done >= 1).then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(
        desk.stop()
            .await
            .completed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
