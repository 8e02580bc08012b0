//! In-process nodes with cuttable links: isolating the leader elects another; healing
//! brings the old leader back as a follower with every acknowledged write.

use std::time::Duration;

use banyan_client::RetryPolicy;
use banyan_core::RaftTimers;
use banyan_harness::{wait_until, InProcessCluster};
use banyan_proto::v1::{Customer, ReadConsistency};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_isolated_leader_is_replaced_and_catches_up() {
    let ids = [1, 2, 3];
    let cluster = InProcessCluster::start(&ids, RaftTimers::default())
        .await
        .unwrap();
    let deadline = Duration::from_secs(60);
    let old = cluster.wait_for_leader(&ids, deadline).await.unwrap();
    let rest: Vec<u64> = ids.iter().copied().filter(|id| *id != old).collect();

    cluster.links().isolate(old, rest.clone());
    let new = cluster.wait_for_leader(&rest, deadline).await.unwrap();
    assert_ne!(new, old);

    let client = cluster.node_client(new, RetryPolicy::default()).unwrap();
    for i in 0..20 {
        client
            .upsert_customer(
                Customer {
                    id: format!("p-{i}"),
                    name: format!("During partition {i}"),
                    ..Default::default()
                },
                None,
            )
            .await
            .expect("majority side accepts writes");
    }

    cluster.links().heal_all();
    cluster.wait_for_leader(&ids, deadline).await.unwrap();
    let old_node = cluster.node(old).unwrap();
    let target = cluster.node(new).unwrap().committed_index();
    wait_until("the old leader to catch up", deadline, || async {
        (old_node.applied().applied_index() >= target).then_some(())
    })
    .await
    .unwrap();
    let local = cluster.node_client(old, RetryPolicy::default()).unwrap();
    let all = local.all_customers(ReadConsistency::Local).await.unwrap();
    assert_eq!(all.len(), 20);
    assert!(!old_node.metrics().state.is_leader());
    cluster.shutdown().await;
}

/// Regression (found by the Compose quorum-loss drill): a leader that had lost its quorum
/// went on appending lease renewals it could not commit, and committed them when the
/// quorum came back, seconds after the branch, which never saw them accepted, had gone on
/// alone: the core held the site's lease again and both routed to its agents. A leader
/// that has heard from no quorum lately refuses a renewal without proposing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_a_leader_without_a_quorum_proposes_no_lease_renewal() {
    let ids = [1, 2, 3];
    let cluster = InProcessCluster::start(&ids, RaftTimers::default())
        .await
        .unwrap();
    let deadline = Duration::from_secs(60);
    let old = cluster.wait_for_leader(&ids, deadline).await.unwrap();
    let rest: Vec<u64> = ids.iter().copied().filter(|id| *id != old).collect();
    cluster.links().isolate(old, rest.clone());
    let node = cluster.node(old).unwrap().clone();
    // The others elect a new leader; the old one still believes it leads, without a
    // quorum, until it hears of the new term (it never does while cut off).
    cluster.wait_for_leader(&rest, deadline).await.unwrap();
    wait_until("the old leader missing its quorum", deadline, || {
        let metrics = node.metrics();
        let stale = metrics.state == banyan_raft::ServerState::Leader
            && metrics.millis_since_quorum_ack.is_some_and(|ms| ms > 1_000);
        async move { stale.then_some(()) }
    })
    .await
    .unwrap();
    let before = node.metrics().last_log_index;
    let renewal = banyan_domain::Command::new(banyan_domain::Action::RenewLease {
        site_id: "emea".into(),
        sent_at_ms: 1,
        ttl_ms: 10_000,
        report: Default::default(),
    });
    let refused = node
        .propose(renewal)
        .await
        .expect_err("no quorum, no renewal");
    assert!(refused.to_string().contains("no quorum"), "{refused}");
    assert_eq!(
        node.metrics().last_log_index,
        before,
        "nothing was appended"
    );
    cluster.links().heal_all();
}
