//! The same cut as t94 with every node inside the test process: a branch behind links the
//! test cuts goes autonomous once its lease has lapsed, takes a contact on its own, and
//! hands it to the core once when the links heal.

use std::time::Duration;

use banyan_client::{Client, RetryPolicy};
use banyan_core::RaftTimers;
use banyan_harness::{wait_until, InProcessCluster};
use banyan_proto::v1::{self as pb, ReadConsistency};
use banyan_tests::{agents_served, put_agents, put_queue, site_status, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_an_in_process_branch_is_cut_off_and_reconciles() {
    let ids = [1, 2, 3];
    let mut cluster = InProcessCluster::start(&ids, RaftTimers::default())
        .await
        .unwrap();
    cluster.wait_for_leader(&ids, DEADLINE).await.unwrap();
    let branch_addr = cluster
        .start_branch(
            101,
            "emea",
            Duration::from_secs(2),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
    let core = cluster.client().unwrap();
    let queue = pb::Queue {
        id: "q".into(),
        name: "Q".into(),
        ..Default::default()
    };
    put_queue(&core, queue).await;
    put_agents(&core, &[("lea", "emea"), ("kai", "apac")]).await;
    let quick = RetryPolicy {
        total_timeout: Duration::from_secs(2),
        follow_leader: false,
        ..RetryPolicy::default()
    };
    let branch = Client::new([&branch_addr], quick, &cluster.security()).unwrap();
    let site_mode = |core: Client| async move { site_status(&core, "emea").await.map(|s| s.mode) };
    wait_until("the branch leased with both agents", DEADLINE, || {
        let (core, branch) = (core.clone(), branch.clone());
        async move {
            let leased = site_mode(core).await? == pb::SiteMode::Leased as i32;
            (leased && agents_served(&branch).await? == 2).then_some(())
        }
    })
    .await
    .unwrap();

    let links = &cluster.branch(101).unwrap().links;
    links.cut();
    wait_until("the branch routing its site alone", DEADLINE, || {
        let branch = branch.clone();
        async move { (agents_served(&branch).await? == 1).then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(
        site_mode(core.clone()).await,
        Some(pb::SiteMode::Lapsed as i32),
        "the core fenced the site before the branch went on alone"
    );
    let alone = branch
        .create_contact(pb::CreateContactRequest {
            request_id: "t95-alone".into(),
            channel: pb::Channel::Chat.into(),
            queue_id: "q".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    links.heal();
    let at_core = wait_until("the contact at the core", DEADLINE, || {
        let core = core.clone();
        let id = alone.id.clone();
        async move {
            let all = core
                .all_contacts(ReadConsistency::Linearizable)
                .await
                .ok()?;
            let copies: Vec<pb::Contact> = all.into_iter().filter(|c| c.id == id).collect();
            (!copies.is_empty()).then_some(copies)
        }
    })
    .await
    .unwrap();
    assert_eq!(at_core.len(), 1);
    assert_eq!(at_core[0].enqueued_ms, alone.enqueued_ms);
    wait_until("the branch leased again", DEADLINE, || {
        let core = core.clone();
        async move { (site_mode(core).await? == pb::SiteMode::Leased as i32).then_some(()) }
    })
    .await
    .unwrap();
    cluster.shutdown().await;
}
