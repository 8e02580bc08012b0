//! A branch joins the core as a learner, holds its site's lease, and serves its region:
//! writes sent to the branch reach the core, agents logged in at the branch get offers
//! from the branch's replica and complete them, and the core's status lists the branch.

use std::time::Duration;

use banyan_client::{Client, RetryPolicy};
use banyan_harness::desk::DeskBehaviour;
use banyan_harness::{wait_until, DeskAgent};
use banyan_proto::v1::{self as pb, ReadConsistency};
use banyan_tests::{three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_a_branch_serves_its_region_through_its_replica() {
    let (mut cluster, _) = three_nodes(&[]).await;
    cluster.enable_http();
    let branch_addr = cluster
        .start_branch(101, "emea", &["--lease-ttl", "3s"])
        .unwrap();
    let core = cluster.client().unwrap();
    let site = wait_until("the branch joined and holds its lease", DEADLINE, || {
        let core = core.clone();
        async move {
            let status = core.status().await.ok()?;
            let learner = status.nodes.iter().any(|n| n.id == 101 && !n.voter);
            let site = status.sites.into_iter().find(|s| s.site_id == "emea")?;
            (learner && site.mode == pb::SiteMode::Leased as i32).then_some(site)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(20)));
    assert_eq!(site.branch_node_id, 101);
    assert_eq!(site.branch_mode, pb::BranchMode::Connected as i32);
    let http = cluster.http_addr(101).unwrap();
    let ready = wait_until("the branch ready", DEADLINE, || {
        let http = http.clone();
        async move {
            let (code, body) = banyan_harness::http_get(&http, "/readyz").await.ok()?;
            (code == 200).then_some(body)
        }
    })
    .await
    .unwrap();
    assert!(ready.contains("through the core"), "{ready}");
    let (code, _) = banyan_harness::http_get(&http, "/healthz").await.unwrap();
    assert_eq!(code, 200);

    // Everything below goes through the branch.
    let policy = RetryPolicy {
        follow_leader: false,
        ..RetryPolicy::default()
    };
    let branch = Client::new([&branch_addr], policy, &cluster.security()).unwrap();
    // The branch's own status names its mode; a core node has no such service.
    let status = branch.branch_status().await.unwrap();
    assert_eq!(status.mode, pb::BranchMode::Connected as i32, "{status:?}");
    assert_eq!(status.outbox_backlog, 0);
    let on_core = core.branch_status().await.unwrap_err();
    assert_eq!(on_core.code(), tonic::Code::Unimplemented, "{on_core:?}");
    let queue = pb::Queue {
        id: "emea-support".into(),
        name: "EMEA support".into(),
        ..Default::default()
    };
    // Configuration is made at the core: a branch forwards only its site's work, even
    // for an admin.
    let refused = branch
        .upsert_queue(pb::UpsertQueueRequest {
            queue: Some(queue.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("core"), "{refused:?}");
    core.upsert_queue(pb::UpsertQueueRequest {
        queue: Some(queue),
        ..Default::default()
    })
    .await
    .unwrap();
    let agent = pb::Agent {
        id: "lea".into(),
        name: "Léa".into(),
        site: "emea".into(),
        ..Default::default()
    };
    core.upsert_agent(pb::UpsertAgentRequest {
        agent: Some(agent),
        ..Default::default()
    })
    .await
    .unwrap();
    let desk = DeskAgent::start(
        "lea",
        vec![branch_addr.clone()],
        DeskBehaviour {
            talk: Duration::from_millis(50),
            ..Default::default()
        },
        cluster.agent_security("lea").unwrap(),
    );
    let created = branch
        .create_contact(pb::CreateContactRequest {
            request_id: "t90-1".into(),
            channel: pb::Channel::Voice.into(),
            queue_id: "emea-support".into(),
            site: "emea".into(),
            intent: "billing".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The core has it, and the branch's agent serves it to the end.
    wait_until("the branch's agent completed the contact", DEADLINE, || {
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
            (c.state == pb::ContactState::Completed as i32 && c.agent_id == "lea").then_some(())
        }
    })
    .await
    .unwrap();
    // A local read at the branch answers from its replica.
    let local = branch
        .get_contact(pb::GetContactRequest {
            id: created.id.clone(),
            consistency: ReadConsistency::Local.into(),
        })
        .await
        .unwrap();
    assert_eq!(local.id, created.id);
    let stats = desk.stop().await;
    assert_eq!(
        stats.completed.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
