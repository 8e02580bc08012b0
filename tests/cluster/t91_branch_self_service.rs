//! Self-service at a branch while every core node is down: the branch answers from its
//! configuration and from its replica of the customer record, records each contact as
//! `SELF_SERVED` on disk before answering, keeps those records through a kill -9, and
//! delivers them to the core exactly once when the core is back.

use banyan_client::{Client, RetryPolicy};
use banyan_harness::wait_until;
use banyan_proto::v1::{self as pb, ReadConsistency};
use banyan_tests::{site_status, three_nodes, DEADLINE};
use std::time::Duration;

fn ask(request_id: &str, intent: &str, customer: &str) -> pb::CreateContactRequest {
    pb::CreateContactRequest {
        request_id: request_id.into(),
        channel: pb::Channel::Voice.into(),
        customer_id: customer.into(),
        intent: intent.into(),
        // Where the caller goes when self-service cannot answer.
        queue_id: "front-desk".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_a_branch_answers_self_service_while_the_core_is_down() {
    let (mut cluster, _) = three_nodes(&[]).await;
    let branch_addr = cluster
        .start_branch(
            101,
            "emea",
            &[
                "--self-service",
                "hours=text:Open 8-18 on weekdays;order=attr:order_status",
            ],
        )
        .unwrap();
    let core = cluster.client().unwrap();
    let customer = pb::Customer {
        id: "c1".into(),
        name: "Ada".into(),
        attributes: [("order_status".to_owned(), "shipped".to_owned())].into(),
        ..Default::default()
    };
    core.upsert_customer(customer, None).await.unwrap();
    let quick = RetryPolicy {
        total_timeout: Duration::from_secs(2),
        follow_leader: false,
        ..RetryPolicy::default()
    };
    let branch = Client::new([&branch_addr], quick, &cluster.security()).unwrap();
    wait_until("the branch's replica has the customer", DEADLINE, || {
        let branch = branch.clone();
        async move { branch.get_customer("c1", ReadConsistency::Local).await.ok() }
    })
    .await
    .unwrap();

    for id in [1, 2, 3] {
        cluster.kill(id).unwrap();
    }
    let hours = branch
        .create_contact(ask("t91-hours", "hours", ""))
        .await
        .unwrap();
    assert_eq!(hours.state, pb::ContactState::SelfServed as i32);
    assert_eq!(hours.attributes["answer"], "Open 8-18 on weekdays");
    let order = branch
        .create_contact(ask("t91-order", "order", "c1"))
        .await
        .unwrap();
    assert_eq!(order.attributes["answer"], "shipped");
    // A retry gets the same contact; an agent-assisted intent needs the core.
    let again = branch
        .create_contact(ask("t91-hours", "hours", ""))
        .await
        .unwrap();
    assert_eq!(again.id, hours.id);
    let assisted = branch
        .create_contact(ask("t91-refund", "refund", "c1"))
        .await;
    assert!(assisted.is_err(), "{assisted:?}");

    // The records survive a kill -9 of the branch.
    cluster.kill(101).unwrap();
    cluster.start(101).unwrap();
    for id in [1, 2, 3] {
        cluster.start(id).unwrap();
    }
    let core = cluster.client().unwrap();
    let delivered = wait_until(
        "both self-served contacts at the core",
        DEADLINE * 2,
        || {
            let core = core.clone();
            async move {
                let contacts = core
                    .all_contacts(ReadConsistency::Linearizable)
                    .await
                    .ok()?;
                let served: Vec<pb::Contact> = contacts
                    .into_iter()
                    .filter(|c| c.state == pb::ContactState::SelfServed as i32)
                    .collect();
                (served.len() >= 2).then_some(served)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(20)));
    let mut ids: Vec<&str> = delivered.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    let mut expected = vec![hours.id.as_str(), order.id.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "each self-served contact exactly once");
    assert!(delivered.iter().all(|c| c.site == "emea"));
    // The branch reports an empty outbox once delivered.
    wait_until("the branch reports no backlog", DEADLINE, || {
        let core = core.clone();
        async move {
            let site = site_status(&core, "emea").await?;
            (site.journal_backlog == 0 && site.branch_node_id == 101).then_some(())
        }
    })
    .await
    .unwrap();
}
