//! The whole core stops: once its lease has certainly lapsed the branch routes new
//! contacts to its own agents, who accept and complete them; a kill -9 of the branch loses
//! none of what it acknowledged; the core comes back and gets every contact the branch
//! acknowledged exactly once, waiting ones with their original enqueue time, and the branch
//! serves through the core again.

use std::time::{Duration, Instant};

use banyan_client::{Client, RetryPolicy};
use banyan_harness::desk::DeskBehaviour;
use banyan_harness::{wait_until, DeskAgent};
use banyan_proto::v1::{self as pb, ReadConsistency};
use banyan_tests::{agents_served, put_agents, put_queue, site_status, three_nodes, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_a_branch_runs_on_its_own_while_the_core_is_down_and_reconciles_once() {
    let (mut cluster, _) = three_nodes(&[]).await;
    cluster.enable_http();
    let branch_addr = cluster
        .start_branch(
            101,
            "emea",
            &["--lease-ttl", "2s", "--max-clock-skew", "500ms"],
        )
        .unwrap();
    let core = cluster.client().unwrap();
    let queue = pb::Queue {
        id: "q".into(),
        name: "Q".into(),
        wrap_up_ms: Some(0),
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
    wait_until(
        "the branch holds its lease and has both agents",
        DEADLINE,
        || {
            let (core, branch) = (core.clone(), branch.clone());
            async move {
                let site = site_status(&core, "emea").await?;
                let agents = agents_served(&branch).await?;
                (site.mode == pb::SiteMode::Leased as i32 && agents == 2).then_some(())
            }
        },
    )
    .await
    .unwrap();
    let desk = DeskAgent::start(
        "lea",
        vec![branch_addr.clone()],
        DeskBehaviour {
            talk: Duration::from_millis(300),
            ..Default::default()
        },
        cluster.agent_security("lea").unwrap(),
    );

    for id in [1, 2, 3] {
        cluster.kill(id).unwrap();
    }
    let lost_at = Instant::now();
    // Autonomous: the branch serves its site alone (the other site's agent is gone).
    wait_until("the branch routing on its own", DEADLINE, || {
        let branch = branch.clone();
        async move { (agents_served(&branch).await? == 1).then_some(()) }
    })
    .await
    .unwrap();
    let switch = lost_at.elapsed();
    // Still ready for its agents and callers, and saying why.
    let http = cluster.http_addr(101).unwrap();
    let (code, body) = banyan_harness::http_get(&http, "/readyz").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("on its own"), "{body}");
    // The branch's own status says the same, as a field a tool can read.
    let status = branch.branch_status().await.unwrap();
    assert_eq!(status.mode, pb::BranchMode::Autonomous as i32, "{status:?}");
    assert_eq!((status.node_id, status.site_id.as_str()), (101, "emea"));
    assert!(status.since_core_answered_ms > 0, "{status:?}");
    let mut acknowledged = Vec::new();
    for n in 0..4 {
        let created = branch
            .create_contact(pb::CreateContactRequest {
                request_id: format!("t92-{n}"),
                channel: pb::Channel::Voice.into(),
                queue_id: "q".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        acknowledged.push(created);
    }
    // Lea takes them one at a time at the branch.
    wait_until(
        "the branch's agent completed a contact on its own",
        DEADLINE,
        || {
            let branch = branch.clone();
            async move {
                let c = branch
                    .list_contacts(pb::ListContactsRequest {
                        state: pb::ContactState::Completed.into(),
                        consistency: ReadConsistency::Local.into(),
                        ..Default::default()
                    })
                    .await
                    .ok()?;
                (!c.contacts.is_empty()).then_some(())
            }
        },
    )
    .await
    .unwrap();

    // Kill -9 the branch while it is on its own: its journal brings every acknowledged
    // contact back.
    cluster.kill(101).unwrap();
    cluster.start(101).unwrap();
    wait_until(
        "the restarted branch has every acknowledged contact",
        DEADLINE,
        || {
            let branch = branch.clone();
            let ids: Vec<String> = acknowledged.iter().map(|c| c.id.clone()).collect();
            async move {
                let list = pb::ListContactsRequest {
                    consistency: ReadConsistency::Local.into(),
                    ..Default::default()
                };
                let contacts = branch.list_contacts(list).await.ok()?.contacts;
                ids.iter()
                    .all(|id| contacts.iter().any(|c| c.id == *id))
                    .then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(30)));

    for id in [1, 2, 3] {
        cluster.start(id).unwrap();
    }
    let core = cluster.client().unwrap();
    let at_core = wait_until(
        "every acknowledged contact at the core",
        DEADLINE * 2,
        || {
            let core = core.clone();
            let ids: Vec<String> = acknowledged.iter().map(|c| c.id.clone()).collect();
            async move {
                let all = core
                    .all_contacts(ReadConsistency::Linearizable)
                    .await
                    .ok()?;
                let found: Vec<pb::Contact> =
                    all.into_iter().filter(|c| ids.contains(&c.id)).collect();
                (found.len() == ids.len()).then_some(found)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(30)));
    for sent in &acknowledged {
        let copies: Vec<&pb::Contact> = at_core.iter().filter(|c| c.id == sent.id).collect();
        assert_eq!(copies.len(), 1, "{} exactly once", sent.id);
        assert_eq!(
            copies[0].enqueued_ms, sent.enqueued_ms,
            "{} keeps its enqueue time",
            sent.id
        );
        assert_eq!(copies[0].site, "emea");
    }
    // Connected again: the branch renews its lease (it does not fall back to routing alone)
    // and its writes reach the core; everything gets served.
    wait_until(
        "the branch serving its replica again, its lease renewed",
        DEADLINE,
        || {
            let (core, branch) = (core.clone(), branch.clone());
            async move {
                let site = site_status(&core, "emea").await?;
                let agents = agents_served(&branch).await?;
                let connected =
                    branch.branch_status().await.ok()?.mode == pb::BranchMode::Connected as i32;
                (site.mode == pb::SiteMode::Leased as i32 && agents == 2 && connected).then_some(())
            }
        },
    )
    .await
    .unwrap();
    let after = wait_until(
        "the branch writing through the core again",
        DEADLINE,
        || {
            let branch = branch.clone();
            async move {
                branch
                    .create_contact(pb::CreateContactRequest {
                        request_id: "t92-after".into(),
                        channel: pb::Channel::Voice.into(),
                        queue_id: "q".into(),
                        site: "emea".into(),
                        ..Default::default()
                    })
                    .await
                    .ok()
            }
        },
    )
    .await
    .unwrap();
    wait_until("every contact completed at the core", DEADLINE * 2, || {
        let core = core.clone();
        let mut ids: Vec<String> = acknowledged.iter().map(|c| c.id.clone()).collect();
        ids.push(after.id.clone());
        async move {
            let all = core
                .all_contacts(ReadConsistency::Linearizable)
                .await
                .ok()?;
            let done = all
                .iter()
                .filter(|c| ids.contains(&c.id) && c.state == pb::ContactState::Completed as i32)
                .count();
            (done == ids.len()).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(30)));
    desk.stop().await;
    eprintln!("core lost to autonomous routing: {switch:?}");
}
